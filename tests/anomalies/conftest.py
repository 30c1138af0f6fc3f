"""Fixtures for the anomaly pipeline's tests: a private var dir (lake, SQLite journal), a small ensemble
trained once per session on simulated healthy machines, and a watcher that serves it."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faust_testing import captured_sends, faust_app  # noqa: F401

SEED_EXAMPLE = {  # anomaly-worker-guide.md, "Input (extracted-features)"
    "asset_id": "ASSET001",
    "sensor_id": "SENSOR001",
    "features": {"rms": 0.5, "kurtosis": 0.3, "crest_factor": 1.2, "variance": 0.1, "mean": 0.0},
    "timestamp": "2024-01-01T12:00:00Z",
    "metadata": {},
}


def small_config(seed: int = 0) -> Any:
    """Few trees, few epochs, a short LSTM window: seconds to fit."""
    from streamapp.anomaly_training import AnomalyTrainingConfig

    return AnomalyTrainingConfig(n_estimators=25, epochs=3, window=4, hidden_size=8, latent_size=4, seed=seed)


def small_training_data(seed: int = 0) -> Any:
    from streamapp.anomaly_training import simulated_healthy_features

    return simulated_healthy_features(6, 30, seed=seed)


@pytest.fixture(scope="session")
def small_ensemble() -> Any:
    """An ensemble on the seed's five features, fitted once for the session."""
    import torch

    from streamapp.anomaly_training import fit_ensemble

    torch.set_num_threads(1)
    model, _ = fit_ensemble(small_training_data(), small_config())
    return model


def forget_cached_state() -> None:
    from streamapp.anomaly_scoring import anomaly_figures
    from streamapp.db import migrate
    from streamapp.settings import get_settings
    from tables.criticality import anomaly_criticality
    from tables.history import anomaly_history

    get_settings.cache_clear()
    migrate._current.clear()
    anomaly_history.table.data.clear()
    anomaly_history.discard_pending()
    anomaly_criticality.data.clear()
    anomaly_figures.__init__()  # type: ignore[misc]


@pytest.fixture
async def anomaly_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    """Settings pointing at `tmp_path`; lake rows flushed at once; tables, figures and caches emptied."""
    from streamapp.db.engines import dispose_all

    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("STREAMAPP_LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("STREAMAPP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}")
    monkeypatch.setenv("STREAMAPP_LAKE_FLUSH_SECONDS", "0")
    await dispose_all()
    forget_cached_state()
    yield tmp_path
    await dispose_all()
    monkeypatch.undo()
    forget_cached_state()


class Serving:
    """Controls what the anomaly watcher serves, without a registry."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from streamapp.anomaly_scoring import anomaly_model

        self.watcher = anomaly_model
        monkeypatch.setattr(anomaly_model, "model", None)
        monkeypatch.setattr(anomaly_model, "version", None)
        monkeypatch.setattr(anomaly_model, "_next_check", math.inf)  # never asks the registry

    def serve(self, model: Any, version: str) -> None:
        self.watcher.model, self.watcher.version = model, version


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serving]:
    yield Serving(monkeypatch)
