"""The RUL service of the seed on the worker's web server.

`POST /api/v1/rul/predict` forecasts an `ExtractedFeatures` body with the production ensemble, from the
body's own `history` (older feature objects, oldest first) or else the asset's recent vectors held by this
worker (read-only: a request never changes the stream's state). `POST /api/v1/rul/train` trains on
`{training_data, target_data}` or on `{path}` (a C-MAPSS train file or directory inside the training data
folders), with optional `params` (RulConfig fields), in an executor; registers and promotes (202 with a
job id, or 200 with the version when `?wait=true`). `GET /api/v1/rul/status`. Models are only ever loaded
from the registry. Bad bodies get a 422 with every reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faust.web import Request, Response, View

from models.base import ProgressCallback, missing_features
from streamapp.app import app
from streamapp.feature_messages import body_problems
from streamapp.rul_scoring import forecast, rul_figures, rul_model, rul_prediction
from streamapp.settings import get_settings
from streamapp.training import TrainResult
from streamapp.training_jobs import TrainingEndpoint, TrainingJobs, config_from_params
from streamapp.views.common import RequestError, error_response, write_body
from tables.history import rul_history

training_jobs = TrainingJobs()


# ---- prediction ------------------------------------------------------------------------------------------
def _history_problems(history: Any, names: list[str] | None) -> list[str]:
    if history is None:
        return []
    if not isinstance(history, list) or not all(isinstance(vector, dict) for vector in history):
        return ["history must be a list of feature objects, oldest first"]
    if names is None:
        return []
    return [f"history[{index}]: missing features: {', '.join(missing)}"
            for index, vector in enumerate(history) if (missing := missing_features(names, vector))]


async def predict(body: Any) -> dict[str, Any]:
    """Validate (422 with every reason; 503 untrained), then forecast; answers `RulPrediction` JSON."""
    await rul_model.refresh_if_due()
    model, version = rul_model.model, rul_model.version
    names = None if model is None else model.feature_names
    reasons = body_problems(body, names)
    if isinstance(body, dict):
        reasons += _history_problems(body.get("history"), names)
    if reasons:
        raise RequestError(422, reasons)
    if model is None:
        raise RequestError(503, ["model-not-trained: no RUL model is promoted to production yet"])
    asset = body["asset_id"]
    history = body.get("history")
    earlier = rul_history.window(asset) if history is None else [dict(vector) for vector in history]
    (result,) = await forecast(model, str(version), [[*earlier, dict(body["features"])]])
    prediction = rul_prediction(
        asset_id=asset, sensor_id=body.get("sensor_id") or "",
        timestamp=body.get("timestamp") or datetime.now(UTC).isoformat(), features=body["features"],
        metadata=body.get("metadata"), forecast=result, model=model, version=str(version),
    )
    return prediction.asdict()


@app.page("/api/v1/rul/predict")
class RulPredictView(View):
    async def post(self, request: Request) -> Response:
        """Forecast one `ExtractedFeatures` body (optionally with `history`); 422 / 503 / 401 as the others."""
        try:
            prediction = await predict(await write_body(request))
        except RequestError as error:
            return error_response(self, error)
        return self.json(prediction)


# ---- training ----------------------------------------------------------------------------------------------
def _train(body: dict[str, Any], config: Any) -> Callable[[ProgressCallback], TrainResult]:
    """The blocking training of a checked `POST /train` body."""

    def train(progress: ProgressCallback) -> TrainResult:
        from streamapp.rul_training import (
            cmapss_files,
            read_cmapss_training,
            rows_training_data,
            train_and_register,
            training_config,
        )

        if body.get("path") is not None:
            path = Path(body["path"]).expanduser().resolve()
            data = read_cmapss_training(cmapss_files(path))
        else:
            data = rows_training_data(body["training_data"])
        given = {name: getattr(config, name) for name in body.get("params") or {}}  # checked values
        return train_and_register(data, replace(training_config(data), **given), progress=progress)

    return train


def _training_problems(body: Any) -> tuple[Any, list[str]]:
    from models.rul import RulConfig
    from streamapp.rul_training import check_training_rows, training_path_problems

    if not isinstance(body, dict):
        return None, ["body must be an object with training_data (and target_data), or a path"]
    known = {"training_data", "target_data", "path", "params"}
    reasons = [f"{name} is not a training field (known: {', '.join(sorted(known))})" for name in body
               if name not in known]
    if body.get("path") is not None:
        if body.get("training_data") is not None or body.get("target_data") is not None:
            reasons.append("give either path or training_data / target_data, not both")
        reasons += training_path_problems(body["path"])
    else:
        reasons += check_training_rows(body.get("training_data"), body.get("target_data"))
    config, config_reasons = config_from_params(RulConfig, body.get("params"))
    return config, reasons + config_reasons


training = TrainingEndpoint(
    training_jobs, _training_problems, lambda body: len(body.get("training_data") or []), _train, rul_model,
    "rul-train", "/api/v1/rul/status",
)


@app.page("/api/v1/rul/train")
class RulTrainView(View):
    async def post(self, request: Request) -> Response:
        """Train on `{training_data, target_data?, params?}` or `{path, params?}`; 202 + job id (200 with the
        registry version when `?wait=true`)."""
        return await training.post(self, request)


# ---- state -------------------------------------------------------------------------------------------------
@app.page("/api/v1/rul/status")
class RulStatusView(View):
    async def get(self, request: Request) -> Response:
        """Whether a model is trained (and which, with its window, features and interval), the agent's
        running counts and the last training job."""
        return self.json({
            "trained": rul_model.ready,
            "model": rul_model.status(),
            **served_model(rul_model.model),
            "history_window": rul_history.size,
            "training_confidence_level": get_settings().rul_confidence_level,
            "agent": rul_figures.as_json(),
            "training": training_jobs.latest(),
        })


def served_model(model: Any) -> dict[str, Any]:
    """The served ensemble's features, window and interval (all None while untrained)."""
    described = ("feature_names", "used_features", "window", "confidence_level", "interval_half_width")
    if model is None:
        return dict.fromkeys(described)
    return dict(zip(described, (model.feature_names, model.used_features, model.config.window,
                                model.config.confidence_level, model.quantile), strict=True))
