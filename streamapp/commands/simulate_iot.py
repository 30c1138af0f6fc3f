"""The `simulate iot` runner: simulated bracelets post to the worker's `/iot/measurements` (default) or,
with `--kafka`, produce pseudonymised, enriched measurements straight to `iot-measurements`."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamapp.commands.base import CommandError
from streamapp.iot.rules import fired_rules
from streamapp.iot.validation import to_measurement, validate_reading
from streamapp.settings import get_settings
from streamapp.simulators import SimulateOptions
from streamapp.simulators.iot import IotSimulator

DEFAULT_RATE = 5.0  # readings per second
HTTP_CONCURRENCY = 16
MAX_IN_FLIGHT = 1000


@dataclass
class IotRunSummary:
    """What the run did, printed at the end."""

    target: str
    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    failed: int = 0
    dropouts: int = 0
    scenarios: Counter[str] = field(default_factory=Counter)
    expected_alerts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def lines(self, mode: str, patients: int) -> list[str]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        lines = [
            f"simulate iot ({mode}, {patients} patients) -> {self.target}: {self.sent} readings in {elapsed:.1f} s "
            f"({self.sent / elapsed:.1f}/s)",
            f"  accepted {self.accepted}, refused {self.refused}, failed {self.failed}, "
            f"skipped during device drop-outs {self.dropouts}",
            "  scenarios: " + ", ".join(f"{name} {count}" for name, count in self.scenarios.most_common()),
            f"  alerts expected: {sum(self.expected_alerts.values())}"
            + "".join(f", {name} {count}" for name, count in sorted(self.expected_alerts.items())),
        ]
        lines += [f"  error x{count}: {error}" for error, count in self.errors.most_common(5)]
        return lines


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _http_sender(url: str, summary: IotRunSummary) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiohttp

    settings = get_settings()
    headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30))
    slots = asyncio.Semaphore(HTTP_CONCURRENCY)
    tasks: set[asyncio.Task[None]] = set()

    async def post(payload: dict[str, Any]) -> None:
        try:
            async with session.post(url, json=payload) as response:
                if response.status == 202:
                    summary.accepted += 1
                elif response.status == 422:
                    summary.refused += 1
                    summary.errors[f"422 {json.dumps((await response.json()).get('detail'))[:200]}"] += 1
                else:
                    summary.failed += 1
                    summary.errors[f"HTTP {response.status}: {(await response.text())[:200]}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            summary.failed += 1
            summary.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        finally:
            slots.release()

    async def send(payload: dict[str, Any]) -> None:
        await slots.acquire()
        task = asyncio.create_task(post(payload))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def close() -> None:
        if tasks:
            await asyncio.gather(*tasks)
        await session.close()

    return send, close


async def _kafka_sender(summary: IotRunSummary, topic: str | None) -> tuple[Send, Callable[[], Awaitable[None]]]:
    from streamapp.commands.produce_events import ensure_topic, start_producer
    from streamapp.topics import iot_measurements_topic

    settings = get_settings()
    topic = topic or iot_measurements_topic.get_topic_name()
    await ensure_topic(topic)
    producer = await start_producer()
    in_flight: list[asyncio.Future[Any]] = []

    async def settle() -> None:
        for future in in_flight:
            try:
                await future
                summary.accepted += 1
            except Exception as exc:
                summary.failed += 1
                summary.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        in_flight.clear()

    async def send(payload: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        reading, problems = validate_reading(payload, now=now, max_future_skew_s=settings.max_future_skew_seconds)
        if reading is None:
            summary.refused += 1
            summary.errors["; ".join(problems)[:200]] += 1
            return
        record = to_measurement(reading, ingested_at=now)  # pseudonymised here, as the ingestion view does
        in_flight.append(await producer.send(topic, key=record.patient_id.encode(), value=record.dumps()))
        if len(in_flight) >= MAX_IN_FLIGHT:
            await settle()

    async def close() -> None:
        try:
            await settle()
        finally:
            await producer.stop()

    return send, close


async def run_iot(options: SimulateOptions) -> int:
    """Send readings at `rate` per second until `count` readings or `duration` seconds (or Ctrl+C)."""
    try:
        simulator = IotSimulator(mode=options.mode or "simple", patients=options.population, seed=options.seed)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    settings = get_settings()
    thresholds = settings.vitals
    rate = options.rate or DEFAULT_RATE
    url = options.url or f"http://127.0.0.1:{settings.web_port}/iot/measurements"
    summary = IotRunSummary(target=f"kafka {options.topic or 'iot-measurements'}" if options.produce else url)
    send, close = await (_kafka_sender(summary, options.topic) if options.produce else _http_sender(url, summary))
    loop = asyncio.get_running_loop()
    started = loop.time()
    readings = 0
    try:
        while options.count is None or readings < options.count:
            if options.duration is not None and loop.time() - started >= options.duration:
                break
            await asyncio.sleep(max(0.0, started + readings / rate - loop.time()))
            reading = simulator.reading(datetime.now(UTC))
            readings += 1
            summary.scenarios[reading.scenario] += 1
            if reading.payload is None:
                summary.dropouts += 1
                continue
            vitals = reading.payload["measurements"]
            for rule in fired_rules(vitals["spo2_pct"], vitals["temp_corp"], vitals["freq_card"], thresholds):
                summary.expected_alerts[rule.alert_type] += 1
            summary.sent += 1
            await send(reading.payload)
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        await close()
        for line in summary.lines(simulator.mode, len(simulator.patients)):
            print(line)
    if summary.sent and not summary.accepted:
        raise CommandError(f"no reading was accepted by {summary.target}")
    return 0 if not summary.failed else 1
