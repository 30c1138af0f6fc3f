"""The anomaly agent in memory: results with three scores, criticality and version; journal and lake rows;
dead letters for an untrained model and for missing features; the per-asset history window."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from streamapp.records import ExtractedFeatures
from tests.anomalies.conftest import SEED_EXAMPLE, Serving
from tests.faust_testing import CapturedSends, wait_for


def message(asset_id: str = "ASSET001", timestamp: str = "2024-01-01T12:00:00Z", **features: float) -> ExtractedFeatures:
    body = copy.deepcopy(SEED_EXAMPLE)
    body["features"].update(features)
    return ExtractedFeatures(**{**body, "asset_id": asset_id, "timestamp": timestamp})


async def journal(env: Path) -> list[dict[str, Any]]:
    from streamapp.db.engines import Role, get_engine
    from streamapp.db.telemetry import AnomalyDetectionRow

    async with get_engine(Role.TELEMETRY).connect() as connection:
        rows = await connection.execute(select(AnomalyDetectionRow.__table__))
        return [dict(row._mapping) for row in rows]


async def journal_holds(env: Path, count: int, within_s: float = 10.0) -> list[dict[str, Any]]:
    """The agent writes the journal after publishing: wait until it holds `count` rows."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            rows = await journal(env)
        except Exception:  # the table is created by the first write
            rows = []
        if len(rows) >= count or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_the_seed_example_is_scored_by_three_models_with_criticality_version_journal_and_lake(
    anomaly_env: Path, captured_sends: CapturedSends, serving: Serving, small_ensemble: Any
) -> None:
    from agents.anomalies import detect_anomalies
    from lake.model_outputs import sorted_json
    from lake.writer import read_dataset
    from streamapp.anomaly_scoring import detection_id
    from streamapp.sinks import flush_due_lake_sinks

    serving.serve(small_ensemble, "7")
    async with detect_anomalies.test_context() as agent:
        await agent.put(ExtractedFeatures(**SEED_EXAMPLE), key="ASSET001")
        await wait_for(lambda: len(captured_sends.values("anomalies-detected")) == 1, within_s=20)
        (row,) = await journal_holds(anomaly_env, 1)
        await flush_due_lake_sinks(force=True)
    ((key, result),) = captured_sends.by_topic["anomalies-detected"]
    assert key == "ASSET001" and result.asset_id == "ASSET001" and result.sensor_id == "SENSOR001"
    assert [score.model_name for score in result.scores] == ["isolation_forest", "one_class_svm", "lstm_autoencoder"]
    assert all(0.0 <= score.score <= 1.0 and 0.0 < score.threshold < 1.0 for score in result.scores)
    assert result.criticality in ("low", "medium", "high", "critical")
    assert result.is_anomaly == (result.final_score > small_ensemble.threshold)
    assert result.model_version == "7" and result.metadata["model_label"] == small_ensemble.version
    assert result.features == SEED_EXAMPLE["features"] and result.timestamp == "2024-01-01T12:00:00Z"
    assert row["detection_id"] == detection_id("ASSET001", "SENSOR001", "2024-01-01T12:00:00Z")
    assert row["final_score"] == result.final_score and row["criticality"] == result.criticality
    assert row["model_version"] == "7" and len(row["scores"]) == 3
    (lake,) = read_dataset(anomaly_env / "lake", "bronze/anomalies").to_pylist()
    assert (lake["asset_id"], lake["date"], lake["lstm_autoencoder_score"]) == ("ASSET001", "2024-01-01",
                                                                                 result.scores[2].score)
    assert lake["timestamp"] == datetime(2024, 1, 1, 12, tzinfo=UTC) and lake["criticality"] == result.criticality
    assert lake["detection_id"] == row["detection_id"] and lake["is_anomaly"] == result.is_anomaly
    assert lake["features"] == sorted(result.features.items())  # a map column, in name order
    assert lake["metadata"] == sorted_json(result.metadata)


async def test_without_a_promoted_model_every_message_is_dead_lettered_as_model_not_trained(
    anomaly_env: Path, captured_sends: CapturedSends, serving: Serving
) -> None:
    from agents.anomalies import anomaly_model_check, detect_anomalies
    from tables.history import anomaly_history

    async with detect_anomalies.test_context() as agent:
        for minute in range(3):
            await agent.put(message(timestamp=f"2024-01-01T12:0{minute}:00Z"), key="ASSET001")
        await wait_for(lambda: len(captured_sends.values("dead-letters")) == 3)
    letters = captured_sends.values("dead-letters")
    assert {letter.reason for letter in letters} == {"model-not-trained"}
    assert all(letter.agent == "anomalies" and letter.raw_value_b64 for letter in letters)
    assert captured_sends.values("anomalies-detected") == []
    assert anomaly_history.window("ASSET001") == []  # nothing consumed into state: a replay starts clean
    health = await anomaly_model_check()
    assert health["ok"] is False and health["reason"] == "model-not-trained"


async def test_a_message_lacking_model_features_is_dead_lettered_naming_them_never_zero_filled(
    anomaly_env: Path, captured_sends: CapturedSends, serving: Serving, small_ensemble: Any
) -> None:
    from agents.anomalies import detect_anomalies

    serving.serve(small_ensemble, "7")
    partial = ExtractedFeatures(asset_id="A9", features={"rms": 0.5, "mean": 0.0, "other": 1.0})
    async with detect_anomalies.test_context() as agent:
        await agent.put(partial, key="A9")
        await agent.put(ExtractedFeatures(asset_id="A9", features={"rms": "loud", "kurtosis": 0.3, "crest_factor": 1.2,
                                                                    "variance": 0.1, "mean": 0.0}), key="A9")
        await wait_for(lambda: len(captured_sends.values("dead-letters")) == 2, within_s=10)
    first, second = captured_sends.values("dead-letters")
    assert first.reason == second.reason == "missing-features"
    assert first.error == "missing features: kurtosis, crest_factor, variance"
    assert second.error == "missing features: rms"
    assert captured_sends.values("anomalies-detected") == []


async def test_each_asset_keeps_its_last_window_of_vectors_and_the_lstm_uses_them(
    anomaly_env: Path, captured_sends: CapturedSends, serving: Serving, small_ensemble: Any,
    monkeypatch: Any,
) -> None:
    from agents.anomalies import detect_anomalies
    from tables.history import anomaly_history

    monkeypatch.setenv("STREAMAPP_HISTORY_WINDOW", "5")
    from streamapp.settings import get_settings

    get_settings.cache_clear()
    serving.serve(small_ensemble, "7")
    async with detect_anomalies.test_context() as agent:
        for i in range(7):
            await agent.put(message("A1", f"2024-01-01T12:00:0{i}Z", rms=0.4 + i / 100), key="A1")
            await agent.put(message("A2", f"2024-01-01T12:00:0{i}Z"), key="A2")
        await wait_for(lambda: len(captured_sends.values("anomalies-detected")) == 14, within_s=20)
    window = anomaly_history.window("A1")
    assert [round(vector["rms"], 2) for vector in window] == [0.42, 0.43, 0.44, 0.45, 0.46]
    results = [r for r in captured_sends.values("anomalies-detected") if r.asset_id == "A1"]
    assert [r.metadata["history_length"] for r in results] == [1, 2, 3, 4, 5, 5, 5]
    # the LSTM window is 4: padded (flagged, left out of the final score) until the asset has 4 vectors
    assert [r.metadata["lstm_padded"] for r in results] == [True, True, True, False, False, False, False]
    assert all(not r.scores[2].is_anomaly for r in results[:3])


async def test_a_new_production_version_is_used_from_the_next_micro_batch(
    anomaly_env: Path, captured_sends: CapturedSends, serving: Serving, small_ensemble: Any
) -> None:
    from agents.anomalies import detect_anomalies

    serving.serve(small_ensemble, "7")
    async with detect_anomalies.test_context() as agent:
        await agent.put(message(timestamp="2024-01-01T12:00:00Z"), key="ASSET001")
        await wait_for(lambda: len(captured_sends.values("anomalies-detected")) == 1, within_s=10)
        serving.serve(small_ensemble, "8")
        await asyncio.sleep(0)
        await agent.put(message(timestamp="2024-01-01T12:01:00Z"), key="ASSET001")
        await wait_for(lambda: len(captured_sends.values("anomalies-detected")) == 2, within_s=10)
    assert [r.model_version for r in captured_sends.values("anomalies-detected")] == ["7", "8"]


async def test_messages_the_journal_could_not_hold_are_dead_lettered_and_nan_extras_are_dropped(
    anomaly_env: Path, captured_sends: CapturedSends, serving: Serving, small_ensemble: Any
) -> None:
    from agents.anomalies import detect_anomalies

    serving.serve(small_ensemble, "7")
    features = dict(SEED_EXAMPLE["features"])
    async with detect_anomalies.test_context() as agent:
        await agent.put(ExtractedFeatures(asset_id="A" * 200, features=features, sensor_id=7, metadata="x"), key="A")
        await agent.put(ExtractedFeatures(asset_id="N1", features={**features, "extra": float("nan")},
                                          metadata={"gain": float("inf")}, timestamp="2024-01-01T12:00:00Z"), key="N1")
        await wait_for(lambda: len(captured_sends.values("anomalies-detected")) == 1, within_s=10)
        (row,) = await journal_holds(anomaly_env, 1)
    (letter,) = captured_sends.values("dead-letters")
    assert letter.reason == "invalid" and letter.error == (
        "asset_id is longer than 128 characters; sensor_id must be a string; metadata must be an object")
    (result,) = captured_sends.values("anomalies-detected")
    assert "extra" not in result.features and result.metadata["gain"] is None
    assert row["asset_id"] == "N1" and row["metadata"]["gain"] is None


async def test_on_postgresql_the_journal_holds_what_was_published_awkward_text_and_replays_included(
    anomaly_env: Path, captured_sends: CapturedSends, serving: Serving, small_ensemble: Any, pg_database_url: str,
    monkeypatch: Any,
) -> None:
    """The journal on PostgreSQL (the unnest upsert of prepared rows): awkward text survives, a replayed
    message updates its row, and the row is the published result's."""
    from agents.anomalies import detect_anomalies
    from streamapp.db.engines import dispose_all
    from streamapp.settings import get_settings

    monkeypatch.setenv("STREAMAPP_DATABASE_URL", pg_database_url)
    get_settings.cache_clear()
    await dispose_all()
    serving.serve(small_ensemble, "7")
    body = copy.deepcopy(SEED_EXAMPLE)
    body["metadata"] = {"note": 'tab\there\nnew "line" \\ é', "nested": {"b": 1, "a": None}}
    awkward = ExtractedFeatures(**{**body, "asset_id": "A\\1\t", "sensor_id": "S\n1"})
    try:
        async with detect_anomalies.test_context() as agent:
            await agent.put(awkward, key="A\\1\t")
            await agent.put(message("ASSET002"), key="ASSET002")
            await wait_for(lambda: len(captured_sends.values("anomalies-detected")) == 2, within_s=20)
            await journal_holds(anomaly_env, 2)
            await agent.put(awkward, key="A\\1\t")  # the same message again: its row is updated, not doubled
            await wait_for(lambda: len(captured_sends.values("anomalies-detected")) == 3, within_s=20)
            await asyncio.sleep(0.5)
            listed = await journal(anomaly_env)
    finally:
        await dispose_all()
    rows = {row["asset_id"]: row for row in listed}
    assert len(listed) == 2 and set(rows) == {"A\\1\t", "ASSET002"}
    published = {result.asset_id: result for result in captured_sends.values("anomalies-detected")}
    for asset_id, row in rows.items():
        result = published[asset_id]
        assert (row["sensor_id"], row["criticality"], row["model_version"]) == (
            result.sensor_id, result.criticality, result.model_version)
        assert row["final_score"] == result.final_score and row["is_anomaly"] == result.is_anomaly
        assert row["timestamp"] == datetime.fromisoformat(result.timestamp.replace("Z", "+00:00"))
        assert row["metadata"] == result.metadata and row["features"] == result.features
        assert row["scores"] == [score.asdict() for score in result.scores]
        assert row["created_at"].tzinfo is not None
    assert rows["A\\1\t"]["metadata"]["note"] == 'tab\there\nnew "line" \\ é'
