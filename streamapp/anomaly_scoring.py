"""What the anomaly agent and the anomaly views share: the production ensemble, checks of incoming
feature messages, scoring off the event loop, the `AnomalyResult` built from a score, the journal row
(`anomaly_detections`, `bronze/anomalies`) and the running figures shown by the status views.

The models (torch, scikit-learn) are imported only when a model is loaded, never at worker start."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from models.base import missing_features
from streamapp.feature_messages import (  # noqa: F401  (parse_time, message_problems: re-exported)
    json_safe,
    message_problems,
    numeric_features,
    parse_time,
    record_key,
    sorted_json,
    trailing_rows,
)
from streamapp.feature_pipeline import PipelineFigures
from streamapp.model_process import model_process
from streamapp.model_watch import ProductionModel
from streamapp.records import AnomalyResult, ModelScore

if TYPE_CHECKING:
    import numpy as np

    from models.anomaly import AdaptiveCriticality, AnomalyEnsemble

ANOMALY_MODEL_NAME = "anomaly"
MODEL_NAMES = ("isolation_forest", "one_class_svm", "lstm_autoencoder")
# the contract's levels, lowest first (= models.anomaly.criticality.LEVELS, which imports torch with its package)
CRITICALITY_LEVELS = ("low", "medium", "high", "critical")

UTC_TIME = pa.timestamp("us", tz="UTC")
ANOMALIES_SCHEMA = pa.schema([
    ("detection_id", pa.string()), ("asset_id", pa.string()), ("sensor_id", pa.string()), ("timestamp", UTC_TIME),
    ("final_score", pa.float64()), ("is_anomaly", pa.bool_()), ("criticality", pa.string()),
    *[(f"{name}_{part}", kind) for name in MODEL_NAMES
      for part, kind in (("score", pa.float64()), ("threshold", pa.float64()), ("is_anomaly", pa.bool_()))],
    ("features", pa.map_(pa.string(), pa.float64())), ("metadata", pa.string()), ("model_version", pa.string()),
    ("date", pa.string()),
])


def _load_ensemble(path: Path) -> AnomalyEnsemble:
    from models.anomaly import AnomalyEnsemble

    return AnomalyEnsemble.load(path)


anomaly_model: ProductionModel[AnomalyEnsemble] = ProductionModel(ANOMALY_MODEL_NAME, _load_ensemble)


# ---- checks at the edge ------------------------------------------------------------------------------
def absent_features(model: AnomalyEnsemble, features: Mapping[str, Any]) -> list[str]:
    """The model's features this message lacks (or holds as non-numbers); never zero-filled."""
    return missing_features(model.feature_names, dict(features))


# ---- scoring -----------------------------------------------------------------------------------------
def history_matrix(model: AnomalyEnsemble, vectors: Sequence[Mapping[str, float]]) -> np.ndarray:
    """The asset's recent vectors as model rows, oldest first: the trailing run that holds every model
    feature, at most `model.window` long (shorter runs are padded and flagged by the ensemble)."""
    import numpy as np

    rows = trailing_rows(model.feature_names, vectors, model.window)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(model.feature_names))


def score_rows(
    model: AnomalyEnsemble, rows: Sequence[Mapping[str, float]], histories: Sequence[Sequence[Mapping[str, float]]]
) -> list[dict[str, Any]]:
    """Blocking: score rows (each with its asset's recent vectors ending with it) -> `BatchScores.row` dicts."""
    import numpy as np

    if not rows:
        return []
    X = np.asarray([[float(row[name]) for name in model.feature_names] for row in rows], dtype=np.float64)
    windows = [history_matrix(model, history) for history in histories]
    windows = [window if len(window) else X[i : i + 1] for i, window in enumerate(windows)]
    batch = model.score_batch(X, windows)
    return batch.rows()


async def score(
    model: AnomalyEnsemble, version: str, rows: Sequence[Mapping[str, float]],
    histories: Sequence[Sequence[Mapping[str, float]]],
) -> list[dict[str, Any]]:
    """`score_rows` in the model process (`streamapp.model_process`); each history is cut to the LSTM's
    window first (the rows beyond it are never read), so less is shipped."""
    size = model.window
    return await model_process.call(
        ANOMALY_MODEL_NAME, version, model, score_rows, list(rows), [history[-size:] for history in histories]
    )


def criticality_rule(model: AnomalyEnsemble) -> AdaptiveCriticality:
    """Per-asset adaptive levels whose `medium` floor is the ensemble's own anomaly threshold."""
    from models.anomaly import AdaptiveCriticality

    return AdaptiveCriticality(anomaly_threshold=model.threshold)


def anomaly_result(
    *, asset_id: str, sensor_id: str, timestamp: str, features: Mapping[str, Any], metadata: Mapping[str, Any] | None,
    scored: Mapping[str, Any], criticality: str, model: AnomalyEnsemble, version: str, history_length: int,
) -> AnomalyResult:
    """The contract's `AnomalyResult` for one scored message (`scored` is a `BatchScores.row`)."""
    meta = json_safe(dict(metadata or {}))
    meta.update({
        "model_label": model.version, "history_length": history_length, "lstm_padded": scored["lstm_padded"],
    })
    return AnomalyResult(
        asset_id=asset_id, sensor_id=sensor_id, timestamp=timestamp,
        scores=[ModelScore(**entry) for entry in scored["scores"]],
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


def lake_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal row flattened for `bronze/anomalies` (one column per model score, partitioned by date)."""
    flat: dict[str, Any] = {
        name: row[name] for name in
        ("detection_id", "asset_id", "sensor_id", "timestamp", "final_score", "is_anomaly", "criticality",
         "model_version")
    }
    for entry in row["scores"]:
        for part in ("score", "threshold", "is_anomaly"):
            flat[f"{entry['model_name']}_{part}"] = entry[part]
    flat["features"] = sorted(row["features"].items())
    flat["metadata"] = sorted_json(row["metadata"])
    flat["date"] = row["timestamp"].date().isoformat()
    return flat


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
