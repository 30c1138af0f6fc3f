"""The shared production-model watcher: loads what the alias points at, polls, swaps, survives failures."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from streamapp.model_watch import ProductionModel


class FakeRegistry:
    """Stands in for models.registry: an alias that tests move, and a count of loads."""

    def __init__(self) -> None:
        self.alias: str | None = None
        self.fail: Exception | None = None
        self.loads: list[str] = []
        self.threads: set[str] = set()

    def resolve(self, name: str) -> str | None:
        self.threads.add(threading.current_thread().name)
        if self.fail is not None:
            raise self.fail
        return self.alias

    def fetch(self, name: str, version: str) -> Path:
        return Path(f"/models/{name}/{version}")

    def load(self, path: Path) -> str:
        self.loads.append(path.name)
        return f"model from {path}"


def watcher_on(registry: FakeRegistry, poll_seconds: float = 60.0) -> ProductionModel[str]:
    return ProductionModel(
        "returns", registry.load, poll_seconds=poll_seconds, resolve=registry.resolve, fetch=registry.fetch
    )


async def test_nothing_promoted_leaves_no_model_and_says_not_trained() -> None:
    registry = FakeRegistry()
    watcher = watcher_on(registry)
    assert await watcher.refresh_if_due() is False
    assert watcher.model is None and watcher.version is None
    status = watcher.status()
    assert status["ready"] is False and status["reason"] == "model-not-trained"
    assert status["checked_at"] is not None


async def test_promoted_version_is_loaded_in_an_executor_thread() -> None:
    registry = FakeRegistry()
    registry.alias = "1"
    watcher = watcher_on(registry)
    assert await watcher.refresh_if_due() is True
    assert watcher.model == "model from /models/returns/1" and watcher.version == "1"
    assert threading.main_thread().name not in registry.threads


async def test_a_newly_promoted_version_is_picked_up_only_once_the_poll_interval_passed() -> None:
    registry = FakeRegistry()
    registry.alias = "1"
    watcher = watcher_on(registry, poll_seconds=0.2)
    await watcher.refresh_if_due()
    registry.alias = "2"
    assert await watcher.refresh_if_due() is False  # not due yet
    assert watcher.version == "1"
    watcher._next_check = 0.0  # the interval has passed
    assert await watcher.refresh_if_due() is True
    assert watcher.version == "2" and registry.loads == ["1", "2"]


async def test_an_unchanged_alias_is_not_loaded_again() -> None:
    registry = FakeRegistry()
    registry.alias = "3"
    watcher = watcher_on(registry, poll_seconds=0.0)
    for _ in range(3):
        await watcher.refresh_if_due()
    assert registry.loads == ["3"]


async def test_registry_failure_keeps_the_current_model_and_reports_the_error() -> None:
    registry = FakeRegistry()
    registry.alias = "1"
    watcher = watcher_on(registry, poll_seconds=0.0)
    await watcher.refresh_if_due()
    registry.fail = ConnectionError("tracking server down")
    assert await watcher.refresh_if_due() is False
    assert watcher.model == "model from /models/returns/1"
    assert "tracking server down" in watcher.status()["error"]
    registry.fail = None
    await watcher.refresh_if_due()
    assert watcher.status()["error"] is None


async def test_callers_wait_for_the_first_check_instead_of_seeing_no_model() -> None:
    registry = FakeRegistry()
    registry.alias = "1"
    slow_resolve = registry.resolve

    def resolve(name: str) -> str | None:
        time.sleep(0.2)  # a registry that takes a while the first time (MLflow start-up)
        return slow_resolve(name)

    watcher = ProductionModel("returns", registry.load, poll_seconds=60.0, resolve=resolve, fetch=registry.fetch)
    poller = asyncio.create_task(watcher.refresh_if_due())
    await asyncio.sleep(0.05)  # the poller holds the first check
    await watcher.refresh_if_due()
    assert watcher.model == "model from /models/returns/1"
    await poller
    assert registry.loads == ["1"]
