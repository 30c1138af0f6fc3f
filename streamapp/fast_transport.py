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

from streamapp.gc_tuning import freeze_startup_objects, raise_young_threshold
from streamapp.settings import get_settings

YIELD_EVERY = 100  # messages delivered between two yields to the event loop (as Faust does)


async def _chain(first: tuple[TP, Message], rest: AsyncIterator[tuple[TP, Message]]) -> AsyncIterator[tuple[TP, Message]]:
    yield first
    async for item in rest:
        yield item


def tune_garbage_collector() -> None:
    """The worker's collector: young collections less often, start-up objects frozen (`streamapp.gc_tuning`)."""
    raise_young_threshold(get_settings().gc_young_threshold)
    freeze_startup_objects()


class ShortFetchWaitThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the broker's fetch wait from the settings (Faust hard-codes 1.5 s:
    a fetch for partitions without new data holds the partitions of the next fetch back that long)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = get_settings().consumer_fetch_max_wait_ms  # read when it starts its fetcher
        return consumer


class BatchDrainingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with one flow-suspension guard per fetched batch instead of per message."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_delivered: dict[TP, int] = {}
        self._refetched_from: dict[TP, int] = {}

    async def on_start(self) -> None:
        tune_garbage_collector()
        await super().on_start()

    async def _deliver(
        self, first: tuple[TP, Message], records: AsyncIterator[tuple[TP, Message]], callback: Callable[..., Any]
    ) -> None:
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        delivered = self._last_delivered
        refetching: set[TP] = set()  # partitions sought back in this batch: their later messages come again
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
            delivered[tp] = offset

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
