"""In-memory Faust testing: the app configured for `agent.test_context()` and topic sends captured."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import faust
import pytest

from streamapp import publishing
from streamapp.deadletters import DeadLetteringTopic


class CapturedSends:
    """What agents sent, per topic name: lists of (key, value)."""

    def __init__(self) -> None:
        self.by_topic: dict[str, list[tuple[Any, Any]]] = defaultdict(list)

    def values(self, topic: str) -> list[Any]:
        return [value for _, value in self.by_topic[topic]]


@pytest.fixture
def faust_app() -> Any:
    """The streamapp app, finalised for in-memory tests (no broker)."""
    from streamapp.app import app

    app.finalize()
    app.discover()
    app.flow_control.resume()
    return app


@pytest.fixture
def captured_sends(monkeypatch: pytest.MonkeyPatch, faust_app: Any) -> Iterator[CapturedSends]:
    """Replace every topic send with an in-memory capture that resolves at once."""
    captured = CapturedSends()

    async def send(self: DeadLetteringTopic, *args: Any, key: Any = None, value: Any = None, **kwargs: Any) -> Any:
        if args:
            key = args[0] if len(args) > 0 else key
            value = args[1] if len(args) > 1 else value
        captured.by_topic[self.get_topic_name()].append((key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def send_records(messages: Any) -> list[Any]:  # streamapp.publishing's path goes through `send` too
        # a value that is not a record (a result prepared as JSON) is captured as the topic's record type
        # read back from the bytes it publishes
        return [await topic.send(key=key, value=value if isinstance(value, faust.Record)
                                 else topic.value_type.loads(value.dumps())) for topic, key, value in messages]

    async def send_raw(messages: Any) -> list[Any]:  # table changelogs: captured as (key, value) bytes
        confirmations = []
        for topic, key, value, _partition, _headers in messages:
            captured.by_topic[topic].append((key, value))
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            confirmations.append(done)
        return confirmations

    monkeypatch.setattr(DeadLetteringTopic, "send", send)
    monkeypatch.setattr(publishing, "send_records", send_records)
    monkeypatch.setattr(publishing, "send_raw", send_raw)
    yield captured


async def wait_for(predicate: Any, within_s: float = 5.0, interval: float = 0.01) -> None:
    """Agents work in micro-batches after `put` returns: wait until `predicate()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(interval)


@asynccontextmanager
async def isolated_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget: Callable[[], None], **extra_env: str
) -> AsyncIterator[Path]:
    """Settings pointing at `tmp_path` (var dir, lake, SQLite telemetry), lake rows flushed at once, any
    `extra_env`, and a pipeline's cached state emptied by `forget` before and after."""
    from streamapp.db.engines import dispose_all

    for name, value in {
        "STREAMAPP_VAR_DIR": str(tmp_path / "var"), "STREAMAPP_LAKE_DIR": str(tmp_path / "lake"),
        "STREAMAPP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}",
        "STREAMAPP_LAKE_FLUSH_SECONDS": "0", **extra_env,
    }.items():
        monkeypatch.setenv(name, value)
    await dispose_all()
    forget()
    yield tmp_path
    await dispose_all()
    monkeypatch.undo()
    forget()


def forget_pipeline_state(history: Any, figures: Any, *tables: Any) -> None:
    """Empty a model pipeline's cached settings, schema state, history table, other tables and figures."""
    from streamapp.db import migrate
    from streamapp.settings import get_settings

    get_settings.cache_clear()
    migrate._current.clear()
    history.table.data.clear()
    history.discard_pending()
    for table in tables:
        table.data.clear()
    figures.__init__()


class Serving:
    """Controls what a production-model watcher serves, without a registry."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, watcher: Any) -> None:
        self.watcher = watcher
        monkeypatch.setattr(watcher, "model", None)
        monkeypatch.setattr(watcher, "version", None)
        monkeypatch.setattr(watcher, "_next_check", math.inf)  # never asks the registry

    def serve(self, model: Any, version: str) -> None:
        self.watcher.model, self.watcher.version = model, version


def pipeline_fixtures(env_name: str, forget: Callable[[], None], watcher: Callable[[], Any]) -> tuple[Any, Any]:
    """A model pipeline's `<env_name>` fixture (`isolated_env` with its `forget`) and its `serving`
    fixture (a `Serving` of `watcher()`); assign both in the pipeline's conftest."""

    @pytest.fixture(name=env_name)
    async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
        async with isolated_env(tmp_path, monkeypatch, forget) as path:
            yield path

    @pytest.fixture(name="serving")
    def serving(monkeypatch: pytest.MonkeyPatch) -> Serving:
        return Serving(monkeypatch, watcher())

    return env, serving
