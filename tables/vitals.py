"""Faust tables of the IoT pipeline, all keyed by patient pseudonym (co-partitioned with `iot-measurements`).

Values are JSON dicts. Writers change `table.data` and mark the entry in a `tables.changelog.DeferredChangelog`
with the changelog partition named explicitly (the source partition of the patient's readings), so the
wall-clock timer can update them too and a recovering worker restores each patient's state together
with the partition that feeds it.
"""

from __future__ import annotations

from typing import Any

from streamapp.app import app

# patient -> {"partition", "watermark", "closed_until", "late", "last_wall", "windows": {start: aggregate}}
vitals_5min = app.Table("iot-vitals-5min", key_type=str, default=None, help="Open 5-minute vitals windows")
# patient -> {"partition", "devices": {device_id: {last_event, last_seen, interval, missing, quality, status}}}
device_last_seen = app.Table("iot-device-last-seen", key_type=str, default=None, help="Device status")
# patient -> {"partition", "starts": [window_start, ...]}: finals already written, for deduplication
emitted_windows = app.Table("iot-emitted-windows", key_type=str, default=None, help="Finals already sunk")

EMITTED_WINDOWS_KEPT = 64


def partition_of(value: dict[str, Any] | None) -> int | None:
    return None if value is None else value.get("partition")
