"""Training entry points of every pipeline, behind one registry that `faust -A streamapp train NAME` uses.

Each pipeline adds one line to `TRAINERS` (name -> "module:function"); the function takes a
`TrainRequest`, blocks (the command runs it in an executor), saves, registers and promotes its model
with `register_model`, and returns a `TrainResult`. Modules are imported only when chosen, so training
the returns model never imports torch.
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from models.base import ProgressCallback

log = logging.getLogger(__name__)

TRAINERS: dict[str, str] = {
    "returns": "streamapp.training:train_returns",
    "anomaly": "streamapp.anomaly_training:train_anomaly",
    "rul": "streamapp.rul_training:train_rul",
}
DEFAULT_SIMULATED_ORDERS = 20_000


@dataclass
class TrainRequest:
    """What the `train` command was told: data paths (empty: simulate if the pipeline can), options."""

    data: list[Path] = field(default_factory=list)
    seed: int = 0
    rows: int | None = None  # rows to simulate (or read at most)
    promote: bool = True
    progress: ProgressCallback | None = None  # (done, total), called from the training thread

    def step(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)


@dataclass
class TrainResult:
    name: str  # the registered model name
    version: str  # the registry version
    model_version: str  # the model's own version label
    metrics: dict[str, float]
    promoted: bool
    notes: list[str] = field(default_factory=list)  # e.g. lines skipped in the input


Trainer = Callable[[TrainRequest], TrainResult]


class SavableModel(Protocol):
    version: str

    def save(self, path: Path) -> None: ...


def get_trainer(name: str) -> Trainer:
    """The trainer registered under `name` (imported on demand)."""
    module_name, _, function_name = TRAINERS[name].partition(":")
    trainer: Trainer = getattr(importlib.import_module(module_name), function_name)
    return trainer


def register_model(
    name: str, model: SavableModel, params: dict[str, Any], metrics: dict[str, float], *, promote: bool = True,
    flavor_objects: dict[str, Any] | None = None,
) -> str:
    """Save `model`, log it with params and metrics to MLflow (and `flavor_objects` with MLflow's sklearn /
    pytorch flavours), register it under `name`, and point the `production` alias at it when `promote`;
    returns the registry version. Blocking."""
    from models import registry

    with tempfile.TemporaryDirectory(prefix=f"{name}-model-") as staging:
        model_dir = Path(staging) / "model"
        model.save(model_dir)
        version = registry.log_and_register(
            name, model_dir, {**params, "model_version": model.version}, metrics, flavor_objects
        )
    if promote:
        registry.promote(name, version)
    return version


def read_jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, object or None, reason) for every non-blank line of a JSON Lines file."""
    with path.open("r", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield number, None, f"not valid JSON: {exc}"
                continue
            if not isinstance(value, dict):
                yield number, None, f"a JSON {type(value).__name__}, not an object"
                continue
            yield number, value, ""


# ---- returns ---------------------------------------------------------------------------------------
RETURNS_MODEL_NAME = "returns"


def _labelled_orders(request: TrainRequest, notes: list[str]) -> list[dict[str, Any]]:
    """Orders with a boolean `order_is_returned` from the given files, or freshly simulated ones."""
    if not request.data:
        from streamapp.simulators.orders import generate_orders

        count = request.rows or DEFAULT_SIMULATED_ORDERS
        notes.append(f"trained on {count} simulated orders (seed {request.seed})")
        return list(generate_orders(count, seed=request.seed))
    orders: list[dict[str, Any]] = []
    for path in request.data:
        skipped = 0
        for _, value, _reason in read_jsonl_objects(path):
            if value is None or not isinstance(value.get("order_is_returned"), bool):
                skipped += 1
                continue
            orders.append(value)
            if request.rows is not None and len(orders) >= request.rows:
                break
        if skipped:
            notes.append(f"{path}: skipped {skipped} lines that are not labelled order events")
    return orders


def train_returns(request: TrainRequest) -> TrainResult:
    """Fit the calibrated return model (time split for the metrics), register it and promote it."""
    from models.returns import train_returns_model

    total = 4
    notes: list[str] = []
    request.step(0, total)
    orders = _labelled_orders(request, notes)
    if len(orders) < 50:
        raise ValueError(f"only {len(orders)} labelled orders to train on; need at least 50")
    request.step(1, total)
    model, metrics = train_returns_model(orders, seed=request.seed)
    request.step(2, total)
    params = {
        "seed": request.seed,
        "rows": len(orders),
        "source": ",".join(str(path) for path in request.data) or "simulated",
    }
    version = register_model(RETURNS_MODEL_NAME, model, params, metrics, promote=request.promote)
    request.step(total, total)
    log.info("returns model %s registered as version %s: %s", model.version, version, metrics)
    return TrainResult(RETURNS_MODEL_NAME, version, model.version, metrics, request.promote, notes)
