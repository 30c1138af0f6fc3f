"""Publishing records and waiting until the broker has them: the one path agents and views share.

Each record is serialised once (the JSON codec Faust's topics use for records) and handed straight to
the Kafka producer: Faust's `Topic.send` builds a `FutureMessage`, a `PendingMessage` and a callback
chain per message, which profiling showed as the largest cost of publishing at thousands per second.

A call's messages are packed into one produce batch per partition (aiokafka's `create_batch` /
`send_batch`): one future per partition instead of one per message, which the producer would otherwise
resolve, and every caller gather, by the thousand per micro-batch. Messages keep their order within a
partition, go to the partition the producer's partitioner picks for their key (as `send` would), and a
batch that is full is submitted and a new one started. A transactional producer (exactly-once) takes the
per-message path, which keeps its transaction bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from faust.types import TopicT
from faust.types.enums import ProcessingGuarantee

from streamapp import metrics
from streamapp.app import app

Outgoing = tuple[TopicT, str | bytes | None, Any]  # (topic, key, record)


def _bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


async def send_records(messages: Sequence[Outgoing]) -> list[Awaitable[Any]]:
    """Hand every message to the producer in order; the awaitables resolve once the broker has them all
    (one per partition batch, fewer than the messages)."""
    kafka = _batching_producer()
    if kafka is None:
        return await _send_one_by_one(messages)
    return await send_in_batches(kafka, [(topic.get_topic_name(), _bytes(key), record.dumps())
                                         for topic, key, record in messages])


async def send_in_batches(kafka: Any, messages: Sequence[tuple[str, bytes | None, bytes]]) -> list[Awaitable[Any]]:
    """(topic, key, value) messages through an `AIOKafkaProducer` as one batch per partition (more when a
    batch fills up), each partition chosen by the producer's partitioner; one awaitable per batch."""
    open_batches: dict[tuple[str, int], Any] = {}  # (topic, partition) -> BatchBuilder being filled
    confirmations: list[Awaitable[Any]] = []
    partitions_of: dict[str, tuple[list[int], list[int]]] = {}
    for name, key, value in messages:
        if name not in partitions_of:
            await kafka.client._wait_on_metadata(name)  # as `send` does: the topic's partitions are known
            partitions_of[name] = (
                sorted(kafka._metadata.partitions_for_topic(name)),
                sorted(kafka._metadata.available_partitions_for_topic(name)),
            )
        if len(value) + len(key or b"") > kafka._max_request_size:  # what `send` refuses before queueing it
            raise MessageSizeTooLargeError(
                f"a message of {len(value)} bytes for {name} is larger than the producer's max_request_size"
            )
        partition = kafka._partitioner(key, *partitions_of[name])
        builder = open_batches.get((name, partition))
        if builder is None:
            builder = open_batches[(name, partition)] = kafka.create_batch()
        if builder.append(timestamp=None, key=key, value=value, headers=[]) is None:  # full
            confirmations.append(await _submit(kafka, builder, name, partition))
            builder = open_batches[(name, partition)] = kafka.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=[])  # a batch takes its first message
    for (name, partition), builder in open_batches.items():
        confirmations.append(await _submit(kafka, builder, name, partition))
    return confirmations


async def _submit(kafka: Any, builder: Any, topic: str, partition: int) -> Awaitable[Any]:
    """Queue a filled batch; a refusal (no room before the request timeout, producer closing) comes back as
    a failed confirmation, so the caller's retry sends the messages again, as for a failed delivery."""
    try:
        return cast(Awaitable[Any], await kafka.send_batch(builder, topic, partition=partition))
    except KafkaError as exc:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed


def _batching_producer() -> Any:
    """The worker's aiokafka producer when batches may be submitted to it (None: send one by one)."""
    if app.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE:  # Faust's per-partition transactions
        return None
    kafka = getattr(app.producer, "_producer", None)
    if kafka is None or not hasattr(kafka, "send_batch"):
        return None
    transactions = getattr(kafka, "_txn_manager", None)
    if transactions is not None and transactions.transactional_id is not None:
        return None
    return kafka


async def _send_one_by_one(messages: Sequence[Outgoing]) -> list[Awaitable[Any]]:
    producer = app.producer
    confirmations = []
    for topic, key, record in messages:
        confirmations.append(await producer.send(
            topic.get_topic_name(), _bytes(key), record.dumps(), None, None, None,
        ))
    return confirmations


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
