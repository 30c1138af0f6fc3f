"""Per-patient tumbling windows of vitals keyed by event time, as plain JSON state for a Faust table.

An event is late when it is older than the patient's watermark (newest event time seen) minus the
grace period, or falls in a window already emitted; late events are counted, not aggregated. A window
closes once the watermark minus the grace passes its end, or when the patient has sent nothing for the
grace period of wall-clock time (so silent patients' last windows are emitted too). Closing removes the
window from the state, so with the state changelogged a window is emitted once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from streamapp.iot.validation import VITALS
from streamapp.records import VitalsWindow

WindowState = dict[str, Any]


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


class TumblingVitals:
    """Operations on one patient's window state: add an event, close what is due."""

    def __init__(self, size_s: float, grace_s: float, idle_close_s: float | None = None) -> None:
        self.size_s = float(size_s)
        self.grace_s = float(grace_s)
        self.idle_close_s = float(grace_s if idle_close_s is None else idle_close_s)

    @staticmethod
    def new_state(partition: int) -> WindowState:
        return {"partition": partition, "watermark": None, "closed_until": None, "late": 0, "last_wall": 0.0,
                "windows": {}}

    def window_start(self, event_s: float) -> float:
        return math.floor(event_s / self.size_s) * self.size_s

    def is_late(self, state: WindowState, event_s: float) -> bool:
        watermark, closed_until = state["watermark"], state["closed_until"]
        if watermark is not None and event_s < watermark - self.grace_s:
            return True
        return closed_until is not None and event_s < closed_until

    def add(
        self, state: WindowState, event_s: float, vitals: Sequence[float], alert_types: Sequence[str],
        wall_s: float,
    ) -> bool:
        """Aggregate one event (vitals in `VITALS` order); False, and counted as late, when it is too old."""
        state["last_wall"] = wall_s
        if self.is_late(state, event_s):
            state["late"] += 1
            return False
        key = repr(self.window_start(event_s))
        window = state["windows"].get(key)
        if window is None:
            window = state["windows"][key] = {
                "n": 0, "min": list(vitals), "max": list(vitals), "sum": [0.0] * len(vitals), "alerts": {},
            }
        window["n"] += 1
        lows, highs, sums = window["min"], window["max"], window["sum"]
        for i, value in enumerate(vitals):
            sums[i] += value
            if value < lows[i]:
                lows[i] = value
            if value > highs[i]:
                highs[i] = value
        for alert_type in alert_types:
            window["alerts"][alert_type] = window["alerts"].get(alert_type, 0) + 1
        watermark = state["watermark"]
        state["watermark"] = event_s if watermark is None else max(watermark, event_s)
        return True

    def close_due(self, state: WindowState, patient_id: str, wall_s: float | None = None) -> list[VitalsWindow]:
        """Remove and return the finals of every window that is due (all of them when the patient is idle)."""
        if not state["windows"]:
            return []
        idle = wall_s is not None and wall_s - state["last_wall"] >= self.idle_close_s
        horizon = math.inf if idle else state["watermark"] - self.grace_s
        finals = []
        for key in sorted(state["windows"], key=float):
            start = float(key)
            end = start + self.size_s
            if end > horizon:
                break
            window = state["windows"].pop(key)
            finals.append(self._final(patient_id, start, end, window, state["late"]))
            state["late"] = 0
            closed = state["closed_until"]
            state["closed_until"] = end if closed is None else max(closed, end)
        return finals

    def _final(self, patient_id: str, start: float, end: float, window: dict[str, Any], late: int) -> VitalsWindow:
        n = window["n"]
        stats = {
            name: {"min": window["min"][i], "mean": window["sum"][i] / n, "max": window["max"][i], "count": float(n)}
            for i, name in enumerate(VITALS)
        }
        return VitalsWindow(
            patient_id=patient_id, window_start=iso(start), window_end=iso(end), count=n, stats=stats,
            alert_count=sum(window["alerts"].values()), alerts_by_type=dict(window["alerts"]), late_events=late,
        )
