"""Pytest fixtures for the real services of the local stack: Kafka, PostgreSQL, MariaDB.

Each service starts once per session on free ports in a private directory. When one cannot start,
its tests are skipped with the reason, except under CI (`CI=true`) where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from streamapp.stack import DatabaseServer, KafkaService, MariaDBService, PostgresService, StackError


class Startable(Protocol):
    def start(self, timeout: float = ...) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def start_or_skip(service: Startable, what: str) -> None:
    """Start `service`; if it cannot, skip the test (fail it under CI) with the one-line reason."""
    try:
        service.start()
    except (StackError, OSError) as exc:
        with contextlib.suppress(Exception):
            service.stop()
        reason = f"{what} could not start: {exc}"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


S = TypeVar("S", bound=Startable)
D = TypeVar("D", bound=DatabaseServer)


@contextlib.contextmanager
def started(service: S, what: str) -> Iterator[S]:
    """`service` started (or the test skipped, see `start_or_skip`) for the block, stopped after it."""
    start_or_skip(service, what)
    try:
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def private_dir(prefix: str, *, world_readable: bool = False) -> Iterator[Path]:
    """A short temp dir removed after the block; `world_readable` lets the `postgres` system user enter it
    (pytest's own tmp dirs are root-only, and long paths overflow unix socket names)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if world_readable:
        path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def database_server(
    server_class: type[D], what: str, prefix: str, *, world_readable: bool = False,
) -> Iterator[D]:
    """A fixture body: a test-only (not durable) `server_class` in a private dir, started for the fixture's
    scope, stopped and removed after it."""
    with (
        private_dir(prefix, world_readable=world_readable) as data_dir,
        started(server_class(data_dir, durable=False), what) as service,
    ):
        yield service


def fresh_database(server: DatabaseServer) -> Iterator[str]:
    """The URL of a new, empty database on `server`, dropped when the fixture ends."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaService]:
    """One Kafka broker (KRaft) for the session; `.url` is `kafka://127.0.0.1:PORT`, `.bootstrap` `host:port`."""
    with started(KafkaService(tmp_path_factory.mktemp("kafka")), "Apache Kafka") as service:
        yield service


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """A factory of topic names no other test (or earlier run) uses: `prefix-testname-random`."""
    test_name = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:60].strip("-")

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test_name}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresService]:
    """The private PostgreSQL 15 instance of the session (fsync off: test data only); `.url` is its
    `postgresql+asyncpg://...` `streamapp` database."""
    yield from database_server(PostgresService, "PostgreSQL", "streamapp-test-pg-", world_readable=True)


@pytest.fixture
def pg_database_url(postgres: PostgresService) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from fresh_database(postgres)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBService]:
    """The private MariaDB 10.11 instance of the session (relaxed flushing: test data only); `.url` is its
    `mysql+aiomysql://...` `orders` database."""
    yield from database_server(MariaDBService, "MariaDB", "streamapp-test-maria-")


@pytest.fixture
def mariadb_database_url(mariadb: MariaDBService) -> Iterator[str]:
    """A fresh, empty MariaDB database for one test, dropped afterwards."""
    yield from fresh_database(mariadb)


async def sql_scalar(url: str, sql: str) -> Any:
    """The one value `sql` selects in the database at `url` (through a fresh engine, disposed after)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(sql))).scalar_one()
    finally:
        await engine.dispose()


SERVICE_MARKERS = {
    "kafka": "broker",
    "postgres": "postgres",
    "pg_database_url": "postgres",
    "mariadb": "mariadb",
    "mariadb_database_url": "mariadb",
}


def mark_service_tests(items: list[pytest.Item]) -> None:
    """Tag each test with the markers of the services its fixtures need (`-m "not broker"` works)."""
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            marker = SERVICE_MARKERS.get(fixture)
            if marker:
                item.add_marker(marker)
