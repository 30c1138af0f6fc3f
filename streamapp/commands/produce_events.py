"""`faust -A streamapp produce-events FILE.jsonl [--topic T]`: one event per line to the e-commerce topic,
keyed by `event_id` (seed: kafka_producer.py).

Lines that are not a JSON object are skipped and reported by number with the reason. Objects without an
`event_id` are still sent, with no key, so that the agent dead-letters them and they stay traceable.
The command returns only once the broker acknowledged every message (acks=all, idempotent producer).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, UnsupportedVersionError
from faust.cli import argument, option
from tqdm import tqdm

from streamapp.app import app
from streamapp.commands.base import CommandError, StreamappCommand
from streamapp.commands.topics import admin_client, create_topic
from streamapp.settings import get_settings

DELIVERY_WINDOW = 2000  # messages in flight before waiting for their acknowledgements


@dataclass
class ProduceReport:
    sent: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    blank: int = 0


def event_key(event: dict[str, Any]) -> bytes | None:
    """The Kafka key of an event: its `event_id` as UTF-8, or None when it has none."""
    event_id = event.get("event_id")
    if event_id is None or isinstance(event_id, dict | list) or event_id == "":
        return None
    return str(event_id).encode()


def parse_line(line: bytes) -> tuple[dict[str, Any] | None, str]:
    """(event, "") for a JSON object line, else (None, reason)."""
    try:
        value = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    return value, ""


async def start_producer() -> AIOKafkaProducer:
    """An acks=all producer, idempotent when the broker supports it; CommandError if unreachable."""
    settings = get_settings()
    last_error: Exception | None = None
    for idempotent in (True, False):
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=idempotent,
            linger_ms=int(settings.producer_linger_ms), request_timeout_ms=int(settings.broker_request_timeout * 1000),
        )
        try:
            await asyncio.wait_for(producer.start(), timeout=15)
            return producer
        except UnsupportedVersionError as exc:  # an old broker without idempotent producers
            last_error = exc
            await producer.stop()
        except (KafkaConnectionError, TimeoutError, OSError) as exc:
            await producer.stop()
            raise CommandError(f"broker unreachable at {','.join(settings.bootstrap_servers)}: {exc}") from exc
    raise CommandError(f"could not start a producer: {last_error}")


async def ensure_topic(topic: str) -> None:
    """Create the topic with the app's partition count if the broker does not have it yet."""
    settings = get_settings()
    client = await admin_client()
    try:
        if topic not in await client.list_topics():
            try:
                await create_topic(client, topic, settings.topic_partitions, settings.topic_replication, None)
            except CommandError as exc:
                if "already exists" not in str(exc):  # created meanwhile by a worker: fine
                    raise
    finally:
        await client.close()


def file_size(path: Path) -> int:
    """The size of the input file, or a CommandError when there is no such file."""
    if not path.is_file():
        raise CommandError(f"no such file: {path}")
    return path.stat().st_size


async def produce_file(path: Path, topic: str, *, show_progress: bool = True) -> ProduceReport:
    """Send every JSON object line of `path` to `topic` and wait for all acknowledgements."""
    report = ProduceReport()
    size = file_size(path)
    await ensure_topic(topic)
    producer = await start_producer()
    in_flight: list[asyncio.Future[Any]] = []
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"-> {topic}", file=sys.stderr,
               disable=not show_progress, dynamic_ncols=True)
    try:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                bar.update(len(line))
                text = line.strip()
                if not text:
                    report.blank += 1
                    continue
                event, reason = parse_line(text)
                if event is None:
                    report.skipped.append((number, reason))
                    continue
                in_flight.append(await producer.send(topic, value=text, key=event_key(event)))
                if len(in_flight) >= DELIVERY_WINDOW:
                    await _delivered(in_flight, report)
        await producer.flush()
        await _delivered(in_flight, report)
    except KafkaError as exc:
        raise CommandError(f"sending to {topic} failed after {report.sent} messages: {exc}") from exc
    finally:
        bar.close()
        await producer.stop()
    return report


async def _delivered(in_flight: list[asyncio.Future[Any]], report: ProduceReport) -> None:
    for future in in_flight:
        await future
        report.sent += 1
    in_flight.clear()


@app.command(
    argument("file", type=str),
    option("--topic", type=str, default=None, help="Target topic (default: the e-commerce events topic)."),
    option("--quiet", is_flag=True, default=False, help="No progress bar."),
    base=StreamappCommand,
)
async def produce_events(self: StreamappCommand, file: str, topic: str | None, quiet: bool) -> int:
    """Send one JSON event per line of FILE to Kafka, keyed by event_id, and report what was skipped."""
    from streamapp.topics import ecommerce_events_topic

    path = Path(file)
    file_size(path)  # before connecting: a missing file is reported as such, whatever the broker
    target = topic or ecommerce_events_topic.get_topic_name()
    report = await produce_file(path, target, show_progress=not quiet)
    for number, reason in report.skipped:
        print(f"line {number}: skipped, {reason}", file=sys.stderr)
    blank = f", {report.blank} blank" if report.blank else ""
    print(f"sent {report.sent} events to {target}; skipped {len(report.skipped)} invalid lines{blank}")
    return 0
