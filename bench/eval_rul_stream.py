"""C-MAPSS FD001 through the stream: issue #5's acceptance measured on what a user runs.

A private Kafka broker and MLflow store; `train rul` on train_FD001 (the trainer's own config, registered and
promoted); a worker serving it; `simulate machines --cmapss test_FD001.txt` replaying every engine cycle onto
`extracted-features`; the last `rul-predictions` message of each engine scored against RUL_FD001 (capped at
125): RMSE <= 13, PHM08 score <= 400, 95 % interval coverage >= 0.92. The same figures from a direct
evaluation of the registered model must match to 0.01 (the stream adds no skew).
Run: `python bench/eval_rul_stream.py [--threads 1] [--data-dir DIR]` (`make eval`; minutes: it trains).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.eval_rul import ACCEPTANCE, metrics  # noqa: E402
from bench.shared_data import shared_data_dir  # noqa: E402
from tests.kafka_helpers import read_topic  # noqa: E402
from tests.worker import model_worker, private_mlflow, served_version  # noqa: E402

MATCH = 0.01  # streamed and direct figures may differ by this much at most


def train(data_dir: Path) -> tuple[Any, str, float]:
    """`train rul --data train_FD001.txt` in process: the registered model, its version and the seconds."""
    from models.registry import fetch_version
    from models.rul import RulEnsemble
    from streamapp.training import TrainRequest, get_trainer

    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"  training: epoch {done}/{total} at {time.perf_counter() - started:.0f} s", flush=True)

    result = get_trainer("rul")(TrainRequest(data=[data_dir / "train_FD001.txt"], progress=progress))
    seconds = time.perf_counter() - started
    print(f"trained and registered rul version {result.version} in {seconds:.0f} s: {result.metrics}", flush=True)
    return RulEnsemble.load(fetch_version("rul", result.version)), result.version, seconds


def replay(env: dict[str, str], test_file: Path) -> float:
    """`faust -A streamapp simulate machines --cmapss test_FD001.txt`; returns its seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("faust")), "-A", "streamapp", "simulate", "machines", "--cmapss",
         str(test_file)], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"replay failed: {done.stderr}")
    print(done.stdout.strip(), flush=True)
    return time.perf_counter() - started


def final_predictions(bootstrap: str, final_cycles: dict[str, int], within_s: float) -> dict[str, dict[str, Any]]:
    """The prediction of each engine's last cycle, read from `rul-predictions`."""

    def finals(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        values = [m["value"] for m in messages if isinstance(m["value"], dict)]
        return {v["asset_id"]: v for v in values if final_cycles.get(str(v.get("asset_id"))) == v["metadata"]["cycle"]}

    messages = asyncio.run(read_topic(bootstrap, "rul-predictions", within_s=within_s,
                                      until=lambda m: len(finals(m)) == len(final_cycles)))
    return finals(messages)


def evaluate(model: Any, subset: Any, last: dict[str, dict[str, Any]], assets: list[str]) -> dict[str, Any]:
    """Figures of the streamed predictions and of the model's own evaluation of the same windows."""
    from models.rul.cmapss import last_windows

    streamed = {name: np.asarray([last[a][field] for a in assets]) for name, field in (
        ("mean", "rul_prediction"), ("lower", "confidence_interval_lower"), ("upper", "confidence_interval_upper"))}
    windows, _, _ = last_windows(subset.test, model.config.window, model.feature_names)
    direct = model.predict_interval(windows)
    cap = model.config.rul_cap
    return {
        "stream": metrics(streamed["mean"], streamed["lower"], streamed["upper"], subset.test_rul, cap),
        "direct": metrics(direct.mean, direct.lower, direct.upper, subset.test_rul, cap),
        "max_prediction_difference": float(np.abs(streamed["mean"] - direct.mean).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=shared_data_dir() / "cmapss")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval_rul_stream.json")
    args = parser.parse_args(argv)

    from models.rul.cmapss import load_subset
    from streamapp.stack import KafkaService

    torch.set_num_threads(args.threads)
    subset = load_subset(args.data_dir, "FD001")
    final_cycles = {f"test_FD001-{unit:03d}": int(cycle) for unit, cycle in subset.test.groupby("unit")["cycle"].max().items()}
    assets = sorted(final_cycles)
    with tempfile.TemporaryDirectory(prefix="eval-rul-stream-") as scratch:
        root = Path(scratch)
        kafka = KafkaService(root / "kafka")
        kafka.start()
        worker = None
        try:
            with private_mlflow(root) as uri:
                model, version, train_s = train(args.data_dir)
                worker = model_worker(kafka.url, root / "worker", uri, 1.0,
                                      STREAMAPP_LAKE_DIR=str(root / "lake")).start()
                served_version(worker, "/api/v1/rul/status", expected=version)
                started = time.perf_counter()
                replay_s = replay({**worker.env, "STREAMAPP_VAR_DIR": str(root / "cli-var")},
                                  args.data_dir / "test_FD001.txt")
                last = final_predictions(kafka.bootstrap, final_cycles, within_s=900)
                stream_s = time.perf_counter() - started
        finally:
            if worker is not None:
                worker.stop()
            kafka.stop()
    if len(last) != len(assets):
        print(f"only {len(last)} of {len(assets)} engines have a final prediction", file=sys.stderr)
        return 1
    figures = evaluate(model, subset, last, assets)
    stream, direct = figures["stream"], figures["direct"]
    accepted = {name: (stream[name] >= bound if name.startswith("coverage") else stream[name] <= bound)
                for name, bound in ACCEPTANCE.items()}
    matched = {name: abs(stream[name] - direct[name]) <= MATCH for name in ACCEPTANCE}
    print(f"{'':<8}" + "".join(f"{name:>18}" for name in ACCEPTANCE))
    for label, values in (("stream", stream), ("direct", direct)):
        print(f"{label:<8}" + "".join(f"{values[name]:>18.3f}" for name in ACCEPTANCE))
    print(f"largest |stream - direct| prediction: {figures['max_prediction_difference']:.2e}; training {train_s:.0f} s, "
          f"replay {replay_s:.0f} s, replay to the last prediction {stream_s:.0f} s")
    print("acceptance:", ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in accepted.items()),
          "| stream = direct:", "ok" if all(matched.values()) else "FAILED")
    report = {
        "protocol": "train rul on train_FD001 (registered, promoted), worker on a private Kafka, test_FD001 replayed "
                    "with simulate machines --cmapss, last rul-predictions message per engine vs RUL_FD001",
        "model_version": version, "config": model.config.to_dict(), "threads": args.threads,
        "machine": platform.platform(), "seconds": {"train": train_s, "replay": replay_s, "to_last": stream_s},
        **figures, "acceptance": {"bounds": ACCEPTANCE, "met": accepted, "stream_matches_direct": matched},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(accepted.values()) and all(matched.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
