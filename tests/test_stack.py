"""The local stack really runs: Kafka carries a message, both databases answer SQL, the CLI cleans up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from streamapp.stack import KafkaService, PostgresService, StackError, _pid_alive, kafka_broker_ids
from tests.services import sql_scalar

REPO = Path(__file__).resolve().parents[1]


async def test_kafka_round_trips_a_message_with_aiokafka(
    kafka: KafkaService, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("stack")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"device-1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap, group_id=f"{topic}-group", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"device-1", b"hello")
    assert kafka.url == f"kafka://{kafka.bootstrap}"


async def _execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for sql in statements:
                await connection.execute(text(sql))
    finally:
        await engine.dispose()


async def test_postgres_answers_select_1_through_sqlalchemy_asyncpg(pg_database_url: str) -> None:
    assert pg_database_url.startswith("postgresql+asyncpg://streamapp:")
    assert await sql_scalar(pg_database_url, "SELECT 1") == 1
    assert await sql_scalar(pg_database_url, "SELECT current_database()") == pg_database_url.rsplit("/", 1)[1]


async def test_mariadb_answers_select_1_through_sqlalchemy_aiomysql(mariadb_database_url: str) -> None:
    assert mariadb_database_url.startswith("mysql+aiomysql://streamapp:")
    assert await sql_scalar(mariadb_database_url, "SELECT 1") == 1
    assert "MariaDB" in str(await sql_scalar(mariadb_database_url, "SELECT version()"))


async def test_killed_postgres_restarts_on_the_same_port_with_its_data(postgres: PostgresService) -> None:
    port, pid = postgres.port, postgres.pid
    await _execute(postgres.url, "CREATE TABLE survivor (n int)", "INSERT INTO survivor VALUES (7)")
    postgres.kill()
    assert pid is not None and not _pid_alive(pid, postgres.marker)
    postgres.start()
    assert postgres.port == port and postgres.pid not in (None, pid)
    assert await sql_scalar(postgres.url, "SELECT sum(n) FROM survivor") == 7


def _stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamapp.stack", *args], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_cli_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    env = {**os.environ, "STREAMAPP_VAR_DIR": str(tmp_path / "var")}
    up = _stack(env, "up", "--only", "kafka")
    assert up.returncode == 0, up.stderr
    state_dir = tmp_path / "var" / "stack"
    url = (state_dir / "kafka.url").read_text().strip()
    pids = [proc["pid"] for proc in json.loads((state_dir / "kafka.json").read_text())["processes"]]
    markers = [proc["marker"] for proc in json.loads((state_dir / "kafka.json").read_text())["processes"]]
    try:
        assert url.startswith("kafka://127.0.0.1:") and url in up.stdout
        assert kafka_broker_ids(url.split("://", 1)[1]) == {1}
        again = _stack(env, "up", "--only", "kafka")
        assert again.returncode == 0 and "already running" in again.stdout
        status = _stack(env, "status", "--only", "kafka")
        assert status.returncode == 0 and "up" in status.stdout.split() and url in status.stdout
    finally:
        down = _stack(env, "down")
    assert down.returncode == 0, down.stderr
    assert not any(_pid_alive(pid, marker) for pid, marker in zip(pids, markers, strict=True))
    assert not (state_dir / "kafka.url").exists()
    status = _stack(env, "status", "--only", "kafka")
    assert "stopped" in status.stdout


def test_up_without_java_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STREAMAPP_VAR_DIR": str(tmp_path / "var"),
        "STREAMAPP_STACK_CACHE_DIR": str(tmp_path / "cache"),  # no jars cached: they would need java and mvn
        "PATH": str(Path(sys.executable).parent),
    }
    started = time.monotonic()
    result = _stack(env, "up", "--only", "kafka")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "java" in result.stderr
    assert time.monotonic() - started < 30


def test_unknown_service_is_refused() -> None:
    with pytest.raises(StackError, match="unknown service"):
        from streamapp.stack import _parse_only

        _parse_only("kafka,redis")


def test_kafka_cluster_ids_never_start_with_a_dash() -> None:
    """The storage tool reads `-t -xyz` as an option: about one random id in 64 starts with `-`."""
    from streamapp.stack import _kafka_cluster_id

    ids = [_kafka_cluster_id() for _ in range(3000)]
    assert all(len(cluster_id) == 22 for cluster_id in ids)
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert len(set(ids)) == len(ids)
