"""Every record that crosses a topic boundary, as typed Faust Records (JSON on the wire).

Field names follow the source services so that their producers and consumers keep working.
"""

from __future__ import annotations

from typing import Any, TypeVar

import faust
import orjson
from faust.utils.json import on_default

# the options Faust's JSON codec gives orjson (non-string keys as text, UTC datetimes ending in "Z")
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


class StreamRecord(faust.Record, abstract=True, serializer="json", include_metadata=False):
    """Base of every record: JSON on the wire, no Faust type metadata in the payload."""

    def dumps(self, *, serializer: Any = None) -> bytes:
        """The record's JSON, as Faust's codec writes it (same bytes), without the codec registry's lookups
        and with nested records converted directly: about half the cost for a model result."""
        if serializer not in (None, "json"):
            return super().dumps(serializer=serializer)
        return json_bytes(self.asdict())


def json_bytes(value: Any) -> bytes:
    """`value` as the JSON a record's `dumps` writes (nested records as their fields): plain data a record
    would hold gives the same bytes as the record."""
    return orjson.dumps(value, default=_nested_json, option=_JSON_OPTIONS)


def _nested_json(value: Any) -> Any:
    """What orjson cannot write itself: nested records as their fields, the rest as Faust's codec does."""
    if isinstance(value, StreamRecord):
        return value.asdict()
    return on_default(value)


R = TypeVar("R", bound=StreamRecord)


def built(record_type: type[R], **values: Any) -> R:
    """A record of values this process computed, already of their declared types (every field given).

    Faust's constructor sends each value through its field's descriptor (coercion checks, tags), which
    costs more than the rest of building a model result; values the app computed need none of it. The
    record is the same as `record_type(**values)` (same fields, equal, same JSON)."""
    if values.keys() != record_type._options.fieldset:
        given, declared = set(values), set(record_type._options.fieldset)
        raise TypeError(
            f"{record_type.__name__} needs every field: missing {sorted(declared - given)}, "
            f"unknown {sorted(given - declared)}"
        )
    record = record_type.__new__(record_type)
    record.__dict__.update(values)
    record.__evaluated_fields__ = set()
    return record


# ---- machine health ----------------------------------------------------------------------------
class SensorReading(StreamRecord):
    """A raw window of samples (`samples` + `sampling_rate_hz`) or one cycle of named sensor values."""

    asset_id: str
    sensor_id: str = ""
    timestamp: str = ""
    samples: list[float] | None = None
    sampling_rate_hz: float | None = None
    values: dict[str, float] | None = None
    cycle: int | None = None
    metadata: dict[str, Any] | None = None


class ExtractedFeatures(StreamRecord):
    asset_id: str
    features: dict[str, float]
    sensor_id: str = ""
    timestamp: str = ""
    metadata: dict[str, Any] | None = None


class ModelScore(StreamRecord):
    score: float
    model_name: str
    threshold: float
    is_anomaly: bool


class AssetModelOutput(StreamRecord, abstract=True):
    """What the anomaly and RUL pipelines both publish per asset: which reading, its features, which model."""

    asset_id: str
    sensor_id: str
    timestamp: str
    features: dict[str, float]
    metadata: dict[str, Any]
    model_version: str


class AnomalyResult(AssetModelOutput):
    scores: list[ModelScore]
    final_score: float
    is_anomaly: bool
    criticality: str  # low / medium / high / critical


class RulPrediction(AssetModelOutput):
    rul_prediction: float
    confidence_interval_lower: float
    confidence_interval_upper: float
    confidence_level: float
    uncertainty: float
    model_used: str
    model_scores: dict[str, float]


# ---- IoT vital signs ---------------------------------------------------------------------------
class VitalSigns(StreamRecord):
    freq_card: float
    freq_resp: float
    spo2_pct: float
    temp_corp: float


class IotMeasurement(StreamRecord):
    """An accepted measurement; `patient_id` is already the pseudonym."""

    patient_id: str
    device_id: str
    timestamp: str
    measurements: VitalSigns
    ingestion_timestamp: str
    api_version: str
    message_id: str
    quality_score: float | None = None


class VitalAlert(StreamRecord):
    alert_type: str
    severity: str
    patient_id: str
    device_id: str
    value: float
    threshold: float
    timestamp: str
    message_id: str
    alert_id: str = ""  # message_id:alert_type, the key every sink upserts the alert by
    ingestion_timestamp: str = ""


class DeviceStatus(StreamRecord):
    device_id: str
    status: str  # online / degraded / silent
    last_seen: str
    patient_id: str = ""
    missing_readings: int = 0
    signal_quality: float | None = None
    reported_at: str = ""


class IngestError(StreamRecord):
    error_type: str
    reasons: list[str]
    received_at: str
    source: str
    payload_excerpt: str = ""
    device_id: str = ""


class VitalsWindow(StreamRecord):
    """The final aggregate of one patient's 5-minute tumbling window."""

    patient_id: str
    window_start: str
    window_end: str
    count: int
    stats: dict[str, dict[str, float]]  # vital -> {min, mean, max}
    alert_count: int
    alerts_by_type: dict[str, int]
    late_events: int = 0


# ---- e-commerce returns ------------------------------------------------------------------------
class OrderEvent(StreamRecord):
    event_id: str
    order_id: str
    customer_customer_id: str
    event_time: str = ""
    customer_country: str = "unknown"
    order_device: str = "unknown"
    order_channel: str = "unknown"
    order_main_category: str = "unknown"
    order_n_items: int = 0
    order_basket_value: float = 0.0
    order_shipping_fee: float = 0.0
    order_discount: float = 0.0
    order_order_total: float = 0.0
    order_is_returned: bool = False


class ReturnPrediction(StreamRecord):
    event_id: str
    order_id: str
    customer_customer_id: str
    return_proba: float
    model_version: str
    predicted_at: str


# ---- operations ----------------------------------------------------------------------------------
class DeadLetter(StreamRecord):
    """A message an agent could not decode, validate or process, with everything needed to replay it."""

    topic: str
    partition: int
    offset: int
    raw_value_b64: str
    error: str
    agent: str
    time: str
    reason: str = "invalid"  # short class: decode, invalid, late, model-not-trained, missing-features, ...
    raw_key_b64: str = ""
