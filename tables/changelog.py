"""Changelog messages for table entries, produced straight through the Kafka producer.

Faust's `Table.send_changelog` goes through its producer buffer: a `FutureMessage`, a `PendingMessage`,
sensor calls and a callback per message, drained by a background task that blocks the delivery of every
incoming message while it holds more than 100 (profiling showed it among the largest costs of a batch).
Here the entries changed since the last hand-over are serialised exactly as Faust would (the changelog
topic's own key and value preparation, the table's serializers), so a recovering worker reads them
back the same way, and handed to the producer in order; the caller waits for the broker's
confirmations before it acknowledges the events they came from (at-least-once for table state).

A table entry is keyed by (table, key) and goes to the changelog partition its caller names (the source
partition of the events that changed it); its value is read when it is handed over, so an entry changed
by several batches is written once, with its latest value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

from faust.types import TableT

from streamapp import publishing
from streamapp.sinks import write_with_retry

log = logging.getLogger(__name__)
Entry = tuple[TableT, Any, int, bool]  # table, key, changelog partition, deleted here


def changelog_message(
    table: TableT, key: Any, value: Any, partition: int, value_serializer: Any = None,
) -> publishing.RawMessage:
    """The changelog message Faust's `send_changelog(partition, key, value)` would produce, as bytes
    (`value` None with `value_serializer="raw"`: the tombstone Faust writes for a deleted key)."""
    topic: Any = table.changelog_topic  # faust's type stubs lag its Topic and Table (headers, serializers)
    faust_table: Any = table
    headers = topic.prepare_headers(None)
    key_bytes, headers = topic.prepare_key(key, faust_table.key_serializer, None, headers)
    value_bytes, headers = topic.prepare_value(
        value, value_serializer or faust_table.value_serializer, None, headers
    )
    return topic.get_topic_name(), key_bytes, value_bytes, partition, headers or None


def current_messages(entries: Iterable[Entry]) -> list[publishing.RawMessage]:
    """The changelog message of each entry with its value now. A key deleted here and not set again gets
    a tombstone; any other key no longer held (its partition went to another worker, which owns the
    state now) is skipped."""
    messages = []
    for table, key, partition, deleted in entries:
        data = table.data
        if key in data:
            messages.append(changelog_message(table, key, data[key], partition))
        elif deleted:
            messages.append(changelog_message(table, key, None, partition, value_serializer="raw"))
    return messages


class DeferredChangelog:
    """Table entries changed since their last changelog message. `hand_over` sends each once, with its
    value at that moment, and returns what resolves once the broker has them all; hand-overs of one
    instance run one at a time, so an entry's messages reach its partition in the order of its values."""

    def __init__(self, name: str) -> None:
        self.name = name  # names the sink in retries and metrics: `changelog:<name>`
        self._dirty: dict[tuple[str, Any], Entry] = {}
        self._lock = asyncio.Lock()

    def mark(self, table: TableT, key: Any, partition: int) -> None:
        """`table.data[key]` was set: its value goes at the next hand-over."""
        self._dirty[(table.name, key)] = (table, key, partition, False)

    def mark_deleted(self, table: TableT, key: Any, partition: int) -> None:
        """`key` was removed from `table.data`: a tombstone goes at the next hand-over (unless it is set again)."""
        self._dirty[(table.name, key)] = (table, key, partition, True)

    def discard(self) -> None:
        """Forget the entries marked since the last hand-over (after a rebalance took their partitions)."""
        self._dirty.clear()

    @property
    def pending(self) -> int:
        return len(self._dirty)

    async def hand_over(self) -> Awaitable[int]:
        """Give every marked entry's changelog message to the producer now; the returned awaitable gives
        how many once the broker has confirmed them all (a refused batch is sent again, with the values
        its entries have then, until the broker takes it)."""
        async with self._lock:
            entries = list(self._dirty.values())
            self._dirty = {}
            if not entries:
                done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                done.set_result(0)
                return done
            try:
                confirmations = await publishing.send_raw(current_messages(entries))
            except Exception as exc:  # e.g. the producer lacks the changelog topic's metadata: sent again below
                refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                refused.set_exception(exc)
                confirmations = [refused]
        return asyncio.ensure_future(self._confirmed(entries, confirmations))

    async def send(self) -> int:
        """Hand every marked entry over and wait until the broker has them; returns how many."""
        return await (await self.hand_over())

    async def _confirmed(self, entries: list[Entry], confirmations: list[Awaitable[Any]]) -> int:
        try:
            await asyncio.gather(*confirmations)
        except Exception as exc:
            log.warning("changelog %s: the broker refused %d entries (%r): sending them again",
                        self.name, len(entries), exc)

            async def resend() -> None:
                async with self._lock:
                    sent = await publishing.send_raw(current_messages(entries))
                await asyncio.gather(*sent)

            await write_with_retry(f"changelog:{self.name}", resend)
        return len(entries)
