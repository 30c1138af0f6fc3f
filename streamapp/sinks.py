"""What every sink shares: a write is retried with back-off until it succeeds, and while it fails the
agent waits (so consumption pauses) and `/health` says why. Nothing is dropped or dead-lettered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from streamapp import health, metrics
from streamapp.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


async def write_with_retry(sink: str, write: Callable[[], Awaitable[T]]) -> T:
    """Run `write` until it succeeds, backing off exponentially up to `sink_retry_max_s` between tries."""
    delay = 0.2
    ceiling = get_settings().sink_retry_max_s
    attempt = 0
    while True:
        try:
            result = await write()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt += 1
            metrics.sink_failures_total.labels(sink).inc()
            health.mark_degraded(f"sink:{sink}", f"{type(exc).__name__}: {str(exc)[:200]} (attempt {attempt})")
            if attempt == 1:
                log.warning("sink %s failed, retrying with back-off: %s", sink, exc)
            await asyncio.sleep(delay)
            delay = min(ceiling, delay * 2)
            continue
        if attempt:
            health.mark_recovered(f"sink:{sink}")
            log.info("sink %s recovered after %d failed attempts", sink, attempt)
        return result


# ---- lake sinks shared by the agents -------------------------------------------------------------
from faust.types import EventT, StreamT  # noqa: E402

from lake import offload  # noqa: E402
from lake.sink import LakeSink, ThreadRowWriter  # noqa: E402
from lake.writer import LakeDataset, SourcePosition  # noqa: E402
from streamapp.batching import acknowledge_messages  # noqa: E402
from streamapp.child_process import ChildProcess, background_priority, offloading  # noqa: E402

_lake_sinks: list[LakeSink] = []


class ChildLakeWriter:
    """Lake writes in the worker's lake process (`lake.offload`): the rows' conversion to Arrow and the
    Parquet writer's Python side no longer share the loop's core; the process runs at a lower CPU priority
    (`streamapp.child_process.background_priority`) so its flush bursts do not delay alerts
    (`STREAMAPP_CHILD_PROCESSES=false`: a thread, as `lake.sink.ThreadRowWriter`)."""

    def __init__(self) -> None:
        self.child = ChildProcess("lake", background_priority)
        self.thread = ThreadRowWriter()

    async def write(self, dataset: LakeDataset, rows: list[tuple[dict[str, Any], SourcePosition]]) -> int:
        if not offloading():
            return await self.thread.write(dataset, rows)
        return await self.child.run(
            offload.write_rows, str(dataset.root), dataset.name, dataset.schema, list(dataset.partition_by),
            offload.shipped(rows), dataset.shape, dataset.columns,
        )

    def forget_partition(self, topic: str, partition: int) -> None:
        self.child.submit(offload.forget_partition, topic, partition)


lake_writer = ChildLakeWriter()  # one lake process for every sink of the worker


def position_of(event: EventT) -> SourcePosition:
    message = event.message
    return SourcePosition(message.topic, message.partition, message.offset, id(message))


def lake_sink(name: str, datasets: list[LakeDataset]) -> LakeSink:
    """Create a lake sink that the app flushes on its timer, on rebalance and at shutdown."""
    settings = get_settings()
    sink = LakeSink(
        name, datasets, flush_rows=settings.lake_flush_rows, flush_seconds=settings.lake_flush_seconds,
        writer=lake_writer,
    )
    _lake_sinks.append(sink)
    return sink


def lake_dataset(
    name: str, schema: Any, partition_by: list[str], shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    columns: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None,
) -> LakeDataset:
    """A dataset under the configured lake root (`shape`, `columns`: see `LakeDataset`)."""
    return LakeDataset(get_settings().lake_path, name, schema, partition_by, shape, columns)


async def flush_lake(sink: LakeSink) -> int:
    written = await sink.flush(lambda write: write_with_retry(f"lake:{sink.name}", write))
    if written:
        metrics.sink_rows_total.labels(f"lake:{sink.name}").inc(written)
    return written


# a sink whose writer is this many flushes behind makes its agent wait (bounded memory, back-pressure)
BUFFERED_FLUSHES_MAX = 2
def flush_in_background(sink: LakeSink) -> asyncio.Future[int]:
    """Start a flush of `sink` unless one is running; the running or new flush."""
    task = sink.background_flush
    if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
        task = sink.background_flush = asyncio.ensure_future(_flush_while_due(sink))
    return task


async def _flush_while_due(sink: LakeSink) -> int:
    """Flush, and again while rows that arrived meanwhile are already due (nobody else may ask)."""
    written = await flush_lake(sink)
    while sink.due():
        written += await flush_lake(sink)
    return written


async def ack_after_lake(sink: LakeSink, stream: StreamT, events: list[EventT]) -> None:
    """Acknowledge `events` once the lake holds their rows. A due sink is flushed in the background,
    so the agent goes on with its next batch meanwhile; it waits only when the writer falls behind by
    `BUFFERED_FLUSHES_MAX` flushes' worth of rows."""

    messages = [event.message for event in events]  # not the events: their records are freed meanwhile

    async def acknowledge_events() -> None:
        acknowledge_messages(stream, messages)

    sink.on_flushed(acknowledge_events)
    while sink.buffered_rows >= sink.flush_rows * BUFFERED_FLUSHES_MAX:
        await flush_in_background(sink)
    if sink.due():
        flush_in_background(sink)


_drains: list[Callable[[], Awaitable[None]]] = []


def drain_before_forced_flush(drain: Callable[[], Awaitable[None]]) -> None:
    """`drain` (an agent's wait for the batches it is still storing) runs before every forced flush, so
    those batches' acks are registered and the flush at a rebalance or a shutdown acknowledges them."""
    _drains.append(drain)


async def flush_due_lake_sinks(force: bool = False) -> None:
    if force:
        for drain in list(_drains):
            await drain()
    for sink in list(_lake_sinks):
        if force or sink.due():
            await flush_lake(sink)


def forget_revoked(revoked: set[Any]) -> None:
    for sink in _lake_sinks:
        for tp in revoked:
            sink.forget_partition(tp.topic, tp.partition)
