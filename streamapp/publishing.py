"""Publishing records and waiting until the broker has them: the one path agents and views share.

Each record is serialised once (the JSON codec Faust's topics use for records) and handed straight to
the Kafka producer: Faust's `Topic.send` builds a `FutureMessage`, a `PendingMessage` and a callback
chain per message, which profiling showed as the largest cost of publishing at thousands per second.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any

from faust.types import TopicT

from streamapp import metrics
from streamapp.app import app

Outgoing = tuple[TopicT, str | bytes | None, Any]  # (topic, key, record)
RawMessage = tuple[str, bytes | None, bytes | None, int | None, Any]  # (topic name, key, value, partition, headers)


def _bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


async def send_records(messages: Sequence[Outgoing]) -> list[Awaitable[Any]]:
    """Hand every message to the producer in order; each awaitable resolves once the broker has it."""
    producer = app.producer
    confirmations = []
    for topic, key, record in messages:
        confirmations.append(await producer.send(
            topic.get_topic_name(), _bytes(key), record.dumps(), None, None, None,
        ))
    return confirmations


async def send_raw(messages: Sequence[RawMessage]) -> list[Awaitable[Any]]:
    """Hand already serialised messages to the producer in order (table changelogs); each awaitable
    resolves once the broker has it."""
    producer = app.producer
    return [await producer.send(topic, key, value, partition, None, headers)
            for topic, key, value, partition, headers in messages]


async def publish_confirmed(messages: Sequence[Outgoing]) -> None:
    """Send every message, then wait until the broker has them all (at-least-once before an ack), and
    count them in `streamapp_published_total`. Raises what the producer raised (callers retry)."""
    if not messages:
        return
    await asyncio.gather(*await send_records(messages))
    count_published(messages)


def count_published(messages: Sequence[Outgoing]) -> None:
    """Count confirmed messages in `streamapp_published_total`, per topic."""
    for name, count in Counter(topic.get_topic_name() for topic, _, _ in messages).items():
        metrics.published_total.labels(name).inc(count)
