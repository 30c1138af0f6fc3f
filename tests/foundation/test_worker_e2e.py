"""The worker as a user starts it: ready fast, health answers, garbage is dead-lettered, SIGTERM is quick."""

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_helpers import produce, read_topic
from tests.worker import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

INPUT_TOPICS = ["sensor-readings", "extracted-features", "iot-measurements", "ecommerce-events"]


@pytest.fixture
def worker(kafka: Any, tmp_path: Path) -> Any:
    process = WorkerProcess(kafka.url, tmp_path)
    yield process
    process.kill()


def test_worker_is_healthy_and_stops_on_sigterm_within_10_s(worker: WorkerProcess) -> None:
    started = time.monotonic()
    worker.start()
    ready_s = time.monotonic() - started
    status, body = worker.get("/health")
    assert status == 200
    assert body["broker"]["reachable"] is True and body["broker"]["durable"] is True
    assert body["database"]["ok"] is True
    status, figures = worker.get("/metrics.json")
    assert status == 200 and {"processed_messages", "latency_p99_s", "valid_pct"} <= set(figures)
    status, text = worker.get("/metrics")
    assert status == 200 and "streamapp_dead_letters_total" in text
    assert ready_s < 60
    assert worker.stop() < 10


def test_a_restarted_worker_is_ready_within_10_s(worker: WorkerProcess) -> None:
    worker.start()
    worker.kill()
    started = time.monotonic()
    worker.start()
    assert time.monotonic() - started < 10, worker.log_tail()


def test_garbage_on_every_input_topic_is_dead_lettered_and_consumption_goes_on(worker: WorkerProcess, kafka: Any) -> None:
    worker.start()
    garbage = b"\x00\xffnot json at all" + uuid.uuid4().bytes
    for topic in INPUT_TOPICS:
        asyncio.run(produce(kafka.bootstrap, topic, [(b"bad-key", garbage)]))
    valid = {"asset_id": f"asset-{uuid.uuid4().hex[:6]}", "values": {"sensor_2": 641.8}, "timestamp": "2026-01-01T00:00:00Z"}
    asyncio.run(produce(kafka.bootstrap, "sensor-readings", [(valid["asset_id"].encode(), json.dumps(valid).encode())]))

    def ours(messages: list[dict]) -> list[dict]:
        return [m for m in messages if isinstance(m["value"], dict) and m["value"].get("raw_value_b64")
                and base64.b64decode(m["value"]["raw_value_b64"]) == garbage]

    letters = asyncio.run(read_topic(kafka.bootstrap, "dead-letters", until=lambda m: len(ours(m)) >= len(INPUT_TOPICS)))
    found = ours(letters)
    assert sorted(letter["value"]["topic"] for letter in found) == sorted(INPUT_TOPICS)
    for letter in found:
        assert letter["value"]["offset"] >= 0 and letter["value"]["error"] and letter["value"]["reason"] == "decode"
    features = asyncio.run(read_topic(
        kafka.bootstrap, "extracted-features",
        until=lambda m: any(isinstance(x["value"], dict) and x["value"].get("asset_id") == valid["asset_id"] for x in m),
    ))
    assert any(isinstance(x["value"], dict) and x["value"].get("asset_id") == valid["asset_id"] for x in features)
    status, body = worker.get("/metrics.json")
    assert body["dead_letters"] >= len(INPUT_TOPICS)
