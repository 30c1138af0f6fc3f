"""The record the ingestion view publishes for a valid reading (`to_measurement`) and its message id."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from streamapp.iot.validation import MESSAGE_ID_NAMESPACE, message_id_for, to_measurement, validate_reading
from streamapp.records import IotMeasurement, VitalSigns

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def test_message_ids_are_the_uuid5_of_pseudonym_device_and_time() -> None:
    """Ids must never change between versions: a client retrying after an upgrade gets the same id."""
    rng = random.Random(5)
    for n in range(500):
        pseudonym = "".join(rng.choice("abcdef0123456789é") for _ in range(rng.randrange(1, 40)))
        device = f"device-{rng.randrange(10**6)}"
        moment = NOW - timedelta(microseconds=rng.randrange(10**12)) if n % 2 else NOW.replace(tzinfo=None)
        expected = str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{pseudonym}|{device}|{moment.isoformat()}"))
        assert message_id_for(pseudonym, device, moment) == expected


def test_the_published_record_equals_the_one_faust_would_build() -> None:
    payload = {"patient_id": " patient-7 ", "device_id": "dev-1", "timestamp": "2026-12-05T08:59:59.5Z",
               "measurements": {"freq_card": 72, "freq_resp": 16.5, "spo2_pct": 97, "temp_corp": 36.9},
               "quality_score": 88}
    reading, problems = validate_reading(payload, now=NOW, max_future_skew_s=300)
    assert problems == [] and reading is not None
    record = to_measurement(reading, ingested_at=NOW)
    expected = IotMeasurement(
        patient_id=record.patient_id, device_id="dev-1", timestamp="2026-12-05T08:59:59.500000+00:00",
        measurements=VitalSigns(freq_card=72.0, freq_resp=16.5, spo2_pct=97.0, temp_corp=36.9),
        ingestion_timestamp=NOW.isoformat(), api_version=record.api_version,
        message_id=message_id_for(record.patient_id, "dev-1", reading.timestamp), quality_score=88.0,
    )
    assert record == expected
    assert record.dumps() == expected.dumps()
    assert record.patient_id != "patient-7" and "patient-7" not in record.dumps().decode()
    assert IotMeasurement.loads(record.dumps()) == expected
