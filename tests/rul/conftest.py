"""Fixtures for the RUL pipeline's tests: a private var dir (lake, SQLite journal), a quick ensemble trained
once per session on train_FD001 (few epochs, small networks: seconds), and a watcher that serves it."""

from __future__ import annotations

from typing import Any

import pytest

from bench.shared_data import shared_data_dir
from tests.faust_testing import (  # noqa: F401
    Serving,
    captured_sends,
    faust_app,
    forget_pipeline_state,
    pipeline_fixtures,
)

CMAPSS_DIR = shared_data_dir() / "cmapss"
SEED_EXAMPLE = {  # rul-worker-guide.md, "Input : Features Extraites"
    "asset_id": "ASSET001",
    "sensor_id": "SENSOR001",
    "features": {"rms": 10.5, "kurtosis": 2.3, "crest_factor": 3.1},
    "timestamp": "2024-01-01T12:00:00Z",
    "metadata": {"source": "extraction-features-service"},
}
QUICK_PARAMS: dict[str, Any] = {
    "hidden": 16, "layers": 1, "tcn_channels": 8, "tcn_levels": 2, "max_epochs": 3, "patience": 2, "seed": 0,
}


def quick_config(data: Any) -> Any:
    """The trainer's config for `data` with small networks and three epochs per member."""
    from models.rul import RulConfig
    from streamapp.rul_training import training_config

    return training_config(data, RulConfig(**QUICK_PARAMS))


@pytest.fixture(scope="session")
def fd001_training() -> Any:
    from streamapp.rul_training import read_cmapss_training

    return read_cmapss_training([CMAPSS_DIR / "train_FD001.txt"])


@pytest.fixture(scope="session")
def quick_ensemble(fd001_training: Any) -> Any:
    """A small ensemble on the 24 C-MAPSS features, fitted once for the session (about 10 s on one thread)."""
    import torch

    from streamapp.rul_training import fit_ensemble

    torch.set_num_threads(1)
    return fit_ensemble(fd001_training, quick_config(fd001_training))


def forget_cached_state() -> None:
    from streamapp.rul_scoring import rul_figures
    from tables.history import rul_history

    forget_pipeline_state(rul_history, rul_figures)


def _watcher() -> Any:
    from streamapp.rul_scoring import rul_model

    return rul_model


rul_env, serving = pipeline_fixtures("rul_env", forget_cached_state, _watcher)


def engine_messages(unit: int, cycles: int | None = None, file: str = "test_FD001.txt") -> list[dict[str, Any]]:
    """The replay command's bodies for one engine of a C-MAPSS file (its first `cycles` cycles)."""
    from streamapp.commands.simulate_machines import cmapss_messages

    bodies = [body for body in cmapss_messages(CMAPSS_DIR / file) if body["metadata"]["unit"] == unit]
    return bodies[:cycles]
