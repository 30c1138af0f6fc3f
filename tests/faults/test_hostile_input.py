"""Hostile input, in process: every topic's decoder and every POST endpoint of the app get 2,000
generated payloads each (random bytes, wrong types, NaN/Infinity, huge numbers, deep nesting, unicode,
near-valid bodies). Decoders answer a record of the declared types or a ValueDecodeError (which the topic
turns into a `decode` dead letter), nothing else; endpoints answer 2xx/4xx (503 when a model or the
broker is missing), never a 500 or an exception; bodies and lists are bounded."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.exceptions import ValueDecodeError
from faust.types.tuples import Message
from hypothesis import HealthCheck, given, settings

from streamapp.deadletters import type_problems
from tests.faults.hostile import EXAMPLES, bodies, post_routes
from tests.faust_testing import CapturedSends, captured_sends, faust_app  # noqa: F401
from tests.view_testing import FakeRequest, FakeView

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

TOPIC_EXAMPLES: dict[str, dict[str, Any]] = {
    "iot-measurements": {
        "patient_id": "pt-" + "a" * 48, "device_id": "d-1", "timestamp": "2026-11-23T10:00:00+00:00",
        "measurements": {"freq_card": 80.0, "freq_resp": 16.0, "spo2_pct": 97.0, "temp_corp": 36.9},
        "ingestion_timestamp": "2026-11-23T10:00:00+00:00", "api_version": "1.0.0", "message_id": "m-1"},
    "ecommerce-events": {"event_id": "e-1", "order_id": "o-1", "customer_customer_id": "c-1", "order_n_items": 2,
                         "order_basket_value": 10.0},
    "extracted-features": {"asset_id": "a-1", "sensor_id": "s", "timestamp": "2024-01-01T12:00:00Z",
                           "features": {"rms": 0.5, "kurtosis": 0.3}, "metadata": {}},
    "sensor-readings": {"asset_id": "a-1", "sensor_id": "s", "timestamp": "2024-01-01T12:00:00Z",
                        "samples": [0.1, 0.2, 0.3], "sampling_rate_hz": 100.0},
    "iot-aggregations": {"patient_id": "p", "window_start": "2026-11-23T10:00:00+00:00",
                         "window_end": "2026-11-23T10:05:00+00:00", "count": 1,
                         "stats": {"spo2_pct": {"min": 1.0, "mean": 1.0, "max": 1.0}}, "alert_count": 0,
                         "alerts_by_type": {}},
    "iot-device-status": {"device_id": "d", "status": "online", "last_seen": "2026-11-23T10:00:00+00:00"},
}


def contract_topics() -> list[Any]:
    from streamapp.topics import CONTRACT_TOPICS

    return list(CONTRACT_TOPICS)


def message_for(topic: str, raw: bytes) -> Message:
    return Message(topic=topic, partition=0, offset=7, timestamp=0.0, timestamp_type=0, headers=[],
                   key=b"k", value=raw, checksum=None)


@pytest.fixture(scope="module")
def app() -> Any:
    from streamapp.app import app

    app.finalize()
    app.discover()
    return app


@pytest.mark.parametrize("topic_name", [topic.get_topic_name() for topic in contract_topics()])
def test_every_decoder_answers_a_well_typed_record_or_a_decode_error(app: Any, topic_name: str) -> None:
    import asyncio

    (topic,) = [t for t in contract_topics() if t.get_topic_name() == topic_name]
    loop = asyncio.new_event_loop()
    outcomes = {"decoded": 0, "refused": 0}

    @FUZZ
    @given(raw=bodies(TOPIC_EXAMPLES.get(topic_name, {})))
    def decode(raw: bytes) -> None:
        try:
            event = loop.run_until_complete(topic.decode(message_for(topic_name, raw), propagate=True))
        except ValueDecodeError:
            outcomes["refused"] += 1
            return
        outcomes["decoded"] += 1
        assert type_problems(event.value, topic.value_type) == []
        if isinstance(event.value, faust.Record):  # nested records build without raising, numbers are finite
            assert all(not isinstance(v, float) or math.isfinite(v) for v in _leaves(event.value.asdict()))

    try:
        decode()
    finally:
        loop.close()
    assert outcomes["refused"] > 0 and sum(outcomes.values()) >= EXAMPLES


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, faust.Record):
        value = value.asdict()
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


async def test_a_wrongly_typed_message_becomes_one_decode_dead_letter(
    faust_app: Any, captured_sends: CapturedSends,  # noqa: F811
) -> None:
    from streamapp.topics import iot_measurements_topic

    example = dict(TOPIC_EXAMPLES["iot-measurements"], measurements="not an object")
    message = message_for("iot-measurements", json.dumps(example).encode())
    with pytest.raises(ValueDecodeError) as refused:
        await iot_measurements_topic.decode(message, propagate=True)
    await iot_measurements_topic.on_value_decode_error(refused.value, message)
    (letter,) = captured_sends.values("dead-letters")
    assert letter.reason == "decode" and "measurements" in letter.error and letter.offset == 7


# ---- endpoints ---------------------------------------------------------------------------------------
POST_EXAMPLES: dict[str, Any] = {
    "/iot/measurements": {"patient_id": "patient-001", "device_id": "d-1", "timestamp": "2026-11-23T10:30:00",
                          "measurements": {"freq_card": 120, "freq_resp": 18, "spo2_pct": 85.0, "temp_corp": 38.5}},
    "/ingest": {"patient_id": "patient-001", "device_id": "d-1", "timestamp": "2026-11-23T10:30:00",
                "freq_card": 120, "freq_resp": 18, "spo2_pct": 85.0, "temp_corp": 38.5},
    "/api/v1/returns/predict": {"order_id": "o-1", "customer_customer_id": "c-1", "order_n_items": 2,
                                "order_basket_value": 40.0},
    "/api/v1/anomalies/detect": TOPIC_EXAMPLES["extracted-features"],
    "/api/v1/anomalies/detect/batch": [TOPIC_EXAMPLES["extracted-features"]],
    "/api/v1/rul/predict": TOPIC_EXAMPLES["extracted-features"],
}


@pytest.fixture
def fuzz_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Settings in `tmp_path` with an empty model registry: model endpoints answer 503, never train."""
    from streamapp.settings import get_settings

    monkeypatch.setenv("STREAMAPP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("STREAMAPP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'telemetry.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("STREAMAPP_PSEUDONYM_KEY", "fuzz-key")
    monkeypatch.setenv("STREAMAPP_INGEST_DELIVERY_TIMEOUT_S", "0.5")
    get_settings.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    get_settings.cache_clear()


ALLOWED = set(range(200, 300)) | set(range(400, 500)) | {503}
TRAIN_ROUTES = {"/api/v1/anomalies/train", "/api/v1/rul/train"}


def test_the_app_has_post_routes_to_fuzz(app: Any) -> None:
    routes = post_routes(app)
    assert {"/iot/measurements", "/ingest", "/api/v1/returns/predict", "/api/v1/anomalies/detect"} <= set(routes)


@pytest.mark.parametrize("path", sorted(POST_EXAMPLES) + sorted(TRAIN_ROUTES))
async def test_every_post_endpoint_answers_hostile_bodies_with_4xx_never_500(
    app: Any, path: str, fuzz_env: Path, captured_sends: CapturedSends,  # noqa: F811
) -> None:
    routes = post_routes(app)
    if path not in routes:
        pytest.fail(f"{path} is not a POST route of the app any more: update POST_EXAMPLES")
    view_class = routes[path]
    statuses: dict[int, int] = {}
    import asyncio

    loop = asyncio.get_running_loop()

    @FUZZ
    @given(raw=bodies(POST_EXAMPLES.get(path)))
    def call(raw: bytes) -> None:
        future = asyncio.run_coroutine_threadsafe(view_class.post(FakeView(), FakeRequest(raw)), loop)
        status, body = future.result(30)
        statuses[status] = statuses.get(status, 0) + 1
        assert status in ALLOWED, (status, body, raw[:300])
        if status >= 400:
            assert body.get("detail"), body

    await asyncio.to_thread(call)
    assert sum(statuses.values()) >= EXAMPLES and any(400 <= s < 500 for s in statuses), statuses


def test_every_post_route_is_fuzzed(app: Any) -> None:
    """A new POST view must get an example here (or be a training route) to be fuzzed."""
    assert set(post_routes(app)) <= set(POST_EXAMPLES) | TRAIN_ROUTES | {r for r in post_routes(app)
                                                                         if r.startswith("/dashboard")}


@pytest.mark.parametrize("path", sorted(POST_EXAMPLES) + sorted(TRAIN_ROUTES))
async def test_every_post_endpoint_refuses_a_10_mb_body_and_an_over_long_list(
    app: Any, path: str, fuzz_env: Path, captured_sends: CapturedSends,  # noqa: F811
) -> None:
    from streamapp.settings import get_settings

    view_class = post_routes(app)[path]
    settings_now = get_settings()
    huge = b'{"padding": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    status, body = await view_class.post(FakeView(), FakeRequest(huge))
    assert status == 413 and body["detail"]
    request = FakeRequest(huge)
    request.content_length = None  # type: ignore[assignment]  # chunked: no declared length, the reader stops at the limit
    status, _ = await view_class.post(FakeView(), request)
    assert status == 413 and request.content.position <= settings_now.max_request_bytes + 65536
    example = POST_EXAMPLES.get(path) or {}
    item = example[0] if isinstance(example, list) else example
    status, body = await view_class.post(FakeView(), FakeRequest([item] * (settings_now.max_batch_items + 1)))
    assert status in (413, 422), (status, body)
    assert not captured_sends.values("iot-measurements")
