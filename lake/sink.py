"""A sink that buffers an agent's lake rows and writes them by size or age; only then are the
events that produced them acknowledged, so a crash never commits an offset whose rows are not on disk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from lake.writer import LakeDataset, SourcePosition, return_freed_memory

Acknowledge = Callable[[], Awaitable[None]]
Writer = Callable[[Callable[[], Awaitable[int]]], Awaitable[int]]


class RowWriter(Protocol):
    """How a sink's rows reach the disk: in a thread of the loop's executor (`ThreadRowWriter`), or in a
    process of their own (`streamapp.sinks.ChildLakeWriter`)."""

    async def write(self, dataset: LakeDataset, rows: list[tuple[dict[str, Any], SourcePosition]]) -> int: ...

    def forget_partition(self, topic: str, partition: int) -> None: ...


class ThreadRowWriter:
    """Writes in a thread: the dataset's own `write`, then the freed memory goes back to the system."""

    async def write(self, dataset: LakeDataset, rows: list[tuple[dict[str, Any], SourcePosition]]) -> int:
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(None, dataset.write, rows)
        await loop.run_in_executor(None, return_freed_memory)
        return written

    def forget_partition(self, topic: str, partition: int) -> None:
        """Nothing beyond the datasets' own marks, which the sink drops itself."""


class LakeSink:
    """Buffers rows for several datasets; `flush` writes all of them, then runs the pending acks."""

    def __init__(
        self, name: str, datasets: Sequence[LakeDataset], *, flush_rows: int, flush_seconds: float,
        writer: RowWriter | None = None,
    ) -> None:
        self.name = name
        self.writer: RowWriter = writer or ThreadRowWriter()
        self.datasets = {dataset.name: dataset for dataset in datasets}
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rows: dict[str, list[tuple[dict[str, Any], SourcePosition]]] = {name: [] for name in self.datasets}
        self._acks: list[Acknowledge] = []
        self.before_acks: list[Callable[[], Awaitable[Any]]] = []  # awaited after a flush's write, before its acks
        self.background_flush: asyncio.Future[int] | None = None  # the flush started off the agent's path
        self._buffered = 0
        self._oldest: float | None = None
        self._lock = asyncio.Lock()
        # highest source offset added per (dataset, topic, partition): an event replayed while its rows
        # still wait in the buffer (a rebalance seeks back to the committed offset) is not added twice
        self._added_up_to: dict[tuple[str, str, int], int] = {}

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    def add(self, dataset: str, rows: Sequence[tuple[dict[str, Any], SourcePosition]]) -> None:
        """Buffer the rows of a batch of events (all rows of one event in one call); rows of events this
        sink already holds or wrote since the partition was assigned are dropped."""
        marks = self._added_up_to
        before = {key: marks[key] for key in {(dataset, p.topic, p.partition) for _, p in rows} if key in marks}
        deliveries: dict[tuple[str, int, int], int] = {}  # the first delivery of each offset in this call
        fresh = []
        for row, position in rows:
            key = (dataset, position.topic, position.partition)
            if position.offset <= before.get(key, -1):
                continue
            first = deliveries.setdefault((position.topic, position.partition, position.offset), position.delivery)
            if first != position.delivery:
                continue  # the same event delivered again within the batch
            fresh.append((row, position))
            marks[key] = max(marks.get(key, -1), position.offset)
        self._rows[dataset].extend(fresh)
        self._buffered += len(fresh)
        if self._oldest is None:
            self._oldest = time.monotonic()

    def on_flushed(self, acknowledge: Acknowledge) -> None:
        """Run `acknowledge` once everything added so far is on disk."""
        self._acks.append(acknowledge)
        if self._oldest is None:
            self._oldest = time.monotonic()

    def due(self) -> bool:
        if self._buffered >= self.flush_rows:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.flush_seconds

    async def flush(self, write: Writer | None = None) -> int:
        """Write every buffered row (off the event loop), then acknowledge. Returns rows written."""
        async with self._lock:
            if self._oldest is None:
                return 0
            rows, self._rows = self._rows, {name: [] for name in self.datasets}
            acks, self._acks = self._acks, []
            self._buffered, self._oldest = 0, None

            async def write_all() -> int:
                total = 0
                for name, dataset_rows in rows.items():
                    if dataset_rows:
                        total += await self.writer.write(self.datasets[name], dataset_rows)
                return total

            try:
                written = await (write(write_all) if write else write_all())
            except BaseException:
                # put everything back so nothing is acknowledged unwritten
                for name, dataset_rows in rows.items():
                    self._rows[name][:0] = dataset_rows
                    self._buffered += len(dataset_rows)
                self._acks[:0] = acks
                self._oldest = self._oldest or time.monotonic()
                raise
            for hook in self.before_acks:
                await hook()
            for acknowledge in acks:
                await acknowledge()
            return written

    def forget_partition(self, topic: str, partition: int) -> None:
        for key in [key for key in self._added_up_to if key[1:] == (topic, partition)]:
            del self._added_up_to[key]
        for dataset in self.datasets.values():
            dataset.forget_partition(topic, partition)
        self.writer.forget_partition(topic, partition)
