"""The anomaly service of the seed on the worker's web server.

`POST /api/v1/anomalies/detect` and `/detect/batch` score `ExtractedFeatures` bodies with the production
ensemble against the asset's recent history held by this worker (read-only: the stream's state is never
changed by a request). `POST /train` trains on `{data, feature_names}` in an executor, logs to MLflow,
registers and promotes (202 with a job id, or 200 with the version when `?wait=true`). `GET /status`,
`GET /` (the journal, filtered and paged, with a `total`) and `GET /metrics` (the production run's MLflow
metrics and params, and the live counters).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from faust.web import Request, Response, View
from sqlalchemy import Table, func, select

from models.base import ProgressCallback
from streamapp import metrics
from streamapp.anomaly_scoring import (
    CRITICALITY_LEVELS,
    anomaly_figures,
    anomaly_model,
    anomaly_result,
    criticality_rule,
    parse_time,
    result_json,
    score,
)
from streamapp.app import app
from streamapp.db.engines import Role, get_engine
from streamapp.db.migrate import ensure_schema
from streamapp.db.telemetry import AnomalyDetectionRow
from streamapp.feature_messages import body_problems
from streamapp.settings import get_settings
from streamapp.training import TrainResult
from streamapp.training_jobs import TrainingEndpoint, TrainingJobs, config_from_params
from streamapp.views.common import RequestError, error_response, write_body
from tables.criticality import criticality_state
from tables.history import anomaly_history

log = logging.getLogger(__name__)
DETECTIONS = cast(Table, AnomalyDetectionRow.__table__)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
HISTORY_FILTERS = ("asset_id", "sensor_id", "start_date", "end_date", "is_anomaly", "criticality", "limit", "offset")


# ---- detection ---------------------------------------------------------------------------------------
async def detect(items: list[Any], *, prefix: bool) -> list[dict[str, Any]]:
    """Validate every item (422 with every reason), then score them together; answers AnomalyResult JSON."""
    await anomaly_model.refresh_if_due()
    model, version = anomaly_model.model, anomaly_model.version
    reasons = []
    for index, item in enumerate(items):
        names = None if model is None else model.feature_names
        reasons += [f"items[{index}]: {p}" if prefix else p for p in body_problems(item, names)]
    if reasons:
        raise RequestError(422, reasons)
    if model is None:
        raise RequestError(503, ["model-not-trained: no anomaly model is promoted to production yet"])
    windows: dict[str, list[dict[str, float]]] = {}
    histories = []
    for item in items:
        asset = item["asset_id"]
        window = windows.setdefault(asset, anomaly_history.window(asset))
        window.append({name: float(item["features"][name]) for name in model.feature_names})
        histories.append(list(window[-max(anomaly_history.size, 1):]))
    scored = await score(model, str(version), histories)
    rule = criticality_rule(model)
    states: dict[str, Any] = {}
    now = datetime.now(UTC).isoformat()
    results = []
    for item, row, history in zip(items, scored, histories, strict=True):
        asset = item["asset_id"]
        level, states[asset] = rule.assess(row["final_score"], states.get(asset) or criticality_state(asset))
        result = anomaly_result(
            asset_id=asset, sensor_id=item.get("sensor_id") or "", timestamp=item.get("timestamp") or now,
            features=item["features"], metadata=item.get("metadata"), scored=row, criticality=level,
            model=model, version=str(version), history_length=len(history),
        )
        results.append(result_json(result))
    return results


@app.page("/api/v1/anomalies/detect")
class AnomalyDetectView(View):
    async def post(self, request: Request) -> Response:
        """Score one `ExtractedFeatures` body; 422 lists every problem, 503 when no model is promoted."""
        try:
            body = await write_body(request)
            (result,) = await detect([body], prefix=False)
        except RequestError as error:
            return error_response(self, error)
        return self.json(result)


@app.page("/api/v1/anomalies/detect/batch")
class AnomalyDetectBatchView(View):
    async def post(self, request: Request) -> Response:
        """Score a list of bodies (or `{"items": [...]}`), in order; 422 names every bad item."""
        try:
            body = await write_body(request)
            items = body.get("items") if isinstance(body, dict) else body
            if not isinstance(items, list) or not items:
                raise RequestError(422, ["body must be a non-empty list of feature messages, or {\"items\": [...]}"])
            limit = get_settings().max_batch_items
            if len(items) > limit:
                raise RequestError(413, [f"{len(items)} items are over the limit of {limit} per request"])
            results = await detect(items, prefix=True)
        except RequestError as error:
            return error_response(self, error)
        return self.json({"results": results, "count": len(results),
                          "anomalies": sum(1 for result in results if result["is_anomaly"])})


# ---- training ----------------------------------------------------------------------------------------
training_jobs = TrainingJobs()


def _training_config(params: Any) -> tuple[Any, list[str]]:
    from streamapp.anomaly_training import AnomalyTrainingConfig

    return config_from_params(AnomalyTrainingConfig, params)


def _train(body: dict[str, Any], config: Any) -> Callable[[ProgressCallback], TrainResult]:
    """The blocking training of a `POST /train` body: fit, register and promote."""

    def train(progress: ProgressCallback) -> TrainResult:
        import numpy as np

        from streamapp.anomaly_training import TrainingData, train_and_register

        groups = body.get("asset_ids")
        data = TrainingData(np.asarray(body["data"], dtype=np.float64), list(body["feature_names"]),
                            [str(g) for g in groups] if groups else None, "api", [])
        return train_and_register(data, config, promote=True, progress=progress)

    return train


def _training_problems(body: Any) -> tuple[Any, list[str]]:
    """The config and every reason a `POST /train` body cannot be trained on."""
    from streamapp.anomaly_training import check_training_rows

    if not isinstance(body, dict):
        return None, ["body must be an object with data and feature_names"]
    reasons = check_training_rows(body.get("data"), body.get("feature_names"))
    groups = body.get("asset_ids")
    if groups is not None and (not isinstance(groups, list) or not isinstance(body.get("data"), list)
                               or len(groups) != len(body["data"])):
        reasons.append("asset_ids must be a list with one asset id per row of data")
    config, config_reasons = _training_config(body.get("params"))
    return config, reasons + config_reasons


training = TrainingEndpoint(
    training_jobs, _training_problems, lambda body: len(body["data"]), _train, anomaly_model, "anomalies-train",
    "/api/v1/anomalies/status",
)


@app.page("/api/v1/anomalies/train")
class AnomalyTrainView(View):
    async def post(self, request: Request) -> Response:
        """Train on `{data: [[...]], feature_names: [...], asset_ids?, params?}`; 202 + job id (200 with
        the registry version when `?wait=true`)."""
        return await training.post(self, request)


# ---- state ---------------------------------------------------------------------------------------------
@app.page("/api/v1/anomalies/status")
class AnomalyStatusView(View):
    async def get(self, request: Request) -> Response:
        """Whether a model is trained (and which), the agent's running counts, the last training job."""
        model = anomaly_model.model
        return self.json({
            "trained": model is not None,
            "model": anomaly_model.status(),
            "feature_names": None if model is None else model.feature_names,
            "window": None if model is None else model.window,
            "threshold": None if model is None else model.threshold,
            "history_window": anomaly_history.size,
            "agent": anomaly_figures.as_json(),
            "training": training_jobs.latest(),
        })


def _production_run() -> dict[str, Any] | None:
    from models.registry import production_run
    from streamapp.anomaly_scoring import ANOMALY_MODEL_NAME

    return production_run(ANOMALY_MODEL_NAME)


@app.page("/api/v1/anomalies/metrics")
class AnomalyMetricsView(View):
    async def get(self, request: Request) -> Response:
        """The production run's MLflow metrics and params, and the live stream counters."""
        loop = asyncio.get_running_loop()
        registry: dict[str, Any]
        try:
            run = await loop.run_in_executor(None, _production_run)
            registry = {"available": True, "production": run}
        except Exception as exc:
            log.warning("MLflow is not answering: %s", exc)
            registry = {"available": False, "error": f"{type(exc).__name__}: {exc}", "production": None}
        return self.json({
            "mlflow": registry,
            "serving": anomaly_model.status(),
            "stream": anomaly_figures.as_json(),
            "dead_letters_by_reason": metrics.dead_letters_by_reason(),
        })


# ---- the journal ---------------------------------------------------------------------------------------
def history_filters(query: Any) -> tuple[list[Any], int, int]:
    """SQL conditions, limit and offset from the query string; 422 with every bad parameter at once."""
    reasons: list[str] = []
    conditions: list[Any] = []
    columns = DETECTIONS.c
    unknown = sorted(set(query) - set(HISTORY_FILTERS))
    if unknown:
        reasons.append(f"unknown parameters: {', '.join(unknown)} (known: {', '.join(HISTORY_FILTERS)})")
    for name in ("asset_id", "sensor_id"):
        if query.get(name):
            conditions.append(columns[name] == query[name])
    for name, compare in (("start_date", columns.timestamp.__ge__), ("end_date", columns.timestamp.__le__)):
        if query.get(name):
            try:
                conditions.append(compare(parse_time(query[name])))
            except ValueError:
                reasons.append(f"{name} {query[name][:40]!r} is not an ISO 8601 time")
    flag = query.get("is_anomaly")
    if flag:
        if flag.lower() in ("true", "1", "yes"):
            conditions.append(columns.is_anomaly.is_(True))
        elif flag.lower() in ("false", "0", "no"):
            conditions.append(columns.is_anomaly.is_(False))
        else:
            reasons.append("is_anomaly must be true or false")
    level = query.get("criticality")
    if level:
        if level not in CRITICALITY_LEVELS:
            reasons.append(f"criticality must be one of {', '.join(CRITICALITY_LEVELS)}")
        else:
            conditions.append(columns.criticality == level)
    limit = _whole(query.get("limit"), DEFAULT_LIMIT, "limit", 1, MAX_LIMIT, reasons)
    offset = _whole(query.get("offset"), 0, "offset", 0, None, reasons)
    if reasons:
        raise RequestError(422, reasons)
    return conditions, limit, offset


def _whole(text: str | None, default: int, name: str, low: int, high: int | None, reasons: list[str]) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        reasons.append(f"{name} must be a whole number from {low}" + (f" to {high}" if high else ""))
        return default
    return value


def _item(row: Any) -> dict[str, Any]:
    item = dict(row._mapping)
    for name in ("timestamp", "created_at"):
        moment = item[name]
        if moment is not None:
            item[name] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
    return item


async def journal_page(conditions: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """One page of `anomaly_detections`, newest first, and how many rows match in all."""
    await ensure_schema(Role.TELEMETRY)
    async with get_engine(Role.TELEMETRY).connect() as connection:
        total = (await connection.execute(select(func.count()).select_from(DETECTIONS).where(*conditions))).scalar()
        rows = (await connection.execute(
            select(DETECTIONS).where(*conditions)
            .order_by(DETECTIONS.c.timestamp.desc(), DETECTIONS.c.detection_id).limit(limit).offset(offset)
        )).all()
    return {"total": int(total or 0), "limit": limit, "offset": offset, "items": [_item(row) for row in rows]}


class AnomalyHistoryView(View):
    async def get(self, request: Request) -> Response:
        """The journal filtered by asset_id, sensor_id, start_date, end_date, is_anomaly, criticality;
        paged by limit / offset, with the `total` number of matching rows."""
        try:
            conditions, limit, offset = history_filters(request.query)
        except RequestError as error:
            return error_response(self, error)
        try:
            page = await journal_page(conditions, limit, offset)
        except Exception as exc:
            log.warning("anomaly journal query failed: %s", exc)
            return self.json({"detail": [f"the journal database is not answering: {type(exc).__name__}"],
                              "status": 503}, status=503)
        return self.json(page)


app.page("/api/v1/anomalies/")(AnomalyHistoryView)
app.page("/api/v1/anomalies")(type("AnomalyHistoryNoSlashView", (AnomalyHistoryView,), {}))

