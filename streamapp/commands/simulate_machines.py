"""The `simulate machines` runner: run-to-failure machines (`streamapp.simulators.machines`) produce one raw
vibration window per cycle and asset to `sensor-readings` (the features agent turns them into features),
and/or write them to a JSON Lines file (`--out`). `--assets N`, `--rate R` readings per second, `--count C`
readings (endless by default when producing). `--cmapss PATH` replays a C-MAPSS file instead."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from tqdm import tqdm

from streamapp.commands.base import CommandError
from streamapp.simulators import SimulateOptions
from streamapp.simulators.machines import MachineFleet

DEFAULT_ASSETS = 5
DEFAULT_FILE_COUNT = 1000
MAX_IN_FLIGHT = 500


def machine_readings(options: SimulateOptions, *, live: bool) -> Iterator[dict[str, Any]]:
    """`SensorReading` bodies of the fleet, stamped now when `live`, else on the simulated clock."""
    fleet = MachineFleet(options.population or DEFAULT_ASSETS, seed=options.seed)
    cycles = fleet.cycles() if options.count is None else islice(fleet.cycles(), options.count)
    for cycle in cycles:
        yield cycle.reading(timestamp=datetime.now(UTC) if live else None)


async def replay_cmapss(options: SimulateOptions) -> int:
    """Hook for the RUL pipeline: replay `options.cmapss` (parsed by `models.rul.cmapss`) as one
    `ExtractedFeatures` per engine cycle straight onto `extracted-features` (`asset_id` = engine, features
    `setting_1..3`, `sensor_1..21`). Not implemented here yet."""
    raise CommandError("--cmapss replay is not available yet")


async def run_machines(options: SimulateOptions) -> int:
    """Produce (default) and/or write (`--out`) simulated machine readings."""
    if options.cmapss is not None:
        return await replay_cmapss(options)
    if options.out is not None:
        count = options.count or DEFAULT_FILE_COUNT
        file_options = SimulateOptions(**{**options.__dict__, "count": count})
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(None, _write_jsonl, file_options)
        print(f"wrote {written} readings to {options.out}")
        if not options.produce:
            return 0
    sent = await stream_readings(options)
    print(f"sent {sent} readings")
    return 0


def _write_jsonl(options: SimulateOptions) -> int:
    assert options.out is not None
    written = 0
    with options.out.open("w", encoding="utf-8") as out:
        for reading in machine_readings(options, live=False):
            out.write(json.dumps(reading, separators=(",", ":")) + "\n")
            written += 1
    return written


async def stream_readings(options: SimulateOptions) -> int:
    """Produce readings keyed by `asset_id` at `rate` per second until the count, the duration or Ctrl+C."""
    from streamapp.commands.produce_events import ensure_topic, start_producer
    from streamapp.topics import sensor_readings_topic

    topic = options.topic or sensor_readings_topic.get_topic_name()
    await ensure_topic(topic)
    producer = await start_producer()
    interval = 1.0 / options.rate if options.rate else 0.0
    started = time.monotonic()
    bar = tqdm(total=options.count, unit="reading", desc=f"-> {topic}", file=sys.stderr, dynamic_ncols=True)
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        for reading in machine_readings(options, live=True):
            if options.duration is not None and time.monotonic() - started >= options.duration:
                break
            value = json.dumps(reading, separators=(",", ":")).encode()
            pending.append(await producer.send(topic, value=value, key=reading["asset_id"].encode()))
            sent += 1
            bar.update(1)
            if len(pending) >= MAX_IN_FLIGHT:
                await asyncio.gather(*pending)
                pending.clear()
            if interval:
                await asyncio.sleep(max(0.0, started + sent * interval - time.monotonic()))
        await asyncio.gather(*pending)
    finally:
        bar.close()
        await producer.stop()
    return sent
