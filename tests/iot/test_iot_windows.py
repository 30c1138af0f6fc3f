"""5-minute tumbling windows keyed by event time: in order, out of order, 9 minutes late (counted),
11 minutes late (dead-lettered as late); each window's final is emitted once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from streamapp import metrics
from streamapp.iot.windows import TumblingVitals
from tests.faust_testing import CapturedSends, wait_for
from tests.iot.helpers import measurement

PATIENT = "pt-windows"
FAR_FUTURE_WALL_S = time.time() + 10 * 86_400


async def run_through_agent(captured: CapturedSends, events: Sequence[tuple[float, dict[str, float]]]) -> None:
    """Put (seconds after 10:00, vitals) events through the agent in that order, then let the timer close
    whatever is still open, as it would once the patient stays silent."""
    from agents.iot import current_pipeline, process_vitals

    start = metrics.seed_figures.processed_messages
    async with process_vitals.test_context() as agent:
        for seconds, vitals in events:
            await agent.put(measurement(PATIENT, seconds=seconds, **vitals), key=PATIENT)
        await wait_for(lambda: metrics.seed_figures.processed_messages >= start + len(events))
        pipeline = current_pipeline()
        assert pipeline is not None
        await pipeline.housekeeping(FAR_FUTURE_WALL_S, None)


def finals_by_start(captured: CapturedSends) -> dict[str, Any]:
    finals = captured.values("iot-aggregations")
    starts = [final.window_start for final in finals]
    assert len(starts) == len(set(starts)), "a window was emitted twice"
    return {final.window_start[11:16]: final for final in finals}


def late_letters(captured: CapturedSends) -> list[Any]:
    return [letter for letter in captured.values("dead-letters") if letter.reason == "late"]


async def test_in_order_events_aggregate_min_mean_max_count_and_alerts(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    await run_through_agent(captured_sends, [
        (0, {"spo2_pct": 97.0}), (60, {"spo2_pct": 95.0}), (120, {"spo2_pct": 85.0}),
        (310, {"freq_card": 100.0}), (900, {}),
    ])
    finals = finals_by_start(captured_sends)
    assert sorted(finals) == ["10:00", "10:05", "10:15"]
    first = finals["10:00"]
    assert first.count == 3 and first.window_end[11:16] == "10:05"
    assert first.stats["spo2_pct"]["min"] == 85.0 and first.stats["spo2_pct"]["max"] == 97.0
    assert first.stats["spo2_pct"]["mean"] == pytest.approx((97 + 95 + 85) / 3)
    assert first.stats["freq_card"]["count"] == 3.0
    assert first.alert_count == 1 and first.alerts_by_type == {"CRITICAL_SPO2": 1}
    assert finals["10:05"].count == 1 and finals["10:05"].stats["freq_card"]["max"] == 100.0
    assert late_letters(captured_sends) == []


async def test_a_window_closes_on_event_time_once_the_grace_period_has_passed(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import process_vitals

    start = metrics.seed_figures.processed_messages
    async with process_vitals.test_context() as agent:
        # the 10:00 window ends at 10:05 and closes when event time reaches 10:15 (900 s)
        for count, seconds in enumerate((0, 60, 899, 900), start=1):
            await agent.put(measurement(PATIENT, seconds=seconds), key=PATIENT)
            await wait_for(lambda count=count: metrics.seed_figures.processed_messages >= start + count)
            if seconds == 899:
                assert captured_sends.values("iot-aggregations") == []
        await wait_for(lambda: len(captured_sends.values("iot-aggregations")) == 1)
    assert captured_sends.values("iot-aggregations")[0].count == 2


async def test_out_of_order_events_land_in_their_own_event_time_windows(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    await run_through_agent(captured_sends, [
        (310, {"temp_corp": 37.0}), (0, {"temp_corp": 36.5}), (250, {"temp_corp": 38.2}),
        (60, {"temp_corp": 36.9}), (599, {"temp_corp": 37.2}),
    ])
    finals = finals_by_start(captured_sends)
    assert finals["10:00"].count == 3
    assert finals["10:00"].stats["temp_corp"]["min"] == 36.5 and finals["10:00"].stats["temp_corp"]["max"] == 38.2
    assert finals["10:00"].alerts_by_type == {"CRITICAL_TEMPERATURE": 1}
    assert finals["10:05"].count == 2
    assert finals["10:05"].stats["temp_corp"]["mean"] == pytest.approx((37.0 + 37.2) / 2)
    assert late_letters(captured_sends) == []


async def test_an_event_nine_minutes_late_is_still_counted_in_its_window(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    await run_through_agent(captured_sends, [(600, {}), (60, {"spo2_pct": 90.0}), (1000, {})])
    finals = finals_by_start(captured_sends)
    assert finals["10:00"].count == 1 and finals["10:00"].stats["spo2_pct"]["min"] == 90.0
    assert late_letters(captured_sends) == []
    assert sum(final.late_events for final in finals.values()) == 0


async def test_an_event_eleven_minutes_late_is_dead_lettered_as_late_and_not_aggregated(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    await run_through_agent(captured_sends, [(700, {}), (40, {"spo2_pct": 80.0}), (710, {})])
    finals = finals_by_start(captured_sends)
    assert "10:00" not in finals
    assert sum(final.count for final in finals.values()) == 2
    assert sum(final.late_events for final in finals.values()) == 1
    letters = late_letters(captured_sends)
    assert len(letters) == 1 and letters[0].agent == "iot" and "grace" in letters[0].error
    # a late reading is still a reading: its alert is raised and it is stored
    assert [alert.alert_type for alert in captured_sends.values("iot-alerts")] == ["CRITICAL_SPO2"]


def test_a_closed_window_refuses_events_even_within_the_grace_period() -> None:
    windows = TumblingVitals(300, 600, idle_close_s=60)
    state = windows.new_state(0)
    assert windows.add(state, 1_000_000.0, [1.0, 2.0, 3.0, 4.0], [], wall_s=0.0)
    assert [final.count for final in windows.close_due(state, "p", wall_s=61.0)] == [1]  # idle: closed early
    assert not windows.add(state, 1_000_010.0, [1.0, 2.0, 3.0, 4.0], [], wall_s=62.0)
    assert windows.add(state, 1_000_200.0, [1.0, 2.0, 3.0, 4.0], [], wall_s=63.0)  # the next window is open
    assert state["late"] == 1


async def test_a_window_final_is_written_to_the_lake_once_even_if_emitted_twice(
    iot_env: Any, faust_app: Any, captured_sends: CapturedSends
) -> None:
    from agents.iot import sink_vitals_windows
    from lake.writer import read_dataset
    from streamapp.settings import get_settings

    windows = TumblingVitals(300, 600)
    state = windows.new_state(0)
    windows.add(state, 1_800_000_000.0, [90.0, 18.0, 97.0, 36.8], ["CRITICAL_SPO2"], wall_s=0.0)
    (final,) = windows.close_due(state, PATIENT, wall_s=10_000.0)
    async with sink_vitals_windows.test_context() as agent:
        await agent.put(final, key=PATIENT)
        await agent.put(final, key=PATIENT)  # a replay after a crash emitted it again
        lake = get_settings().lake_path
        await wait_for(lambda: read_dataset(lake, "bronze/iot_aggregations").num_rows >= 1)
    table = read_dataset(get_settings().lake_path, "bronze/iot_aggregations")
    assert table.num_rows == 1
    row = table.to_pylist()[0]
    assert row["count"] == 1 and row["spo2_pct_mean"] == 97.0 and dict(row["alerts_by_type"]) == {"CRITICAL_SPO2": 1}


def test_a_replay_after_a_restart_is_stored_again_but_neither_aggregated_nor_alerted_twice(iot_env: Any) -> None:
    from types import SimpleNamespace

    from agents.iot import VitalsPipeline
    from streamapp.iot.pseudonym import pseudonymise

    patient = pseudonymise("patient-replay")
    events = [SimpleNamespace(value=measurement(patient, seconds=10 * i, spo2_pct=85.0),
                              message=SimpleNamespace(topic="iot-measurements", partition=2, offset=40 + i))
              for i in range(3)]
    pipeline = VitalsPipeline()
    first = pipeline.fold(events, wall_s=time.time())  # type: ignore[arg-type]
    again = pipeline.fold(events[1:], wall_s=time.time())  # redelivered: offsets not committed before a crash
    assert [len(first.accepted), len(first.replayed)] == [3, 0]
    assert [len(again.accepted), len(again.replayed)] == [0, 2]
    assert sum(len(item.alerts) for item in again.replayed) == 2  # kept for the idempotent database and lake rows
    (window,) = pipeline.windows.close_due(_state(patient), patient, wall_s=FAR_FUTURE_WALL_S)
    assert window.count == 3 and window.alerts_by_type == {"CRITICAL_SPO2": 3}


def _state(patient: str) -> Any:
    from tables.vitals import vitals_5min

    return vitals_5min.data[patient]
