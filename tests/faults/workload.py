"""A known set of keyed events for three pipelines (IoT -> PostgreSQL, lake, `iot-alerts`; returns ->
MariaDB, `return-predictions`; anomalies -> PostgreSQL, lake, `anomalies-detected`), produced in slices
so a fault can be injected mid-stream, and the audit of every sink: nothing missing, nothing twice."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from lake.writer import read_dataset

NORMAL_VITALS = {"freq_card": 80.0, "freq_resp": 16.0, "spo2_pct": 97.0, "temp_corp": 36.9}
LOW_SPO2 = 85.0  # under the 88 % threshold: one CRITICAL_SPO2 alert
FEATURES = {"rms": 0.5, "kurtosis": 0.3, "crest_factor": 1.2, "variance": 0.1, "mean": 0.0}
IOT, ORDERS, FEATURES_TOPIC = "iot-measurements", "ecommerce-events", "extracted-features"


@dataclass
class Message:
    topic: str
    key: str
    value: dict[str, Any]


@dataclass
class Workload:
    """`n` events per pipeline, ids prefixed with `tag` so one scenario's rows are told apart."""

    tag: str
    n: int
    messages: list[Message] = field(default_factory=list)
    measurement_ids: set[str] = field(default_factory=set)
    alert_ids: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    detections: set[tuple[str, str]] = field(default_factory=set)  # (asset_id, timestamp)
    patients: list[str] = field(default_factory=list)
    assets: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, tag: str, n: int, *, patients: int = 8, assets: int = 4, iot_only: bool = False) -> Workload:
        """Interleaved IoT measurements, order events and feature vectors (every 4th reading alerts)."""
        load = cls(tag, n)
        load.patients = ["pt-" + secrets.token_hex(24) for _ in range(patients)]
        load.assets = [f"{tag}-asset-{i}" for i in range(assets)]
        start = datetime.now(UTC) - timedelta(seconds=120)
        for i in range(n):
            at = (start + timedelta(milliseconds=50 * i)).isoformat()
            patient = load.patients[i % patients]
            message_id = f"{tag}-m-{i:05d}"
            vitals = {**NORMAL_VITALS, **({"spo2_pct": LOW_SPO2} if i % 4 == 0 else {})}
            load.messages.append(Message(IOT, patient, {
                "patient_id": patient, "device_id": f"{tag}-dev-{i % patients}", "timestamp": at,
                "measurements": vitals, "ingestion_timestamp": at, "api_version": "1.0.0", "message_id": message_id,
            }))
            load.measurement_ids.add(message_id)
            if i % 4 == 0:
                load.alert_ids.add(f"{message_id}:CRITICAL_SPO2")
            if iot_only:
                continue
            event_id = f"{tag}-e-{i:05d}"
            load.messages.append(Message(ORDERS, event_id, {
                "event_id": event_id, "order_id": f"{tag}-o-{i:05d}", "customer_customer_id": f"{tag}-c-{i % 50}",
                "event_time": at, "customer_country": "FR", "order_device": "mobile", "order_channel": "web",
                "order_main_category": "shoes", "order_n_items": 1 + i % 3, "order_basket_value": 40.0 + i % 7,
                "order_shipping_fee": 4.9, "order_discount": 0.0, "order_order_total": 44.9 + i % 7,
            }))
            load.event_ids.add(event_id)
            asset = load.assets[i % assets]
            features = {name: value + 0.01 * (i % 5) for name, value in FEATURES.items()}
            load.messages.append(Message(FEATURES_TOPIC, asset, {
                "asset_id": asset, "sensor_id": f"{tag}-s", "timestamp": at, "features": features, "metadata": {},
            }))
            load.detections.add((asset, at))
        return load

    def slices(self, parts: int) -> list[list[Message]]:
        size = -(-len(self.messages) // parts)
        return [self.messages[i:i + size] for i in range(0, len(self.messages), size)]


async def produce(
    bootstrap: str, messages: Sequence[Message], *, pace_s: float = 0.0, chunk: int = 100,
) -> list[tuple[Message, int, int]]:
    """Send with acks=all and idempotence (the producer never duplicates input); waits for every ack and
    returns (message, partition, offset) of each. With `pace_s`, sleeps between chunks (faults land
    mid-stream)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, request_timeout_ms=60000,
        retry_backoff_ms=200,
    )
    await producer.start()
    acked: list[tuple[Message, int, int]] = []
    try:
        for start in range(0, len(messages), chunk):
            pending = [
                await producer.send(m.topic, key=m.key.encode(), value=json.dumps(m.value).encode())
                for m in messages[start:start + chunk]
            ]
            for message, future in zip(messages[start:start + chunk], pending, strict=True):
                metadata = await future
                acked.append((message, metadata.partition, metadata.offset))
            if pace_s:
                await asyncio.sleep(pace_s)
    finally:
        await producer.stop()
    return acked


def produce_sync(bootstrap: str, messages: Sequence[Message], **kwargs: Any) -> list[tuple[Message, int, int]]:
    return asyncio.run(produce(bootstrap, messages, **kwargs))


# ---- reading the sinks back ------------------------------------------------------------------------
async def _rows(url: str, sql: str, prefix: str) -> list[tuple[Any, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(text(sql), {"prefix": prefix + "%"})).all()]
    except Exception as exc:  # table not created yet
        if "exist" in str(exc).lower():
            return []
        raise
    finally:
        await engine.dispose()


async def _column(url: str, sql: str, prefix: str) -> list[str]:
    return [str(row[0]) for row in await _rows(url, sql, prefix)]


@dataclass
class SinkCounts:
    """Every id each sink holds for one workload, as a multiset (a duplicate shows as a count of 2)."""

    found: dict[str, Counter[Any]]

    def missing(self, expected: dict[str, set[Any]]) -> dict[str, int]:
        return {sink: len(expected[sink] - set(self.found[sink])) for sink in expected}

    def duplicated(self, sinks: Sequence[str]) -> dict[str, int]:
        return {sink: sum(count - 1 for count in self.found[sink].values() if count > 1) for sink in sinks}

    def unexpected(self, expected: dict[str, set[Any]]) -> dict[str, int]:
        return {sink: len(set(self.found[sink]) - expected[sink]) for sink in expected}


def _lake_ids(lake: Path, dataset: str, column: str, prefix: str) -> Counter[Any]:
    try:
        rows = read_dataset(lake, dataset).select([column]).to_pylist()
    except Exception:  # dataset not written yet (or being written: read again later)
        return Counter()
    return Counter(row[column] for row in rows if str(row[column]).startswith(prefix))


def _lake_detections(lake: Path, prefix: str) -> Counter[Any]:
    try:
        rows = read_dataset(lake, "bronze/anomalies").select(["asset_id", "timestamp"]).to_pylist()
    except Exception:
        return Counter()
    return Counter((row["asset_id"], _iso(row["timestamp"])) for row in rows if row["asset_id"].startswith(prefix))


def _iso(value: Any) -> str:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


async def _topic_values(bootstrap: str, topic: str, field_name: str | tuple[str, str], prefix: str) -> Counter[Any]:
    from tests.kafka_helpers import read_topic

    messages = await read_topic(bootstrap, topic, within_s=4.0, until=None)
    found: Counter[Any] = Counter()
    for message in messages:
        value = message["value"]
        if not isinstance(value, dict):
            continue
        if isinstance(field_name, tuple):
            key = (value.get(field_name[0]), value.get(field_name[1]))
            if str(key[0]).startswith(prefix):
                found[(key[0], _iso(datetime.fromisoformat(str(key[1]).replace("Z", "+00:00"))))] += 1
        elif str(value.get(field_name, "")).startswith(prefix):
            found[value[field_name]] += 1
    return found


DB_SINKS = ("pg:iot_measurements", "pg:iot_alerts", "maria:table_events", "maria:table_predictions",
            "pg:anomaly_detections")
LAKE_SINKS = ("lake:raw/iot_measurements", "lake:bronze/iot_alerts", "lake:bronze/anomalies")
TOPIC_SINKS = ("topic:iot-alerts", "topic:return-predictions", "topic:anomalies-detected")


@dataclass
class Sinks:
    """Where one worker setup writes: PostgreSQL (telemetry), MariaDB (orders), the lake, the broker."""

    pg_url: str
    maria_url: str
    lake: Path
    bootstrap: str

    def expected(self, load: Workload) -> dict[str, set[Any]]:
        expected: dict[str, set[Any]] = {
            "pg:iot_measurements": load.measurement_ids, "pg:iot_alerts": load.alert_ids,
            "lake:raw/iot_measurements": load.measurement_ids, "lake:bronze/iot_alerts": load.alert_ids,
            "topic:iot-alerts": load.alert_ids,
        }
        if load.event_ids:
            expected.update({
                "maria:table_events": load.event_ids, "maria:table_predictions": load.event_ids,
                "topic:return-predictions": load.event_ids,
                "pg:anomaly_detections": load.detections, "lake:bronze/anomalies": load.detections,
                "topic:anomalies-detected": load.detections,
            })
        return expected

    async def read(self, load: Workload, *, topics: bool = True) -> SinkCounts:
        tag = load.tag
        found: dict[str, Counter[Any]] = {
            "pg:iot_measurements": Counter(await _column(
                self.pg_url, "SELECT message_id FROM iot_measurements WHERE message_id LIKE :prefix", tag)),
            "pg:iot_alerts": Counter(await _column(
                self.pg_url, "SELECT alert_id FROM iot_alerts WHERE alert_id LIKE :prefix", tag)),
            "lake:raw/iot_measurements": _lake_ids(self.lake, "raw/iot_measurements", "message_id", tag),
            "lake:bronze/iot_alerts": _lake_ids(self.lake, "bronze/iot_alerts", "alert_id", tag),
        }
        if load.event_ids:
            detections = await _rows(
                self.pg_url, "SELECT asset_id, timestamp FROM anomaly_detections WHERE asset_id LIKE :prefix", tag)
            found.update({
                "maria:table_events": Counter(await _column(
                    self.maria_url, "SELECT event_id FROM table_events WHERE event_id LIKE :prefix", tag)),
                "maria:table_predictions": Counter(await _column(
                    self.maria_url, "SELECT event_id FROM table_predictions WHERE event_id LIKE :prefix", tag)),
                "pg:anomaly_detections": Counter((asset, _iso(stamp)) for asset, stamp in detections),
                "lake:bronze/anomalies": _lake_detections(self.lake, tag),
            })
        if topics:
            found["topic:iot-alerts"] = await _topic_values(self.bootstrap, "iot-alerts", "alert_id", tag)
            if load.event_ids:
                found["topic:return-predictions"] = await _topic_values(
                    self.bootstrap, "return-predictions", "event_id", tag)
                found["topic:anomalies-detected"] = await _topic_values(
                    self.bootstrap, "anomalies-detected", ("asset_id", "timestamp"), tag)
        return SinkCounts(found)

    def wait_complete(self, load: Workload, within_s: float, *, progress: Callable[[], str] = str) -> float:
        """Poll the databases and the lake until every expected id is there; returns the seconds it took."""
        started = time.monotonic()
        expected = {sink: ids for sink, ids in self.expected(load).items() if not sink.startswith("topic:")}
        while True:
            counts = asyncio.run(self.read(load, topics=False))
            missing = counts.missing(expected)
            if not any(missing.values()):
                return time.monotonic() - started
            if time.monotonic() - started > within_s:
                raise AssertionError(f"sinks incomplete after {within_s} s: missing {missing}\n{progress()}")
            time.sleep(0.5)

    def audit(self, load: Workload) -> dict[str, Any]:
        """Every sink complete and nothing unexpected; no duplicate in databases or the lake. Topic
        duplicates are allowed (each record carries the id its sinks dedupe on) and are returned."""
        counts = asyncio.run(self.read(load))
        expected = self.expected(load)
        assert counts.missing(expected) == dict.fromkeys(expected, 0), counts.missing(expected)
        assert counts.unexpected(expected) == dict.fromkeys(expected, 0), counts.unexpected(expected)
        stored = [sink for sink in expected if not sink.startswith("topic:")]
        assert counts.duplicated(stored) == dict.fromkeys(stored, 0), counts.duplicated(stored)
        return counts.duplicated([sink for sink in expected if sink.startswith("topic:")])


def unique_tag(name: str) -> str:
    return f"f{name}{uuid.uuid4().hex[:6]}"
