"""The anomaly REST views in process: detect (200 / 422 with every reason / 503 untrained / 401), the
journal's filters and pagination on PostgreSQL, status, and training through the API into MLflow."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.anomalies.conftest import SEED_EXAMPLE, Serving, small_training_data
from tests.view_testing import call


async def test_detect_scores_the_seed_example_with_three_models(
    anomaly_env: Path, serving: Serving, small_ensemble: Any
) -> None:
    from streamapp.views.anomalies import AnomalyDetectView

    serving.serve(small_ensemble, "3")
    status, body = await call(AnomalyDetectView, "post", SEED_EXAMPLE)
    assert status == 200
    assert [s["model_name"] for s in body["scores"]] == ["isolation_forest", "one_class_svm", "lstm_autoencoder"]
    assert body["model_version"] == "3" and body["criticality"] in ("low", "medium", "high", "critical")
    assert body["asset_id"] == "ASSET001" and body["timestamp"] == "2024-01-01T12:00:00Z"


async def test_detect_refuses_a_bad_body_with_every_reason_at_once(
    anomaly_env: Path, serving: Serving, small_ensemble: Any
) -> None:
    from streamapp.views.anomalies import AnomalyDetectBatchView, AnomalyDetectView

    serving.serve(small_ensemble, "3")
    status, body = await call(AnomalyDetectView, "post", {"asset_id": "", "features": {}, "timestamp": "noon"})
    assert status == 422
    assert body["detail"] == [
        "asset_id must be a non-empty string",
        "features must be a non-empty object of name -> number",
        "timestamp 'noon' is not an ISO 8601 time",
    ]
    partial = copy.deepcopy(SEED_EXAMPLE)
    del partial["features"]["kurtosis"]
    status, body = await call(AnomalyDetectBatchView, "post", [SEED_EXAMPLE, partial, "x"])
    assert status == 422
    assert body["detail"] == [
        "items[1]: missing features: kurtosis",
        "items[2]: must be a JSON object with asset_id and features",
    ]


async def test_detect_answers_503_model_not_trained_and_401_without_the_token(
    anomaly_env: Path, serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamapp.settings import get_settings
    from streamapp.views.anomalies import AnomalyDetectView, AnomalyStatusView

    status, body = await call(AnomalyDetectView, "post", SEED_EXAMPLE)
    assert status == 503 and "model-not-trained" in body["detail"][0]
    status, body = await call(AnomalyStatusView, "get")
    assert status == 200 and body["trained"] is False and body["model"]["reason"] == "model-not-trained"
    monkeypatch.setenv("STREAMAPP_API_TOKEN", "s3cret")
    get_settings.cache_clear()
    status, _ = await call(AnomalyDetectView, "post", SEED_EXAMPLE)
    assert status == 401
    status, _ = await call(AnomalyDetectView, "post", SEED_EXAMPLE, headers={"Authorization": "Bearer s3cret"})
    assert status == 503


async def test_detect_batch_chains_items_of_one_asset_into_its_window(
    anomaly_env: Path, serving: Serving, small_ensemble: Any
) -> None:
    from streamapp.views.anomalies import AnomalyDetectBatchView
    from tables.history import anomaly_history

    serving.serve(small_ensemble, "3")
    items = [{**SEED_EXAMPLE, "timestamp": f"2024-01-01T12:00:0{i}Z"} for i in range(5)]
    status, body = await call(AnomalyDetectBatchView, "post", {"items": items})
    assert status == 200 and body["count"] == 5
    assert [r["metadata"]["history_length"] for r in body["results"]] == [1, 2, 3, 4, 5]
    assert anomaly_history.window("ASSET001") == []  # a request never changes the stream's state


# ---- the journal on PostgreSQL ---------------------------------------------------------------------------
@pytest.fixture
async def pg_journal(pg_database_url: str, anomaly_env: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """40 detections of asset P1 (every 4th `low`, the rest `high`), 5 `high` ones of P2, on PostgreSQL."""
    from streamapp.anomaly_scoring import detection_id
    from streamapp.db.engines import Role, dispose_all, get_engine
    from streamapp.db.migrate import ensure_schema
    from streamapp.db.telemetry import AnomalyDetectionRow
    from streamapp.db.upsert import upsert
    from streamapp.settings import get_settings

    monkeypatch.setenv("STREAMAPP_DATABASE_URL", pg_database_url)
    get_settings.cache_clear()
    await dispose_all()
    start = datetime(2024, 3, 1, tzinfo=UTC)
    rows = []
    for asset, count in (("P1", 40), ("P2", 5)):
        for i in range(count):
            stamp = start + timedelta(minutes=i)
            level = "low" if asset == "P1" and i % 4 == 0 else "high"
            rows.append({
                "detection_id": detection_id(asset, "S1", stamp.isoformat()), "asset_id": asset, "sensor_id": "S1",
                "timestamp": stamp, "final_score": 0.5 + i / 100, "is_anomaly": level == "high", "criticality": level,
                "scores": [], "features": {"rms": 0.5}, "metadata": {}, "model_version": "1", "created_at": stamp,
            })
    await ensure_schema(Role.TELEMETRY)
    async with get_engine(Role.TELEMETRY).begin() as connection:
        await upsert(connection, AnomalyDetectionRow.__table__, rows)
    return rows


async def test_history_pages_by_limit_and_offset_over_filtered_rows_on_postgresql(
    pg_journal: list[dict[str, Any]]
) -> None:
    from streamapp.views.anomalies import AnomalyHistoryView

    status, page = await call(AnomalyHistoryView, "get", query={
        "asset_id": "P1", "criticality": "high", "limit": "10", "offset": "10"})
    assert status == 200
    expected = sorted((r for r in pg_journal if r["asset_id"] == "P1" and r["criticality"] == "high"),
                      key=lambda r: r["timestamp"], reverse=True)
    assert page["total"] == len(expected) == 30 and page["limit"] == 10 and page["offset"] == 10
    assert [item["detection_id"] for item in page["items"]] == [r["detection_id"] for r in expected[10:20]]
    assert all(item["asset_id"] == "P1" and item["criticality"] == "high" for item in page["items"])
    status, last = await call(AnomalyHistoryView, "get", query={
        "asset_id": "P1", "criticality": "high", "limit": "10", "offset": "25"})
    assert [item["detection_id"] for item in last["items"]] == [r["detection_id"] for r in expected[25:]]
    status, window = await call(AnomalyHistoryView, "get", query={
        "is_anomaly": "false", "start_date": "2024-03-01T00:10:00Z", "end_date": "2024-03-01T00:30:00+00:00"})
    assert window["total"] == 5  # P1's low rows at minutes 12, 16, 20, 24, 28


async def test_history_refuses_bad_filters_with_every_reason(anomaly_env: Path) -> None:
    from streamapp.views.anomalies import AnomalyHistoryView

    status, body = await call(AnomalyHistoryView, "get", query={
        "limit": "0", "offset": "-1", "criticality": "severe", "start_date": "yesterday", "color": "red"})
    assert status == 422
    assert len(body["detail"]) == 5
    assert any("criticality must be one of low, medium, high, critical" in r for r in body["detail"])
    assert any("unknown parameters: color" in r for r in body["detail"])


def test_the_contract_levels_are_the_models_levels() -> None:
    from models.anomaly.criticality import LEVELS
    from streamapp.anomaly_scoring import CRITICALITY_LEVELS

    assert tuple(LEVELS) == CRITICALITY_LEVELS


# ---- training through the API ------------------------------------------------------------------------
async def test_train_registers_promotes_serves_and_reports_mlflow_metrics(
    anomaly_env: Path, serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamapp.settings import get_settings
    from streamapp.views.anomalies import AnomalyMetricsView, AnomalyStatusView, AnomalyTrainView

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{anomaly_env / 'mlflow.db'}")
    get_settings.cache_clear()
    data = small_training_data()
    body = {"data": data.X[:120].tolist(), "feature_names": data.feature_names, "asset_ids": data.groups[:120],
            "params": {"n_estimators": 10, "epochs": 2, "window": 4, "hidden_size": 8, "latent_size": 4}}
    status, refused = await call(AnomalyTrainView, "post", {**body, "params": {"epochs": "many", "depth": 3}})
    assert status == 422 and len(refused["detail"]) == 2
    status, trained = await call(AnomalyTrainView, "post", body, query={"wait": "true"})
    assert status == 200 and trained["status"] == "done" and trained["promoted"] is True
    status, state = await call(AnomalyStatusView, "get")
    assert state["trained"] is True and state["model"]["version"] == trained["version"]
    assert state["feature_names"] == data.feature_names and state["training"]["status"] == "done"
    status, figures = await call(AnomalyMetricsView, "get")
    production = figures["mlflow"]["production"]
    assert production["version"] == trained["version"]
    assert production["metrics"]["train_rows"] == 120.0
    assert production["params"]["config.epochs"] == "2" and "stream" in figures
