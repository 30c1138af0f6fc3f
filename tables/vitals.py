"""Faust tables of the IoT pipeline, all keyed by patient pseudonym (co-partitioned with `iot-measurements`).

Values are JSON dicts. Writes go through `store`, which names the changelog partition explicitly (the
source partition of the patient's readings), so the wall-clock timers can update them too and a
recovering worker restores each patient's state together with the partition that feeds it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TableT

from streamapp.app import app

# patient -> {"partition", "watermark", "closed_until", "late", "last_wall", "windows": {start: aggregate}}
vitals_5min = app.Table("iot-vitals-5min", key_type=str, default=None, help="Open 5-minute vitals windows")
# patient -> {"partition", "devices": {device_id: {last_event, last_seen, interval, missing, quality, status}}}
device_last_seen = app.Table("iot-device-last-seen", key_type=str, default=None, help="Device status")
# patient -> {"partition", "starts": [window_start, ...]}: finals already written, for deduplication
emitted_windows = app.Table("iot-emitted-windows", key_type=str, default=None, help="Finals already sunk")

EMITTED_WINDOWS_KEPT = 64
CHANGELOG_CHUNK = 40  # changelog messages handed to Faust's producer buffer (limit 100) before it drains


def store(table: TableT, key: str, value: Any, partition: int) -> None:
    """Set `table[key]` and changelog it to `partition` (works inside and outside stream iteration)."""
    table.data[key] = value
    table.send_changelog(partition, key, value)


class DeferredChangelog:
    """Table entries changed since their last changelog message: each is changelogged once, with its value
    at that moment, when `send` runs (the IoT agent runs it right before its lake flush acknowledges
    events, and Faust flushes the producer before it commits offsets, so no committed offset ever gets
    ahead of the state a recovering worker restores; its timer runs it too when no flush is coming).
    Under load a patient's state is then changelogged once per flush instead of once per batch."""

    def __init__(self) -> None:
        self._dirty: dict[tuple[str, str], tuple[TableT, int]] = {}

    def mark(self, table: TableT, key: str, partition: int) -> None:
        self._dirty[(table.name, key)] = (table, partition)

    async def send(self) -> int:
        """Changelog every dirty entry, a chunk at a time: Faust blocks the delivery of every incoming
        message while its producer buffer holds more than 100 messages, so a burst of hundreds of
        changelog messages at once would stall all the agents."""
        dirty, self._dirty = self._dirty, {}
        buffer = app.producer.buffer
        for index, ((_, key), (table, partition)) in enumerate(dirty.items(), start=1):
            if key not in table.data:  # its partition went to another worker, which owns the state now
                continue
            table.send_changelog(partition, key, table.data[key])
            if index % CHANGELOG_CHUNK == 0:
                while buffer.size > CHANGELOG_CHUNK // 4 and buffer.state == "running":  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
        return len(dirty)


def partition_of(value: dict[str, Any] | None) -> int | None:
    return None if value is None else value.get("partition")
