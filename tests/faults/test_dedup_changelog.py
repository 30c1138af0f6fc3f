"""The returns dedup table writes its changelog to the partition the producer's partitioner would pick,
without asking the broker (right after a broker failure the metadata lacks the topic: that crashed the
returns agent in a loop, found by the three-broker fault scenario), and prunes with Faust's tombstones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streamapp import publishing
from tests.faust_testing import faust_app  # noqa: F401


async def test_remember_and_prune_changelog_to_the_partitioner_partition_without_metadata(
    faust_app: Any, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from tables.dedup import prune, remember, seen_event_ids

    sent: list[tuple[int, bytes, Any]] = []

    async def send_raw(messages: Any) -> list[Any]:
        confirmations = []
        for topic, key, value, partition, _headers in messages:
            assert topic == seen_event_ids.changelog_topic.get_topic_name()
            sent.append((partition, key, value))
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            confirmations.append(done)
        return confirmations

    monkeypatch.setattr(publishing, "send_raw", send_raw)
    monkeypatch.setattr(seen_event_ids, "partition_for_key", lambda key: pytest.fail("asked the broker metadata"))
    ids = [f"event-{i}" for i in range(50)]
    try:
        assert await remember(ids, now=1000.0) == 50
        partitions = list(range(faust_app.conf.topic_partitions))
        expected = [DefaultPartitioner()(i.encode(), partitions, partitions) for i in ids]
        assert [(p, k) for p, k, _ in sent] == [(p, i.encode()) for p, i in zip(expected, ids, strict=True)]
        assert all(seen_event_ids.data[i.encode()] == 1000.0 for i in ids) and len(set(expected)) > 1
        first_value = seen_event_ids.changelog_topic.as_future_message(
            key=b"event-0", value=1000.0, key_serializer=seen_event_ids.key_serializer,
            value_serializer=seen_event_ids.value_serializer, partition=0,
        ).message.value
        assert sent[0][2] == first_value  # Faust's own bytes, so recovery reads it back
        sent.clear()
        assert await prune(now=1000.0 + 10 * 86_400) == 50
        assert sorted(sent) == sorted((p, i.encode(), None) for p, i in zip(expected, ids, strict=True))
        assert not any(i.encode() in seen_event_ids.data for i in ids)
    finally:
        for event_id in ids:
            seen_event_ids.data.pop(event_id.encode(), None)


async def test_a_tombstone_is_fausts_and_a_key_set_again_is_not_deleted(faust_app: Any) -> None:  # noqa: F811
    from tables.changelog import DeferredChangelog, changelog_message, current_messages
    from tables.dedup import seen_event_ids

    tombstone = changelog_message(seen_event_ids, b"gone", None, 3, value_serializer="raw")
    faust = seen_event_ids.changelog_topic.as_future_message(
        key=b"gone", value=None, partition=3, key_serializer=seen_event_ids.key_serializer, value_serializer="raw",
    ).message
    assert tombstone[1:4] == (faust.key, faust.value, 3) and tombstone[2] is None
    changelog = DeferredChangelog("test")
    seen_event_ids.data[b"back"] = 5.0
    try:
        changelog.mark_deleted(seen_event_ids, b"back", 1)
        changelog.mark(seen_event_ids, b"back", 1)  # set again before the hand-over: its value, not a tombstone
        changelog.mark_deleted(seen_event_ids, b"gone", 3)
        messages = current_messages(changelog._dirty.values())
        assert [(key, value is None) for _, key, value, _, _ in messages] == [
            (changelog_message(seen_event_ids, b"back", 5.0, 1)[1], False), (tombstone[1], True)]
    finally:
        seen_event_ids.data.pop(b"back", None)
