"""Device status from the readings it sends and from its silences: online, degraded or silent.

The state of each device is a plain JSON dict (kept in a Faust table per patient pseudonym);
`observe` runs per reading, `check` on a wall-clock timer so a device that stops sending is noticed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamapp.records import DeviceStatus

ONLINE = "online"
DEGRADED = "degraded"
SILENT = "silent"
QUALITY_SMOOTHING = 0.3  # weight of the newest quality score
INTERVAL_SMOOTHING = 0.2  # weight of the newest gap in the expected interval
GAP_TOLERANCE = 1.5  # a gap longer than this many intervals means readings were missed

DeviceState = dict[str, Any]


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


class DeviceTracker:
    """Operations on one device's state; thresholds come from the settings."""

    def __init__(self, silence_s: float, report_every_s: float, degraded_quality: float) -> None:
        self.silence_s = silence_s
        self.report_every_s = report_every_s
        self.degraded_quality = degraded_quality

    def observe(self, device: DeviceState | None, event_s: float, quality: float | None, wall_s: float) -> tuple[
        DeviceState, bool
    ]:
        """Fold one reading in; True when the status should be published (new, changed, or due)."""
        if device is None:
            device = {"last_event": event_s, "last_seen": wall_s, "interval": None, "missing": 0,
                      "quality": quality, "status": None, "reported": 0.0}
        else:
            gap = event_s - device["last_event"]
            interval = device["interval"]
            if gap > 0:
                if interval and gap > GAP_TOLERANCE * interval:
                    device["missing"] += max(0, round(gap / interval) - 1)
                elif interval is None:
                    device["interval"] = gap
                else:
                    device["interval"] = (1 - INTERVAL_SMOOTHING) * interval + INTERVAL_SMOOTHING * gap
                device["last_event"] = event_s
            device["last_seen"] = wall_s
            if quality is not None:
                previous = device["quality"]
                device["quality"] = quality if previous is None else (
                    (1 - QUALITY_SMOOTHING) * previous + QUALITY_SMOOTHING * quality
                )
        status = DEGRADED if device["quality"] is not None and device["quality"] < self.degraded_quality else ONLINE
        changed = status != device["status"]
        device["status"] = status
        return device, changed or wall_s - device["reported"] >= self.report_every_s

    def check(self, device: DeviceState, wall_s: float) -> bool:
        """Mark a device silent once it has sent nothing for `silence_s`; True when a status is due."""
        if wall_s - device["last_seen"] >= self.silence_s and device["status"] != SILENT:
            device["status"] = SILENT
            return True
        return wall_s - device["reported"] >= self.report_every_s

    def report(self, device_id: str, patient_id: str, device: DeviceState, wall_s: float) -> DeviceStatus:
        """The status record to publish now (and remember that it was published)."""
        device["reported"] = wall_s
        missing = device["missing"]
        if device["status"] == SILENT and device["interval"]:
            missing += int((wall_s - device["last_seen"]) / device["interval"])
        return DeviceStatus(
            device_id=device_id, status=device["status"], last_seen=_iso(device["last_event"]),
            patient_id=patient_id, missing_readings=missing,
            signal_quality=None if device["quality"] is None else round(device["quality"], 2),
            reported_at=_iso(wall_s),
        )
