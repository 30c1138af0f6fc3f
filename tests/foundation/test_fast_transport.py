"""The batch-draining consumer's delivery loop: a skipped source offset is fetched again, never committed past."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

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
