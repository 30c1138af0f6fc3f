"""Table changelogs produced straight through the producer (`tables.changelog`): the bytes are those of
Faust's own `send_changelog`, each changed entry goes once with its latest value, entries no longer held
are skipped, and a batch the broker refuses is sent again until it takes it."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from streamapp import publishing, settings
from tests.faust_testing import faust_app  # noqa: F401

ODD_VALUES: list[Any] = [
    {"partition": 3, "windows": {"1700000000": {"count": 2, "hr": [60.5, 71.0]}}, "offsets": [None, 7]},
    {"text": "quote \" and \\ and é", "nested": [[1, 2], {"a": None}], "flag": True},
    {"big": 2**53 + 1, "small": -1e-308, "nan": math.nan},
    [],
    "plain",
]


def faust_bytes(table: Any, key: Any, value: Any, partition: int) -> tuple[Any, Any]:
    """What Faust's `table.send_changelog(partition, key, value)` would hand its producer (its future
    message needs a running event loop: callers are async tests)."""
    message = table.changelog_topic.as_future_message(
        key=key, value=value, partition=partition, key_serializer=table.key_serializer,
        value_serializer=table.value_serializer, eager_partitioning=True,
    ).message
    return message.key, message.value


@pytest.mark.parametrize("value", ODD_VALUES)
async def test_changelog_bytes_are_fausts_for_every_kind_of_table(faust_app: Any, value: Any) -> None:  # noqa: F811
    from tables.changelog import changelog_message
    from tables.criticality import anomaly_criticality
    from tables.history import anomaly_history
    from tables.vitals import vitals_5min

    for table in (vitals_5min, anomaly_history.table, anomaly_criticality):
        topic, key, encoded, partition, _headers = changelog_message(table, "patient-ü-1", value, 2)
        assert topic == table.changelog_topic.get_topic_name()
        assert partition == 2
        assert (key, encoded) == faust_bytes(table, "patient-ü-1", value, 2)
        assert table.changelog_topic.value_type is None or isinstance(encoded, bytes)


async def test_changelog_bytes_match_for_bytes_keys_and_float_values(faust_app: Any) -> None:  # noqa: F811
    from tables.changelog import changelog_message
    from tables.dedup import seen_event_ids

    _, key, value, _, _ = changelog_message(seen_event_ids, b"event-1", 1234.5, 0)
    assert (key, value) == faust_bytes(seen_event_ids, b"event-1", 1234.5, 0)


class FakeProducer:
    """`publishing.send_raw` in memory: records every message, refuses the first `refuse` hand-overs."""

    def __init__(self, refuse: int = 0) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.refuse = refuse
        self.hand_overs = 0

    async def send_raw(self, messages: Any) -> list[Any]:
        self.hand_overs += 1
        loop = asyncio.get_running_loop()
        confirmations = []
        for topic, key, value, partition, _headers in messages:
            self.sent.append((topic, key, value, partition))
            confirmation = loop.create_future()
            if self.hand_overs <= self.refuse:
                confirmation.set_exception(ConnectionError("broker gone"))
            else:
                confirmation.set_result(None)
            confirmations.append(confirmation)
        return confirmations


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(publishing, "send_raw", fake.send_raw)
    monkeypatch.setenv("STREAMAPP_SINK_RETRY_MAX_S", "0.01")
    settings.get_settings.cache_clear()
    yield fake
    settings.get_settings.cache_clear()


async def test_each_changed_entry_goes_once_with_its_latest_value(
    faust_app: Any, producer: FakeProducer,  # noqa: F811
) -> None:
    from tables.changelog import DeferredChangelog
    from tables.vitals import device_last_seen, vitals_5min

    changelog = DeferredChangelog("test")
    try:
        for count in range(3):
            vitals_5min.data["p1"] = {"partition": 1, "count": count}
            changelog.mark(vitals_5min, "p1", 1)
        device_last_seen.data["p1"] = {"partition": 1, "devices": {}}
        changelog.mark(device_last_seen, "p1", 1)
        changelog.mark(vitals_5min, "gone", 0)  # its partition went to another worker: nothing to write
        assert changelog.pending == 3
        assert await changelog.send() == 3
        names = [topic for topic, *_ in producer.sent]
        assert names == [vitals_5min.changelog_topic.get_topic_name(), device_last_seen.changelog_topic.get_topic_name()]
        assert producer.sent[0][1:] == (*faust_bytes(vitals_5min, "p1", {"partition": 1, "count": 2}, 1), 1)
        assert changelog.pending == 0 and await changelog.send() == 0 and len(producer.sent) == 2
    finally:
        vitals_5min.data.pop("p1", None)
        device_last_seen.data.pop("p1", None)


async def test_a_refused_hand_over_is_sent_again_with_the_values_then_held(
    faust_app: Any, producer: FakeProducer,  # noqa: F811
) -> None:
    from tables.changelog import DeferredChangelog
    from tables.vitals import vitals_5min

    producer.refuse = 2
    changelog = DeferredChangelog("test")
    try:
        vitals_5min.data["p2"] = {"partition": 0, "count": 1}
        changelog.mark(vitals_5min, "p2", 0)
        confirmed = await changelog.hand_over()
        vitals_5min.data["p2"] = {"partition": 0, "count": 2}  # changed while the broker was refusing
        assert await asyncio.wait_for(confirmed, 5) == 1
        assert producer.hand_overs == 3
        values = [value for *_, value, _partition in producer.sent]
        assert values[-1] == faust_bytes(vitals_5min, "p2", {"partition": 0, "count": 2}, 0)[1]
    finally:
        vitals_5min.data.pop("p2", None)


async def test_a_producer_that_raises_on_hand_over_is_retried_not_lost(
    faust_app: Any, producer: FakeProducer, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from tables.changelog import DeferredChangelog
    from tables.vitals import vitals_5min

    calls = {"n": 0}
    working = producer.send_raw

    async def flaky(messages: Any) -> list[Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("no metadata for the changelog topic")
        return await working(messages)

    monkeypatch.setattr(publishing, "send_raw", flaky)
    changelog = DeferredChangelog("test")
    try:
        vitals_5min.data["p3"] = {"partition": 0}
        changelog.mark(vitals_5min, "p3", 0)
        assert await asyncio.wait_for(changelog.send(), 5) == 1
        assert calls["n"] == 2 and len(producer.sent) == 1
    finally:
        vitals_5min.data.pop("p3", None)
