"""The batch-draining consumer's delivery loop: a skipped source offset is fetched again, never committed past."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faust.types import TP

from streamapp.fast_transport import BatchDrainingConsumer

SOURCE, CHANGELOG = TP("iot-measurements", 2), TP("app-table-changelog", 0)


class Message:
    def __init__(self, tp: TP, offset: int) -> None:
        self.topic, self.partition, self.offset = tp.topic, tp.partition, offset


def consumer() -> Any:
    """The loop's state without a broker: seeks and gaps are recorded instead of sent."""
    drain: Any = BatchDrainingConsumer.__new__(BatchDrainingConsumer)
    drain._read_offset = defaultdict(lambda: None)
    drain._commit_every = None
    drain._n_acked = 0
    drain._last_delivered, drain._refetched_from = {}, {}
    drain.app = type("App", (), {"topics": type("Topics", (), {"acks_enabled_for": lambda self, t: t == SOURCE.topic})()})()
    drain.log = logging.getLogger("test")
    drain.sought, drain.gaps = [], []

    async def seek(tp: TP, offset: int) -> None:
        drain.sought.append((tp, offset))
        drain._read_offset[tp] = offset

    async def add_gap(tp: TP, first: int, last: int) -> None:
        drain.gaps.append((tp, first, last))

    drain.seek, drain._add_gap = seek, add_gap
    return drain


def seeks_in_thread(drain: Any) -> list[dict[TP, int]]:
    """The consumer thread's `seek_wait` (Faust's seek in aiokafka's thread), recorded: the list it fills."""
    sought: list[dict[TP, int]] = []

    class Thread:
        async def seek_wait(self, partitions: dict[TP, int]) -> None:
            sought.append(dict(partitions))

    drain._thread = Thread()
    return sought


async def deliver(drain: Any, batch: list[tuple[TP, int]]) -> list[tuple[TP, int]]:
    got: list[tuple[TP, int]] = []

    async def callback(message: Message) -> None:
        got.append((TP(message.topic, message.partition), message.offset))

    async def rest() -> AsyncIterator[tuple[TP, Message]]:
        for tp, offset in batch[1:]:
            yield tp, Message(tp, offset)

    await drain._deliver((batch[0][0], Message(*batch[0])), rest(), callback)
    return got


async def test_a_hole_after_a_seek_to_the_committed_offset_is_fetched_again_not_delivered_past() -> None:
    drain = consumer()
    await deliver(drain, [(SOURCE, 17), (SOURCE, 18)])
    drain._read_offset[SOURCE] = 19  # a rebalance sought to the committed offset: the NEXT offset to read
    got = await deliver(drain, [(SOURCE, 20), (SOURCE, 21), (CHANGELOG, 5)])
    assert got == [(CHANGELOG, 5)] and drain.sought == [(SOURCE, 19)] and drain.gaps == []
    got = await deliver(drain, [(SOURCE, 19), (SOURCE, 20), (SOURCE, 21)])  # fetched again from 19
    assert got == [(SOURCE, 19), (SOURCE, 20), (SOURCE, 21)]


async def test_a_hole_in_the_normal_flow_is_fetched_again_and_a_real_gap_is_accepted_the_second_time() -> None:
    drain = consumer()
    await deliver(drain, [(SOURCE, 1), (SOURCE, 2)])
    assert await deliver(drain, [(SOURCE, 5)]) == [] and drain.sought == [(SOURCE, 3)]
    assert await deliver(drain, [(SOURCE, 5)]) == [(SOURCE, 5)]  # the log has no 3 and 4: a real gap
    assert drain.gaps == [(SOURCE, 3, 4)]


async def test_changelog_topics_keep_faust_behaviour_and_nothing_is_delivered_twice_in_order() -> None:
    drain = consumer()
    assert await deliver(drain, [(CHANGELOG, 1), (CHANGELOG, 9), (SOURCE, 0), (SOURCE, 1)]) == [
        (CHANGELOG, 1), (CHANGELOG, 9), (SOURCE, 0), (SOURCE, 1)]
    assert await deliver(drain, [(SOURCE, 0), (SOURCE, 2)]) == [(SOURCE, 2)]
    assert drain.sought == [] and drain.gaps == []


# ---- a fetch that outlives a rebalance ----------------------------------------------------------------
class Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class FetchingConsumer:
    """aiokafka's consumer as the consumer thread's fetch sees it: `fetched_records` may run across a
    rebalance (`during` is called while it waits); seeks are recorded."""

    def __init__(self, app: Any, records: dict[TP, list[Record]], during: Any = None) -> None:
        self._closed = False
        self.sought: list[tuple[TP, int]] = []

        class Subscriptions:
            def fetch_context(self) -> Any:
                return contextlib.nullcontext()

        class Fetcher:
            _closed = False
            _subscriptions = Subscriptions()

            async def fetched_records(self, partitions: Any, timeout: float = 0, max_records: Any = None) -> Any:  # noqa: ASYNC109
                if during is not None:
                    during(app)
                return records

        self._fetcher = Fetcher()

    def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))


def fetch_thread(app: Any) -> Any:
    from streamapp.fast_transport import ShortFetchWaitThread

    thread: Any = ShortFetchWaitThread.__new__(ShortFetchWaitThread)
    thread.consumer = type("Consumer", (), {"app": app, "flow_active": True})()
    app.consumer = thread.consumer
    thread.log = logging.getLogger("test")
    return thread


async def test_records_a_fetch_took_across_a_rebalance_are_put_back_not_lost() -> None:
    """The stall after a broker restart: a fetch asked for before a rebalance took messages after the
    rebalance's seek; its caller was gone, so they were never delivered and never fetched again."""
    app: Any = type("App", (), {"consumer_generation_id": 3})()
    thread = fetch_thread(app)
    other = TP("ecommerce-events", 1)
    taken = {SOURCE: [Record(1), Record(2), Record(3)], other: [Record(40)]}

    def rebalance(app: Any) -> None:
        app.consumer_generation_id = 4

    kafka = FetchingConsumer(app, taken, during=rebalance)
    assert await thread._fetch_records(kafka, {SOURCE, other}, timeout=1.0) == {}
    assert sorted(kafka.sought) == sorted([(SOURCE, 1), (other, 40)])


async def test_a_fetch_while_the_flow_is_stopped_puts_its_records_back_and_a_normal_fetch_hands_them_over() -> None:
    app: Any = type("App", (), {"consumer_generation_id": 3})()
    thread = fetch_thread(app)
    taken = {SOURCE: [Record(7), Record(8)]}

    def revoke(app: Any) -> None:
        app.consumer.flow_active = False  # a rebalance began: Faust stopped the flow

    kafka = FetchingConsumer(app, taken, during=revoke)
    assert await thread._fetch_records(kafka, {SOURCE}, timeout=1.0) == {}
    assert kafka.sought == [(SOURCE, 7)]

    thread.consumer.flow_active = True
    steady = FetchingConsumer(app, taken)
    assert await thread._fetch_records(steady, {SOURCE}, timeout=1.0) == taken
    assert steady.sought == []


async def test_a_fetch_asked_for_before_a_rebalance_but_run_after_it_puts_its_records_back() -> None:
    """Calls wait in the consumer thread's queue: one asked for by a delivery the rebalance cancelled may
    start only once the new generation runs, and must not take that generation's records."""
    app: Any = type("App", (), {"consumer_generation_id": 5})()
    thread = fetch_thread(app)
    taken = {SOURCE: [Record(12)]}
    kafka = FetchingConsumer(app, taken)
    assert await thread._fetch_records(kafka, {SOURCE}, timeout=1.0, asked_in=4) == {}
    assert kafka.sought == [(SOURCE, 12)]
    assert await thread._fetch_records(kafka, {SOURCE}, timeout=1.0, asked_in=5) == taken


async def test_read_offsets_from_before_a_rebalance_are_forgotten_when_partitions_are_assigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read offset recorded by a delivery that outlived the revocation made the new generation skip the
    messages refetched from the committed offset, up to that stale offset."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    handed: list[Any] = []

    async def faust_assigned(self: Any, assigned: Any, generation_id: int = 0) -> None:
        handed.append((set(assigned), generation_id))

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", faust_assigned)
    drain = consumer()
    kept = TP("iot-measurements", 0)
    drain._read_offset.update({SOURCE: 149, kept: 7})
    drain._last_delivered.update({SOURCE: 149, kept: 7})
    await drain.on_partitions_assigned({SOURCE}, 4)
    assert drain._read_offset[SOURCE] is None and SOURCE not in drain._last_delivered
    assert drain._read_offset[kept] == 7  # not in this assignment: untouched here
    assert handed == [({SOURCE}, 4)]
    got = await deliver(drain, [(SOURCE, 15), (SOURCE, 16)])  # refetched from the committed offset 15
    assert got == [(SOURCE, 15), (SOURCE, 16)]


async def test_fetched_messages_faust_did_not_hand_over_are_fetched_again_in_the_same_generation() -> None:
    """Recovery paused the partitions while a fetch was handed over: Faust's `getmany` dropped their messages
    and aiokafka's position was past them; a partition without a committed offset is not sought by Faust."""
    drain = consumer()
    drain.flow_active = True
    drain.app.consumer_generation_id = 3
    sought = seeks_in_thread(drain)
    other, holed = TP("ecommerce-events", 0), TP("ecommerce-events", 1)
    drain._fetched = {SOURCE: [Record(38), Record(41), Record(42)], other: [Record(0), Record(1)],
                      CHANGELOG: [Record(5)], holed: [Record(44)]}
    drain._handled = {SOURCE: 40, CHANGELOG: 5}  # delivered (or skipped as already delivered) up to these
    drain._refetching = {holed}  # the delivery found offsets missing before 44 and sought back itself
    await drain._put_back_undelivered(generation=3)
    assert sought == [{SOURCE: 41, other: 0}]

    drain._fetched = {other: [Record(0)]}  # a rebalance came in between: its seek and new positions decide
    await drain._put_back_undelivered(generation=2)
    drain.flow_active = False
    drain._fetched = {other: [Record(0)]}
    await drain._put_back_undelivered(generation=3)
    assert sought == [{SOURCE: 41, other: 0}]


async def test_the_seek_to_committed_offsets_sends_a_never_committed_stream_partition_to_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust's seek leaves a partition without a committed offset where aiokafka's position is: after its
    messages were cleared from the streams at the end of a recovery, nothing fetched them again."""
    from faust.transport.drivers import aiokafka as faust_aiokafka

    faust_seeks: list[str] = []

    async def faust_perform_seek(self: Any) -> None:
        faust_seeks.append("committed")

    monkeypatch.setattr(faust_aiokafka.Consumer, "perform_seek", faust_perform_seek)
    drain = consumer()
    committed, fresh = TP("ecommerce-events", 0), TP("ecommerce-events", 1)
    drain._committed_offset = defaultdict(lambda: None, {committed: 12})
    drain.assignment = lambda: {committed, fresh, CHANGELOG}
    drain._is_changelog_tp = lambda tp: tp == CHANGELOG
    drain.app.conf = type("Conf", (), {"consumer_auto_offset_reset": "earliest"})()
    sought = seeks_in_thread(drain)
    await drain.perform_seek()
    assert faust_seeks == ["committed"] and sought == [{fresh: 0}]
    drain.app.conf.consumer_auto_offset_reset = "latest"  # the group's policy decides, as for a new member
    await drain.perform_seek()
    assert sought == [{fresh: 0}]


async def test_a_delivery_that_seeks_back_over_a_hole_is_not_overridden_by_the_put_back() -> None:
    """Records 44.. arrived after a seek to the committed offset 2: the delivery seeks back to 2; putting
    back 'the first record not delivered' (44) after that would skip 2-43 for good."""
    drain = consumer()
    drain.flow_active = True
    drain.app.consumer_generation_id = 3
    sought = seeks_in_thread(drain)
    drain._read_offset[SOURCE] = 2  # Faust's seek to the committed offset
    drain._last_delivered[SOURCE] = 43  # delivered before it, during the recovery, then cleared from the streams
    batch = [(SOURCE, 44), (SOURCE, 45)]
    drain._fetched = {SOURCE: [Record(offset) for _, offset in batch]}
    assert await deliver(drain, batch) == []
    await drain._put_back_undelivered(generation=3)
    assert drain.sought == [(SOURCE, 2)] and sought == []


def test_partitions_are_named_in_the_logs_notation_the_first_dozen_only() -> None:
    from streamapp.fast_transport import partitions_named

    offsets = {TP("iot-measurements", partition): 100 + partition for partition in range(15)}
    named = partitions_named(offsets)
    assert named.startswith("iot-measurements[0]@100, iot-measurements[1]@101")
    assert "iot-measurements[11]@111" in named and "[12]" not in named and named.endswith(" and 3 more")
    assert partitions_named({TP("t", 2): 7}) == "t[2]@7" and partitions_named({}) == ""
