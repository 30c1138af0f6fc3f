"""The ingestion views, in process: 202 with message ids, 422 with every reason (and an `iot-errors`
record per refused item), 503 when the broker does not confirm, pseudonyms only on the topic."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamapp import publishing
from tests.faust_testing import CapturedSends
from tests.view_testing import FakeRequest, FakeView

SEED_EXAMPLE = {
    "patient_id": "patient-001-ss",
    "device_id": "uuid-device",
    "timestamp": "2026-11-23T10:30:00.123456",
    "measurements": {"freq_card": 120, "freq_resp": 18, "spo2_pct": 85.0, "temp_corp": 38.5},
}


async def post(body: Any, *, legacy: bool = False, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    from streamapp.views.iot import ingest

    source = "/ingest" if legacy else "/iot/measurements"
    return await ingest(FakeView(), FakeRequest(body, headers), source=source, legacy=legacy)  # type: ignore[arg-type,return-value]


async def test_the_seed_example_is_accepted_pseudonymised_and_enriched(
    iot_env: Any, captured_sends: CapturedSends
) -> None:
    from streamapp.iot.pseudonym import pseudonymise

    status, body = await post(SEED_EXAMPLE)
    assert status == 202 and body["message_ids"] == [body["message_id"]]
    ((key, record),) = captured_sends.by_topic["iot-measurements"]
    assert key == record.patient_id == pseudonymise("patient-001-ss")
    assert record.message_id == body["message_id"] and record.api_version == "1.0.0"
    assert record.timestamp == "2026-11-23T10:30:00.123456+00:00" and record.ingestion_timestamp
    assert record.measurements.spo2_pct == 85.0
    assert "patient-001-ss" not in record.dumps().decode()


async def test_an_invalid_payload_gets_one_422_naming_every_problem_and_one_iot_errors_record(
    iot_env: Any, captured_sends: CapturedSends
) -> None:
    payload = {**SEED_EXAMPLE, "measurements": {**SEED_EXAMPLE["measurements"], "spo2_pct": "85", "temp_corp": 80}}
    del payload["device_id"]
    status, body = await post(payload)
    assert status == 422
    assert sorted(body["detail"]) == [
        "device_id: required",
        "measurements.spo2_pct: must be a number, got string",
        "measurements.temp_corp: 80 is outside the physiological range 30..45",
    ]
    (error,) = captured_sends.values("iot-errors")
    assert sorted(error.reasons) == sorted(body["detail"]) and error.source == "/iot/measurements"
    assert "patient-001-ss" not in error.dumps().decode()
    assert captured_sends.values("iot-measurements") == []


async def test_a_list_is_accepted_whole_or_refused_whole(iot_env: Any, captured_sends: CapturedSends) -> None:
    second = {**SEED_EXAMPLE, "timestamp": "2026-11-23T10:30:05"}
    status, body = await post([SEED_EXAMPLE, second])
    assert status == 202 and len(set(body["message_ids"])) == 2
    status, body = await post([SEED_EXAMPLE, {**second, "timestamp": "yesterday"}, {"patient_id": 7}])
    assert status == 422
    assert "[1] timestamp: 'yesterday' is not an ISO 8601 timestamp" in body["detail"]
    assert "[2] patient_id: must be a string, got int" in body["detail"]
    assert len(captured_sends.values("iot-errors")) == 2
    assert len(captured_sends.values("iot-measurements")) == 2  # only the first request's


async def test_the_legacy_endpoint_takes_vitals_at_the_top_level(iot_env: Any, captured_sends: CapturedSends) -> None:
    flat = {key: value for key, value in SEED_EXAMPLE.items() if key != "measurements"}
    flat.update(SEED_EXAMPLE["measurements"])
    assert (await post(flat, legacy=True))[0] == 202
    assert (await post(SEED_EXAMPLE, legacy=True))[0] == 202
    status, body = await post(flat)
    assert status == 422 and body["detail"] == ["measurements: required object with freq_card, freq_resp, spo2_pct, "
                                                 "temp_corp"]


async def test_a_timestamp_far_in_the_future_is_refused(iot_env: Any, captured_sends: CapturedSends) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    assert (await post({**SEED_EXAMPLE, "timestamp": soon}))[0] == 202
    status, body = await post({**SEED_EXAMPLE, "timestamp": later})
    assert status == 422 and body["detail"] == ["timestamp: more than 300 s in the future"]


async def test_a_retry_carries_the_same_message_id(iot_env: Any, captured_sends: CapturedSends) -> None:
    first, second = await post(SEED_EXAMPLE), await post(SEED_EXAMPLE)
    assert first[1]["message_id"] == second[1]["message_id"]


async def test_no_202_when_the_broker_does_not_confirm(
    iot_env: Any, faust_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamapp.settings import get_settings

    async def never_confirmed(messages: Any) -> list[Any]:  # handed to the producer, never acknowledged
        return [asyncio.get_running_loop().create_future() for _ in messages]

    monkeypatch.setattr(publishing, "send_records", never_confirmed)
    monkeypatch.setenv("STREAMAPP_INGEST_DELIVERY_TIMEOUT_S", "0.2")
    get_settings.cache_clear()
    status, body = await post(SEED_EXAMPLE)
    assert status == 503 and "did not confirm" in body["detail"][0] and "(no answer)" in body["detail"][0]


async def test_writes_need_the_bearer_token_when_one_is_set(
    iot_env: Any, captured_sends: CapturedSends, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamapp.settings import get_settings

    monkeypatch.setenv("STREAMAPP_API_TOKEN", "s3cret")
    get_settings.cache_clear()
    assert (await post(SEED_EXAMPLE))[0] == 401
    assert (await post(SEED_EXAMPLE, headers={"Authorization": "Bearer s3cret"}))[0] == 202
