"""Feature extraction: `sensor-readings` (raw windows or named cycle values) -> `extracted-features`."""

from __future__ import annotations

import asyncio
import math
from typing import Any, cast

from faust.types import EventT, StreamT

from models.features import MIN_SAMPLES, extract_batch
from streamapp.app import app
from streamapp.batching import BatchTimer, ack_events, micro_batches
from streamapp.deadletters import INVALID, send_dead_letter
from streamapp.metrics import published_total
from streamapp.records import ExtractedFeatures, SensorReading
from streamapp.topics import extracted_features_topic, sensor_readings_topic

AGENT = "features"
MAX_SAMPLES = 1_000_000


def reading_problems(reading: SensorReading) -> list[str]:
    """Every reason a reading cannot give features (empty list: usable)."""
    problems = []
    if not reading.asset_id:
        problems.append("asset_id is empty")
    if reading.samples is not None:
        if not MIN_SAMPLES <= len(reading.samples) <= MAX_SAMPLES:
            problems.append(f"samples must hold {MIN_SAMPLES}..{MAX_SAMPLES} values, got {len(reading.samples)}")
        elif not all(isinstance(v, int | float) and math.isfinite(v) for v in reading.samples):
            problems.append("samples must be finite numbers")
        rate = reading.sampling_rate_hz
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            problems.append("sampling_rate_hz must be a positive number for a raw window")
    elif reading.values:
        bad = [k for k, v in reading.values.items() if not (isinstance(v, int | float) and math.isfinite(v))]
        if bad:
            problems.append(f"values must be finite numbers: {', '.join(sorted(bad)[:10])}")
    else:
        problems.append("a reading needs either samples (a raw window) or values (one cycle)")
    return problems


def features_record(reading: SensorReading, features: dict[str, float], kind: str) -> ExtractedFeatures:
    metadata: dict[str, Any] = dict(reading.metadata or {})
    metadata.update({"source": "streamapp-features", "kind": kind})
    if kind == "window":
        metadata.update({"n_samples": len(reading.samples or []), "sampling_rate_hz": reading.sampling_rate_hz})
    if reading.cycle is not None:
        metadata["cycle"] = reading.cycle
    return ExtractedFeatures(
        asset_id=reading.asset_id, sensor_id=reading.sensor_id, timestamp=reading.timestamp,
        features=features, metadata=metadata,
    )


async def extract(events: list[EventT]) -> list[ExtractedFeatures]:
    """Features for usable events, in order: raw windows computed together in an executor."""
    readings: list[SensorReading] = [cast(SensorReading, event.value) for event in events]
    windows = [reading for reading in readings if reading.samples is not None]
    computed: list[dict[str, float]] = []
    if windows:
        loop = asyncio.get_running_loop()
        computed = await loop.run_in_executor(
            None, extract_batch, [w.samples or [] for w in windows], [float(w.sampling_rate_hz or 0) for w in windows]
        )
    by_window = iter(computed)
    records = []
    for reading in readings:
        if reading.samples is not None:
            records.append(features_record(reading, next(by_window), "window"))
        else:
            records.append(features_record(reading, {k: float(v) for k, v in (reading.values or {}).items()}, "cycle"))
    return records


@app.agent(sensor_readings_topic)
async def extract_features(stream: StreamT) -> None:
    async for events in micro_batches(stream, agent=AGENT):
        timer = BatchTimer(AGENT)
        usable = []
        for event in events:
            problems = reading_problems(cast(SensorReading, event.value))
            if problems:
                await send_dead_letter(event, error="; ".join(problems), reason=INVALID, agent=AGENT)
            else:
                usable.append(event)
        for record in await extract(usable):
            await extracted_features_topic.send(key=record.asset_id, value=record)
        published_total.labels(extracted_features_topic.get_topic_name()).inc(len(usable))
        await ack_events(stream, events)
        timer.done()
