"""Plain aiokafka helpers for tests: produce raw bytes, read a topic from the beginning."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) pairs and wait for every delivery."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    count = 0
    try:
        pending = [await producer.send(topic, value=value, key=key) for key, value in messages]
        for future in pending:
            await future
            count += 1
    finally:
        await producer.stop()
    return count


async def produce_json(bootstrap: str, topic: str, records: Iterable[tuple[str | None, Any]]) -> int:
    return await produce(
        bootstrap, topic, ((None if k is None else k.encode(), json.dumps(v).encode()) for k, v in records)
    )


async def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list[Any]], bool] | None = None, within_s: float = 30.0,
    decode: bool = True,
) -> list[Any]:
    """Messages of `topic` from the beginning, until `until(messages)` holds or the time is up."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        client_id=f"test-reader-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    found: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    try:
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    found.append(_decoded(record) if decode else record)
            if until is not None and until(found):
                break
        else:
            if until is not None and not until(found):
                pass
    finally:
        await consumer.stop()
    return found


def _decoded(record: Any) -> dict[str, Any]:
    try:
        value = json.loads(record.value) if record.value is not None else None
    except ValueError:
        value = record.value
    return {"key": record.key, "value": value, "offset": record.offset, "partition": record.partition}


async def skip_what_earlier_tests_left(bootstrap: str, group: str, topic: str = "iot-measurements") -> None:
    """Commit a new group's offsets at the end of `topic` on the shared session broker, so its worker does not
    first replay every earlier test's messages (minutes on 2 cores). A topic not created yet has nothing to skip."""
    from bench.kafka_io import commit_to_end

    await commit_to_end(bootstrap, group, topic)
