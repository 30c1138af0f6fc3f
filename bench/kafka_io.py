"""Plain aiokafka clients for the bench: produce inputs, read outputs, follow a consumer group's progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        try:
            await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        except TopicAlreadyExistsError:
            pass
        for _ in range(100):  # producing before every partition has a leader only earns retries
            described = await admin.describe_topics([name])
            leaders = [p["leader"] for d in described for p in d.get("partitions", [])]
            if leaders and all(leader >= 0 for leader in leaders):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, pairs: Iterable[tuple[bytes | None, bytes]]) -> tuple[int, float]:
    """Send every pair without awaiting each (linger 5 ms, 64 KiB batches); returns (count, seconds)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=64 * 1024, acks=1, compression_type=None,
    )
    await producer.start()
    count = 0
    try:
        started = time.perf_counter()
        pending: list[asyncio.Future] = []
        for key, value in pairs:
            pending.append(await producer.send(topic, value, key=key))
            count += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count, time.perf_counter() - started
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, count: int, timeout_s: float = 120.0) -> float:
    """Read `count` messages from the beginning with getmany (no group); returns the seconds it took,
    from the first fetch request (the consumer already connected) to the last message."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()
        seen = 0
        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while seen < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(batch) for batch in batches.values())
        if seen < count:
            raise RuntimeError(f"consumed {seen} of {count} messages from {topic}")
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The partitions of `topic` (none when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [
        TopicPartition(topic, p["partition"])
        for d in described if d.get("error_code", 0) == 0 for p in d.get("partitions", [])
    ]


async def end_offsets(bootstrap: str, topic: str) -> int:
    """The number of messages on `topic` (sum of its partitions' end offsets; 0 when it does not exist)."""
    partitions = await topic_partitions(bootstrap, topic)
    if not partitions:
        return 0
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


async def commit_to_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit `group`'s offsets at the end of `topic`, so a worker of that group skips what is already there."""
    partitions = await topic_partitions(bootstrap, topic)
    if not partitions:  # no such topic yet: nothing to skip
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: offset for tp, offset in ends.items()})
    finally:
        await consumer.stop()


@dataclass
class Progress:
    """Samples (seconds, count) of a consumer group's committed offsets on one topic."""

    samples: list[tuple] = field(default_factory=list)
    batches: dict[str, float] = field(default_factory=dict)  # the agent's mean batch size and time (bench.suite)
    total: int = 0  # messages the followed group had to reach

    def rate(self, total: int, low: float = 0.1, high: float = 0.9) -> float:
        """Messages per second between `low` and `high` of `total`: the steady state, without start-up or tail."""
        return steady_rate(self.samples, total, low, high)

    def cpu_rate(self, total: int, low: float = 0.1, high: float = 0.9) -> float:
        """Messages per CPU-second of the followed process over the same span (insensitive to a busy machine)."""
        return steady_rate(self.samples, total, low, high, clock=2)

    def output_rate(self, total: int, low: float = 0.1, high: float = 0.9) -> float:
        """Results per second on the followed output topic (`follow_group(output_topic=...)`) between `low`
        and `high` of `total`: finer than committed offsets, which move only when the lake flushes."""
        return steady_rate(self.samples, total, low, high, count=4)

    def output_cpu_rate(self, total: int, low: float = 0.1, high: float = 0.9) -> float:
        return steady_rate(self.samples, total, low, high, clock=2, count=4)


def steady_rate(
    samples: list[tuple] | list[tuple[float, int]] | list[tuple[float, int, float]], total: int,
    low: float = 0.1, high: float = 0.9, clock: int = 0, count: int = 1,
) -> float:
    """Events per second of `clock` (0: wall time; 2: the third element, e.g. process CPU seconds), counting
    the events with element `count` of each sample (1: committed offsets; 4: results on the output topic)."""

    def time_at(target: float) -> float:
        previous = samples[0]
        for sample in samples:
            if sample[count] >= target:
                t0, c0, t1, c1 = previous[clock], previous[count], sample[clock], sample[count]
                return t1 if c1 == c0 else t0 + (t1 - t0) * (target - c0) / (c1 - c0)
            previous = sample
        raise ValueError(f"never reached {target:.0f} of {total}")

    start, end = time_at(total * low), time_at(total * high)
    return total * (high - low) / max(end - start, 1e-9)


class OutputCounter:
    """Messages added to a topic since `start` (the sum of its partitions' end offsets)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        self.partitions: list[TopicPartition] = []
        self.baseline = 0

    async def start(self) -> None:
        await self.consumer.start()
        self.baseline = await self._end()

    async def _end(self) -> int:
        if not self.partitions:  # the worker may create the topic after the start
            self.partitions = await topic_partitions(self.bootstrap, self.topic)
            if not self.partitions:
                return 0
        return int(sum((await self.consumer.end_offsets(self.partitions)).values()))

    async def added(self) -> int:
        return await self._end() - self.baseline

    async def stop(self) -> None:
        await self.consumer.stop()


def process_tree_usage(process: psutil.Process) -> tuple[float, int]:
    """CPU seconds and RSS bytes of a worker with its child processes (model scoring, lake writes)."""
    cpu_seconds, rss = 0.0, 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            cpu_seconds += times.user + times.system
            rss += member.memory_info().rss
    return cpu_seconds, rss


async def follow_group(
    bootstrap: str, group: str, topic: str, total: int, *, timeout_s: float, interval_s: float = 0.2,
    alive: object = None, pid: int | None = None, on_progress: Callable[[int], None] | None = None,
    output_topic: str | None = None,
) -> Progress:
    """Poll the group's committed offsets on `topic` until they reach `total` (raises on timeout).

    With `pid`, each sample also holds the CPU seconds and RSS (bytes) of that process and its children, and
    with `output_topic` too, the number of messages added to that topic since the start."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    output = OutputCounter(bootstrap, output_topic) if output_topic and pid else None
    if output is not None:
        await output.start()
    progress = Progress()
    process = psutil.Process(pid) if pid else None
    started = time.perf_counter()
    try:
        while True:
            offsets = await admin.list_consumer_group_offsets(group)
            done = sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)
            now = time.perf_counter() - started
            if process is not None:
                produced = () if output is None else (await output.added(),)
                progress.samples.append((now, done, *process_tree_usage(process), *produced))
            else:
                progress.samples.append((now, done))
            if on_progress is not None:
                on_progress(done)
            if done >= total:
                return progress
            if callable(alive) and not alive():
                raise RuntimeError(f"group {group} stopped at {done}/{total}")
            if now > timeout_s:
                raise TimeoutError(f"group {group} committed {done}/{total} on {topic} in {timeout_s:.0f} s")
            await asyncio.sleep(interval_s)
    finally:
        await admin.close()
        if output is not None:
            await output.stop()
