"""The `anomaly` trainer: feature files (CSV, Parquet, NPZ with named columns) are read without zero-filling,
and training logs to MLflow (params, metrics, model, sklearn and PyTorch flavours), registers and promotes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from streamapp.training import TRAINERS, TrainRequest, get_trainer
from tests.anomalies.conftest import small_training_data


def feature_frame(rows: int = 60) -> pd.DataFrame:
    data = small_training_data()
    frame = pd.DataFrame(data.X[:rows], columns=data.feature_names)
    frame.insert(0, "asset_id", data.groups[:rows])
    frame["timestamp"] = "2024-01-01T00:00:00Z"
    return frame


def test_feature_files_keep_named_numeric_columns_group_by_asset_and_drop_incomplete_rows(tmp_path: Path) -> None:
    from streamapp.anomaly_training import read_feature_file

    frame = feature_frame(30)
    frame.loc[3, "kurtosis"] = np.nan
    frame.to_csv(tmp_path / "f.csv", index=False)
    frame.to_parquet(tmp_path / "f.parquet")
    np.savez(tmp_path / "f.npz", X=frame[["rms", "kurtosis"]].to_numpy(), feature_names=np.array(["rms", "kurtosis"]))
    for name in ("f.csv", "f.parquet"):
        data = read_feature_file(tmp_path / name)
        assert data.feature_names == ["rms", "kurtosis", "crest_factor", "variance", "mean"]
        assert data.X.shape == (29, 5) and data.groups is not None and len(data.groups) == 29
        assert data.notes == [f"{tmp_path / name}: dropped 1 rows with missing values"]
    npz = read_feature_file(tmp_path / "f.npz")
    assert npz.feature_names == ["rms", "kurtosis"] and npz.X.shape == (29, 2) and npz.groups is None
    with pytest.raises(ValueError, match="expected a .csv, .parquet or .npz"):
        read_feature_file(tmp_path / "f.json")


def test_train_anomaly_from_a_file_logs_to_mlflow_registers_and_promotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    import torch

    from models import registry
    from streamapp import anomaly_training
    from streamapp.settings import get_settings

    torch.set_num_threads(1)
    small = functools.partial(anomaly_training.AnomalyTrainingConfig, n_estimators=10, epochs=2, hidden_size=8)
    monkeypatch.setattr(anomaly_training, "AnomalyTrainingConfig", small)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    feature_frame(60).to_csv(tmp_path / "features.csv", index=False)
    ticks: list[tuple[int, int]] = []
    assert "anomaly" in TRAINERS
    result = get_trainer("anomaly")(TrainRequest(data=[tmp_path / "features.csv"], progress=lambda d, t: ticks.append((d, t))))
    assert result.name == "anomaly" and result.promoted and registry.production_version("anomaly") == result.version
    assert ticks and ticks[-1][0] == ticks[-1][1]
    run: dict[str, Any] = registry.production_run("anomaly") or {}
    assert run["metrics"]["train_rows"] == 60.0 and run["params"]["feature_names"] == "rms,kurtosis,crest_factor,variance,mean"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=get_settings().tracking_uri)
    flavours = {item.path for item in client.list_artifacts(run["run_id"], "flavors")}
    assert flavours == {"flavors/isolation_forest", "flavors/one_class_svm", "flavors/lstm_autoencoder"}
    get_settings.cache_clear()
