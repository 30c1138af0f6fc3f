"""The lake layout of the model pipelines' journal rows (`bronze/anomalies`, `bronze/rul_predictions`):
their Arrow schemas and how journal rows are flattened into them. The lake writer process applies the
flattening (`LakeDataset.columns`, `LakeDataset.shape`), so this module imports only pyarrow, orjson and
the lake's own modules."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from lake.offload import EPOCH, MICROSECOND

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


def sorted_json_bytes(value: Any) -> bytes:
    """`value` as compact JSON with sorted keys (nested ones too); unknown types as str."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def sorted_json(value: Any) -> str:
    """`value` as compact JSON text with sorted keys (the lake's metadata column); unknown types as str."""
    return sorted_json_bytes(value).decode()


MICROSECONDS_PER_DAY = 86_400_000_000
_EPOCH_DAY = date(1970, 1, 1)


def _score_columns(model_name: str) -> tuple[tuple[str, str], ...]:
    """(score entry field, lake column) of a model's score entry."""
    return tuple((part, f"{model_name}_{part}") for part in ("score", "threshold", "is_anomaly"))


_SCORE_COLUMNS = {name: _score_columns(name) for name in ANOMALY_MODEL_NAMES}
_SCORE_COLUMN_NAMES = [column for columns in _SCORE_COLUMNS.values() for _, column in columns]
_ANOMALY_COLUMNS = ("detection_id", "asset_id", "sensor_id", "timestamp", "final_score", "is_anomaly", "criticality",
                    "model_version")


@functools.lru_cache(maxsize=4096)
def _day_text(day: int) -> str:
    return (_EPOCH_DAY + timedelta(days=day)).isoformat()


def date_partition(timestamp: datetime | int) -> str:
    """The `date` partition of a row's timestamp (a datetime, naive taken as UTC, or UTC microseconds since
    the epoch): its UTC date."""
    return _day_text(utc_microseconds(timestamp) // MICROSECONDS_PER_DAY)


def _decoded(value: Any) -> Any:
    """A journal row's JSON column: JSON bytes (as the anomaly agent prepares them) or the value itself."""
    return orjson.loads(value) if type(value) is bytes else value


def utc_microseconds(timestamp: datetime | int) -> int:
    """A row's timestamp as UTC microseconds since the epoch (a naive datetime is taken as UTC)."""
    if isinstance(timestamp, int):
        return timestamp
    moment = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    return (moment - EPOCH) // MICROSECOND


def feature_map(mappings: Sequence[Mapping[str, float]]) -> pa.MapArray:
    """Features mappings as one Arrow map column, each row's names in sorted order. The names are looked
    up once per set of names (as they come) and taken from a small dictionary, not converted row by row."""
    positions: dict[str, int] = {}  # name -> its place in the name dictionary
    layouts: dict[tuple[str, ...], tuple[list[int], list[int] | None]] = {}  # names -> (their places, reorder)
    places: list[int] = []
    values: list[float] = []
    offsets = [0]
    for mapping in mappings:
        names = tuple(mapping)
        layout = layouts.get(names)
        if layout is None:
            order = sorted(range(len(names)), key=names.__getitem__)
            reorder = None if order == list(range(len(names))) else order
            layout = layouts[names] = ([positions.setdefault(names[i], len(positions)) for i in order], reorder)
        places.extend(layout[0])
        if layout[1] is None:
            values.extend(mapping.values())
        else:
            row_values = list(mapping.values())
            values.extend(row_values[i] for i in layout[1])
        offsets.append(len(places))
    keys = pa.array(list(positions), pa.string()).take(pa.array(places, pa.int32()))
    return pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), keys, pa.array(values, pa.float64()))


def anomaly_lake_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Journal rows flattened for `bronze/anomalies`, a whole write at once (`LakeDataset.columns`): one
    column per model score, features as a map sorted by name, metadata as JSON text with sorted keys, and
    the UTC `date` partition. Timestamps may be UTC microseconds since the epoch (as the model process
    prepares them); JSON columns may be JSON bytes (metadata bytes are taken as written with sorted keys,
    `sorted_json_bytes`, as the model process writes them)."""
    count = len(rows)
    columns: dict[str, Any] = {name: [row[name] for row in rows] for name in _ANOMALY_COLUMNS}
    stamps = columns["timestamp"]
    if not all(type(stamp) is int for stamp in stamps):
        stamps = columns["timestamp"] = [utc_microseconds(stamp) for stamp in stamps]
    for name in _SCORE_COLUMN_NAMES:
        columns[name] = [None] * count
    targets: dict[str, list[tuple[str, list[Any]]]] = {}  # model name -> (entry field, its column)
    for index, row in enumerate(rows):
        for entry in _decoded(row["scores"]):
            model_name = entry["model_name"]
            fields = targets.get(model_name)
            if fields is None:
                fields = targets[model_name] = [
                    (part, columns.setdefault(name, [None] * count))
                    for part, name in _SCORE_COLUMNS.get(model_name) or _score_columns(model_name)
                ]
            for part, column in fields:
                column[index] = entry[part]
    columns["features"] = feature_map([_decoded(row["features"]) for row in rows])
    columns["metadata"] = [
        metadata.decode() if type(metadata) is bytes else sorted_json(metadata)
        for metadata in (row["metadata"] for row in rows)
    ]
    columns["date"] = [_day_text(stamp // MICROSECONDS_PER_DAY) for stamp in stamps]
    return columns


def rul_lake_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal row flattened for `bronze/rul_predictions` (one column per member, partitioned by date)."""
    flat = {name: row[name] for name in RUL_SCHEMA.names if name in row and name not in ("features", "metadata")}
    for member in RUL_MEMBERS:
        flat[f"{member}_rul"] = row["model_scores"].get(member)
    flat["features"] = sorted(row["features"].items())
    flat["metadata"] = sorted_json(row["metadata"])
    flat["date"] = date_partition(row["timestamp"])
    return flat
