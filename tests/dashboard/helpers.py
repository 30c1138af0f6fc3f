"""Shared by the dashboard tests and `bench/dashboard_sessions.py`: a vitals feed and page probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.dashboard.chromium import Browser, Page

# how many temperature points the open page plots (0 until Bokeh has the document)
JS_VITALS_POINTS = """(() => {
  const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
  const line = doc && doc.get_model_by_name('vitals-temp_corp');
  return line ? line.data_source.data.time.length : 0;
})()"""


async def ensure_contract_topics(bootstrap: str, partitions: int = 4) -> None:
    """Create the contract topics a fresh broker lacks, before a worker subscribes to them."""
    from streamapp.topics import CONTRACT_TOPICS

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic.get_topic_name() for topic in CONTRACT_TOPICS if topic.get_topic_name() not in existing]
        if missing:
            await admin.create_topics([NewTopic(name, partitions, 1) for name in missing])
    finally:
        await admin.close()


def vitals_record(patient: str, rng: random.Random) -> dict[str, object]:
    """An enriched `IotMeasurement` as the ingestion views publish it (patient already a pseudonym)."""
    now = datetime.now(UTC).isoformat()
    return {
        "patient_id": patient, "device_id": f"dev-{patient}", "timestamp": now, "ingestion_timestamp": now,
        "measurements": {"freq_card": rng.uniform(70, 120), "freq_resp": rng.uniform(14, 26),
                         "spo2_pct": rng.uniform(90, 99), "temp_corp": rng.uniform(36.4, 38.4)},
        "api_version": "v1", "message_id": uuid.uuid4().hex,
    }


@contextlib.asynccontextmanager
async def vitals_flowing(bootstrap: str, patients: Sequence[str], every_s: float = 0.2,
                         seed: int = 7) -> AsyncIterator[None]:
    """Publish one measurement per patient to `iot-measurements` every `every_s` while the block runs."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    rng = random.Random(seed)

    async def publish() -> None:
        while True:
            for patient in patients:
                await producer.send("iot-measurements", json.dumps(vitals_record(patient, rng)).encode(),
                                    key=patient.encode())
            await asyncio.sleep(every_s)

    task = asyncio.create_task(publish())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()


async def open_dashboard(browser: Browser, url: str, *, min_points: int = 2, within_s: float = 30.0) -> Page:
    """Open `url` in a new tab and wait until the vitals plot holds `min_points` points."""
    page = await browser.open(url)
    await page.wait_for(f"{JS_VITALS_POINTS} >= {min_points}", within_s=within_s)
    return page


def machine_and_order_records(asset: str, points: int = 5) -> dict[str, list[tuple[str, dict[str, object]]]]:
    """Records as the anomaly, RUL and returns pipelines publish them, by topic, for one asset and a few orders."""
    now = datetime.now(UTC).isoformat()
    by_topic: dict[str, list[tuple[str, dict[str, object]]]] = {
        "anomalies-detected": [], "rul-predictions": [], "ecommerce-events": [], "return-predictions": []}
    for step in range(points):
        score = 0.2 + 0.15 * step
        by_topic["anomalies-detected"].append((asset, {
            "asset_id": asset, "sensor_id": "s1", "timestamp": now, "final_score": score, "is_anomaly": score > 0.8,
            "scores": [{"score": score, "model_name": "isolation_forest", "threshold": 0.8, "is_anomaly": score > 0.8}],
            "criticality": "high" if score > 0.8 else "low", "features": {}, "metadata": {}, "model_version": "a-1"}))
        rul = 100.0 - 10 * step
        by_topic["rul-predictions"].append((asset, {
            "asset_id": asset, "sensor_id": "s1", "timestamp": now, "rul_prediction": rul,
            "confidence_interval_lower": rul - 8, "confidence_interval_upper": rul + 8, "confidence_level": 0.95,
            "uncertainty": 4.0, "model_used": "ensemble", "model_scores": {}, "features": {}, "metadata": {},
            "model_version": "r-1"}))
        event_id = f"{asset}-event-{step}"
        by_topic["ecommerce-events"].append((event_id, {
            "event_id": event_id, "order_id": f"o-{step}", "customer_customer_id": "c-1",
            "order_main_category": "fashion" if step % 2 else "home"}))
        by_topic["return-predictions"].append((event_id, {
            "event_id": event_id, "order_id": f"o-{step}", "customer_customer_id": "c-1", "return_proba": 0.1 * step,
            "model_version": "ret-1", "predicted_at": now}))
    return by_topic
