"""Fault scenarios on a PRIVATE single-broker Apache Kafka and a private PostgreSQL (MariaDB: a database of
the session's instance). The tests run in order on one consumer group: each produces its own keyed
events, injects a fault mid-stream, lets the system recover and audits every sink: PostgreSQL, MariaDB,
the lake and the output topics hold every id, databases and lake exactly once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, UnknownMemberIdError

from lake.writer import read_dataset
from streamapp.stack import KafkaService, MariaDBService, PostgresService
from tests.faults.conftest import ModelStore, Rig, record_figure, wait_for
from tests.faults.workload import (
    FEATURES_TOPIC,
    IOT,
    ORDERS,
    Sinks,
    Workload,
    _lake_ids,
    produce_sync,
    unique_tag,
)
from tests.kafka_helpers import read_topic
from tests.services import database_server, started

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.fault_scenarios]
N = 300  # events per pipeline and scenario
SOURCES = (IOT, ORDERS, FEATURES_TOPIC)


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaService]:
    """A broker of this module's own: SIGKILLing it disturbs no other test."""
    with started(KafkaService(tmp_path_factory.mktemp("fault-kafka")), "Apache Kafka") as service:
        yield service


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresService]:
    """A PostgreSQL of this module's own: stopping it for 30 s disturbs no other test."""
    yield from database_server(PostgresService, "PostgreSQL", "streamapp-fault-pg-", world_readable=True)


@pytest.fixture(scope="module")
def rig(
    private_kafka: KafkaService, private_postgres: PostgresService, mariadb: MariaDBService,
    model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("fault-rig")
    maria_name = f"faults_{int(time.time())}"
    sinks = Sinks(private_postgres.create_database("faults"), mariadb.create_database(maria_name),
                  workdir / "lake", private_kafka.bootstrap)
    rig = Rig(private_kafka.url, private_kafka.bootstrap, sinks, workdir, {"MLFLOW_TRACKING_URI": model_store.uri()})
    rig.start_worker()
    yield rig
    rig.close()
    with contextlib.suppress(Exception):
        mariadb.drop_database(maria_name)


def run_in_background(target: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target(*args, **kwargs))
        except BaseException as exc:  # re-raised by the test through `out`
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def joined(thread: threading.Thread, out: list[Any], timeout: float = 120.0) -> Any:
    thread.join(timeout)
    assert out, "the producer did not finish"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def some_rows_arrived(rig: Rig, load: Workload) -> bool:
    counts = asyncio.run(rig.sinks.read(load, topics=False))
    return len(counts.found["pg:iot_measurements"]) > 0


def test_broker_sigkill_and_restart_loses_no_acknowledged_record(rig: Rig, private_kafka: KafkaService) -> None:
    load = Workload.build(unique_tag("broker"), N)
    first, second = load.slices(2)
    acked = produce_sync(rig.sinks.bootstrap, first, pace_s=0.05)
    private_kafka.kill()  # SIGKILL mid-stream: the worker loses its broker
    time.sleep(3)
    restarted = time.monotonic()
    private_kafka.start()
    acked += produce_sync(rig.sinks.bootstrap, second)
    assert len(acked) == len(load.messages)
    took = rig.sinks.wait_complete(load, 120, progress=lambda: rig.logs())
    record_figure("broker SIGKILL (single node): restart to all sinks complete", f"{time.monotonic() - restarted:.1f} s")
    duplicates = rig.sinks.audit(load)
    record_figure("broker SIGKILL: duplicate records on output topics", str(duplicates))
    assert took >= 0 and len(rig.running()) == 1, "the worker did not survive its broker's crash"


def test_worker_sigkill_mid_batch_then_restart_completes_every_sink_once(rig: Rig) -> None:
    load = Workload.build(unique_tag("wkill"), N)
    thread, out = run_in_background(produce_sync, rig.sinks.bootstrap, load.messages, pace_s=0.1, chunk=60)
    wait_for(lambda: some_rows_arrived(rig, load), 60, "first rows of the stream")
    (worker,) = rig.running()
    worker.kill()  # SIGKILL in the middle of micro-batches: nothing flushed, nothing committed
    killed = time.monotonic()
    rig.start_worker()
    joined(thread, out)
    rig.sinks.wait_complete(load, 120, progress=lambda: rig.logs())
    record_figure("worker SIGKILL: kill to all sinks complete (incl. restart)", f"{time.monotonic() - killed:.1f} s")
    record_figure("worker SIGKILL: duplicate records on output topics", str(rig.sinks.audit(load)))


def table_digests(worker: Any) -> dict[str, Any]:
    status, body = worker.get("/api/v1/admin/tables")
    assert status == 200, body
    return dict(body["tables"])


def test_a_worker_restarted_after_sigkill_recovers_every_table_exactly(rig: Rig) -> None:
    (worker,) = rig.running()
    load = Workload.build(unique_tag("tables"), 120)
    produce_sync(rig.sinks.bootstrap, load.messages)
    rig.sinks.wait_complete(load, 90, progress=lambda: rig.logs())
    time.sleep(2)  # the last changelog records and the lake acks are out

    before = table_digests(worker)
    deadline = time.monotonic() + 30
    while True:  # wait for the state to settle (two identical digests a second apart)
        time.sleep(1.0)
        current = table_digests(worker)
        if current == before or time.monotonic() > deadline:
            break
        before = current
    used = {name for name, digest in before.items() if digest["keys"]}
    assert {"iot-vitals-5min", "iot-device-last-seen", "seen-event-ids", "anomaly-feature-history"} <= used, before
    worker.kill()
    killed = time.monotonic()
    successor = rig.start_worker()
    took = wait_for(lambda: table_digests(successor) == before, 60, f"tables recovered to {before}")
    record_figure("table recovery after SIGKILL: kill to identical tables",
                  f"{time.monotonic() - killed:.1f} s ({took:.1f} s after the successor was ready)")
    record_figure("tables compared", ", ".join(f"{name}={before[name]['keys']} keys" for name in sorted(used)))


def test_two_workers_one_sigkilled_its_partitions_move_and_processing_continues(rig: Rig) -> None:
    (survivor,) = rig.running()
    joining = rig.start_worker()
    wait_for(lambda: all(w.get("/health")[1]["worker"]["assigned_partitions"] > 0 for w in (survivor, joining)),
             60, "both workers holding partitions")
    load = Workload.build(unique_tag("pair"), N)
    thread, out = run_in_background(produce_sync, rig.sinks.bootstrap, load.messages, pace_s=0.1, chunk=60)
    wait_for(lambda: some_rows_arrived(rig, load), 60, "first rows of the stream")
    joining.kill()
    killed = time.monotonic()
    joined(thread, out)
    rig.sinks.wait_complete(load, 120, progress=lambda: rig.logs())
    record_figure("one of two workers SIGKILLed: kill to all sinks complete (rebalance, no restart)",
                  f"{time.monotonic() - killed:.1f} s")
    record_figure("one of two workers SIGKILLed: duplicate records on output topics", str(rig.sinks.audit(load)))
    assert survivor in rig.running()


def dead_letters_of(bootstrap: str, tag: str) -> list[dict[str, Any]]:
    """Dead letters of this workload's messages; the suite trains no RUL model, so the RUL agent's
    model-not-trained letters (one per feature message, by design) are left out."""
    letters = asyncio.run(read_topic(bootstrap, "dead-letters", within_s=3.0))
    return [m["value"] for m in letters if isinstance(m["value"], dict) and m["value"].get("agent") != "rul"
            and tag.encode() in base64.b64decode(m["value"].get("raw_value_b64", ""))]


def test_database_down_30_s_pauses_consumption_reports_health_and_loses_nothing(
    rig: Rig, private_postgres: PostgresService,
) -> None:
    (worker,) = rig.running()
    load = Workload.build(unique_tag("dbdown"), N)
    private_postgres.kill()
    down_at = time.monotonic()
    produce_sync(rig.sinks.bootstrap, load.messages)

    def degraded() -> bool:
        status, body = worker.get("/health")
        return any(name.startswith("sink:db") for name in body.get("degraded", {}))

    try:
        wait_for(degraded, 20, "/health naming the database sink as degraded")
        status, body = worker.get("/health")
        assert status == 200 and body["status"] == "degraded" and body["database"]["ok"] is False, body
        assert not _lake_ids(rig.sinks.lake, "raw/iot_measurements", "message_id", load.tag), "rows went on"
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        assert rig.running() == [worker], "the worker died while its database was down"
    finally:
        private_postgres.start()  # the next scenarios need it whatever happened here
    back = time.monotonic()
    rig.sinks.wait_complete(load, 90, progress=lambda: rig.logs())
    record_figure("database down 30 s: database back to all sinks complete", f"{time.monotonic() - back:.1f} s")
    rig.sinks.audit(load)
    assert dead_letters_of(rig.sinks.bootstrap, load.tag) == []
    wait_for(lambda: not degraded(), 10, "/health recovered")


async def committed_offsets(bootstrap: str, group: str, topics: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        found = {}
        for topic in topics:
            for partition in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic):
                tp = TopicPartition(topic, partition)
                found[tp] = await consumer.committed(tp) or 0
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def rewind_group(bootstrap: str, group: str, topics: tuple[str, ...]) -> None:
    """Commit offset 0 everywhere for a group with no member: the next worker replays every topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in await _partitions(consumer, t)]
        consumer.assign(partitions)
        await consumer.commit(dict.fromkeys(partitions, 0))
    finally:
        await consumer.stop()


def test_sigterm_under_load_drains_flushes_commits_and_exits_within_10_s(rig: Rig) -> None:
    (worker,) = rig.running()
    load = Workload.build(unique_tag("term"), N)
    thread, out = run_in_background(produce_sync, rig.sinks.bootstrap, load.messages, pace_s=0.1, chunk=60)
    wait_for(lambda: some_rows_arrived(rig, load), 60, "first rows of the stream")
    took = worker.stop(signal.SIGTERM, timeout=30)
    record_figure("SIGTERM under load: signal to exit", f"{took:.1f} s")
    assert took < 10, worker.log_tail()
    acked = joined(thread, out)
    committed = asyncio.run(committed_offsets(rig.sinks.bootstrap, rig.app_id, (IOT,)))
    assert sum(committed.values()) > 0
    counts = asyncio.run(rig.sinks.read(load, topics=False))
    below = {m.value["message_id"] for m, p, o in acked if m.topic == IOT and o < committed[TopicPartition(IOT, p)]}
    assert below, "nothing of this stream was committed before the exit"
    for sink in ("pg:iot_measurements", "lake:raw/iot_measurements"):
        assert below <= set(counts.found[sink]), f"{sink}: committed offsets whose rows are not stored"
    rig.start_worker()
    rig.sinks.wait_complete(load, 120, progress=lambda: rig.logs())
    rig.sinks.audit(load)


def test_a_full_replay_after_a_crash_adds_no_row_to_the_lake(rig: Rig) -> None:
    """Lake writes are effectively-once end to end: the group is rewound to offset 0 on every source topic
    (what a crash right after the lake write and before the commit does, for the whole history), a new
    worker replays everything, and no dataset gains a row."""
    datasets = ("raw/iot_measurements", "bronze/iot_alerts", "silver/critical_alerts", "bronze/anomalies")
    (worker,) = rig.running() or [rig.start_worker()]
    load = Workload.build(unique_tag("replay"), 100)
    produce_sync(rig.sinks.bootstrap, load.messages)
    rig.sinks.wait_complete(load, 90, progress=lambda: rig.logs())
    time.sleep(1.5)  # the last lake flush and commit
    before = {name: read_dataset(rig.sinks.lake, name).num_rows for name in datasets}
    worker.kill()
    deadline = time.monotonic() + 30
    while True:  # the killed member stays in the group until its session (6 s) expires
        try:
            asyncio.run(rewind_group(rig.sinks.bootstrap, rig.app_id, SOURCES))
            break
        except (CommitFailedError, UnknownMemberIdError):
            assert time.monotonic() < deadline, "the group never became empty"
            time.sleep(1.0)
    rewound = asyncio.run(committed_offsets(rig.sinks.bootstrap, rig.app_id, SOURCES))
    assert set(rewound.values()) == {0}
    replayer = rig.start_worker()
    ends = asyncio.run(end_offsets(rig.sinks.bootstrap, SOURCES))
    wait_for(lambda: asyncio.run(committed_offsets(rig.sinks.bootstrap, rig.app_id, SOURCES)) == ends, 120,
             "the replay committed up to the end of every source topic")
    time.sleep(1.0)
    after = {name: read_dataset(rig.sinks.lake, name).num_rows for name in datasets}
    record_figure("full replay: messages replayed", str(sum(ends.values())))
    assert after == before
    rig.sinks.audit(load)
    assert replayer in rig.running()


async def end_offsets(bootstrap: str, topics: tuple[str, ...]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in await _partitions(consumer, t)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()
