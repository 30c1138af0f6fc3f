"""Fixtures for the anomaly pipeline's tests: a private var dir (lake, SQLite journal), a small ensemble
trained once per session on simulated healthy machines, and a watcher that serves it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faust_testing import (  # noqa: F401
    Serving,
    captured_sends,
    faust_app,
    forget_pipeline_state,
    pipeline_fixtures,
)

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
    from tables.criticality import anomaly_criticality
    from tables.history import anomaly_history

    forget_pipeline_state(anomaly_history, anomaly_figures, anomaly_criticality)


def _watcher() -> Any:
    from streamapp.anomaly_scoring import anomaly_model

    return anomaly_model


anomaly_env, serving = pipeline_fixtures("anomaly_env", forget_cached_state, _watcher)
