"""The stalled-consumer watchdog: which partitions count as stalled, and the remedy ladder it climbs."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import pytest

from streamapp import health, watchdog
from streamapp.watchdog import StallWatch


class TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition

    def __repr__(self) -> str:
        return f"{self.topic}[{self.partition}]"


A, B = TP("iot-measurements", 0), TP("iot-measurements", 1)


def test_a_partition_is_stalled_only_when_messages_wait_and_its_offset_stood_still_for_the_timeout() -> None:
    watch = StallWatch(timeout_s=10)
    assert watch.stalled({A: 5, B: 7}, {A: True, B: False}, now=0) == []
    assert watch.stalled({A: 5, B: 7}, {A: True, B: False}, now=9.9) == []
    assert watch.stalled({A: 5, B: 7}, {A: True, B: False}, now=10) == [A]  # B has nothing waiting


def test_progress_or_an_empty_backlog_restarts_the_clock() -> None:
    watch = StallWatch(timeout_s=10)
    watch.stalled({A: 5}, {A: True}, now=0)
    assert watch.stalled({A: 6}, {A: True}, now=8) == []  # it moved at 8
    assert watch.stalled({A: 6}, {A: True}, now=17) == []
    assert watch.stalled({A: 6}, {A: True}, now=18) == [A]
    assert watch.stalled({A: 6}, {A: False}, now=19) == []  # caught up: no longer a stall
    assert watch.stalled({A: 6}, {A: True}, now=28) == []


def test_partitions_no_longer_assigned_are_forgotten() -> None:
    watch = StallWatch(timeout_s=10)
    watch.stalled({A: 5, B: 1}, {A: True, B: True}, now=0)
    watch.stalled({A: 5}, {A: True}, now=1)
    assert set(watch.progress) == {A}


class FakeConsumer:
    """What the watchdog reads of Faust's consumer, and what its remedies call."""

    def __init__(self, ends: dict[Any, int]) -> None:
        self.ends = ends
        self.flow_active = False
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._paused_partitions = {A}
        self.resumed: list[Any] = []
        self.flow_resumed = 0
        self._read_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self.sought: list[dict[Any, int]] = []
        consumer = self

        class Thread:
            async def seek_wait(self, partitions: dict[Any, int]) -> None:  # Faust's seek in the consumer thread
                consumer.sought.append(dict(partitions))

        self._thread = Thread()

    def assignment(self) -> set[Any]:
        return set(self.ends)

    def _is_changelog_tp(self, tp: Any) -> bool:
        return False

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        return {tp: self.ends[tp] for tp in tps}

    def resume_flow(self) -> None:
        self.flow_resumed += 1

    def resume_partitions(self, tps: Any) -> None:
        self.resumed.extend(tps)


class FakeApp:
    def __init__(self, consumer: FakeConsumer, read: dict[Any, int]) -> None:
        self.consumer = consumer
        self.rebalancing = False
        self.in_recovery = False
        self.monitor = type("Monitor", (), {"tp_read_offsets": read})()
        self.flow_control = type("Flow", (), {"resume": lambda self: None})()


async def test_the_ladder_seeks_and_resumes_then_rejoins_at_every_further_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = FakeApp(FakeConsumer({A: 100, B: 50}), {A: 9, B: 49})  # A: 90 waiting; B: read to the end
    rejoined: list[Any] = []
    monkeypatch.setattr(watchdog, "_rejoin", rejoined.append)
    watch = StallWatch(timeout_s=5)
    assert await watchdog.check(app, watch, now=0) == []
    assert await watchdog.check(app, watch, now=5) == [A]
    assert app.consumer.flow_resumed == 1 and app.consumer.resumed == [A] and not rejoined
    assert app.consumer.sought == [{A: 0}]  # nothing delivered nor committed: from the start, as the group would
    assert "consumer" in health.degraded()
    assert await watchdog.check(app, watch, now=7) == [A] and not rejoined  # a remedy gets its time
    assert await watchdog.check(app, watch, now=10) == [A] and rejoined == [app]
    assert await watchdog.check(app, watch, now=15) == [A] and rejoined == [app, app]
    assert app.consumer.flow_resumed == 1


async def test_an_agent_busy_with_a_batch_is_not_stalled_however_long_the_send_takes() -> None:
    from streamapp.batching import BatchTimer

    app = FakeApp(FakeConsumer({A: 100}), {A: 9})
    watch = StallWatch(timeout_s=5)
    timer = BatchTimer("iot")  # e.g. waiting for acks from a partition whose leader just died
    await watchdog.check(app, watch, now=0)
    assert await watchdog.check(app, watch, now=30) == [] and app.consumer.flow_resumed == 0
    timer.done()
    assert await watchdog.check(app, watch, now=31) == []
    assert await watchdog.check(app, watch, now=36) == [A]


async def test_a_rebalance_or_a_partition_that_moves_again_is_no_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    read = {A: 9}
    app = FakeApp(FakeConsumer({A: 100}), read)
    watch = StallWatch(timeout_s=5)
    await watchdog.check(app, watch, now=0)
    app.rebalancing = True
    assert await watchdog.check(app, watch, now=6) == []
    app.rebalancing = False
    assert await watchdog.check(app, watch, now=6) == [A]
    read[A] = 20
    assert await watchdog.check(app, watch, now=7) == []
    assert "consumer" not in health.degraded() and watch.remedies_tried == 0


async def test_a_sink_holding_its_agent_while_it_retries_is_back_pressure_not_a_stall() -> None:
    app = FakeApp(FakeConsumer({A: 100}), {A: 9})
    watch = StallWatch(timeout_s=5)
    health.mark_degraded("sink:db:iot", "ConnectionRefusedError")
    try:
        await watchdog.check(app, watch, now=0)
        assert await watchdog.check(app, watch, now=30) == [] and app.consumer.flow_resumed == 0
    finally:
        health.mark_recovered("sink:db:iot")
    assert await watchdog.check(app, watch, now=31) == []  # the clock starts when the sink is back
    assert await watchdog.check(app, watch, now=36) == [A]


async def test_messages_the_consumer_delivers_count_as_progress_even_if_no_stream_reads_them() -> None:
    """Undecodable messages are dead-lettered on delivery: the streams' read offsets stand still meanwhile."""
    consumer = FakeConsumer({A: 100})
    consumer._last_delivered = {A: 40}
    consumer._read_offset = defaultdict(lambda: None, {A: 40})
    app = FakeApp(consumer, {A: 9})  # the monitor saw offset 9 only
    watch = StallWatch(timeout_s=5)
    await watchdog.check(app, watch, now=0)
    consumer._last_delivered[A] = consumer._read_offset[A] = 70
    assert await watchdog.check(app, watch, now=6) == []
    assert await watchdog.check(app, watch, now=11) == [A]  # 71..99 still waiting and nothing delivered since
    consumer._last_delivered[A] = consumer._read_offset[A] = 99
    assert await watchdog.check(app, watch, now=12) == []
    assert await watchdog.check(app, watch, now=30) == []  # read to the end: nothing waits, no stall


async def test_a_stalled_partition_is_sought_back_to_its_last_delivered_offset_never_past_it() -> None:
    """The stall seen after a broker restart: aiokafka fetched the partition to its end while none of those
    messages reached a stream; the seek makes them come again (the last delivered one repeated, none skipped)."""
    consumer = FakeConsumer({A: 100, B: 60})
    consumer._last_delivered = {A: 40, B: 30}
    consumer._read_offset.update({A: 40, B: 25})  # B: sought to its committed 25 after a rebalance; 30 is stale
    app = FakeApp(consumer, {})
    watch = StallWatch(timeout_s=5)
    await watchdog.check(app, watch, now=0)
    assert set(await watchdog.check(app, watch, now=5)) == {A, B}
    assert consumer.sought == [{A: 40, B: 25}]
    assert "consumer" in health.degraded()


async def test_a_batch_running_past_the_timeout_is_reported_with_where_its_tasks_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A send or a sink that never answers keeps the agent busy (no stall is flagged): the log says so, once
    per timeout, and names the awaited task's frame, not just the agent's."""
    from streamapp.batching import BatchTimer

    never = asyncio.get_running_loop().create_future()

    async def confirm_results() -> None:
        await never

    async def agent_batch() -> None:
        await asyncio.ensure_future(confirm_results())

    agent = asyncio.ensure_future(agent_batch())
    await asyncio.sleep(0)
    app = FakeApp(FakeConsumer({A: 100}), {A: 99})
    watch = StallWatch(timeout_s=0.05)
    timer = BatchTimer("iot")
    try:
        with caplog.at_level(logging.WARNING, logger="streamapp.watchdog"):
            await watchdog.check(app, watch)
            assert not [r for r in caplog.records if "a batch has been processed" in r.getMessage()]
            await asyncio.sleep(0.06)
            await watchdog.check(app, watch)
            await watchdog.check(app, watch)  # once per timeout
        reports = [r.getMessage() for r in caplog.records if "a batch has been processed" in r.getMessage()]
        assert len(reports) == 1
        assert "agent_batch" in reports[0] and "confirm_results" in reports[0]
    finally:
        timer.done()
        agent.cancel()


async def test_a_batch_held_by_a_sink_retrying_is_not_reported_again(caplog: pytest.LogCaptureFixture) -> None:
    """A database outage holds its batch on purpose and the sink already says so (log and /health)."""
    from streamapp.batching import BatchTimer

    app = FakeApp(FakeConsumer({A: 100}), {A: 99})
    watch = StallWatch(timeout_s=0.05)
    timer = BatchTimer("iot")
    health.mark_degraded("sink:db:iot", "ConnectionRefusedError")
    try:
        await asyncio.sleep(0.06)
        with caplog.at_level(logging.WARNING, logger="streamapp.watchdog"):
            await watchdog.check(app, watch)
        assert not [r for r in caplog.records if "a batch has been processed" in r.getMessage()]
    finally:
        health.mark_recovered("sink:db:iot")
        timer.done()
