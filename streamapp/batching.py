"""Micro-batches with a latency budget: the batch grows under load and shrinks when idle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from faust.types import EventT, Message, StreamT

from streamapp import metrics
from streamapp.settings import get_settings


class AdaptiveBatchSize:
    """Doubles the batch size while batches fill up within budget, halves it when they run late."""

    def __init__(self, *, minimum: int = 16, maximum: int | None = None, budget_s: float | None = None) -> None:
        settings = get_settings()
        self.maximum = maximum or settings.batch_max_size
        self.minimum = min(minimum, self.maximum)
        self.budget_s = budget_s if budget_s is not None else settings.latency_budget_ms / 1000.0
        self.size = self.minimum

    def update(self, batch_len: int, processing_s: float) -> int:
        """`batch_len` 0 means the batch left under-filled (idle): the size shrinks too."""
        if (processing_s > self.budget_s / 2 or batch_len == 0) and self.size > self.minimum:
            self.size = max(self.minimum, self.size // 2)
        elif batch_len >= self.size and processing_s < self.budget_s / 4:
            self.size = min(self.maximum, self.size * 2)
        return self.size


POLL_S = 0.002  # how often an under-filled batch looks for more events while it may still wait

try:  # Faust's Cython stream iterator (built with faust-streaming's wheels)
    from faust._cython.streams import StreamIterator as _FastStreamIterator
except ImportError:  # pragma: no cover - pure-Python Faust
    _FastStreamIterator = None


async def micro_batches(
    stream: StreamT, *, agent: str, max_size: int | None = None, within_s: float | None = None
) -> AsyncIterator[Sequence[EventT]]:
    """Yield lists of events without acknowledging them: the caller acks once its sinks hold them.

    A batch is handed over as soon as it reaches the adaptive size (which grows under load, shrinks
    when idle or slow, up to `max_size`), or when no more events are buffered and its first event has
    waited `within_s`. Events are taken straight from the stream's queue through Faust's Cython
    iterator (no nested generators, no background take buffer)."""
    settings = get_settings()
    limit = max_size or settings.batch_max_size
    within = within_s if within_s is not None else settings.batch_max_wait_s
    queue = getattr(stream.channel, "queue", None)
    if queue is None or _FastStreamIterator is None:  # a stream over something else: Faust's timed take
        async for events in cast(Any, stream).noack_take(limit, within=within):
            _observe(agent, events)
            yield events  # type: ignore[misc]
        return
    sizer = AdaptiveBatchSize(minimum=1, maximum=limit)
    batch: list[EventT] = []
    first_at = 0.0
    faust_stream = cast(Any, stream)
    skipped = faust_stream._skipped_value
    enable_acks, stream.enable_acks = stream.enable_acks, False  # the caller acks (as noack_take does)
    faust_stream._finalized = True
    started_here = await faust_stream.maybe_start()
    iterator = _FastStreamIterator(stream)
    try:
        while not faust_stream.should_stop:
            value, sensor_state = await iterator.next()
            event, faust_stream.current_event = faust_stream.current_event, None
            if value is skipped or event is None:  # an old generation's message: Faust acks it unseen
                iterator.after(event, value is skipped, sensor_state)
                continue
            iterator.after(event, False, sensor_state)  # the stream is done with it; acked by `acknowledge`
            if not batch:
                first_at = time.perf_counter()
            batch.append(event)
            if len(batch) < sizer.size:
                if not queue.empty():
                    continue
                while queue.empty() and (left := within - (time.perf_counter() - first_at)) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(min(left, POLL_S))
                if not queue.empty():
                    continue
            full = len(batch) >= sizer.size
            events, batch = batch, []
            _observe(agent, events)
            handed = time.perf_counter()
            yield events
            sizer.update(len(events) if full else 0, time.perf_counter() - handed)
    except StopAsyncIteration:  # a stream over a finite channel ended
        return
    finally:
        stream.enable_acks = enable_acks
        faust_stream._channel_stop_iteration(stream.channel)
        if started_here:
            await faust_stream.stop()
            faust_stream.service_reset()


def _observe(agent: str, events: Sequence[EventT]) -> None:
    metrics.batch_size.labels(agent).observe(len(events))
    if events:
        metrics.consumed_total.labels(events[0].message.topic).inc(len(events))


def acknowledge(stream: StreamT, events: Sequence[EventT]) -> None:
    """Mark events as done so their offsets can be committed (what `Stream.ack` does, without a
    coroutine per event; the stream already reported each event out when it handed it over)."""
    acknowledge_messages(stream, [event.message for event in events])


def acknowledge_messages(stream: StreamT, messages: Sequence[Message]) -> None:
    """`acknowledge` for the events' messages (what `Event.ack` does): a sink that acknowledges only once
    its rows are written keeps these instead of the events, so the decoded records are freed as soon
    as the batch is processed (held by the thousands until a lake flush, they made every collection of
    Python's middle GC generation walk them: up to 300 ms a pause)."""
    if not messages:
        return
    consumer = cast(Any, stream).app.consumer
    message_out = cast(Any, stream)._on_message_out
    for message in messages:
        if message.ack(consumer):  # the last stream holding the message: the consumer may commit its offset
            message_out(message.tp, message.offset, message)


async def ack_events(stream: StreamT, events: Sequence[EventT]) -> None:
    """`acknowledge`, for callers that await their acks."""
    acknowledge(stream, events)


_batches_in_flight: dict[int, float] = {}  # id of a running BatchTimer -> monotonic start


def batch_in_flight_since(horizon_s: float) -> bool:
    """Whether some agent has been processing a batch, started within the last `horizon_s` seconds (an
    agent waiting on a slow sink is busy, not stalled; an older entry is a batch that raised)."""
    now = time.monotonic()
    return any(now - started <= horizon_s for started in _batches_in_flight.values())


def longest_batch_in_flight_s() -> float:
    """How long the oldest batch still being processed has been running (0 when none is)."""
    now = time.monotonic()
    return max((now - started for started in _batches_in_flight.values()), default=0.0)


class BatchTimer:
    """Measures one batch's processing for the metrics and the adaptive size."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.started = time.perf_counter()
        _batches_in_flight[id(self)] = time.monotonic()

    def done(self) -> float:
        _batches_in_flight.pop(id(self), None)
        elapsed = time.perf_counter() - self.started
        metrics.processing_seconds.labels(self.agent).observe(elapsed)
        return elapsed
