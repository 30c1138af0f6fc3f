"""Hostile input against a LIVE worker (token, database password and pseudonym key set): a few hundred
generated requests and 10 MB bodies (4xx, never a 500, memory bounded), 10,000 malformed messages mixed
into a valid stream (every valid one stored, every bad one dead-lettered, the throughput drop printed),
and no secret in `/health`, `/metrics`, `/metrics.json` or the worker log."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults.conftest import record_figure, wait_for
from tests.faults.hostile import bodies
from tests.faults.test_hostile_input import POST_EXAMPLES
from tests.faults.workload import Message, Workload, produce, unique_tag
from tests.kafka_helpers import read_topic
from tests.worker import WorkerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
TOKEN = "live-" + secrets.token_hex(16)
PSEUDONYM_KEY = "pseudo-" + secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIVE_CASES = 300
MALFORMED = 10_000
VALID = 2_000


@pytest.fixture(scope="module")
def secret_worker(kafka: Any, postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    name = f"live_{secrets.token_hex(4)}"
    url = postgres.create_database(name)
    workdir = tmp_path_factory.mktemp("live-hostile")
    worker = WorkerProcess(kafka.url, workdir, env={
        "STREAMAPP_API_TOKEN": TOKEN, "STREAMAPP_PSEUDONYM_KEY": PSEUDONYM_KEY, "STREAMAPP_DATABASE_URL": url,
        "STREAMAPP_DASHBOARD_ENABLED": "false", "STREAMAPP_LAKE_FLUSH_SECONDS": "0.5",
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}", "STREAMAPP_INGEST_DELIVERY_TIMEOUT_S": "2",
    })
    worker.start()
    yield worker
    worker.kill()
    postgres.drop_database(name)


def raw_post(worker: WorkerProcess, path: str, raw: bytes, timeout: float = 20.0) -> tuple[int, bytes]:
    request = urllib.request.Request(worker.base_url + path, data=raw, method="POST",
                                     headers={"Content-Type": "application/json", **AUTH})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (ConnectionResetError, BrokenPipeError):  # the server may close early on a refused 10 MB body
        return 413, b""


def rss_mb(worker: WorkerProcess) -> float:
    assert worker.process is not None
    for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_hundreds_of_generated_requests_get_4xx_never_500_and_the_worker_stays_up(
    secret_worker: WorkerProcess,
) -> None:
    routes = sorted(POST_EXAMPLES)
    statuses: dict[int, int] = {}

    @settings(max_examples=LIVE_CASES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(route=st.sampled_from(routes), data=st.data())
    def send(route: str, data: st.DataObject) -> None:
        raw = data.draw(bodies(POST_EXAMPLES[route]))
        status, body = raw_post(secret_worker, route, raw)
        statuses[status] = statuses.get(status, 0) + 1
        assert status != 500 and (status < 500 or status == 503), (route, status, body[:300], raw[:200])

    send()
    health_status, health = secret_worker.get("/health")
    record_figure("live fuzz: statuses over generated requests", str(dict(sorted(statuses.items()))))
    assert sum(statuses.values()) >= LIVE_CASES and health_status == 200
    assert "Agent crashed" not in secret_worker.log_text() and "Traceback" not in secret_worker.log_text()


def test_10_mb_bodies_are_refused_with_413_and_memory_stays_bounded(secret_worker: WorkerProcess) -> None:
    before = rss_mb(secret_worker)
    huge = b'{"padding": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    for route in sorted(POST_EXAMPLES):
        for _ in range(2):
            status, _ = raw_post(secret_worker, route, huge)
            assert status == 413, route
    grown = rss_mb(secret_worker) - before
    record_figure("10 MB bodies x 12: worker RSS growth", f"{grown:.1f} MB")
    assert grown < 64, f"RSS grew by {grown:.0f} MB"
    assert secret_worker.get("/health")[0] == 200


def malformed_values(count: int, seed: int = 5) -> list[bytes]:
    """Undecodable (bytes, truncated JSON, NaN, wrong types, missing fields) and invalid (out of range) readings."""
    rng = random.Random(seed)
    example = dict(Workload.build("shape", 1, iot_only=True).messages[0].value)
    kinds = [
        lambda: rng.randbytes(rng.randrange(1, 60)),
        lambda: json.dumps(example)[: rng.randrange(1, 40)].encode(),
        lambda: json.dumps({**example, "measurements": {**example["measurements"], "spo2_pct": float("nan")}}).encode(),
        lambda: json.dumps({**example, "measurements": "abc"}).encode(),
        lambda: json.dumps({**example, "patient_id": rng.randrange(10**6)}).encode(),
        lambda: json.dumps({k: v for k, v in example.items() if k != "message_id"}).encode(),
        lambda: json.dumps({**example, "measurements": {**example["measurements"], "temp_corp": 99.0}}).encode(),
        lambda: json.dumps([example]).encode(),
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]


async def dead_letter_positions(bootstrap: str, expected: int, within_s: float) -> set[tuple[str, int, int]]:
    def enough(found: list[dict[str, Any]]) -> bool:
        return len(found) >= expected

    letters = await read_topic(bootstrap, "dead-letters", within_s=within_s,
                               until=lambda messages: enough(messages))
    return {(m["value"]["topic"], m["value"]["partition"], m["value"]["offset"]) for m in letters
            if isinstance(m["value"], dict)}


def stored_ids(worker: WorkerProcess, tag: str) -> set[str]:
    from tests.faults.workload import _column

    return set(asyncio.run(_column(worker.env["STREAMAPP_DATABASE_URL"],
                                   "SELECT message_id FROM iot_measurements WHERE message_id LIKE :prefix", tag)))


def test_10000_malformed_messages_in_a_valid_stream_are_all_dead_lettered_and_every_valid_one_is_stored(
    secret_worker: WorkerProcess, kafka: Any,
) -> None:
    baseline = Workload.build(unique_tag("clean"), VALID, iot_only=True)
    started = time.monotonic()
    asyncio.run(produce(kafka.bootstrap, baseline.messages, chunk=500))
    wait_for(lambda: len(stored_ids(secret_worker, baseline.tag)) == VALID, 120, "the clean stream stored")
    clean_rate = VALID / (time.monotonic() - started)

    mixed = Workload.build(unique_tag("mixed"), VALID, iot_only=True)
    bad = [Message("iot-measurements", f"bad-{i}", {}) for i in range(MALFORMED)]
    raws = malformed_values(MALFORMED)
    stream: list[tuple[Message, bytes | None]] = [(m, None) for m in mixed.messages] + list(zip(bad, raws, strict=True))
    random.Random(9).shuffle(stream)
    started = time.monotonic()
    acked = asyncio.run(produce_raw(kafka.bootstrap, stream))
    wait_for(lambda: len(stored_ids(secret_worker, mixed.tag)) == VALID, 240, "the valid part of the mixed stream")
    mixed_rate = VALID / (time.monotonic() - started)
    bad_positions = {("iot-measurements", partition, offset) for message, partition, offset in acked
                     if message.key.startswith("bad-")}
    letters = asyncio.run(dead_letter_positions(kafka.bootstrap, MALFORMED, 120))
    record_figure("10,000 malformed in 2,000 valid: valid-message throughput",
                  f"{clean_rate:.0f}/s clean -> {mixed_rate:.0f}/s mixed ({100 * (1 - mixed_rate / clean_rate):.0f} % drop)")
    assert bad_positions <= letters, f"{len(bad_positions - letters)} malformed messages not dead-lettered"
    assert stored_ids(secret_worker, mixed.tag) == mixed.measurement_ids
    assert secret_worker.get("/health")[0] == 200 and "Agent crashed" not in secret_worker.log_text()


async def produce_raw(bootstrap: str, stream: list[tuple[Message, bytes | None]]) -> list[tuple[Message, int, int]]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [(message, await producer.send(message.topic, key=message.key.encode(),
                                                 value=raw if raw is not None else json.dumps(message.value).encode()))
                   for message, raw in stream]
        results = []
        for message, future in pending:
            metadata = await future
            results.append((message, metadata.partition, metadata.offset))
        return results
    finally:
        await producer.stop()


def test_no_secret_in_health_metrics_or_the_worker_log(secret_worker: WorkerProcess) -> None:
    password = secret_worker.env["STREAMAPP_DATABASE_URL"].split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    exposed = []
    for path in ("/health", "/metrics", "/metrics.json", "/api/v1/returns/status", "/api/v1/anomalies/status"):
        exposed.append(json.dumps(secret_worker.get(path)[1]))
        exposed.append(json.dumps(secret_worker.request("GET", path, headers=AUTH)[1]))
    exposed.append(secret_worker.log_text())
    text = "\n".join(exposed)
    assert len(text) > 1000 and "iot-measurements" in text
    for name, value in (("api token", TOKEN), ("database password", password), ("pseudonym key", PSEUDONYM_KEY)):
        assert value not in text, f"the {name} is exposed"
        assert base64.b64encode(value.encode()).decode() not in text, f"the {name} is exposed (base64)"
