"""In-memory Faust testing: the app configured for `agent.test_context()` and topic sends captured."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

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

    monkeypatch.setattr(DeadLetteringTopic, "send", send)
    yield captured


async def wait_for(predicate: Any, within_s: float = 5.0, interval: float = 0.01) -> None:
    """Agents work in micro-batches after `put` returns: wait until `predicate()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(interval)
