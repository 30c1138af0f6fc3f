"""The lake layout of the model pipelines' journal rows (`bronze/anomalies`, `bronze/rul_predictions`):
their Arrow schemas and how a journal row is flattened into one. The lake writer process applies the
flattening (`LakeDataset.shape`), so this module imports only pyarrow and orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pyarrow as pa

ANOMALY_MODEL_NAMES = ("isolation_forest", "one_class_svm", "lstm_autoencoder")  # the contract's three detectors
RUL_MEMBERS = ("lstm", "gru", "tcn")

UTC_TIME = pa.timestamp("us", tz="UTC")
ANOMALIES_SCHEMA = pa.schema([
    ("detection_id", pa.string()), ("asset_id", pa.string()), ("sensor_id", pa.string()), ("timestamp", UTC_TIME),
    ("final_score", pa.float64()), ("is_anomaly", pa.bool_()), ("criticality", pa.string()),
    *[(f"{name}_{part}", kind) for name in ANOMALY_MODEL_NAMES
      for part, kind in (("score", pa.float64()), ("threshold", pa.float64()), ("is_anomaly", pa.bool_()))],
    ("features", pa.map_(pa.string(), pa.float64())), ("metadata", pa.string()), ("model_version", pa.string()),
    ("date", pa.string()),
])

RUL_SCHEMA = pa.schema([
    ("prediction_id", pa.string()), ("asset_id", pa.string()), ("sensor_id", pa.string()),
    ("timestamp", UTC_TIME), ("rul_prediction", pa.float64()),
    ("confidence_interval_lower", pa.float64()), ("confidence_interval_upper", pa.float64()),
    ("confidence_level", pa.float64()), ("uncertainty", pa.float64()), ("model_used", pa.string()),
    *[(f"{member}_rul", pa.float64()) for member in RUL_MEMBERS],
    ("features", pa.map_(pa.string(), pa.float64())), ("metadata", pa.string()), ("model_version", pa.string()),
    ("date", pa.string()),
])


def sorted_json(value: Any) -> str:
    """`value` as compact JSON text with sorted keys (the lake's metadata column); unknown types as str."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str).decode()


def _decoded(value: Any) -> Any:
    """A journal row's JSON column: JSON bytes (as the anomaly agent prepares them) or the value itself."""
    return orjson.loads(value) if type(value) is bytes else value


def anomaly_lake_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal row flattened for `bronze/anomalies` (one column per model score, partitioned by date)."""
    flat: dict[str, Any] = {
        name: row[name] for name in
        ("detection_id", "asset_id", "sensor_id", "timestamp", "final_score", "is_anomaly", "criticality",
         "model_version")
    }
    for entry in _decoded(row["scores"]):
        for part in ("score", "threshold", "is_anomaly"):
            flat[f"{entry['model_name']}_{part}"] = entry[part]
    flat["features"] = sorted(_decoded(row["features"]).items())
    flat["metadata"] = sorted_json(_decoded(row["metadata"]))
    flat["date"] = row["timestamp"].date().isoformat()
    return flat


def rul_lake_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal row flattened for `bronze/rul_predictions` (one column per member, partitioned by date)."""
    flat = {name: row[name] for name in RUL_SCHEMA.names if name in row and name not in ("features", "metadata")}
    for member in RUL_MEMBERS:
        flat[f"{member}_rul"] = row["model_scores"].get(member)
    flat["features"] = sorted(row["features"].items())
    flat["metadata"] = sorted_json(row["metadata"])
    flat["date"] = row["timestamp"].date().isoformat()
    return flat
