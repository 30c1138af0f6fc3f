"""A Kafka transport whose consumer hands fetched messages to the streams with less per-message overhead.

Faust's `Consumer._drain_messages` wraps every single message in `wait_first(callback, suspend_flow)`,
which creates and cancels two asyncio tasks per message: profiling a trivial agent showed it as the
largest cost on the event loop. Here one `wait_first` guards a whole fetched batch, with the same
meaning: when the flow is suspended (a rebalance), delivery of the rest of the batch is abandoned
and those messages are fetched again from the committed offsets. Everything else is Faust's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import Service

from streamapp.gc_tuning import freeze_startup_objects, raise_thresholds
from streamapp.settings import get_settings

YIELD_EVERY = 100  # messages delivered between two yields to the event loop (as Faust does)
SEEK_TIMEOUT_S = 10.0  # a seek back waits for the partitions' new positions at most this long


def partitions_named(offsets: Any, limit: int = 12) -> str:
    """`topic[partition]@offset, ...` for a mapping of partitions to offsets (the logs' notation), the first
    `limit` of them and how many more: a worker with hundreds of partitions keeps its log lines short."""
    named = [f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in list(offsets.items())[:limit]]
    more = len(offsets) - limit
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


async def seek_back(consumer: Any, offsets: dict[TP, int], log: Any) -> None:
    """Seek partitions to offsets in the consumer's own thread (aiokafka's fetch state lives there), waiting
    for their new positions at most `SEEK_TIMEOUT_S`; a partition revoked meanwhile, or a broker away,
    leaves it to the next rebalance (logged, never raised)."""
    try:
        await asyncio.wait_for(consumer._thread.seek_wait(offsets), SEEK_TIMEOUT_S)
    except Exception as exc:
        log.warning("seeking back %s failed: %r", partitions_named(offsets), exc)


async def _chain(first: tuple[TP, Message], rest: AsyncIterator[tuple[TP, Message]]) -> AsyncIterator[tuple[TP, Message]]:
    yield first
    async for item in rest:
        yield item


def tune_garbage_collector() -> None:
    """The worker's collector: young and middle collections less often, start-up objects frozen
    (`streamapp.gc_tuning`)."""
    settings = get_settings()
    raise_thresholds(settings.gc_young_threshold, settings.gc_middle_threshold)
    freeze_startup_objects()


class ShortFetchWaitThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the broker's fetch wait from the settings (Faust hard-codes 1.5 s:
    a fetch for partitions without new data holds the partitions of the next fetch back that long)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = get_settings().consumer_fetch_max_wait_ms  # read when it starts its fetcher
        return consumer

    async def getmany(self, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's signature)
        """Faust's `getmany`, telling the fetch which generation asked for it."""
        consumer = self._ensure_consumer()
        return await self.call_thread(
            self._fetch_records, consumer, active_partitions, timeout=timeout,
            max_records=consumer._max_poll_records, asked_in=self.consumer.app.consumer_generation_id,
        )

    async def _fetch_records(
        self, consumer: Any, active_partitions: Any, timeout: float | None = None,  # noqa: ASYNC109 (Faust's)
        max_records: int | None = None, asked_in: int | None = None,
    ) -> Any:
        """Faust's fetch (in this thread), which puts back what it took when a rebalance began or ended
        since it was asked for. Such a fetch belongs to a delivery that the rebalance cancelled (it may
        even start only after the rebalance: calls wait in this thread's queue); taking records moves
        aiokafka's positions past them, and if the rebalance's seek to the committed offsets came first,
        nothing would ever fetch them again (seen after a broker restart: partitions with messages
        waiting, never read). Seeking each partition back to its first record undoes it."""
        app = self.consumer.app
        generation = app.consumer_generation_id if asked_in is None else asked_in
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout, max_records=max_records)
        if records and (generation != app.consumer_generation_id or not self.consumer.flow_active):
            put_back = {}
            for tp, taken in records.items():
                if taken:
                    with contextlib.suppress(Exception):  # revoked meanwhile: its new owner starts from the commit
                        consumer.seek(tp, taken[0].offset)
                        put_back[tp] = taken[0].offset
            self.log.info("a fetch outlived a rebalance (generation %s -> %s): put back %s",
                          generation, app.consumer_generation_id, partitions_named(put_back) or "nothing")
            return {}
        return records


class BatchDrainingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with one flow-suspension guard per fetched batch instead of per message."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_delivered: dict[TP, int] = {}
        self._refetched_from: dict[TP, int] = {}
        self._fetched: Any = None
        self._handled: dict[TP, int] = {}  # of the batch being delivered
        self._refetching: set[TP] = set()

    async def on_start(self) -> None:
        tune_garbage_collector()
        await super().on_start()

    async def perform_seek(self) -> None:
        """Faust's seek of every partition to its committed offset, and of a stream partition without one
        to its start (the group's `earliest` reset). Faust leaves the latter where it was: messages
        fetched during a rebalance's recovery and cleared from the streams when they resume were then
        never fetched again (seen after a broker restart, before the group's first commit)."""
        await super().perform_seek()
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return
        never_committed = {tp: 0 for tp in self.assignment()
                           if not self._is_changelog_tp(tp) and self._committed_offset.get(tp) is None}
        if never_committed:
            await seek_back(self, never_committed, self.log)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Forget what was read of the assigned partitions before this rebalance. Faust drops the read
        offsets of revoked partitions, but a delivery still running when the rebalance began can record
        one after that; left there, it made the new generation skip every message up to it (refetched
        from the committed offset before Faust's seek updates the read offsets), and the partition
        stood still with messages waiting (seen after a broker restart)."""
        for tp in assigned:
            self._read_offset.pop(tp, None)
            self._last_delivered.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)

    async def _deliver(
        self, first: tuple[TP, Message], records: AsyncIterator[tuple[TP, Message]], callback: Callable[..., Any]
    ) -> None:
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        delivered = self._last_delivered
        # partitions sought back in this batch: their later messages come again
        refetching: set[TP] = set()
        handled: dict[TP, int] = {}  # per partition, the last offset delivered or skipped as already seen
        self._refetching, self._handled = refetching, handled
        since_yield = 0
        async for tp, message in _chain(first, records):
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            if tp in refetching:
                continue
            offset = message.offset
            read_offset = get_read_offset(tp)
            if read_offset is not None and offset < read_offset:
                handled[tp] = offset
                continue  # already delivered (Faust drops it the same way)
            if read_offset is not None and acks_enabled_for(message.topic):
                # Faust keeps the last delivered offset here, but a seek stores the NEXT offset to read
                expected = read_offset + 1 if delivered.get(tp) == read_offset else read_offset
                if offset > expected and await self._skipped(tp, expected, offset):
                    refetching.add(tp)
                    continue
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(message)
            set_read_offset(tp, offset)
            delivered[tp] = handled[tp] = offset

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109 (Faust's signature)
        records, active_partitions = await super()._wait_next_records(timeout)
        self._fetched = records  # what aiokafka handed over (its positions are past all of it now)
        return records, active_partitions

    async def _put_back_undelivered(self, generation: int) -> None:
        """Fetched messages that did not reach the streams: Faust's `getmany` drops those of a partition
        no longer active when it hands them over (recovery paused it meanwhile), and stops at a stopped flow
        or a new generation. aiokafka's position is past them all. A rebalance re-derives positions, but
        in the same generation nothing would fetch them again (a partition without a committed offset is
        not even sought by Faust's seek to the committed offsets: seen after a broker restart, its messages
        waited unread). Those are sought back to the first one not delivered."""
        fetched, self._fetched = self._fetched, None
        if not isinstance(fetched, dict):
            return
        handled, sought_back = self._handled, self._refetching
        self._handled, self._refetching = {}, set()
        undelivered: dict[TP, int] = {}
        for tp, records in fetched.items():
            if tp in sought_back:  # the delivery found a hole and sought back itself
                continue
            last = handled.get(tp, -1)
            if records and records[-1].offset > last:  # (the usual case, all handled, costs no scan)
                undelivered[tp] = next(record.offset for record in records if record.offset > last)
        if not undelivered:
            return
        same_generation = self.flow_active and generation == self.app.consumer_generation_id
        self.log.info("fetched but not delivered (flow_active=%s, generation %s -> %s): %s%s", self.flow_active,
                      generation, self.app.consumer_generation_id, partitions_named(undelivered),
                      ": fetching them again" if same_generation else ": the rebalance seeks them")
        if same_generation:
            await seek_back(self, undelivered, self.log)

    async def _skipped(self, tp: TP, expected: int, offset: int) -> bool:
        """Offsets `expected`..`offset - 1` of a source topic never came. Faust would count them as a gap
        (compaction, transaction markers) and its commit would pass them: messages lost. Seek back once to
        fetch them again (True); when the same hole comes back it is a real gap of the log (False)."""
        if self._refetched_from.get(tp) == expected:
            await self._add_gap(tp, expected, offset - 1)
            return False
        self._refetched_from[tp] = expected
        self.log.warning("offsets %d-%d of %s[%d] were not delivered: fetching them again",
                         expected, offset - 1, tp.topic, tp.partition)
        await self.seek(tp, expected)
        return True

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                generation = self.app.consumer_generation_id
                records = cast(AsyncGenerator[tuple[TP, Message], None], self.getmany(timeout=1.0))
                await self.sleep(0)
                try:
                    # the fetch (and its wait while the flow is suspended) happens here, unguarded, as in Faust
                    first = None if self.should_stop else await anext(records, None)
                    if first is not None:
                        await self.wait_first(self._deliver(first, records, self.callback), self.suspend_flow.wait())
                finally:
                    with contextlib.suppress(RuntimeError):  # a cancelled delivery may still hold it
                        await records.aclose()
                    if consumer_should_stop() or fetcher_should_stop():
                        self._fetched = None  # stopping (or a rebalance restarts the fetcher): nothing to put back
                    else:
                        await self._put_back_undelivered(generation)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class BatchDrainingTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `BatchDrainingConsumer`."""

    Consumer = BatchDrainingConsumer
