"""The RUL REST views in process: predict (200 equal to the model's own forecast, 422 naming missing
features, 503 untrained, 401 without the token), train from `training_data` / `target_data` into a private
MLflow store (registered, promoted, served), 422 with every reason (paths outside the training data
folders included), and status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.faust_testing import Serving
from tests.rul.conftest import CMAPSS_DIR, SEED_EXAMPLE, engine_messages
from tests.view_testing import call


async def test_predict_forecasts_a_body_with_its_history_as_the_model_does(
    rul_env: Path, serving: Serving, quick_ensemble: Any
) -> None:
    from models.rul import pad_history
    from streamapp.views.rul import RulPredictView

    serving.serve(quick_ensemble, "9")
    *earlier, last = engine_messages(unit=7, cycles=12)
    body = {**last, "history": [message["features"] for message in earlier]}
    status, prediction = await call(RulPredictView, "post", body)
    assert status == 200
    rows = np.asarray([[m["features"][n] for n in quick_ensemble.feature_names] for m in [*earlier, last]])
    direct = quick_ensemble.predict_interval(pad_history(rows, quick_ensemble.config.window)[0][None])
    assert prediction["rul_prediction"] == pytest.approx(float(direct.mean[0]), abs=1e-4)
    assert prediction["confidence_interval_upper"] == pytest.approx(float(direct.upper[0]), abs=1e-4)
    assert prediction["model_version"] == "9" and prediction["model_used"] == "ensemble"
    assert prediction["metadata"]["padded"] is True and prediction["metadata"]["history_len"] == 12
    assert set(prediction["model_scores"]) == {"lstm", "gru", "tcn"}


async def test_predict_refuses_the_seed_example_naming_every_missing_feature(
    rul_env: Path, serving: Serving, quick_ensemble: Any
) -> None:
    from streamapp.views.rul import RulPredictView

    serving.serve(quick_ensemble, "9")
    status, body = await call(RulPredictView, "post", {**SEED_EXAMPLE, "history": [{"sensor_2": 1.0}]})
    assert status == 422
    assert body["detail"][0] == "missing features: " + ", ".join(quick_ensemble.feature_names)
    assert body["detail"][1].startswith("history[0]: missing features: setting_1")
    status, body = await call(RulPredictView, "post", {"features": {}, "timestamp": 5})
    assert status == 422 and len(body["detail"]) == 3  # asset_id, features, timestamp at once


async def test_predict_answers_503_untrained_and_401_without_the_token(
    rul_env: Path, serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamapp.settings import get_settings
    from streamapp.views.rul import RulPredictView

    (body,) = engine_messages(unit=1, cycles=1)
    open_status, _ = await call(RulPredictView, "post", body)
    monkeypatch.setenv("STREAMAPP_API_TOKEN", "s3cret")
    get_settings.cache_clear()
    refused, _ = await call(RulPredictView, "post", body)
    allowed, answer = await call(RulPredictView, "post", body, headers={"Authorization": "Bearer s3cret"})
    assert (open_status, refused, allowed) == (503, 401, 503)
    assert answer["detail"][0].startswith("model-not-trained")


def run_to_failure_rows(assets: int = 6, cycles: int = 40) -> tuple[list[dict[str, Any]], list[float]]:
    """Seed-shaped training rows: three features drifting towards failure, and each row's RUL."""
    rng = np.random.default_rng(0)
    rows, targets = [], []
    for asset in range(assets):
        for cycle in range(cycles):
            wear = cycle / cycles
            rows.append({"asset_id": f"A{asset}", "features": {
                "rms": 1 + wear + rng.normal(0, 0.05), "kurtosis": 3 + 2 * wear ** 2, "crest_factor": 1.4 + wear}})
            targets.append(float(cycles - 1 - cycle))
    return rows, targets


TINY_PARAMS = {"window": 5, "max_epochs": 1, "hidden": 4, "layers": 1, "tcn_channels": 4, "tcn_levels": 1}


async def test_train_on_rows_registers_promotes_and_serves_the_new_version(
    rul_env: Path, serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.registry import production_run
    from streamapp.settings import get_settings
    from streamapp.views.rul import RulStatusView, RulTrainView

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{rul_env / 'mlflow.db'}")
    get_settings.cache_clear()
    rows, targets = run_to_failure_rows()
    status, job = await call(RulTrainView, "post", {"training_data": rows, "target_data": targets,
                                                    "params": TINY_PARAMS}, query={"wait": "true"})
    assert status == 200, job
    assert job["status"] == "done" and job["promoted"] is True
    run = production_run("rul")
    assert run is not None and run["version"] == job["version"]
    assert {"lstm_best_val_rmse", "conformal_half_width", "train_rows"} <= set(run["metrics"])
    assert run["params"]["config.window"] == "5" and run["params"]["source"] == "api"
    status, state = await call(RulStatusView, "get")
    assert state["trained"] is True and state["model"]["version"] == job["version"]
    assert state["feature_names"] == ["crest_factor", "kurtosis", "rms"] and state["window"] == 5
    assert state["training"]["status"] == "done" and state["confidence_level"] == 0.95


async def test_train_refuses_bad_bodies_with_every_reason_and_paths_outside_the_data_folders(
    rul_env: Path, serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamapp.settings import get_settings
    from streamapp.views.rul import RulTrainView

    rows, targets = run_to_failure_rows(assets=2)
    targets[0] = 7.0
    status, body = await call(RulTrainView, "post", {"training_data": rows, "target_data": targets,
                                                     "params": {"hidden": "big", "depth": 3}, "model_path": "/x"})
    assert status == 422
    text = " | ".join(body["detail"])
    for expected in ("model_path is not a training field", "at least 3 assets", "target_data of asset A0",
                     "params.depth is not a hyper-parameter", "params.hidden must be a int"):
        assert expected in text
    status, body = await call(RulTrainView, "post", {"path": str(CMAPSS_DIR / "train_FD001.txt")})
    assert status == 422 and "inside one of the training data folders" in body["detail"][0]
    status, body = await call(RulTrainView, "post", {"path": "/etc/../etc/passwd"})
    assert status == 422
    monkeypatch.setenv("STREAMAPP_TRAINING_DATA_DIRS", str(CMAPSS_DIR))
    get_settings.cache_clear()
    status, body = await call(RulTrainView, "post", {"path": str(CMAPSS_DIR / "nothing-here.txt")})
    assert status == 422 and "no such file or directory" in body["detail"][0]
    status, body = await call(RulTrainView, "post", {"path": str(CMAPSS_DIR), "params": {"window": 0.5}})
    assert status == 422 and body["detail"] == ["params.window must be a int"]  # the folder itself is fine


async def test_train_from_a_path_inside_the_training_data_folders_applies_the_given_params(
    rul_env: Path, serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.registry import production_run
    from streamapp.settings import get_settings
    from streamapp.views.rul import RulTrainView

    folder = rul_env / "var" / "training-data"
    folder.mkdir(parents=True)
    lines = (CMAPSS_DIR / "train_FD001.txt").read_text().splitlines()
    (folder / "train_FD001.txt").write_text("\n".join(line for line in lines if int(line.split()[0]) <= 5) + "\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{rul_env / 'mlflow.db'}")
    get_settings.cache_clear()
    status, job = await call(RulTrainView, "post", {"path": str(folder), "params": TINY_PARAMS},
                             query={"wait": "true"})
    assert status == 200, job
    params = production_run("rul")["params"]  # type: ignore[index]
    assert params["config.window"] == "5" and params["config.hidden"] == "4"
    assert "sensor_6" in params["config.exclude_features"] and params["source"].endswith("train_FD001.txt")
