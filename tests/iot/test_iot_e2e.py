"""The IoT pipeline as a user runs it: a worker subprocess on the real broker and PostgreSQL, fed by its
HTTP views and by `faust -A streamapp simulate iot` (over HTTP and straight to Kafka)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from lake.writer import read_dataset
from streamapp.iot.pseudonym import pseudonym_under
from streamapp.simulators.iot import IotSimulator
from tests.kafka_helpers import skip_what_earlier_tests_left
from tests.services import sql_scalar as pg_scalar
from tests.worker import FAUST, PROJECT, WorkerProcess

pytestmark = pytest.mark.e2e

SIMULATED_PATIENTS = 6
SIMULATION_SEED = 11
DATASETS = ("raw/iot_measurements", "bronze/iot_aggregations", "bronze/iot_alerts", "bronze/device_status",
            "silver/critical_alerts")


def pseudonym(worker: WorkerProcess, patient_id: str) -> str:
    """The pseudonym `worker` gives `patient_id`."""
    return pseudonym_under(worker.env["STREAMAPP_PSEUDONYM_KEY"].encode(), patient_id)


def seed_example(patient_id: str) -> dict[str, Any]:
    return {
        "patient_id": patient_id, "device_id": f"device-{uuid.uuid4()}", "timestamp": datetime.now(UTC).isoformat(),
        "measurements": {"freq_card": 120, "freq_resp": 18, "spo2_pct": 85.0, "temp_corp": 38.5},
    }


@pytest.fixture(scope="module")
def pg_url(postgres: Any) -> Iterator[str]:
    name = f"iot_e2e_{uuid.uuid4().hex[:10]}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


@pytest.fixture(scope="module")
def worker(kafka: Any, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for the module; short windows and silences so a run of seconds closes them."""
    process = WorkerProcess(kafka.url, tmp_path_factory.mktemp("iot-worker"), env={
        "STREAMAPP_DATABASE_URL": pg_url,
        # a key of each worker's own: earlier runs of the same seeded simulation on the shared broker (the
        # fault suite imports these fixtures too; reruns) carry other pseudonyms and do not count as this run's
        "STREAMAPP_PSEUDONYM_KEY": f"iot-e2e-secret-{uuid.uuid4().hex}",
        "STREAMAPP_LAKE_FLUSH_SECONDS": "0.5",
        "STREAMAPP_WINDOW_SECONDS": "5",
        "STREAMAPP_WINDOW_GRACE_SECONDS": "2",
        "STREAMAPP_DEVICE_SILENCE_SECONDS": "3",
    })
    asyncio.run(skip_what_earlier_tests_left(kafka.bootstrap, process.app_id))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def lake(worker: WorkerProcess) -> Path:
    return worker.workdir / "var" / "lake"


class TopicWatcher:
    """Reads a topic from the beginning in the background of a test, keeping the decoded values."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="earliest")
        self.values: list[dict[str, Any]] = []

    async def __aenter__(self) -> TopicWatcher:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.consumer.stop()

    async def wait_for(self, predicate: Any, within_s: float) -> float:
        """Seconds until `predicate(values)` held; raises when it does not within `within_s`."""
        import json

        started = time.monotonic()
        while not predicate(self.values):
            if time.monotonic() - started > within_s:
                raise AssertionError(f"not seen within {within_s} s")
            batches = await self.consumer.getmany(timeout_ms=50)
            self.values.extend(json.loads(r.value) for records in batches.values() for r in records)
        return time.monotonic() - started

    async def drain(self, seconds: float) -> None:
        """Keep reading for `seconds` (to see that nothing more arrives)."""
        import contextlib

        with contextlib.suppress(AssertionError):
            await self.wait_for(lambda values: False, within_s=seconds)


def alert_types_for(message_id: str) -> Any:
    return lambda values: sorted(v["alert_type"] for v in values if v.get("message_id") == message_id)


async def test_the_seed_example_raises_its_three_alerts_within_two_seconds(kafka: Any, worker: WorkerProcess) -> None:
    expected = ["CRITICAL_FEVER_HYPOXIA", "CRITICAL_SPO2", "CRITICAL_TEMPERATURE"]
    async with TopicWatcher(kafka.bootstrap, "iot-alerts") as alerts:
        # warm-up: the worker may still be catching up on what earlier tests left on the shared broker
        status, body = await asyncio.to_thread(worker.request, "POST", "/iot/measurements",
                                               seed_example("patient-e2e-warmup"))
        assert status == 202
        await alerts.wait_for(lambda v: alert_types_for(body["message_id"])(v) == expected, within_s=60)
        status, body = await asyncio.to_thread(worker.request, "POST", "/iot/measurements",
                                               seed_example("patient-e2e-seed"))
        assert status == 202 and body["message_ids"] == [body["message_id"]]
        elapsed = await alerts.wait_for(lambda v: alert_types_for(body["message_id"])(v) == expected, within_s=2.0)
    assert elapsed <= 2.0
    alert = next(v for v in alerts.values if v["message_id"] == body["message_id"])
    assert alert["patient_id"] == pseudonym(worker, "patient-e2e-seed") and alert["severity"] == "critical"


async def test_an_invalid_payload_gets_one_422_and_one_iot_errors_record(kafka: Any, worker: WorkerProcess) -> None:
    clear_id = f"patient-e2e-invalid-{uuid.uuid4().hex[:6]}"
    payload = seed_example(clear_id)
    del payload["device_id"]
    payload["measurements"].update(spo2_pct="85.0", temp_corp=80.0)
    status, body = await asyncio.to_thread(worker.request, "POST", "/iot/measurements", payload)
    assert status == 422 and len(body["detail"]) == 3
    assert any("device_id" in reason for reason in body["detail"])
    assert any("spo2_pct" in reason and "number" in reason for reason in body["detail"])
    assert any("temp_corp" in reason and "80" in reason for reason in body["detail"])
    async with TopicWatcher(kafka.bootstrap, "iot-errors") as errors:
        def mine(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [v for v in values if pseudonym(worker, clear_id) in v.get("payload_excerpt", "")]

        await errors.wait_for(lambda v: len(mine(v)) >= 1, within_s=10)
        await errors.drain(1.0)
        (record,) = mine(errors.values)
    assert sorted(record["reasons"]) == sorted(body["detail"]) and clear_id not in str(record)


# ---- a simulated run ---------------------------------------------------------------------------
def simulate(worker: WorkerProcess, *args: str) -> int:
    """Run the simulate command; returns how many readings it says were accepted."""
    result = subprocess.run(
        [str(FAUST), "-A", "streamapp", "simulate", "iot", *args], cwd=PROJECT, env=worker.env,
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    accepted = re.search(r"accepted (\d+), refused 0, failed 0", result.stdout)
    assert accepted, result.stdout
    return int(accepted[1])


@pytest.fixture(scope="module")
def simulated_run(worker: WorkerProcess, pg_url: str, lake: Path) -> dict[str, Any]:
    """Advanced bracelets over HTTP and straight to Kafka, then quiet until windows close and devices go silent."""
    over_http = simulate(worker, "--mode", "advanced", "--patients", str(SIMULATED_PATIENTS), "--seed",
                         str(SIMULATION_SEED), "--count", "300", "--rate", "150", "--url",
                         f"{worker.base_url}/iot/measurements")
    over_kafka = simulate(worker, "--count", "90", "--rate", "300", "--kafka", "--seed", "1")
    patients = [p.patient_id for p in IotSimulator("advanced", SIMULATED_PATIENTS, SIMULATION_SEED).patients]
    patients += [p.patient_id for p in IotSimulator("simple").patients]
    deadline = time.monotonic() + 60
    while True:  # until the database and the lake agree and every simulated window is out
        time.sleep(0.5)
        try:
            stored = asyncio.run(pg_scalar(pg_url, "SELECT count(*) FROM iot_measurements"))
        except ProgrammingError:  # the worker creates its tables with its first batch
            continue
        raw = read_dataset(lake, "raw/iot_measurements").num_rows  # a resent copy is skipped by its id
        windows = read_dataset(lake, "bronze/iot_aggregations")
        statuses = read_dataset(lake, "bronze/device_status")
        simulated = {pseudonym(worker, p) for p in patients}
        window_total = sum(row["count"] for row in windows.to_pylist() if row["patient_id"] in simulated)
        simulated_stored = asyncio.run(pg_scalar(
            pg_url, "SELECT count(*) FROM iot_measurements WHERE patient_id IN ("
            + ",".join(f"'{p}'" for p in simulated) + ")"))
        silent = statuses.num_rows and "silent" in statuses.column("status").to_pylist()
        if simulated_stored == over_http + over_kafka and raw == stored and window_total == simulated_stored \
                and silent:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"stored={stored} raw={raw} windows={window_total}/{simulated_stored} silent={silent}")
    time.sleep(1.5)  # one more flush period: nothing further should arrive
    return {"http": over_http, "kafka": over_kafka, "patients": patients, "worker": worker}


async def test_a_simulated_run_lands_in_five_lake_datasets_matching_postgresql(
    simulated_run: dict[str, Any], pg_url: str, lake: Path
) -> None:
    assert simulated_run["http"] > 250 and simulated_run["kafka"] == 90
    tables = {name: read_dataset(lake, name) for name in DATASETS}
    assert all(table.num_rows > 0 for table in tables.values())
    assert tables["raw/iot_measurements"].num_rows == await pg_scalar(pg_url, "SELECT count(*) FROM iot_measurements")
    assert tables["bronze/iot_alerts"].num_rows == await pg_scalar(pg_url, "SELECT count(*) FROM iot_alerts")
    assert tables["silver/critical_alerts"].num_rows == await pg_scalar(
        pg_url, "SELECT count(DISTINCT message_id) FROM iot_alerts WHERE severity = 'critical'")
    windows = tables["bronze/iot_aggregations"].to_pylist()
    assert len({(w["patient_id"], w["window_start"]) for w in windows}) == len(windows)  # each window once
    raw_dirs = {p.relative_to(lake / "raw/iot_measurements").parts[:2]
                for p in (lake / "raw/iot_measurements").rglob("*.parquet")}
    assert all(day.startswith("date=") and patient.startswith("patient_id=pt-") for day, patient in raw_dirs)
    simulated = {pseudonym(simulated_run["worker"], p) for p in simulated_run["patients"]}
    assert simulated <= set(tables["raw/iot_measurements"].column("patient_id").to_pylist())
    for name in ("bronze/iot_aggregations", "bronze/iot_alerts", "bronze/device_status", "silver/critical_alerts"):
        assert {p.parent.name[:5] for p in (lake / name).rglob("*.parquet")} == {"date="}


async def all_topic_bytes(bootstrap: str) -> list[bytes]:
    """Key and value of every message on every topic of the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if not name.startswith("__")]
        partitions = [TopicPartition(topic["topic"], entry["partition"])
                      for topic in await admin.describe_topics(names) for entry in topic["partitions"]]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: list[bytes] = []
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            for _tp, records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).items():
                found.extend((r.key or b"") + b"\n" + (r.value or b"") for r in records)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return found


async def every_database_row(url: str) -> list[str]:
    engine = create_async_engine(url)
    rows: list[str] = []
    try:
        async with engine.connect() as connection:
            if url.startswith("sqlite"):
                names = (await connection.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))).scalars()
            else:
                names = (await connection.execute(text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"))).scalars()
            for name in list(names):
                rows.extend(str(tuple(row)) for row in await connection.execute(text(f'SELECT * FROM "{name}"')))
    finally:
        await engine.dispose()
    return rows


def lake_contents(lake: Path) -> list[str]:
    """Every path under the lake and every Parquet file's rows, as text."""
    found = []
    for path in lake.rglob("*"):
        found.append(str(path))
        if path.suffix == ".parquet":
            found.append(str(pq.read_table(path).to_pylist()))
    return found


async def test_no_clear_patient_id_anywhere_after_a_simulated_run(
    simulated_run: dict[str, Any], kafka: Any, worker: WorkerProcess, pg_url: str, lake: Path
) -> None:
    clear_ids = [*simulated_run["patients"], "patient-e2e-warmup", "patient-e2e-seed", "patient-e2e-invalid"]
    topic_messages = await all_topic_bytes(kafka.bootstrap)
    telemetry_rows = await every_database_row(pg_url)
    orders_rows = await every_database_row(f"sqlite+aiosqlite:///{worker.workdir / 'var' / 'orders.db'}")
    lake_text = await asyncio.to_thread(lake_contents, lake)
    log = worker.log_text()
    assert len(topic_messages) > 390 and len(telemetry_rows) > 390 and len(lake_text) > 10 and log
    assert any(pseudonym(worker, p).encode() in message for message in topic_messages for p in simulated_run["patients"])
    for clear_id in clear_ids:
        needle = clear_id.encode()
        assert not any(needle in message for message in topic_messages), f"{clear_id} on a topic"
        assert not any(clear_id in row for row in telemetry_rows + orders_rows), f"{clear_id} in a database"
        assert not any(clear_id in part for part in lake_text), f"{clear_id} in the lake"
        assert clear_id not in log, f"{clear_id} in the worker log"


async def test_the_metrics_endpoints_show_the_pipeline(simulated_run: dict[str, Any], worker: WorkerProcess) -> None:
    status, figures = await asyncio.to_thread(worker.get, "/metrics.json")
    assert status == 200
    assert figures["processed_messages"] >= simulated_run["http"] + simulated_run["kafka"]
    # a new consumer group first catches up on what earlier tests left on the shared broker: those readings
    # count with their real age, so only order and sanity are checked here (the 2 s alert test times one)
    assert 0 < figures["latency_p50_s"] <= figures["latency_p95_s"] <= figures["latency_p99_s"] < 3600
    assert figures["throughput_eps"] > 0 and 0 < figures["valid_pct"] < 100  # one invalid payload was posted
    assert {"CRITICAL_SPO2", "CRITICAL_TEMPERATURE", "CRITICAL_FEVER_HYPOXIA"} <= set(figures["alerts_by_type"])
    status, text_body = await asyncio.to_thread(worker.get, "/metrics")
    assert status == 200
    for series in ('streamapp_alerts_total{alert_type="CRITICAL_SPO2"}', "streamapp_ingest_to_alert_seconds_count",
                   'streamapp_ingested_total{outcome="accepted"}', 'streamapp_batch_size_count{agent="iot"}'):
        assert series in text_body
