"""The `simulate machines` runner: run-to-failure machines (`streamapp.simulators.machines`) produce one raw
vibration window per cycle and asset to `sensor-readings` (the features agent turns them into features),
and/or write them to a JSON Lines file (`--out`). `--assets N`, `--rate R` readings per second, `--count C`
readings (endless by default when producing). `--cmapss PATH` replays C-MAPSS engine cycles onto
`extracted-features` instead (a file, or the `test_*.txt` files of a directory): one `ExtractedFeatures` per
engine cycle, the 3 settings and 21 sensors as features, `asset_id` `<file>-<engine>` (e.g.
`test_FD001-007`), cycles of all engines interleaved as a fleet would run, at `--rate` or as fast as possible."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streamapp.commands.base import CommandError
from streamapp.simulators import SimulateOptions
from streamapp.simulators.machines import MachineFleet

DEFAULT_ASSETS = 5
DEFAULT_FILE_COUNT = 1000
MAX_IN_FLIGHT = 500
CMAPSS_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
CMAPSS_CYCLE = timedelta(hours=1)
CMAPSS_SENSOR_ID = "cmapss"


def machine_readings(options: SimulateOptions, *, live: bool) -> Iterator[dict[str, Any]]:
    """`SensorReading` bodies of the fleet, stamped now when `live`, else on the simulated clock."""
    fleet = MachineFleet(options.population or DEFAULT_ASSETS, seed=options.seed)
    cycles = fleet.cycles() if options.count is None else islice(fleet.cycles(), options.count)
    for cycle in cycles:
        yield cycle.reading(timestamp=datetime.now(UTC) if live else None)


def cmapss_messages(path: Path) -> list[dict[str, Any]]:
    """One `ExtractedFeatures` body per engine cycle of a C-MAPSS file, cycle by cycle across engines; the
    timestamp is the cycle on a fixed clock, so replaying a file again updates the same journal rows."""
    from models.rul.cmapss import FEATURE_NAMES, read_cmapss_file
    from streamapp.rul_training import engine_asset_id

    frame = read_cmapss_file(path).sort_values(["cycle", "unit"], kind="stable")
    values = frame[FEATURE_NAMES].to_numpy()
    return [
        {
            "asset_id": engine_asset_id(path, int(unit)), "sensor_id": CMAPSS_SENSOR_ID,
            "timestamp": (CMAPSS_EPOCH + int(cycle) * CMAPSS_CYCLE).isoformat(),
            "features": dict(zip(FEATURE_NAMES, map(float, row), strict=True)),
            "metadata": {"source": "cmapss-replay", "file": path.name, "unit": int(unit), "cycle": int(cycle)},
        }
        for unit, cycle, row in zip(frame["unit"], frame["cycle"], values, strict=True)
    ]


async def replay_cmapss(options: SimulateOptions) -> int:
    """Produce the cycles of `options.cmapss` onto `extracted-features` (or `--topic`), keyed by asset."""
    from streamapp.rul_training import cmapss_files
    from streamapp.topics import extracted_features_topic

    assert options.cmapss is not None
    loop = asyncio.get_running_loop()
    try:
        files = cmapss_files(options.cmapss, "test")
        bodies = [body for path in files for body in await loop.run_in_executor(None, cmapss_messages, path)]
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(f"cannot replay {options.cmapss}: {exc}") from exc
    if options.count is not None:
        bodies = bodies[: options.count]
    topic = options.topic or extracted_features_topic.get_topic_name()
    sent = await produce_bodies(iter(bodies), topic, options, len(bodies), "cycle")
    engines = len({body["asset_id"] for body in bodies[:sent]})
    print(f"replayed {sent} cycles of {engines} engines from {', '.join(path.name for path in files)}")
    return 0


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
    from streamapp.topics import sensor_readings_topic

    topic = options.topic or sensor_readings_topic.get_topic_name()
    return await produce_bodies(machine_readings(options, live=True), topic, options, options.count, "reading")


async def produce_bodies(
    bodies: Iterator[dict[str, Any]], topic: str, options: SimulateOptions, total: int | None, unit: str
) -> int:
    """Send JSON bodies keyed by their `asset_id` at `options.rate` per second (or as fast as possible)
    until they run out, `options.duration` passes or Ctrl+C; returns how many were sent."""
    from streamapp.commands.produce_events import ensure_topic, start_producer

    await ensure_topic(topic)
    producer = await start_producer()
    interval = 1.0 / options.rate if options.rate else 0.0
    started = time.monotonic()
    bar = tqdm(total=total, unit=unit, desc=f"-> {topic}", file=sys.stderr, dynamic_ncols=True)
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        for body in bodies:
            if options.duration is not None and time.monotonic() - started >= options.duration:
                break
            value = json.dumps(body, separators=(",", ":")).encode()
            pending.append(await producer.send(topic, value=value, key=body["asset_id"].encode()))
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
