"""A worker killed mid-window: its successor restores the window from the changelog, skips what was
already folded in, and the window's final reaches the lake once with every reading counted once."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lake.writer import read_dataset
from streamapp.iot.pseudonym import pseudonym_under
from tests.kafka_helpers import skip_what_earlier_tests_left
from tests.worker import WorkerProcess

pytestmark = pytest.mark.e2e

KEY = "iot-recovery-secret"
WINDOW_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def pseudonym(patient_id: str) -> str:
    return pseudonym_under(KEY.encode(), patient_id)


def post_readings(worker: WorkerProcess, patient: str, seconds: range) -> None:
    for second in seconds:
        status, _ = worker.request("POST", "/iot/measurements", {
            "patient_id": patient, "device_id": "bracelet-r1",
            "timestamp": (WINDOW_START + timedelta(seconds=second)).isoformat(),
            "measurements": {"freq_card": 100 + second, "freq_resp": 20, "spo2_pct": 96.0, "temp_corp": 37.0},
        })
        assert status == 202


def windows_of(lake: Path, patient: str) -> list[dict[str, Any]]:
    return [row for row in read_dataset(lake, "bronze/iot_aggregations").to_pylist() if row["patient_id"] == patient]


def wait_until(predicate: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {within_s} s")
        time.sleep(0.3)


async def test_a_window_survives_a_killed_worker_and_is_emitted_once(kafka: Any, tmp_path: Path) -> None:
    env = {"STREAMAPP_PSEUDONYM_KEY": KEY, "STREAMAPP_WINDOW_SECONDS": "60", "STREAMAPP_WINDOW_GRACE_SECONDS": "20",
           "STREAMAPP_LAKE_FLUSH_SECONDS": "0.5"}
    app_id = f"streamapp-recovery-{uuid.uuid4().hex[:8]}"
    patient = f"patient-recovery-{uuid.uuid4().hex[:6]}"
    lake = tmp_path / "var" / "lake"
    await skip_what_earlier_tests_left(kafka.bootstrap, app_id)
    first = WorkerProcess(kafka.url, tmp_path, env=env, app_id=app_id)
    await asyncio.to_thread(first.start)
    try:
        await asyncio.to_thread(post_readings, first, patient, range(0, 5))
        await asyncio.to_thread(wait_until, lambda: sum(
            1 for row in read_dataset(lake, "raw/iot_measurements").to_pylist() if row["patient_id"] == pseudonym(patient)
        ) == 5, 60, "the first readings in the lake")
    finally:
        first.kill()  # SIGKILL: no flush, no commit, no goodbye to the group
    second = WorkerProcess(kafka.url, tmp_path, env=env, app_id=app_id)
    await asyncio.to_thread(second.start)
    try:
        await asyncio.to_thread(post_readings, second, patient, range(5, 10))
        await asyncio.to_thread(wait_until, lambda: windows_of(lake, pseudonym(patient)), 90, "the window's final")
        await asyncio.sleep(2)  # anything emitted twice would arrive by now
    finally:
        second.stop()
    (window,) = windows_of(lake, pseudonym(patient))
    assert window["count"] == 10 and window["late_events"] == 0
    assert window["freq_card_min"] == 100 and window["freq_card_max"] == 109
    assert patient not in first.log_text() + second.log_text()
