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

from lake.model_outputs import sorted_json_bytes
from lake.offload import EPOCH, MICROSECOND  # the lake's own UTC-microsecond conversion
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
from streamapp.records import AnomalyResult, ModelScore, built, json_bytes

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


def result_fields(
    *, asset_id: str, sensor_id: str, timestamp: str, features: Mapping[str, Any], metadata: Mapping[str, Any] | None,
    scored: Mapping[str, Any], model_label: str, version: str, history_length: int,
) -> dict[str, Any]:
    """Every `AnomalyResult` field but the criticality (decided per asset, in order, by the caller), as
    plain JSON data in the record's field order (`scored` is a `BatchScores.row`; its score entries are
    `ModelScore` fields)."""
    meta = json_safe(metadata or {})  # a new dict
    meta.update({"model_label": model_label, "history_length": history_length, "lstm_padded": scored["lstm_padded"]})
    return {
        "asset_id": asset_id, "sensor_id": sensor_id, "timestamp": timestamp, "features": numeric_features(features),
        "metadata": meta, "model_version": version, "scores": scored["scores"], "final_score": scored["final_score"],
        "is_anomaly": scored["is_anomaly"],
    }


def anomaly_result(
    *, asset_id: str, sensor_id: str, timestamp: str, features: Mapping[str, Any], metadata: Mapping[str, Any] | None,
    scored: Mapping[str, Any], criticality: str, model: AnomalyEnsemble, version: str, history_length: int,
) -> AnomalyResult:
    """The contract's `AnomalyResult` for one scored message (`scored` is a `BatchScores.row`)."""
    fields = result_fields(
        asset_id=asset_id, sensor_id=sensor_id, timestamp=timestamp, features=features, metadata=metadata,
        scored=scored, model_label=model.version, version=version, history_length=history_length,
    )
    fields["scores"] = [built(ModelScore, **entry) for entry in fields["scores"]]
    return built(AnomalyResult, **fields, criticality=criticality)


def result_json(result: AnomalyResult) -> dict[str, Any]:
    """The result as plain JSON (what `anomalies-detected` carries)."""
    body = result.asdict()
    body["scores"] = [score.asdict() if hasattr(score, "asdict") else dict(score) for score in result.scores]
    return body


# ---- the agent's results, prepared in the model process --------------------------------------------------
detection_id = record_key  # the journal key: a replay updates the same row

# what a prepared result needs of its message: asset, sensor, timestamp, features, metadata, history length
MessageHead = tuple[str, str, str, Mapping[str, Any], Mapping[str, Any] | None, int]
# a prepared result as it crosses back: final score, verdict, the result's JSON up to its criticality field
# (no closing brace), and its journal row without criticality and creation time (JSON columns as JSON
# bytes, features and metadata with sorted keys as the lake keeps them; the timestamp as UTC microseconds
# since the epoch: a datetime costs more to pickle, and the lake takes the integer as it is)
Prepared = tuple[float, bool, bytes, dict[str, Any]]


def score_and_prepare(
    model: AnomalyEnsemble, histories: Sequence[Sequence[Mapping[str, float]]], version: str,
    heads: Sequence[MessageHead],
) -> list[Prepared]:
    """Blocking (in the model process): `score_rows`, then each message's `AnomalyResult` JSON and journal
    row, all but the criticality: the agent's event loop only decides that, per asset and in order."""
    prepared = []
    for (asset_id, sensor_id, timestamp, features, metadata, length), scored in zip(
        heads, score_rows(model, histories), strict=True
    ):
        fields = result_fields(
            asset_id=asset_id, sensor_id=sensor_id, timestamp=timestamp, features=features, metadata=metadata,
            scored=scored, model_label=model.version, version=version, history_length=length,
        )
        row = {
            "detection_id": detection_id(asset_id, sensor_id, timestamp), "asset_id": asset_id,
            "sensor_id": sensor_id, "timestamp": (parse_time(timestamp) - EPOCH) // MICROSECOND,
            "final_score": fields["final_score"], "is_anomaly": fields["is_anomaly"],
            "scores": json_bytes(fields["scores"]), "features": sorted_json_bytes(fields["features"]),
            "metadata": sorted_json_bytes(fields["metadata"]), "model_version": version,
        }
        prepared.append((fields["final_score"], fields["is_anomaly"], json_bytes(fields)[:-1], row))
    return prepared


async def score_prepared(
    model: AnomalyEnsemble, version: str, histories: Sequence[Sequence[Mapping[str, float]]],
    heads: Sequence[MessageHead],
) -> list[Prepared]:
    """`score_and_prepare` in the model process (`streamapp.model_process`)."""
    return await model_process.call_on_windows(
        ANOMALY_MODEL_NAME, version, model, score_and_prepare, model.window, histories, version, heads
    )


_CRITICALITY_FIELD = {level: b',"criticality":' + json_bytes(level) + b"}" for level in CRITICALITY_LEVELS}


class PreparedResult:
    """One `AnomalyResult` of the agent: prepared in the model process, completed with its criticality.
    `dumps()` gives the same bytes as the record built by `anomaly_result` (criticality is its last field);
    `lake_row` is its journal row as the lake takes it (timestamp in UTC microseconds, no creation time)."""

    __slots__ = ("asset_id", "final_score", "is_anomaly", "criticality", "_head", "lake_row")

    def __init__(self, asset_id: str, prepared: Prepared, criticality: str) -> None:
        self.asset_id, self.criticality = asset_id, criticality
        self.final_score, self.is_anomaly, self._head, row = prepared
        row["criticality"] = criticality  # the row came from the model process: this result's own
        self.lake_row = row

    def dumps(self) -> bytes:
        field = _CRITICALITY_FIELD.get(self.criticality) or b',"criticality":' + json_bytes(self.criticality) + b"}"
        return self._head + field


def journal_row(result: PreparedResult, created_at: datetime) -> dict[str, Any]:
    """The `anomaly_detections` row of a result (column names of `AnomalyDetectionRow`; the JSON columns
    hold JSON bytes, written as they are)."""
    row = dict(result.lake_row)
    row["timestamp"] = EPOCH + row["timestamp"] * MICROSECOND
    row["created_at"] = created_at
    return row


def lake_source(result: PreparedResult, journal: dict[str, Any]) -> dict[str, Any]:
    """What a result ships to `bronze/anomalies` (`lake.model_outputs.anomaly_lake_columns` flattens it in
    the lake process): its prepared row, whose integer timestamp costs less to pickle than the journal's datetime."""
    return result.lake_row


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
