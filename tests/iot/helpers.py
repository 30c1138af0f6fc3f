"""Building measurements for the IoT tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from streamapp.records import IotMeasurement, VitalSigns

BASE = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # aligned on a 5-minute window
NORMAL = {"freq_card": 90.0, "freq_resp": 18.0, "spo2_pct": 97.0, "temp_corp": 36.8}


def measurement(
    patient: str, *, at: datetime | None = None, seconds: float = 0.0, device: str = "dev-1",
    quality: float | None = None, message_id: str | None = None, **vitals: float,
) -> IotMeasurement:
    """A measurement as the ingestion view publishes it (`patient` is already a pseudonym)."""
    when = (at or BASE) + timedelta(seconds=seconds)
    return IotMeasurement(
        patient_id=patient, device_id=device, timestamp=when.isoformat(),
        measurements=VitalSigns(**{**NORMAL, **vitals}),
        ingestion_timestamp=datetime.now(UTC).isoformat(), api_version="1.0.0",
        message_id=message_id or str(uuid.uuid4()), quality_score=quality,
    )
