"""The benchmark's input messages: deterministic IoT measurements (~300-byte JSON) shared by every
benchmark that reads them, so Faust, the pipelines and the Quix Streams peer see the same bytes."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

PATIENTS = 200
START = datetime(2026, 1, 1, tzinfo=UTC)


def vitals(rng: random.Random, alerting: bool) -> dict[str, float]:
    """Normal vitals, or (when `alerting`) one of the contract's critical conditions."""
    values = {
        "freq_card": round(rng.uniform(55, 110), 1),
        "freq_resp": round(rng.uniform(12, 20), 1),
        "spo2_pct": round(rng.uniform(94, 99.5), 1),
        "temp_corp": round(rng.uniform(36.2, 37.6), 2),
    }
    if alerting:
        kind = rng.randrange(4)
        if kind == 0:
            values["spo2_pct"] = round(rng.uniform(80, 87.5), 1)
        elif kind == 1:
            values["temp_corp"] = round(rng.uniform(38.0, 40.0), 2)
        elif kind == 2:
            values["freq_card"] = round(rng.choice([rng.uniform(30, 39), rng.uniform(181, 200)]), 1)
        else:
            values["spo2_pct"], values["temp_corp"] = round(rng.uniform(89, 92), 1), round(rng.uniform(38, 39), 2)
    return values


def pseudonym(patient: int) -> str:
    """A pseudonym-shaped patient id (what the ingestion views publish), stable per patient."""
    return "pt-" + hashlib.sha256(f"bench-patient-{patient}".encode()).hexdigest()[:48]


def measurement(index: int, rng: random.Random, *, alert_rate: float, at: datetime | None = None) -> dict:
    """One enriched measurement as it sits on `iot-measurements` (patient id already a pseudonym)."""
    patient = index % PATIENTS
    when = at or START + timedelta(milliseconds=index * 10)
    stamp = when.isoformat().replace("+00:00", "Z")
    return {
        "patient_id": pseudonym(patient),
        "device_id": f"dev-{patient:05d}",
        "timestamp": stamp,
        "measurements": vitals(rng, rng.random() < alert_rate),
        "ingestion_timestamp": stamp,
        "api_version": "v1",
        "message_id": f"m{index:09d}",
    }


def iot_messages(
    count: int, *, seed: int = 8, alert_rate: float = 0.05, first: int = 0,
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs keyed by patient pseudonym, as the ingestion views publish them; message
    `first + i` is 10 ms after message `first + i - 1` (event time), so windows close as time goes on."""
    rng = random.Random(seed + first)
    for index in range(first, first + count):
        record = measurement(index, rng, alert_rate=alert_rate)
        yield record["patient_id"].encode(), orjson.dumps(record)
