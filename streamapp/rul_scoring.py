"""What the RUL agent and the RUL views share: the production ensemble, forecasts off the event loop from
an asset's recent feature vectors, the `RulPrediction` built from a forecast, its journal row
(`rul_predictions`; `lake.model_outputs` flattens it for `bronze/rul_predictions`) and the running figures
of the status view.

The window a forecast reads is the served model's own (`config.window`, padded by repeating the first
cycle when an asset has fewer, which `metadata.padded` states), cut from the same rows and scaled by the
same model as a direct evaluation, so the stream adds no skew. torch is imported only with a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamapp.feature_messages import (
    json_safe,
    numeric_features,
    parse_time,
    record_key,
    window_matrices,
)
from streamapp.feature_pipeline import PipelineFigures
from streamapp.model_process import model_process
from streamapp.model_watch import ProductionModel
from streamapp.records import RulPrediction, built
from streamapp.settings import get_settings

if TYPE_CHECKING:
    from models.rul import RulEnsemble, RulForecast

RUL_MODEL_NAME = "rul"
MODEL_USED = "ensemble"



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
def forecast_histories(model: RulEnsemble, histories: Sequence[Sequence[Mapping[str, float]]]) -> list[RulForecast]:
    """Blocking: one forecast per asset history (oldest first, ending with the message being answered),
    read as model rows in declared feature order, at most a window."""
    return model.forecast(window_matrices(model.feature_names, histories, model.config.window))


async def forecast(
    model: RulEnsemble, version: str, histories: Sequence[Sequence[Mapping[str, float]]]
) -> list[RulForecast]:
    """`forecast_histories` in the model process (`streamapp.model_process`)."""
    return await model_process.call_on_windows(
        RUL_MODEL_NAME, version, model, forecast_histories, model.config.window, histories
    )


def rul_prediction(
    *, asset_id: str, sensor_id: str, timestamp: str, features: Mapping[str, Any], metadata: Mapping[str, Any] | None,
    forecast: RulForecast, model: RulEnsemble, version: str,
) -> RulPrediction:
    """The contract's `RulPrediction` for one forecast; `uncertainty` is the interval's half-width."""
    meta = json_safe(metadata or {})  # a new dict
    meta.update({**forecast.metadata, "model_label": model.version})  # padded, history_len, window
    return built(
        RulPrediction, asset_id=asset_id, sensor_id=sensor_id, timestamp=timestamp,
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
