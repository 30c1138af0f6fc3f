"""Micro-batches with a latency budget: the batch grows under load and shrinks when idle."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from faust.types import EventT, StreamT

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
        if processing_s > self.budget_s / 2 and self.size > self.minimum:
            self.size = max(self.minimum, self.size // 2)
        elif batch_len >= self.size and processing_s < self.budget_s / 4:
            self.size = min(self.maximum, self.size * 2)
        return self.size


async def micro_batches(
    stream: StreamT, *, agent: str, max_size: int | None = None, within_s: float | None = None
) -> AsyncIterator[Sequence[EventT]]:
    """Yield lists of events without acknowledging them: the caller acks once its sinks hold them.

    The size limit is the largest allowed; `noack_take` waits at most `within_s` for a batch to fill,
    so an idle stream still answers within that time."""
    settings = get_settings()
    limit = max_size or settings.batch_max_size
    within = within_s if within_s is not None else settings.batch_max_wait_s
    async for events in stream.noack_take(limit, within=within):
        metrics.batch_size.labels(agent).observe(len(events))
        if events:
            metrics.consumed_total.labels(events[0].message.topic).inc(len(events))
        yield events  # type: ignore[misc]


async def ack_events(stream: StreamT, events: Sequence[EventT]) -> None:
    """Mark events as done so their offsets can be committed."""
    for event in events:
        await stream.ack(event)


class BatchTimer:
    """Measures one batch's processing for the metrics and the adaptive size."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.started = time.perf_counter()

    def done(self) -> float:
        elapsed = time.perf_counter() - self.started
        metrics.processing_seconds.labels(self.agent).observe(elapsed)
        return elapsed
