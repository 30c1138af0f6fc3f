"""What the anomaly agent and the anomaly views share: the production ensemble, checks of incoming
feature messages, scoring off the event loop, the `AnomalyResult` built from a score, the journal row
(`anomaly_detections`; `lake.model_outputs` flattens it for `bronze/anomalies`) and the running figures
shown by the status views.

The models (torch, scikit-learn) are imported only when a model is loaded, never at worker start."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.base import missing_features
from streamapp.feature_messages import (  # noqa: F401  (parse_time, message_problems: re-exported)
    json_safe,
    message_problems,
    numeric_features,
    parse_time,
    record_key,
    window_matrices,
)
from streamapp.feature_pipeline import PipelineFigures
from streamapp.model_process import model_process
from streamapp.model_watch import ProductionModel
from streamapp.records import AnomalyResult, ModelScore, built

if TYPE_CHECKING:
    from models.anomaly import AdaptiveCriticality, AnomalyEnsemble

ANOMALY_MODEL_NAME = "anomaly"
# the contract's levels, lowest first (= models.anomaly.criticality.LEVELS, which imports torch with its package)
CRITICALITY_LEVELS = ("low", "medium", "high", "critical")



def _load_ensemble(path: Path) -> AnomalyEnsemble:
    from models.anomaly import AnomalyEnsemble

    return AnomalyEnsemble.load(path)


anomaly_model: ProductionModel[AnomalyEnsemble] = ProductionModel(ANOMALY_MODEL_NAME, _load_ensemble)


# ---- checks at the edge ------------------------------------------------------------------------------
def absent_features(model: AnomalyEnsemble, features: Mapping[str, Any]) -> list[str]:
    """The model's features this message lacks (or holds as non-numbers); never zero-filled."""
    return missing_features(model.feature_names, dict(features))


# ---- scoring -----------------------------------------------------------------------------------------
def score_rows(model: AnomalyEnsemble, histories: Sequence[Sequence[Mapping[str, float]]]) -> list[dict[str, Any]]:
    """Blocking: score the last vector of each history (an asset's recent vectors, oldest first, ending
    with the one scored) -> `BatchScores.row` dicts. The LSTM reads each history's trailing run that holds
    every model feature, at most `model.window` long (shorter runs are padded and flagged by the ensemble)."""
    import numpy as np

    if not histories:
        return []
    names = model.feature_names
    X = np.asarray([[float(history[-1][name]) for name in names] for history in histories], dtype=np.float64)
    windows = window_matrices(names, histories, model.window)
    windows = [window if len(window) else X[i : i + 1] for i, window in enumerate(windows)]
    return model.score_batch(X, windows).rows()


async def score(
    model: AnomalyEnsemble, version: str, histories: Sequence[Sequence[Mapping[str, float]]]
) -> list[dict[str, Any]]:
    """`score_rows` in the model process (`streamapp.model_process`)."""
    return await model_process.call_on_windows(ANOMALY_MODEL_NAME, version, model, score_rows, model.window, histories)


def criticality_rule(model: AnomalyEnsemble) -> AdaptiveCriticality:
    """Per-asset adaptive levels whose `medium` floor is the ensemble's own anomaly threshold."""
    from models.anomaly import AdaptiveCriticality

    return AdaptiveCriticality(anomaly_threshold=model.threshold)


def anomaly_result(
    *, asset_id: str, sensor_id: str, timestamp: str, features: Mapping[str, Any], metadata: Mapping[str, Any] | None,
    scored: Mapping[str, Any], criticality: str, model: AnomalyEnsemble, version: str, history_length: int,
) -> AnomalyResult:
    """The contract's `AnomalyResult` for one scored message (`scored` is a `BatchScores.row`)."""
    meta = json_safe(metadata or {})  # a new dict
    meta.update({
        "model_label": model.version, "history_length": history_length, "lstm_padded": scored["lstm_padded"],
    })
    return built(
        AnomalyResult, asset_id=asset_id, sensor_id=sensor_id, timestamp=timestamp,
        scores=[built(ModelScore, **entry) for entry in scored["scores"]],
        final_score=scored["final_score"], is_anomaly=scored["is_anomaly"], criticality=criticality,
        features=numeric_features(features),
        metadata=meta, model_version=version,
    )


def result_json(result: AnomalyResult) -> dict[str, Any]:
    """The result as plain JSON (what `anomalies-detected` carries)."""
    body = result.asdict()
    body["scores"] = [score.asdict() if hasattr(score, "asdict") else dict(score) for score in result.scores]
    return body


# ---- journal -----------------------------------------------------------------------------------------
detection_id = record_key  # the journal key: a replay updates the same row


def journal_row(result: AnomalyResult, created_at: datetime) -> dict[str, Any]:
    """The `anomaly_detections` row of a result (column names of `AnomalyDetectionRow`; the features and
    metadata dicts are the result's own, read and never changed)."""
    return {
        "detection_id": detection_id(result.asset_id, result.sensor_id, result.timestamp),
        "asset_id": result.asset_id, "sensor_id": result.sensor_id, "timestamp": parse_time(result.timestamp),
        "final_score": result.final_score, "is_anomaly": result.is_anomaly, "criticality": result.criticality,
        "scores": [
            {"score": s.score, "model_name": s.model_name, "threshold": s.threshold, "is_anomaly": s.is_anomaly}
            for s in result.scores
        ],
        "features": result.features, "metadata": result.metadata,
        "model_version": result.model_version, "created_at": created_at,
    }


# ---- running figures ---------------------------------------------------------------------------------
@dataclass
class AnomalyFigures(PipelineFigures):
    """Running counts of the anomaly agent, shown by `/api/v1/anomalies/status` and `/metrics`."""

    anomalies: int = 0
    by_criticality: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            **super().as_json(),
            "anomalies": self.anomalies,
            "by_criticality": {level: self.by_criticality.get(level, 0) for level in CRITICALITY_LEVELS},
        }


anomaly_figures = AnomalyFigures()
