"""Validation of incoming vital-sign readings: every problem of a payload is reported at once.

Two shapes are accepted: the seed's nested one (`measurements: {freq_card, ...}`) on both endpoints,
and the legacy flat one (vitals at the top level) on `/ingest`.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from streamapp.iot.pseudonym import is_pseudonym, pseudonymise
from streamapp.records import IngestError, IotMeasurement, VitalSigns, built

API_VERSION = "1.0.0"
VITALS = ("freq_card", "freq_resp", "spo2_pct", "temp_corp")
# Physiologically possible readings: outside these a value is a sensor or transmission fault, not a patient.
PHYSIOLOGICAL_RANGES: dict[str, tuple[float, float]] = {
    "freq_card": (20.0, 300.0),  # bpm
    "freq_resp": (2.0, 100.0),  # breaths/min
    "spo2_pct": (50.0, 100.0),  # %
    "temp_corp": (30.0, 45.0),  # degrees Celsius
}
MAX_ID_CHARS = 128
MESSAGE_ID_NAMESPACE = uuid.UUID("9d1f3c52-52a5-4c4e-9d7e-1b8f1e7f6a10")
EXCERPT_CHARS = 500


@dataclass(frozen=True)
class Reading:
    """A valid reading as the device sent it (clear patient id: it never leaves the ingestion view)."""

    patient_id: str
    device_id: str
    timestamp: datetime
    vitals: dict[str, float]
    quality_score: float | None = None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _type_name(value: Any) -> str:
    return "null" if value is None else {str: "string", bool: "boolean", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def parse_timestamp(value: Any) -> datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (naive ones are taken as UTC, like the seed's)."""
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 string, got {_type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value[:40]!r} is not an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def vital_problems(vitals: dict[str, Any], prefix: str = "measurements.") -> list[str]:
    """Type and range problems of the four vitals (also used by the agent on records it did not ingest)."""
    problems = []
    for name in VITALS:
        value = vitals.get(name)
        low, high = PHYSIOLOGICAL_RANGES[name]
        if value is None:
            problems.append(f"{prefix}{name}: required")
        elif not is_number(value):
            problems.append(f"{prefix}{name}: must be a number, got {_type_name(value)}")
        elif not low <= value <= high:
            problems.append(f"{prefix}{name}: {value:g} is outside the physiological range {low:g}..{high:g}")
    return problems


def _id_problem(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return f"{name}: required"
    if not isinstance(value, str):
        return f"{name}: must be a string, got {_type_name(value)}"
    if len(value) > MAX_ID_CHARS or not value.strip():
        return f"{name}: must be 1..{MAX_ID_CHARS} visible characters"
    return None


def validate_reading(
    payload: Any, *, now: datetime, max_future_skew_s: float, legacy: bool = False
) -> tuple[Reading | None, list[str]]:
    """The reading, or None with every reason it is refused."""
    if not isinstance(payload, dict):
        return None, [f"a measurement must be a JSON object, got {_type_name(payload)}"]
    problems = [p for p in (_id_problem(payload, "patient_id"), _id_problem(payload, "device_id")) if p]
    vitals = payload.get("measurements")
    prefix = "measurements."
    if vitals is None and legacy:
        vitals, prefix = payload, ""
    if not isinstance(vitals, dict):
        problems.append(f"measurements: required object with {', '.join(VITALS)}")
        vitals = None
    else:
        problems.extend(vital_problems(vitals, prefix))
    timestamp: datetime | None = None
    if payload.get("timestamp") is None:
        problems.append("timestamp: required")
    else:
        try:
            timestamp = parse_timestamp(payload["timestamp"])
        except ValueError as exc:
            problems.append(f"timestamp: {exc}")
        else:
            if timestamp > now + timedelta(seconds=max_future_skew_s):
                problems.append(f"timestamp: more than {max_future_skew_s:g} s in the future")
    quality = payload.get("quality_score")
    if quality is not None and not (is_number(quality) and 0 <= quality <= 100):
        problems.append("quality_score: must be a number in 0..100")
    if problems or vitals is None or timestamp is None:
        return None, problems
    return Reading(
        patient_id=payload["patient_id"].strip(),
        device_id=payload["device_id"].strip(),
        timestamp=timestamp,
        vitals={name: float(vitals[name]) for name in VITALS},
        quality_score=None if quality is None else float(quality),
    ), []


def message_id_for(pseudonym: str, device_id: str, timestamp: datetime) -> str:
    """Deterministic, so a client retrying after a 503 produces the same id and sinks dedupe it: the text
    of `uuid.uuid5(MESSAGE_ID_NAMESPACE, "pseudonym|device_id|timestamp")`, written without building the
    `UUID` object (a third of the time)."""
    name = f"{pseudonym}|{device_id}|{timestamp.isoformat()}"
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_NAMESPACE_BYTES = MESSAGE_ID_NAMESPACE.bytes


def to_measurement(reading: Reading, *, ingested_at: datetime) -> IotMeasurement:
    """The enriched, pseudonymised record published to `iot-measurements` (built from values already
    checked and converted by `validate_reading`: `records.built`, without Faust's per-field descriptors)."""
    pseudonym = pseudonymise(reading.patient_id)
    return built(
        IotMeasurement,
        patient_id=pseudonym,
        device_id=reading.device_id,
        timestamp=reading.timestamp.isoformat(),
        measurements=built(VitalSigns, **reading.vitals),
        ingestion_timestamp=ingested_at.isoformat(),
        api_version=API_VERSION,
        message_id=message_id_for(pseudonym, reading.device_id, reading.timestamp),
        quality_score=reading.quality_score,
    )


def redacted_excerpt(payload: Any) -> str:
    """A short JSON excerpt of a refused payload with the patient id replaced by its pseudonym."""
    if isinstance(payload, dict) and "patient_id" in payload:
        clear = payload["patient_id"]
        shown = (clear if is_pseudonym(clear) else pseudonymise(clear)) if isinstance(clear, str) else "<redacted>"
        payload = {**payload, "patient_id": shown}
    text = json.dumps(payload, default=str, ensure_ascii=False)
    return text[:EXCERPT_CHARS]


def ingest_error(payload: Any, reasons: list[str], *, source: str, received_at: datetime) -> IngestError:
    device = payload.get("device_id") if isinstance(payload, dict) else None
    return IngestError(
        error_type="validation",
        reasons=reasons,
        received_at=received_at.isoformat(),
        source=source,
        payload_excerpt=redacted_excerpt(payload),
        device_id=device[:MAX_ID_CHARS] if isinstance(device, str) else "",
    )
