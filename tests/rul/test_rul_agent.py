"""The RUL agent in memory: replayed C-MAPSS cycles are forecast exactly as a direct evaluation of the same
windows (padded while short, and saying so), with the contract's fields, a journal row and a lake row; the
seed's three-feature example is dead-lettered naming the missing features; an untrained model and a
failing model dead-letter without stopping the agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from streamapp.records import ExtractedFeatures
from tests.faust_testing import CapturedSends, Serving, wait_for
from tests.rul.conftest import SEED_EXAMPLE, engine_messages

PREDICTIONS = "rul-predictions"


async def journal_rows(within_s: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
    """`rul_predictions` rows once it holds `count` (the agent writes after publishing)."""
    from streamapp.db.engines import Role, get_engine
    from streamapp.db.telemetry import RulPredictionRow

    deadline = asyncio.get_running_loop().time() + within_s
    rows: list[dict[str, Any]] = []
    while len(rows) < count and asyncio.get_running_loop().time() < deadline:
        try:
            async with get_engine(Role.TELEMETRY).connect() as connection:
                rows = [dict(row._mapping) for row in await connection.execute(select(RulPredictionRow.__table__))]
        except Exception:  # the table is created by the first write
            rows = []
        await asyncio.sleep(0.05)
    return rows


async def feed(bodies: list[dict[str, Any]], until: Callable[[], bool], within_s: float = 20.0) -> None:
    """Put `bodies` into the RUL agent (keyed by asset) and wait until `until()` holds."""
    from agents.rul import predict_rul

    async with predict_rul.test_context() as agent:
        for body in bodies:
            await agent.put(ExtractedFeatures(**body), key=body["asset_id"] or "unknown")
        await wait_for(until, within_s=within_s)


def rows_of(bodies: list[dict[str, Any]], names: list[str]) -> np.ndarray:
    return np.asarray([[body["features"][name] for name in names] for body in bodies], dtype=np.float64)


async def test_replayed_cycles_are_forecast_as_a_direct_evaluation_of_the_same_windows(
    rul_env: Path, captured_sends: CapturedSends, serving: Serving, quick_ensemble: Any
) -> None:
    from agents.rul import predict_rul
    from lake.writer import read_dataset
    from models.rul import pad_history
    from streamapp.feature_messages import record_key
    from streamapp.sinks import flush_due_lake_sinks

    window = quick_ensemble.config.window
    bodies = engine_messages(unit=2, cycles=window + 4)
    serving.serve(quick_ensemble, "5")
    async with predict_rul.test_context() as agent:
        for body in bodies:
            await agent.put(ExtractedFeatures(**body), key=body["asset_id"])
        await wait_for(lambda: len(captured_sends.values(PREDICTIONS)) == len(bodies), within_s=30)
        rows = await journal_rows(count=len(bodies))
        await flush_due_lake_sinks(force=True)
    sent = captured_sends.by_topic[PREDICTIONS]
    assert {key for key, _ in sent} == {"test_FD001-002"}
    history = rows_of(bodies, quick_ensemble.feature_names)
    direct = [quick_ensemble.predict_interval(pad_history(history[: n + 1], window)[0][None]) for n in range(len(bodies))]
    for n, (_, prediction) in enumerate(sent):  # float32 networks: a batch of windows differs in the 6th digit
        assert prediction.rul_prediction == pytest.approx(float(direct[n].mean[0]), abs=1e-4)
        assert prediction.model_scores == pytest.approx(
            {kind: float(values[0]) for kind, values in direct[n].members.items()}, abs=1e-4)
        assert prediction.metadata["padded"] is (n + 1 < window) and prediction.metadata["history_len"] == min(n + 1, window)
    last = sent[-1][1]
    assert last.model_used == "ensemble" and set(last.model_scores) == {"lstm", "gru", "tcn"}
    assert last.confidence_level == 0.95 and last.model_version == "5"
    assert last.uncertainty == quick_ensemble.quantile > 0
    assert last.confidence_interval_upper - last.rul_prediction == pytest.approx(last.uncertainty)
    assert last.confidence_interval_lower == pytest.approx(max(0.0, last.rul_prediction - last.uncertainty))
    assert last.features == bodies[-1]["features"] and last.timestamp == bodies[-1]["timestamp"]
    assert last.metadata["cycle"] == window + 4 and last.metadata["model_label"] == quick_ensemble.version
    assert len(rows) == len(bodies)
    newest = max(rows, key=lambda row: row["timestamp"])
    assert newest["prediction_id"] == record_key(last.asset_id, last.sensor_id, last.timestamp)
    assert newest["rul_prediction"] == last.rul_prediction and newest["model_version"] == "5"
    lake = read_dataset(rul_env / "lake", "bronze/rul_predictions").to_pylist()
    assert len(lake) == len(bodies)
    assert max(lake, key=lambda row: row["timestamp"])["tcn_rul"] == last.model_scores["tcn"]


async def test_the_seed_example_is_dead_lettered_naming_the_missing_features_and_the_agent_goes_on(
    rul_env: Path, captured_sends: CapturedSends, serving: Serving, quick_ensemble: Any
) -> None:
    from tables.history import rul_history

    serving.serve(quick_ensemble, "5")
    (good,) = engine_messages(unit=1, cycles=1)
    await feed([SEED_EXAMPLE, good], lambda: len(captured_sends.values(PREDICTIONS)) == 1)
    (letter,) = captured_sends.values("dead-letters")
    assert letter.reason == "missing-features" and letter.agent == "rul"
    assert letter.error == "missing features: " + ", ".join(quick_ensemble.feature_names)
    assert "sensor_21" in letter.error and "setting_1" in letter.error
    assert rul_history.window("ASSET001") == []  # nothing zero-filled into state
    assert captured_sends.values(PREDICTIONS)[0].asset_id == good["asset_id"]


async def test_without_a_promoted_model_messages_are_dead_lettered_as_model_not_trained(
    rul_env: Path, captured_sends: CapturedSends, serving: Serving
) -> None:
    from streamapp.rul_scoring import rul_model
    from tables.history import rul_history

    await feed(engine_messages(unit=3, cycles=3), lambda: len(captured_sends.values("dead-letters")) == 3)
    assert {letter.reason for letter in captured_sends.values("dead-letters")} == {"model-not-trained"}
    assert captured_sends.values(PREDICTIONS) == []
    assert rul_history.window("test_FD001-003") == []
    assert rul_model.status()["reason"] == "model-not-trained"


async def test_a_failing_model_dead_letters_its_batch_and_the_next_batch_is_forecast(
    rul_env: Path, captured_sends: CapturedSends, serving: Serving, quick_ensemble: Any, monkeypatch: Any
) -> None:
    import agents.rul

    serving.serve(quick_ensemble, "5")
    real_forecast = agents.rul.forecast
    calls = []

    async def flaky(model: Any, version: str, histories: Any) -> Any:
        calls.append(len(histories))
        if len(calls) == 1:
            raise RuntimeError("simulated inference failure")
        return await real_forecast(model, version, histories)

    monkeypatch.setattr(agents.rul, "forecast", flaky)
    first, second = engine_messages(unit=4, cycles=2)
    async with agents.rul.predict_rul.test_context() as agent:  # one context: offsets go on from the first
        for body, done in ((first, lambda: bool(captured_sends.values("dead-letters"))),
                           (second, lambda: bool(captured_sends.values(PREDICTIONS)))):
            await agent.put(ExtractedFeatures(**body), key=body["asset_id"])
            await wait_for(done, within_s=20)
    (letter,) = captured_sends.values("dead-letters")
    assert letter.reason == "processing-error" and "simulated inference failure" in letter.error
    (prediction,) = captured_sends.values(PREDICTIONS)
    assert prediction.timestamp == second["timestamp"] and prediction.metadata["history_len"] == 2


async def test_a_message_without_an_asset_id_is_dead_lettered_as_invalid(
    rul_env: Path, captured_sends: CapturedSends, serving: Serving, quick_ensemble: Any
) -> None:
    serving.serve(quick_ensemble, "5")
    (body,) = engine_messages(unit=5, cycles=1)
    await feed([{**body, "asset_id": "", "timestamp": "yesterday"}], lambda: len(captured_sends.values("dead-letters")) == 1)
    (letter,) = captured_sends.values("dead-letters")
    assert letter.reason == "invalid"
    assert "asset_id must be a non-empty string" in letter.error and "'yesterday' is not an ISO 8601" in letter.error
