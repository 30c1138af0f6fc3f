"""The dashboard's live state: bounded, incremental, and labelled the way the tabs need it."""

from __future__ import annotations

import math
import uuid
from typing import Any

from bokeh.models.sources import ColumnDataSource

from dashboards.live_state import MAX_KEYS, LiveState, final_threshold
from dashboards.operations import RateMeter, metric_total
from dashboards.panels import SeriesFeed, stream_minutes, vital_threshold_lines
from streamapp.records import (
    AnomalyResult,
    IotMeasurement,
    ModelScore,
    OrderEvent,
    ReturnPrediction,
    RulPrediction,
    VitalSigns,
)
from streamapp.settings import VitalThresholds


def measurement(patient: str, second: int, temperature: float = 37.0) -> IotMeasurement:
    stamp = f"2026-11-23T10:00:{second % 60:02d}+00:00"
    return IotMeasurement(
        patient_id=patient, device_id=f"dev-{patient}", timestamp=stamp,
        measurements=VitalSigns(freq_card=80.0, freq_resp=18.0, spo2_pct=97.0, temp_corp=temperature),
        ingestion_timestamp=stamp, api_version="v1", message_id=uuid.uuid4().hex,
    )


def rul(asset: str, value: float) -> RulPrediction:
    return RulPrediction(
        asset_id=asset, sensor_id="", timestamp="2026-11-23T10:00:00Z", rul_prediction=value,
        confidence_interval_lower=value - 10, confidence_interval_upper=value + 10, confidence_level=0.95,
        uncertainty=5.0, model_used="ensemble", model_scores={}, features={}, metadata={}, model_version="rul-7",
    )


def anomaly(asset: str, score: float, thresholds: list[float], metadata: dict[str, Any] | None = None) -> AnomalyResult:
    return AnomalyResult(
        asset_id=asset, sensor_id="", timestamp="2026-11-23T10:00:00Z",
        scores=[ModelScore(score=score, model_name=f"m{i}", threshold=t, is_anomaly=score > t)
                for i, t in enumerate(thresholds)],
        final_score=score, is_anomaly=False, criticality="high", features={}, metadata=metadata or {},
        model_version="anomaly-2",
    )


def test_vitals_history_per_patient_is_bounded_and_keeps_the_newest_points() -> None:
    state = LiveState(history_points=50)
    state.add_measurements(measurement("p1", i, temperature=36.0 + i / 100) for i in range(120))
    series = state.vitals["p1"]
    assert len(series) == 50
    assert series.latest() is not None and math.isclose(series.latest()["temp_corp"], 36.0 + 119 / 100)


def test_the_number_of_patients_kept_is_bounded_and_the_oldest_is_forgotten() -> None:
    state = LiveState(history_points=5)
    state.add_measurements(measurement(f"p{i}", 0) for i in range(MAX_KEYS + 10))
    assert len(state.vitals) == MAX_KEYS
    assert "p0" not in state.vitals and f"p{MAX_KEYS + 9}" in state.vitals


def test_a_reader_gets_only_the_rows_it_has_not_seen() -> None:
    state = LiveState()
    state.add_measurements([measurement("p1", 1), measurement("p1", 2)])
    rows, cursor = state.vitals["p1"].since(0)
    assert len(rows) == 2
    state.add_measurements([measurement("p1", 3)])
    newer, cursor = state.vitals["p1"].since(cursor)
    assert [row["time"] for row in newer] == [rows[-1]["time"] + 1000.0]
    assert state.vitals["p1"].since(cursor)[0] == []


def test_a_session_feed_streams_new_rows_with_rollover_and_restarts_on_another_key() -> None:
    state = LiveState(history_points=100)
    feed = SeriesFeed(("time", "temp_corp"), rollover=10)
    state.add_measurements(measurement("p1", i) for i in range(25))
    feed.follow("p1", state.vitals["p1"])
    assert len(feed.source.data["time"]) == 10
    state.add_measurements([measurement("p1", 30, temperature=39.5)])
    feed.follow("p1", state.vitals["p1"])
    assert len(feed.source.data["time"]) == 10 and feed.source.data["temp_corp"][-1] == 39.5
    state.add_measurements([measurement("p2", 1)])
    feed.follow("p2", state.vitals["p2"])
    assert len(feed.source.data["time"]) == 1


def test_return_probabilities_are_averaged_by_the_category_of_their_event() -> None:
    state = LiveState()
    state.add_order_events([
        OrderEvent(event_id="e1", order_id="o1", customer_customer_id="c", order_main_category="fashion"),
        OrderEvent(event_id="e2", order_id="o2", customer_customer_id="c", order_main_category="home"),
        OrderEvent(event_id="e1", order_id="o1", customer_customer_id="c", order_main_category="fashion"),
    ])
    state.add_return_predictions(
        ReturnPrediction(event_id=event, order_id="o", customer_customer_id="c", return_proba=proba,
                         model_version="returns-3", predicted_at="")
        for event, proba in (("e1", 0.6), ("e1", 0.2), ("e2", 0.1), ("unseen", 0.9))
    )
    by_category = {row["category"]: row["mean_proba"] for row in state.return_proba_rows()}
    assert math.isclose(by_category["fashion"], 0.4) and math.isclose(by_category["home"], 0.1)
    assert by_category["unknown"] == 0.9
    assert state.duplicate_events == 1 and state.orders_seen == 3
    assert state.model_versions_seen["returns"] == "returns-3"


def test_the_fleet_is_sorted_by_lowest_rul_with_assets_lacking_a_forecast_last() -> None:
    state = LiveState()
    state.add_rul_predictions([rul("a", 80.0), rul("b", 12.0), rul("c", 45.0)])
    state.add_anomalies([anomaly("d", 0.3, [0.9])])
    assert [row["asset_id"] for row in state.fleet()] == ["b", "c", "a", "d"]


def test_the_final_threshold_is_declared_or_the_members_median() -> None:
    assert final_threshold(anomaly("a", 0.5, [0.2, 0.95, 0.9])) == 0.9
    assert final_threshold(anomaly("a", 0.5, [0.2], metadata={"threshold": 0.7})) == 0.7


def test_vital_threshold_lines_follow_the_settings() -> None:
    lines = vital_threshold_lines(VitalThresholds(spo2_critical=85.0, temperature_critical=38.5))
    assert [level for level, _ in lines["spo2_pct"]][0] == 85.0
    assert [level for level, _ in lines["temp_corp"]] == [38.5]
    assert sorted(level for level, _ in lines["freq_card"]) == [40.0, 180.0]


def test_minute_bars_patch_the_current_minute_and_stream_new_ones() -> None:
    source = ColumnDataSource({"minute": [], "events": []})
    stream_minutes(source, [{"minute": 0.0, "events": 3.0}])
    stream_minutes(source, [{"minute": 0.0, "events": 5.0}, {"minute": 60_000.0, "events": 1.0}])
    assert list(source.data["minute"]) == [0.0, 60_000.0] and list(source.data["events"]) == [5.0, 1.0]


def test_rates_come_from_successive_totals() -> None:
    meter = RateMeter()
    assert meter.rate("x", 100.0, now_s=10.0) == 0.0
    assert meter.rate("x", 130.0, now_s=12.0) == 15.0
    assert metric_total("streamapp_no_such_metric") == {}
