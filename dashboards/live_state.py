"""The dashboard's bounded in-process view of the pipelines' outputs, filled by `dashboards.agents`.

Every series is a deque with a maxlen and every keyed map evicts its oldest key, so memory stays
bounded however long the worker runs. Each row carries a sequence number: an open dashboard asks
for the rows after the last one it has shown and streams only those to the browser.

Limitation: the agents that fill this state consume in the app's consumer group, so each worker
holds only the partitions assigned to it (its patients, assets and orders); with several workers
every dashboard shows its own worker's share, and the share moves after a rebalance.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from streamapp.records import (
    AnomalyResult,
    DeadLetter,
    DeviceStatus,
    IotMeasurement,
    OrderEvent,
    ReturnPrediction,
    RulPrediction,
    VitalAlert,
)

MAX_KEYS = 500  # patients, assets, devices kept (least recently updated evicted first)
MAX_ALERTS = 200
MAX_EVENT_CATEGORIES = 50_000  # event_id -> category, to label return predictions
MAX_CATEGORIES = 200
MINUTES_KEPT = 120
OPS_SAMPLES = 600
SEVERITY_COLORS = {"critical": "#c0392b", "high": "#e67e22", "medium": "#f1c40f", "low": "#27ae60"}

_sequence = itertools.count(1)
K = TypeVar("K")
V = TypeVar("V")
A = TypeVar("A", AnomalyResult, RulPrediction)  # the per-asset outputs of the machine pipelines


def epoch_ms(timestamp: str, fallback_s: float | None = None) -> float:
    """An ISO 8601 time as milliseconds since the epoch (what Bokeh datetime axes plot); naive is UTC."""
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return (fallback_s if fallback_s is not None else time.time()) * 1000.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() * 1000.0


class Series:
    """A bounded series of rows (dicts of numbers or strings), each tagged with a global sequence number."""

    def __init__(self, maxlen: int) -> None:
        self.rows: deque[tuple[int, dict[str, Any]]] = deque(maxlen=maxlen)

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append((next(_sequence), row))

    @property
    def last_seq(self) -> int:
        return self.rows[-1][0] if self.rows else 0

    def since(self, seq: int) -> tuple[list[dict[str, Any]], int]:
        """Rows newer than `seq` (oldest first) and the sequence to ask from next time."""
        newer: list[dict[str, Any]] = []
        for row_seq, row in reversed(self.rows):
            if row_seq <= seq:
                break
            newer.append(row)
        newer.reverse()
        return newer, max(seq, self.last_seq)

    def latest(self) -> dict[str, Any] | None:
        return self.rows[-1][1] if self.rows else None

    def __len__(self) -> int:
        return len(self.rows)


class BoundedMap(OrderedDict[K, V], Generic[K, V]):
    """A dict that forgets its least recently written key beyond `limit` keys."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


def columns(rows: list[dict[str, Any]], names: Iterable[str]) -> dict[str, Any]:
    """Rows as the column dict `ColumnDataSource.stream` takes."""
    return {name: [row.get(name) for row in rows] for name in names}


@dataclass
class MinuteCounts:
    """Events per wall-clock minute over the last `MINUTES_KEPT` minutes."""

    counts: deque[list[float]] = field(default_factory=lambda: deque(maxlen=MINUTES_KEPT))

    def add(self, count: int, now_s: float | None = None) -> None:
        minute_ms = math.floor((now_s if now_s is not None else time.time()) / 60.0) * 60_000.0
        if self.counts and self.counts[-1][0] == minute_ms:
            self.counts[-1][1] += count
        else:
            self.counts.append([minute_ms, float(count)])

    def rows(self) -> list[dict[str, float]]:
        return [{"minute": minute, "events": count} for minute, count in self.counts]


@dataclass
class CategoryMean:
    total: float = 0.0
    count: int = 0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


def anomaly_point(result: AnomalyResult) -> dict[str, Any]:
    return {
        "time": epoch_ms(result.timestamp),
        "final_score": result.final_score,
        "threshold": final_threshold(result),
        "is_anomaly": result.is_anomaly,
        "criticality": result.criticality,
        "color": SEVERITY_COLORS.get(result.criticality, "#7f8c8d"),
    }


def rul_point(prediction: RulPrediction) -> dict[str, Any]:
    return {
        "time": epoch_ms(prediction.timestamp),
        "rul": prediction.rul_prediction,
        "lower": prediction.confidence_interval_lower,
        "upper": prediction.confidence_interval_upper,
        "confidence_level": prediction.confidence_level,
    }


class LiveState:
    """What the dashboard shows, for this worker's partitions; updated by agents, read by sessions."""

    def __init__(self, history_points: int = 600) -> None:
        self.history_points = history_points
        self.reset()

    def reset(self) -> None:
        self.vitals: BoundedMap[str, Series] = BoundedMap(MAX_KEYS)
        self.alerts: Series = Series(MAX_ALERTS)
        self.devices: BoundedMap[str, dict[str, Any]] = BoundedMap(MAX_KEYS)
        self.anomalies: BoundedMap[str, Series] = BoundedMap(MAX_KEYS)
        self.rul: BoundedMap[str, Series] = BoundedMap(MAX_KEYS)
        self.event_categories: BoundedMap[str, str] = BoundedMap(MAX_EVENT_CATEGORIES)
        self.order_minutes = MinuteCounts()
        self.orders_seen = 0
        self.duplicate_events = 0
        self.return_proba_by_category: BoundedMap[str, CategoryMean] = BoundedMap(MAX_CATEGORIES)
        self.predictions_seen = 0
        self.dead_letters_by_reason: BoundedMap[str, int] = BoundedMap(MAX_CATEGORIES)
        self.model_versions_seen: BoundedMap[str, str] = BoundedMap(MAX_CATEGORIES)
        self.operations = Series(OPS_SAMPLES)
        self.health: dict[str, Any] = {}
        self.health_checked_at = 0.0
        self.records_by_topic: BoundedMap[str, int] = BoundedMap(MAX_CATEGORIES)

    def _series(self, table: BoundedMap[str, Series], key: str) -> Series:
        series = table.get(key)
        if series is None:
            series = Series(self.history_points)
        table[key] = series  # also marks the key as recently updated
        return series

    def _count(self, topic: str, count: int) -> None:
        self.records_by_topic[topic] = self.records_by_topic.get(topic, 0) + count

    # ---- IoT ----------------------------------------------------------------------------------
    def add_measurements(
        self, measurements: Iterable[IotMeasurement], patient_of: Callable[[str], str] = str,
    ) -> None:
        """Append each measurement to its patient's series; `patient_of` maps the record's id to the key
        shown (records are shared with other agents: never modified here)."""
        count = 0
        for measurement in measurements:
            count += 1
            vitals = measurement.measurements
            self._series(self.vitals, patient_of(measurement.patient_id)).append({
                "time": epoch_ms(measurement.timestamp),
                "temp_corp": vitals.temp_corp,
                "freq_card": vitals.freq_card,
                "spo2_pct": vitals.spo2_pct,
                "freq_resp": vitals.freq_resp,
            })
        self._count("iot-measurements", count)

    def add_alerts(self, alerts: Iterable[VitalAlert]) -> None:
        count = 0
        for alert in alerts:
            count += 1
            severity = (alert.severity or "").lower()
            self.alerts.append({
                "time": epoch_ms(alert.timestamp),
                "timestamp": alert.timestamp,
                "patient_id": alert.patient_id,
                "device_id": alert.device_id,
                "alert_type": alert.alert_type,
                "severity": severity,
                "value": alert.value,
                "threshold": alert.threshold,
                "color": SEVERITY_COLORS.get(severity, "#7f8c8d"),
            })
        self._count("iot-alerts", count)

    def add_device_statuses(self, statuses: Iterable[DeviceStatus]) -> None:
        count = 0
        for status in statuses:
            count += 1
            self.devices[status.device_id] = {
                "device_id": status.device_id,
                "status": status.status,
                "last_seen": status.last_seen,
                "patient_id": status.patient_id,
            }
        self._count("iot-device-status", count)

    def patients(self) -> list[str]:
        return sorted(self.vitals)

    # ---- machines -----------------------------------------------------------------------------
    def _add_asset_points(
        self, table: BoundedMap[str, Series], outputs: Iterable[A], point: Callable[[A], dict[str, Any]],
        model: str, topic: str,
    ) -> None:
        """Append `point(output)` to each output's asset series and note the model version it names."""
        count = 0
        for output in outputs:
            count += 1
            self._series(table, output.asset_id).append(point(output))
            if output.model_version:
                self.model_versions_seen[model] = output.model_version
        self._count(topic, count)

    def add_anomalies(self, results: Iterable[AnomalyResult]) -> None:
        self._add_asset_points(self.anomalies, results, anomaly_point, "anomaly", "anomalies-detected")

    def add_rul_predictions(self, predictions: Iterable[RulPrediction]) -> None:
        self._add_asset_points(self.rul, predictions, rul_point, "rul", "rul-predictions")

    def assets(self) -> list[str]:
        return sorted(set(self.anomalies) | set(self.rul))

    def fleet(self) -> list[dict[str, Any]]:
        """One row per asset, lowest RUL first (assets without a forecast last)."""
        rows = []
        for asset in self.assets():
            rul = self.rul[asset].latest() if asset in self.rul else None
            anomaly = self.anomalies[asset].latest() if asset in self.anomalies else None
            rows.append({
                "asset_id": asset,
                "rul": rul["rul"] if rul else math.nan,
                "lower": rul["lower"] if rul else math.nan,
                "upper": rul["upper"] if rul else math.nan,
                "final_score": anomaly["final_score"] if anomaly else math.nan,
                "criticality": anomaly["criticality"] if anomaly else "",
                "color": anomaly["color"] if anomaly else "#7f8c8d",
            })
        rows.sort(key=lambda row: (math.isnan(float(row["rul"])), float(row["rul"])))
        return rows

    # ---- orders -------------------------------------------------------------------------------
    def add_order_events(self, events: Iterable[OrderEvent], now_s: float | None = None) -> None:
        count = 0
        for event in events:
            count += 1
            if event.event_id in self.event_categories:
                self.duplicate_events += 1
            self.event_categories[event.event_id] = event.order_main_category or "unknown"
        self.orders_seen += count
        self.order_minutes.add(count, now_s)
        self._count("ecommerce-events", count)

    def add_return_predictions(self, predictions: Iterable[ReturnPrediction]) -> None:
        count = 0
        for prediction in predictions:
            count += 1
            category = self.event_categories.get(prediction.event_id, "unknown")
            tally = self.return_proba_by_category.get(category) or CategoryMean()
            tally.total += float(prediction.return_proba)
            tally.count += 1
            self.return_proba_by_category[category] = tally
            if prediction.model_version:
                self.model_versions_seen["returns"] = prediction.model_version
        self.predictions_seen += count
        self._count("return-predictions", count)

    def return_proba_rows(self) -> list[dict[str, Any]]:
        return [
            {"category": category, "mean_proba": tally.mean, "predictions": tally.count}
            for category, tally in sorted(self.return_proba_by_category.items())
        ]

    # ---- operations ---------------------------------------------------------------------------
    def add_dead_letters(self, letters: Iterable[DeadLetter]) -> None:
        count = 0
        for letter in letters:
            count += 1
            self.dead_letters_by_reason[letter.reason] = self.dead_letters_by_reason.get(letter.reason, 0) + 1
        self._count("dead-letters", count)

    def add_operations_sample(self, sample: dict[str, Any]) -> None:
        self.operations.append(sample)

    def set_health(self, checks: dict[str, Any], now_s: float | None = None) -> None:
        self.health = checks
        self.health_checked_at = now_s if now_s is not None else time.time()


def final_threshold(result: AnomalyResult) -> float:
    """The threshold the final score is compared with: `metadata.threshold` when the agent sets it, else
    the members' common (normalised) threshold, taken as their median."""
    declared = (result.metadata or {}).get("threshold")
    if isinstance(declared, int | float):
        return float(declared)
    thresholds = sorted(score.threshold for score in result.scores)
    if not thresholds:
        return math.nan
    return thresholds[len(thresholds) // 2]


live_state = LiveState()
"""The worker's one live state (module level: agents fill it, dashboard sessions read it)."""
