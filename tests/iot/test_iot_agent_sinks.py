"""The IoT agent stores measurements and alerts idempotently, writes the lake datasets, reports device
status (including silent devices) and refuses unusable records."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from streamapp import metrics
from tests.faust_testing import CapturedSends, wait_for
from tests.iot.helpers import measurement


async def count_rows(model: Any) -> int:
    from streamapp.db.engines import Role, get_engine

    async with get_engine(Role.TELEMETRY).connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(model))).scalar_one())


async def put_and_wait(agent: Any, records: list[Any], key: str) -> None:
    start = metrics.seed_figures.processed_messages
    for record in records:
        await agent.put(record, key=key)
    await wait_for(lambda: metrics.seed_figures.processed_messages >= start + len(records))


def skipped_copies() -> float:
    from streamapp.metrics import duplicates_skipped_total

    return duplicates_skipped_total.labels("iot")._value.get()


async def test_measurements_and_alerts_are_upserted_once_and_land_in_the_lake(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import process_vitals
    from lake.writer import read_dataset
    from streamapp.db.telemetry import IotAlertRow, IotMeasurementRow
    from streamapp.iot.pseudonym import pseudonymise
    from streamapp.settings import get_settings

    patient_a, patient_b = pseudonymise("patient-a"), pseudonymise("patient-b")
    crisis = measurement(patient_a, message_id="m-crisis", spo2_pct=85.0, temp_corp=38.5, freq_card=120.0)
    calm = measurement(patient_b, seconds=5, message_id="m-calm")
    async with process_vitals.test_context() as agent:
        await put_and_wait(agent, [crisis, calm], key=patient_a)
        copies_before = skipped_copies()
        await put_and_wait(agent, [crisis], key=patient_a)  # the same message sent again: a new offset, same id
        lake = get_settings().lake_path
        await wait_for(lambda: read_dataset(lake, "raw/iot_measurements").num_rows == 2)
        assert skipped_copies() == copies_before + 1
    assert await count_rows(IotMeasurementRow) == 2
    assert await count_rows(IotAlertRow) == 3
    lake = get_settings().lake_path
    raw = read_dataset(lake, "raw/iot_measurements")  # the resent copy is neither stored nor alerted again
    assert sorted(raw.column("message_id").to_pylist()) == ["m-calm", "m-crisis"]
    assert read_dataset(lake, "bronze/iot_alerts").num_rows == 3
    assert set(raw.column("patient_id").to_pylist()) == {patient_a, patient_b}
    assert set(raw.column("date").to_pylist()) == {"2026-11-23"}
    assert (lake / f"raw/iot_measurements/date=2026-11-23/patient_id={patient_a}").is_dir()
    assert sorted(set(read_dataset(lake, "bronze/iot_alerts").column("alert_id").to_pylist())) == [
        "m-crisis:CRITICAL_FEVER_HYPOXIA", "m-crisis:CRITICAL_SPO2", "m-crisis:CRITICAL_TEMPERATURE"]
    critical = read_dataset(lake, "silver/critical_alerts").to_pylist()
    assert {row["message_id"] for row in critical} == {"m-crisis"} and critical[0]["alert_count"] == 3


async def test_device_status_is_online_then_degraded_then_silent(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import current_pipeline, process_vitals
    from streamapp.iot.pseudonym import pseudonymise

    patient = pseudonymise("patient-d")
    async with process_vitals.test_context() as agent:
        await put_and_wait(agent, [measurement(patient, device="dev-9", seconds=0, quality=95.0)], key=patient)
        await put_and_wait(agent, [measurement(patient, device="dev-9", seconds=5, quality=95.0)], key=patient)
        # a gap of 4 intervals (3 readings missed), then poor signal
        await put_and_wait(agent, [measurement(patient, device="dev-9", seconds=25, quality=10.0),
                                   measurement(patient, device="dev-9", seconds=30, quality=10.0)], key=patient)
        pipeline = current_pipeline()
        assert pipeline is not None
        await pipeline.housekeeping(time.time() + 3600, None)  # an hour without a reading
    statuses = captured_sends.values("iot-device-status")
    assert [status.status for status in statuses] == ["online", "degraded", "silent"]
    assert all(status.device_id == "dev-9" and status.patient_id == patient for status in statuses)
    assert statuses[1].missing_readings == 3 and statuses[1].signal_quality < 60
    assert statuses[2].missing_readings > 3 + 600  # still counting the readings it does not send
    assert statuses[2].last_seen.startswith("2026-11-23T10:00:30")


async def test_a_record_out_of_range_goes_to_iot_errors_and_dead_letters_not_to_the_database(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import process_vitals
    from streamapp.db.telemetry import IotMeasurementRow
    from streamapp.iot.pseudonym import pseudonymise

    patient = pseudonymise("patient-e")
    async with process_vitals.test_context() as agent:
        await put_and_wait(agent, [measurement(patient, temp_corp=80.0), measurement(patient, seconds=1)], key=patient)
    (error,) = captured_sends.values("iot-errors")
    assert error.reasons == ["measurements.temp_corp: 80 is outside the physiological range 30..45"]
    assert patient in error.payload_excerpt  # the pseudonym as it was, to find the patient's other records
    assert [letter.reason for letter in captured_sends.values("dead-letters")] == ["invalid"]
    assert await count_rows(IotMeasurementRow) == 1


async def test_a_clear_patient_id_on_the_topic_is_pseudonymised_before_anything_is_written(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import process_vitals
    from streamapp.iot.pseudonym import pseudonymise

    async with process_vitals.test_context() as agent:
        await put_and_wait(agent, [measurement("patient-042-ss", spo2_pct=80.0)], key="x")
    (alert,) = captured_sends.values("iot-alerts")
    assert alert.patient_id == pseudonymise("patient-042-ss")
    assert "patient-042-ss" not in repr(captured_sends.by_topic)


async def test_the_seed_figures_count_messages_alerts_by_type_and_ingest_to_alert_latency(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import process_vitals
    from streamapp.iot.pseudonym import pseudonymise

    figures = metrics.seed_figures
    before_alerts, before_latencies = dict(figures.alerts_by_type), len(figures.latencies_s)
    patient = pseudonymise("patient-m")
    async with process_vitals.test_context() as agent:
        await put_and_wait(agent, [measurement(patient, spo2_pct=85.0, temp_corp=38.5),
                                   measurement(patient, seconds=1, freq_card=190.0)], key=patient)
    gained = {name: count - before_alerts.get(name, 0) for name, count in figures.alerts_by_type.items()}
    assert {name: n for name, n in gained.items() if n} == {
        "CRITICAL_SPO2": 1, "CRITICAL_TEMPERATURE": 1, "CRITICAL_FEVER_HYPOXIA": 1, "CRITICAL_HEART_RATE": 1}
    latencies = list(figures.latencies_s)[before_latencies:]
    assert len(latencies) == 4 and all(0 <= latency < 5 for latency in latencies)
    shown = figures.as_json()
    assert shown["processed_messages"] >= 2 and shown["latency_p99_s"] >= shown["latency_p50_s"] >= 0
