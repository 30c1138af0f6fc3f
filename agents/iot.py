"""IoT vital signs: `iot-measurements` -> alerts, device status, 5-minute windows, database and lake.

One agent works in micro-batches: per event it evaluates the seed's rules, folds the reading into the
patient's window and device state (Faust tables), then per batch it publishes alerts, statuses and
closed windows, upserts measurements and alerts, adds lake rows, and acks once the lake holds them.
A wall-clock timer notices silent devices and closes the windows of patients that stopped sending.
Two small agents write the window finals (deduplicated) and the device statuses to the lake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pyarrow as pa
from faust.types import EventT, StreamT
from sqlalchemy import Table

from lake.sink import LakeSink
from streamapp import metrics
from streamapp.app import app
from streamapp.batch_tails import BackgroundBatches
from streamapp.batching import BatchTimer, micro_batches
from streamapp.db.engines import Role, get_engine
from streamapp.db.migrate import ensure_schema
from streamapp.db.telemetry import IotAlertRow, IotMeasurementRow
from streamapp.db.upsert import upsert
from streamapp.deadletters import INVALID, LATE, send_dead_letter
from streamapp.iot.devices import DeviceTracker
from streamapp.iot.pseudonym import is_pseudonym, pseudonymise
from streamapp.iot.rules import CRITICAL, fired_rules
from streamapp.iot.validation import VITALS, ingest_error, parse_timestamp, vital_problems
from streamapp.iot.windows import TumblingVitals
from streamapp.publishing import Outgoing, publish_confirmed
from streamapp.recent_ids import RecentIds
from streamapp.records import DeviceStatus, IotMeasurement, VitalAlert, VitalsWindow
from streamapp.settings import VitalThresholds, get_settings
from streamapp.sinks import ack_after_lake, lake_dataset, lake_sink, position_of, write_with_retry
from streamapp.topics import (
    iot_aggregations_topic,
    iot_alerts_topic,
    iot_device_status_topic,
    iot_errors_topic,
    iot_measurements_topic,
)
from tables.changelog import DeferredChangelog
from tables.vitals import EMITTED_WINDOWS_KEPT, device_last_seen, emitted_windows, vitals_5min

log = logging.getLogger(__name__)
AGENT = "iot"
HOUSEKEEPING_INTERVAL_S = 1.0
STORES_IN_FLIGHT = 2  # batches stored concurrently while the next one is folded
MEASUREMENTS_TABLE = cast(Table, IotMeasurementRow.__table__)
ALERTS_TABLE = cast(Table, IotAlertRow.__table__)

UTC_TIME = pa.timestamp("us", tz="UTC")
VITAL_COLUMNS = [(name, pa.float64()) for name in VITALS]
MEASUREMENTS_SCHEMA = pa.schema([
    ("message_id", pa.string()), ("device_id", pa.string()), ("timestamp", UTC_TIME), *VITAL_COLUMNS,
    ("quality_score", pa.float64()), ("ingestion_timestamp", UTC_TIME), ("api_version", pa.string()),
    ("date", pa.string()), ("patient_id", pa.string()),
])
ALERTS_SCHEMA = pa.schema([
    ("alert_id", pa.string()), ("message_id", pa.string()), ("alert_type", pa.string()),
    ("severity", pa.string()), ("patient_id", pa.string()), ("device_id", pa.string()),
    ("value", pa.float64()), ("threshold", pa.float64()), ("timestamp", UTC_TIME),
    ("ingestion_timestamp", UTC_TIME), ("date", pa.string()),
])
CRITICAL_SCHEMA = pa.schema([
    ("message_id", pa.string()), ("patient_id", pa.string()), ("device_id", pa.string()),
    ("timestamp", UTC_TIME), ("alert_types", pa.list_(pa.string())), ("alert_count", pa.int64()),
    *VITAL_COLUMNS, ("date", pa.string()),
])
WINDOWS_SCHEMA = pa.schema([
    ("patient_id", pa.string()), ("window_start", UTC_TIME), ("window_end", UTC_TIME), ("count", pa.int64()),
    *[(f"{name}_{stat}", pa.float64()) for name in VITALS for stat in ("min", "mean", "max")],
    ("alert_count", pa.int64()), ("alerts_by_type", pa.map_(pa.string(), pa.int64())),
    ("late_events", pa.int64()), ("date", pa.string()),
])
DEVICE_STATUS_SCHEMA = pa.schema([
    ("device_id", pa.string()), ("patient_id", pa.string()), ("status", pa.string()), ("last_seen", UTC_TIME),
    ("missing_readings", pa.int64()), ("signal_quality", pa.float64()), ("reported_at", UTC_TIME),
    ("date", pa.string()),
])


@dataclass
class Accepted:
    """One usable reading of the batch, with what the rules said about it."""

    event: EventT
    measurement: IotMeasurement
    event_time: datetime
    vitals: tuple[float, ...]
    alerts: list[VitalAlert]


@dataclass
class BatchOutcome:
    """What one batch gave: readings by fate, statuses and window finals to publish, patients to changelog."""

    accepted: list[Accepted] = field(default_factory=list)
    late: list[Accepted] = field(default_factory=list)
    replayed: list[Accepted] = field(default_factory=list)  # at or below the offset the table state holds
    copies: list[EventT] = field(default_factory=list)  # a message id already stored: a resend, a retry
    invalid: list[tuple[EventT, list[str]]] = field(default_factory=list)
    statuses: list[DeviceStatus] = field(default_factory=list)
    finals: list[VitalsWindow] = field(default_factory=list)
    touched: dict[str, int] = field(default_factory=dict)  # patient -> source partition


def alerts_for(measurement: IotMeasurement, thresholds: VitalThresholds) -> list[VitalAlert]:
    """One `VitalAlert` per rule that fires on the measurement."""
    vitals = measurement.measurements
    return [
        VitalAlert(
            alert_type=rule.alert_type, severity=rule.severity, patient_id=measurement.patient_id,
            device_id=measurement.device_id, value=rule.value, threshold=rule.threshold,
            timestamp=measurement.timestamp, message_id=measurement.message_id,
            alert_id=f"{measurement.message_id}:{rule.alert_type}",
            ingestion_timestamp=measurement.ingestion_timestamp,
        )
        for rule in fired_rules(vitals.spo2_pct, vitals.temp_corp, vitals.freq_card, thresholds)
    ]


class VitalsPipeline:
    """The state and outputs of the IoT agent; the timer shares it through a lock."""

    def __init__(self) -> None:
        settings = get_settings()
        self.thresholds = settings.vitals
        self.windows = TumblingVitals(settings.window_seconds, settings.window_grace_seconds)
        self.devices = DeviceTracker(
            settings.device_silence_seconds, settings.device_status_interval_s, settings.device_degraded_quality
        )
        self.lock = asyncio.Lock()
        self.schema_ready = False
        self.stored_ids = RecentIds(settings.recent_ids_kept)
        self.storing = BackgroundBatches(STORES_IN_FLIGHT)  # batches whose rows and acks are under way
        # changelogged once per lake flush, right before its acks (and by the timer when no flush is coming)
        self.changelog = DeferredChangelog("iot")
        self.sink: LakeSink = lake_sink("iot", [
            lake_dataset("raw/iot_measurements", MEASUREMENTS_SCHEMA, ["date", "patient_id"]),
            lake_dataset("bronze/iot_alerts", ALERTS_SCHEMA, ["date"]),
            lake_dataset("silver/critical_alerts", CRITICAL_SCHEMA, ["date"]),
        ])
        self.sink.before_acks.append(self.changelog.send)

    async def prepare(self) -> None:
        """Create the tables before the first batch, so the first alerts do not wait for a migration."""

        async def migrate() -> None:
            await ensure_schema(Role.TELEMETRY)

        await write_with_retry("db:iot", migrate)
        self.schema_ready = True

    # ---- per batch ----------------------------------------------------------------------------
    def fold(self, events: Sequence[EventT], wall_s: float) -> BatchOutcome:
        """Rules, windows and device state for a batch (no I/O): what to publish and to store."""
        outcome = BatchOutcome()
        in_batch: set[str] = set()
        for event in events:
            measurement = cast(IotMeasurement, event.value)
            problems = vital_problems(measurement.measurements.asdict())
            try:
                event_time = parse_timestamp(measurement.timestamp)
            except ValueError as exc:
                problems.append(f"timestamp: {exc}")
            if problems:
                outcome.invalid.append((event, problems))
                continue
            message_id = measurement.message_id
            if message_id and (message_id in self.stored_ids or message_id in in_batch):
                outcome.copies.append(event)
                continue
            in_batch.add(message_id)
            if not is_pseudonym(measurement.patient_id):  # a producer that skipped the ingestion view
                measurement.patient_id = pseudonymise(measurement.patient_id)
            vitals = tuple(float(getattr(measurement.measurements, name)) for name in VITALS)
            accepted = Accepted(event, measurement, event_time, vitals, alerts_for(measurement, self.thresholds))
            patient, partition = measurement.patient_id, event.message.partition
            windows = vitals_5min.data.get(patient) or self.windows.new_state(partition)
            offset = event.message.offset
            if windows["partition"] == partition and windows.get("offset", -1) >= offset:
                outcome.replayed.append(accepted)  # folded in and alerted before a restart: only store it again
                continue
            outcome.touched[patient] = partition
            windows["partition"], windows["offset"] = partition, offset
            alert_types = [alert.alert_type for alert in accepted.alerts]
            if self.windows.add(windows, event_time.timestamp(), vitals, alert_types, wall_s):
                outcome.accepted.append(accepted)
            else:
                outcome.late.append(accepted)
            vitals_5min.data[patient] = windows
            devices = device_last_seen.data.get(patient) or {"partition": partition, "devices": {}}
            devices["partition"] = partition
            state, due = self.devices.observe(
                devices["devices"].get(measurement.device_id), event_time.timestamp(),
                measurement.quality_score, wall_s,
            )
            devices["devices"][measurement.device_id] = state
            device_last_seen.data[patient] = devices
            if due:
                outcome.statuses.append(self.devices.report(measurement.device_id, patient, state, wall_s))
        for patient in outcome.touched:
            outcome.finals.extend(self.windows.close_due(vitals_5min.data[patient], patient))
        return outcome

    async def process(self, stream: StreamT, events: Sequence[EventT]) -> None:
        """Fold the batch and publish its alerts, statuses and window finals (awaited: the latency that
        matters), then hand the storing and the acks to a background task, so that the next batch is
        folded while this one's rows go to PostgreSQL and the lake (at most `STORES_IN_FLIGHT` at once)."""
        async with self.lock:
            outcome = self.fold(events, time.time())
            alerts = [alert for item in outcome.accepted + outcome.late for alert in item.alerts]
            await publish([
                *((iot_alerts_topic, alert.patient_id, alert) for alert in alerts),
                *((iot_device_status_topic, status.device_id, status) for status in outcome.statuses),
                *((iot_aggregations_topic, final.patient_id, final) for final in outcome.finals),
            ])
            for patient, partition in outcome.touched.items():  # changelogged (after the finals) before acks
                self.changelog.mark(vitals_5min, patient, partition)
                self.changelog.mark(device_last_seen, patient, partition)
            stored = outcome.accepted + outcome.late + outcome.replayed
            rows = [measurement_row(item) for item in stored]
            # a copy in the next batch is skipped even while these rows are still being written: both stay
            # unacknowledged until then, so a crash brings both back
            self.stored_ids.remember([row["message_id"] for row in rows])
            self.add_lake_rows(stored, rows)  # acknowledged only once stored below and flushed
        delivered = time.time()
        for alert in alerts:
            metrics.seed_figures.record_alert(alert.alert_type, _seconds_since(alert.ingestion_timestamp, delivered))
        await self.storing.submit(self.finish(stream, events, outcome, stored, rows))

    async def finish(
        self, stream: StreamT, events: Sequence[EventT], outcome: BatchOutcome, stored: list[Accepted],
        rows: list[dict[str, Any]],
    ) -> None:
        """The rest of a batch: dead letters, database rows, then the acks (once the lake holds the rows)."""
        for event, problems in outcome.invalid:
            await reject(event, problems)
        for item in outcome.late:
            await send_dead_letter(
                item.event, reason=LATE, agent=AGENT,
                error=f"event time {item.measurement.timestamp} is older than the window grace period",
            )
        await self.store_rows(stored, rows)
        if outcome.copies:
            metrics.duplicates_skipped_total.labels(AGENT).inc(len(outcome.copies))
        metrics.seed_figures.record_processed(len(events))
        await ack_after_lake(self.sink, stream, list(events))

    async def store_rows(self, stored: list[Accepted], rows: list[dict[str, Any]]) -> None:
        """Upsert measurements and alerts (idempotent by message_id / alert_id), retrying while the DB is down."""
        if not stored:
            return
        measurements = {row["message_id"]: row for row in rows}  # a resend within the batch: one row
        alerts = {alert.alert_id: alert_row(alert, item.event_time) for item in stored for alert in item.alerts}

        async def write() -> None:
            if not self.schema_ready:
                await ensure_schema(Role.TELEMETRY)
                self.schema_ready = True
            async with get_engine(Role.TELEMETRY).begin() as connection:
                await upsert(connection, MEASUREMENTS_TABLE, list(measurements.values()))
                await upsert(connection, ALERTS_TABLE, list(alerts.values()))

        await write_with_retry("db:iot", write)
        metrics.sink_rows_total.labels("db:iot").inc(len(measurements) + len(alerts))

    def add_lake_rows(self, stored: list[Accepted], rows: list[dict[str, Any]]) -> None:
        raw, alerts, critical = [], [], []
        for item, measurement in zip(stored, rows, strict=True):
            position = position_of(item.event)
            row = {**measurement, "date": item.event_time.date().isoformat()}
            raw.append((row, position))
            for alert in item.alerts:
                alerts.append(({**alert_row(alert, item.event_time), "date": row["date"],
                                "ingestion_timestamp": row["ingestion_timestamp"]}, position))
            critical_types = [alert.alert_type for alert in item.alerts if alert.severity == CRITICAL]
            if critical_types:
                critical.append(({
                    "message_id": row["message_id"], "patient_id": row["patient_id"], "device_id": row["device_id"],
                    "timestamp": item.event_time, "alert_types": critical_types, "alert_count": len(critical_types),
                    **{name: row[name] for name in VITALS}, "date": row["date"],
                }, position))
        self.sink.add("raw/iot_measurements", raw)
        self.sink.add("bronze/iot_alerts", alerts)
        self.sink.add("silver/critical_alerts", critical)

    # ---- on the wall-clock timer --------------------------------------------------------------
    async def housekeeping(self, wall_s: float, partitions: set[int] | None) -> None:
        """Publish statuses of silent or due devices and close the windows of idle patients; their state
        is changelogged with the next lake flush, or now when no flush is coming (idle)."""
        await self.close_and_report(wall_s, partitions)
        if not self.sink.buffered_rows:  # idle: no lake flush is coming to changelog the timer's changes
            await self.changelog.send()

    async def close_and_report(self, wall_s: float, partitions: set[int] | None) -> None:
        async with self.lock:
            statuses, finals, changed = [], [], []
            for patient, devices in list(device_last_seen.data.items()):
                if devices is None or (partitions is not None and devices["partition"] not in partitions):
                    continue
                due = [(device_id, state) for device_id, state in devices["devices"].items()
                       if self.devices.check(state, wall_s)]
                for device_id, state in due:
                    statuses.append(self.devices.report(device_id, patient, state, wall_s))
                if due:
                    changed.append((device_last_seen, patient, devices))
            for patient, windows in list(vitals_5min.data.items()):
                if windows is None or (partitions is not None and windows["partition"] not in partitions):
                    continue
                closed = self.windows.close_due(windows, patient, wall_s)
                if closed:
                    finals.extend(closed)
                    changed.append((vitals_5min, patient, windows))
            if not (statuses or finals):
                return
            await publish([
                *((iot_device_status_topic, status.device_id, status) for status in statuses),
                *((iot_aggregations_topic, final.patient_id, final) for final in finals),
            ])
            for table, patient, value in changed:  # the same objects as in the tables
                self.changelog.mark(table, patient, value["partition"])


async def publish(messages: Sequence[Outgoing]) -> None:
    """Send every message and wait until the broker has them all, retrying while it cannot (a retry may
    repeat messages: consumers dedupe by id)."""
    if messages:
        await write_with_retry("kafka:iot", lambda: publish_confirmed(messages))


async def reject(event: EventT, problems: list[str]) -> None:
    """A measurement that reached the topic without passing the ingestion view's checks."""
    measurement = cast(IotMeasurement, event.value)
    payload = measurement.asdict()
    payload["measurements"] = measurement.measurements.asdict() if hasattr(measurement.measurements, "asdict") \
        else measurement.measurements
    record = ingest_error(payload, problems, source=f"topic:{event.message.topic}", received_at=datetime.now(UTC))
    await iot_errors_topic.send(value=record)
    await send_dead_letter(event, error="; ".join(problems), reason=INVALID, agent=AGENT)


def _seconds_since(iso_time: str, now_s: float) -> float | None:
    try:
        return now_s - parse_timestamp(iso_time).timestamp()
    except ValueError:
        return None


def _utc(iso_time: str) -> datetime | None:
    try:
        return parse_timestamp(iso_time)
    except ValueError:
        return None


def measurement_row(item: Accepted) -> dict[str, Any]:
    measurement = item.measurement
    return {
        "message_id": measurement.message_id, "patient_id": measurement.patient_id,
        "device_id": measurement.device_id, "timestamp": item.event_time,
        **dict(zip(VITALS, item.vitals, strict=True)),
        "ingestion_timestamp": _utc(measurement.ingestion_timestamp) or item.event_time,
        "api_version": measurement.api_version, "quality_score": measurement.quality_score,
    }


def alert_row(alert: VitalAlert, event_time: datetime) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id, "message_id": alert.message_id, "alert_type": alert.alert_type,
        "severity": alert.severity, "patient_id": alert.patient_id, "device_id": alert.device_id,
        "value": alert.value, "threshold": alert.threshold, "timestamp": event_time,
    }


def assigned_partitions() -> set[int] | None:
    """Partitions of `iot-measurements` this worker owns (None when there is no consumer, as in tests)."""
    try:
        assignment = app.consumer.assignment()
    except Exception:  # consumer not started
        return None
    name = iot_measurements_topic.get_topic_name()
    return {tp.partition for tp in assignment if tp.topic == name}


_pipeline: VitalsPipeline | None = None


def current_pipeline() -> VitalsPipeline | None:
    return _pipeline


@app.agent(iot_measurements_topic)
async def process_vitals(stream: StreamT) -> None:
    """Alerts, device status, windows and sinks for every measurement, a micro-batch at a time."""
    global _pipeline
    pipeline = _pipeline = VitalsPipeline()
    await pipeline.prepare()
    async for events in micro_batches(stream, agent=AGENT):
        timer = BatchTimer(AGENT)
        await pipeline.process(stream, events)
        timer.done()


@app.timer(interval=HOUSEKEEPING_INTERVAL_S)
async def iot_housekeeping() -> None:
    if _pipeline is not None:
        await _pipeline.housekeeping(time.time(), assigned_partitions())


# ---- window finals and device statuses to the lake ---------------------------------------------
def window_row(final: VitalsWindow) -> dict[str, Any]:
    start = parse_timestamp(final.window_start)
    row: dict[str, Any] = {
        "patient_id": final.patient_id, "window_start": start, "window_end": parse_timestamp(final.window_end),
        "count": final.count, "alert_count": final.alert_count,
        "alerts_by_type": sorted(final.alerts_by_type.items()), "late_events": final.late_events,
        "date": start.date().isoformat(),
    }
    for name in VITALS:
        for stat in ("min", "mean", "max"):
            row[f"{name}_{stat}"] = final.stats[name][stat]
    return row


def status_row(status: DeviceStatus) -> dict[str, Any]:
    reported = _utc(status.reported_at) or datetime.now(UTC)
    return {
        "device_id": status.device_id, "patient_id": status.patient_id, "status": status.status,
        "last_seen": _utc(status.last_seen), "missing_readings": status.missing_readings,
        "signal_quality": status.signal_quality, "reported_at": reported, "date": reported.date().isoformat(),
    }


@app.agent(iot_aggregations_topic)
async def sink_vitals_windows(stream: StreamT) -> None:
    """Window finals to `bronze/iot_aggregations`, each (patient, window_start) once."""
    sink = lake_sink("iot-windows", [lake_dataset("bronze/iot_aggregations", WINDOWS_SCHEMA, ["date"])])
    changelog = DeferredChangelog("iot-windows")
    sink.before_acks.append(changelog.send)
    async for events in micro_batches(stream, agent="iot-windows"):
        rows = []
        for event in events:
            final = cast(VitalsWindow, event.value)
            partition = event.message.partition
            seen = emitted_windows.data.get(final.patient_id) or {"partition": partition, "starts": []}
            if final.window_start in seen["starts"]:
                continue
            seen["starts"] = [*seen["starts"], final.window_start][-EMITTED_WINDOWS_KEPT:]
            emitted_windows.data[final.patient_id] = seen
            changelog.mark(emitted_windows, final.patient_id, partition)
            rows.append((window_row(final), position_of(event)))
        sink.add("bronze/iot_aggregations", rows)
        await ack_after_lake(sink, stream, list(events))


@app.agent(iot_device_status_topic)
async def sink_device_status(stream: StreamT) -> None:
    """Device statuses to `bronze/device_status`."""
    sink = lake_sink("iot-devices", [lake_dataset("bronze/device_status", DEVICE_STATUS_SCHEMA, ["date"])])
    async for events in micro_batches(stream, agent="iot-devices"):
        sink.add("bronze/device_status", [(status_row(cast(DeviceStatus, event.value)), position_of(event)) for event in events])
        await ack_after_lake(sink, stream, list(events))

