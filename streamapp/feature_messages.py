"""`ExtractedFeatures` at the edge, shared by the anomaly and RUL pipelines: the checks a message must pass,
its asset's recent vectors as model rows, and the plain-JSON helpers their journals and views use."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

from models.base import missing_features

if TYPE_CHECKING:
    import numpy as np

MAX_ID_LENGTH = 128  # asset_id / sensor_id columns of the telemetry journals


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (naive means UTC); raises ValueError."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def message_problems(
    asset_id: Any, features: Any, timestamp: Any, sensor_id: Any = None, metadata: Any = None
) -> list[str]:
    """Every reason an `ExtractedFeatures` body cannot be used or journaled (empty: usable)."""
    problems = []
    if not isinstance(asset_id, str) or not asset_id.strip():
        problems.append("asset_id must be a non-empty string")
    elif len(asset_id) > MAX_ID_LENGTH:
        problems.append(f"asset_id is longer than {MAX_ID_LENGTH} characters")
    if sensor_id is not None and not isinstance(sensor_id, str):
        problems.append("sensor_id must be a string")
    elif sensor_id is not None and len(sensor_id) > MAX_ID_LENGTH:
        problems.append(f"sensor_id is longer than {MAX_ID_LENGTH} characters")
    if not isinstance(features, Mapping) or not features:
        problems.append("features must be a non-empty object of name -> number")
    if timestamp not in (None, ""):
        if not isinstance(timestamp, str):
            problems.append("timestamp must be an ISO 8601 string")
        else:
            try:
                parse_time(timestamp)
            except ValueError:
                problems.append(f"timestamp {timestamp[:40]!r} is not an ISO 8601 time")
    if metadata is not None and not isinstance(metadata, Mapping):
        problems.append("metadata must be an object")
    return problems


def body_problems(body: Any, feature_names: Sequence[str] | None) -> list[str]:
    """`message_problems` of a JSON body, plus the model's features it lacks (REST: 422 with them all)."""
    if not isinstance(body, dict):
        return ["must be a JSON object with asset_id and features"]
    problems = message_problems(
        body.get("asset_id"), body.get("features"), body.get("timestamp"), body.get("sensor_id"), body.get("metadata")
    )
    if not problems and feature_names is not None:
        missing = missing_features(list(feature_names), body["features"])
        if missing:
            problems.append(f"missing features: {', '.join(missing)}")
    return problems


def _model_row(names: list[str], vector: Mapping[str, float]) -> list[float] | None:
    """One vector as a row in `names` order; None when it lacks one of them (or holds a non-number)."""
    values = [vector.get(name) for name in names]
    if all(type(value) is float and math.isfinite(value) for value in values):  # the usual case, fast
        return cast(list[float], values)
    if missing_features(names, dict(vector)):
        return None
    return [float(vector[name]) for name in names]


def trailing_rows(
    feature_names: Sequence[str], vectors: Sequence[Mapping[str, float]], limit: int,
    converted: dict[int, list[float] | None] | None = None,
) -> list[list[float]]:
    """An asset's recent vectors as rows in `feature_names` order, oldest first: the trailing run (at most
    `limit` long) in which every vector holds every name, so a model change never mixes in partial rows.
    `converted` (vector id -> row) lets windows that share vector objects convert each of them once."""
    names = list(feature_names)
    rows: list[list[float]] = []
    for vector in reversed(vectors):
        if len(rows) == limit:
            break
        if converted is None:
            row = _model_row(names, vector)
        elif id(vector) in converted:
            row = converted[id(vector)]
        else:
            row = converted[id(vector)] = _model_row(names, vector)
        if row is None:
            break
        rows.append(row)
    rows.reverse()
    return rows


_FLOATS = {float}


def window_matrices(
    feature_names: Sequence[str], histories: Sequence[Sequence[Mapping[str, float]]], limit: int
) -> list[np.ndarray]:
    """Each history's `trailing_rows` as a (rows, features) float matrix. The events of one asset in a batch
    share most of their window's vector objects, so each vector is converted once per call, into one
    table the windows are cut from."""
    import numpy as np

    names = list(feature_names)
    read = itemgetter(*names) if len(names) > 1 else None
    position: dict[int, int] = {}  # id(vector) -> its row of `rows`, -1 when it cannot be a model row
    rows: list[Sequence[float]] = []
    picks: list[list[int]] = []
    for history in histories:
        picked: list[int] = []
        for vector in reversed(history):
            if len(picked) == limit:
                break
            at = position.get(id(vector))
            if at is None:
                row: Sequence[float] | None = None
                if read is not None:  # the usual case, in C: every value a finite float
                    try:
                        values = read(vector)
                    except (KeyError, TypeError):
                        values = None
                    if values is not None and set(map(type, values)) == _FLOATS and math.isfinite(sum(values)):
                        row = values
                if row is None:
                    row = _model_row(names, vector)
                at = position[id(vector)] = -1 if row is None else len(rows)
                if row is not None:
                    rows.append(row)
            if at < 0:
                break
            picked.append(at)
        picked.reverse()
        picks.append(picked)
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return [table[picked] for picked in picks]


def record_key(asset_id: str, sensor_id: str, timestamp: str) -> str:
    """A journal key: a hash of asset, sensor and timestamp, so a replayed message updates the same row."""
    return hashlib.sha256(f"{asset_id}\x1f{sensor_id}\x1f{timestamp}".encode()).hexdigest()


_PLAIN = (str, int, bool, type(None))  # JSON-safe as they are (checked by exact type first: no ABC lookups)


def json_safe(value: Any) -> Any:
    """`value` with NaN / infinities replaced by None (strict JSON, PostgreSQL's json type); mappings and
    sequences come back as new dicts and lists."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def numeric_features(features: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a message's features (what an output record echoes back)."""
    numbers = {}
    for name, value in features.items():
        if type(value) is float:  # the usual case, checked without calls
            if value - value == 0.0:  # finite (NaN and infinities give NaN)
                numbers[name] = value
        elif is_number(value):
            numbers[name] = float(value)
    return numbers
