"""Publishing in produce batches (`streamapp.publishing.send_in_batches`) against the real broker: every
message lands on the partition the producer's partitioner picks for its key, in order, with one
confirmation per batch."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from streamapp.partitioner import KeyHashPartitioner
from streamapp.publishing import send_in_batches
from tests.kafka_helpers import read_topic

PARTITIONS = 4


async def new_topic(bootstrap: str, name: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()
    return name


async def started_producer(bootstrap: str, max_batch_size: int) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, partitioner=KeyHashPartitioner(),
                                max_batch_size=max_batch_size, linger_ms=5)
    await producer.start()
    return producer


async def test_messages_land_on_their_keys_partitions_in_order_with_a_confirmation_per_batch(
    kafka: Any, unique_topic: Any
) -> None:
    topic = await new_topic(kafka.bootstrap, unique_topic("batches"))
    keys = [f"asset-{i}".encode() for i in range(12)]
    messages = [(topic, keys[i % len(keys)], b'{"n": %d, "pad": "%s"}' % (i, b"x" * 200)) for i in range(300)]
    producer = await started_producer(kafka.bootstrap, max_batch_size=4096)  # ~15 messages a batch: several each
    try:
        confirmations = await send_in_batches(producer, messages)
        delivered = await asyncio.gather(*confirmations)
        expected_partition = {key: KeyHashPartitioner()(key, list(range(PARTITIONS)), []) for key in keys}
        used = set(expected_partition.values())
        assert len(used) < len(confirmations) < len(messages)  # full batches were submitted and new ones started
        assert {metadata.partition for metadata in delivered} == used
    finally:
        await producer.stop()
    records = await read_topic(kafka.bootstrap, topic, decode=False, until=lambda found: len(found) >= len(messages))
    assert len(records) == len(messages)
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for record in records:
        assert record.partition == expected_partition[record.key]
        by_key[record.key].append(record.value)
    for key in keys:  # each key's messages in the order they were given
        assert by_key[key] == [value for _, k, value in messages if k == key]


async def test_a_message_larger_than_a_batch_gets_a_batch_of_its_own(kafka: Any, unique_topic: Any) -> None:
    topic = await new_topic(kafka.bootstrap, unique_topic("large"))
    producer = await started_producer(kafka.bootstrap, max_batch_size=1024)
    try:
        messages = [(topic, b"k", b"small"), (topic, b"k", b"y" * 50_000), (topic, b"k", b"after")]
        await asyncio.gather(*await send_in_batches(producer, messages))
    finally:
        await producer.stop()
    records = await read_topic(kafka.bootstrap, topic, decode=False, until=lambda found: len(found) >= 3)
    assert [record.value for record in records] == [value for _, _, value in messages]


async def test_a_message_over_the_request_size_is_refused_before_anything_is_queued(
    kafka: Any, unique_topic: Any
) -> None:
    topic = await new_topic(kafka.bootstrap, unique_topic("too-large"))
    producer = await started_producer(kafka.bootstrap, max_batch_size=1024)
    try:
        with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
            await send_in_batches(producer, [(topic, b"k", b"small"), (topic, b"k", b"y" * 2_000_000)])
    finally:
        await producer.stop()
