"""What the RUL agent and the RUL views share: the production ensemble, forecasts off the event loop from
an asset's recent feature vectors, the `RulPrediction` built from a forecast, its journal row
(`rul_predictions`, `bronze/rul_predictions`) and the running figures of the status view.

The window a forecast reads is the served model's own (`config.window`, padded by repeating the first
cycle when an asset has fewer, which `metadata.padded` states), cut from the same rows and scaled by the
same model as a direct evaluation, so the stream adds no skew. torch is imported only with a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streamapp.feature_messages import (
    json_safe,
    numeric_features,
    parse_time,
    record_key,
    sorted_json,
    trailing_rows,
)
from streamapp.feature_pipeline import PipelineFigures
from streamapp.model_process import model_process
from streamapp.model_watch import ProductionModel
from streamapp.records import RulPrediction
from streamapp.settings import get_settings

if TYPE_CHECKING:
    import numpy as np

    from models.rul import RulEnsemble, RulForecast

RUL_MODEL_NAME = "rul"
MODEL_USED = "ensemble"
MEMBERS = ("lstm", "gru", "tcn")

RUL_SCHEMA = pa.schema([
    ("prediction_id", pa.string()), ("asset_id", pa.string()), ("sensor_id", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")), ("rul_prediction", pa.float64()),
    ("confidence_interval_lower", pa.float64()), ("confidence_interval_upper", pa.float64()),
    ("confidence_level", pa.float64()), ("uncertainty", pa.float64()), ("model_used", pa.string()),
    *[(f"{member}_rul", pa.float64()) for member in MEMBERS],
    ("features", pa.map_(pa.string(), pa.float64())), ("metadata", pa.string()), ("model_version", pa.string()),
    ("date", pa.string()),
])


def _load_ensemble(path: Path) -> RulEnsemble:
    from models.rul import RulEnsemble

    return RulEnsemble.load(path)


rul_model: ProductionModel[RulEnsemble] = ProductionModel(RUL_MODEL_NAME, _load_ensemble)
rul_figures = PipelineFigures()


def rul_window() -> int:
    """Cycles of history a forecast reads: the served model's window, else `rul_history_window`."""
    model = rul_model.model
    return model.config.window if model is not None else get_settings().rul_history_window


# ---- forecasting ---------------------------------------------------------------------------------------
def history_matrix(model: RulEnsemble, vectors: Sequence[Mapping[str, float]]) -> np.ndarray:
    """An asset's recent vectors as model rows (declared feature order), oldest first, at most a window."""
    import numpy as np

    rows = trailing_rows(model.feature_names, vectors, model.config.window)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(model.feature_names))


def forecast_histories(model: RulEnsemble, histories: Sequence[Sequence[Mapping[str, float]]]) -> list[RulForecast]:
    """Blocking: one forecast per asset history (each ends with the message being answered)."""
    return model.forecast([history_matrix(model, history) for history in histories])


async def forecast(
    model: RulEnsemble, version: str, histories: Sequence[Sequence[Mapping[str, float]]]
) -> list[RulForecast]:
    """`forecast_histories` in the model process (`streamapp.model_process`), each history cut to the
    model's window first (the rows beyond it are never read)."""
    size = model.config.window
    return await model_process.call(
        RUL_MODEL_NAME, version, model, forecast_histories, [history[-size:] for history in histories]
    )


def rul_prediction(
    *, asset_id: str, sensor_id: str, timestamp: str, features: Mapping[str, Any], metadata: Mapping[str, Any] | None,
    forecast: RulForecast, model: RulEnsemble, version: str,
) -> RulPrediction:
    """The contract's `RulPrediction` for one forecast; `uncertainty` is the interval's half-width."""
    meta = json_safe(dict(metadata or {}))
    meta.update({**forecast.metadata, "model_label": model.version})  # padded, history_len, window
    return RulPrediction(
        asset_id=asset_id, sensor_id=sensor_id, timestamp=timestamp,
        rul_prediction=forecast.rul_prediction,
        confidence_interval_lower=forecast.confidence_interval_lower,
        confidence_interval_upper=forecast.confidence_interval_upper,
        confidence_level=forecast.confidence_level, uncertainty=forecast.uncertainty, model_used=MODEL_USED,
        model_scores=dict(forecast.model_scores), features=numeric_features(features), metadata=meta,
        model_version=version,
    )


# ---- journal -------------------------------------------------------------------------------------------
def journal_row(result: RulPrediction, created_at: datetime) -> dict[str, Any]:
    """The `rul_predictions` row of a prediction (column names of `RulPredictionRow`)."""
    body = result.asdict()
    return {
        "prediction_id": record_key(result.asset_id, result.sensor_id, result.timestamp),
        **{name: body[name] for name in (
            "asset_id", "sensor_id", "rul_prediction", "confidence_interval_lower", "confidence_interval_upper",
            "confidence_level", "uncertainty", "model_used", "model_scores", "features", "metadata", "model_version",
        )},
        "timestamp": parse_time(result.timestamp), "created_at": created_at,
    }


def lake_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal row flattened for `bronze/rul_predictions` (one column per member, partitioned by date)."""
    flat = {name: row[name] for name in RUL_SCHEMA.names if name in row and name not in ("features", "metadata")}
    for member in MEMBERS:
        flat[f"{member}_rul"] = row["model_scores"].get(member)
    flat["features"] = sorted(row["features"].items())
    flat["metadata"] = sorted_json(row["metadata"])
    flat["date"] = row["timestamp"].date().isoformat()
    return flat
