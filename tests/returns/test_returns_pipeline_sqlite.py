"""The returns pipeline on the embedded default (SQLite): with no model it dead-letters events as
`model-not-trained` and says so; a model promoted while it runs is picked up without a restart, and a
replay of the same events then stores them all. The predict view checks its input and its token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.returns.returns_e2e import cli, cli_env, query, reset_topic, table_counts, wait_until
from tests.worker import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

N_ORDERS = 200
TOKEN = "returns-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class SqliteRun:
    worker: WorkerProcess
    env: dict[str, str]
    events_path: str
    database_url: str


def figures(worker: WorkerProcess) -> dict[str, Any]:
    status, body = worker.get("/api/v1/returns/status")
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def sqlite_run(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteRun]:
    root = tmp_path_factory.mktemp("returns-sqlite")
    env = cli_env(kafka, root / "cli-var", root / "mlflow")
    reset_topic(env)
    events_path = root / "orders.jsonl"
    simulated = cli(env, "simulate", "orders", "--out", str(events_path), "--count", str(N_ORDERS), "--seed", "5")
    assert simulated.returncode == 0, simulated.stderr
    worker = WorkerProcess(kafka.url, root / "worker", env={
        "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"],  # an empty store: nothing promoted yet
        "STREAMAPP_MODEL_POLL_SECONDS": "1",
        "STREAMAPP_API_TOKEN": TOKEN,
    })
    try:
        worker.start()
        yield SqliteRun(worker, env, str(events_path), f"sqlite:///{worker.workdir / 'var' / 'orders.db'}")
    finally:
        worker.kill()


def test_without_a_model_events_are_dead_lettered_as_model_not_trained_and_health_says_so(
    sqlite_run: SqliteRun,
) -> None:
    worker = sqlite_run.worker
    produced = cli(sqlite_run.env, "produce-events", sqlite_run.events_path, "--quiet")
    assert produced.returncode == 0 and f"sent {N_ORDERS}" in produced.stdout, produced.stderr
    wait_until(lambda: figures(worker)["agent"]["dead_letters"].get("model-not-trained") == N_ORDERS, 90,
               "every event dead-lettered as model-not-trained")
    _, health = worker.get("/health")
    assert health["returns_model"]["ok"] is False and health["returns_model"]["reason"] == "model-not-trained"
    assert health["status"] == "degraded"
    assert figures(worker)["model"]["ready"] is False
    assert table_counts(sqlite_run.database_url)["table_events"] == 0
    status, body = worker.request("POST", "/api/v1/returns/predict", {"order_id": "o", "customer_customer_id": "c"},
                                  headers=AUTH)
    assert status == 503 and "model-not-trained" in body["detail"][0]


def test_a_model_promoted_while_running_is_used_and_a_replay_stores_every_event_in_sqlite(
    sqlite_run: SqliteRun,
) -> None:
    worker = sqlite_run.worker
    trained = cli(sqlite_run.env, "train", "returns", "--rows", "3000")
    assert trained.returncode == 0, trained.stderr
    wait_until(lambda: figures(worker)["model"]["version"] == "1", 60, "version 1 picked up without restart")
    _, health = worker.get("/health")
    assert health["returns_model"]["ok"] is True
    replayed = cli(sqlite_run.env, "produce-events", sqlite_run.events_path, "--quiet")
    assert replayed.returncode == 0, replayed.stderr
    wait_until(lambda: table_counts(sqlite_run.database_url)["table_predictions"] == N_ORDERS, 90,
               f"{N_ORDERS} predictions in SQLite")
    counts = table_counts(sqlite_run.database_url)
    assert counts["table_events"] == N_ORDERS
    rows = query(sqlite_run.database_url, "SELECT DISTINCT model_version FROM table_predictions")
    assert rows == [("1",)]
    orphans = query(sqlite_run.database_url, "SELECT COUNT(*) FROM table_predictions p LEFT JOIN table_orders o "
                                             "ON o.order_id = p.order_id WHERE o.order_id IS NULL")
    assert orphans == [(0,)]


def test_predict_view_needs_the_token_lists_every_reason_and_scores_a_valid_order(sqlite_run: SqliteRun) -> None:
    worker = sqlite_run.worker
    wait_until(lambda: figures(worker)["model"]["ready"], 60, "model ready")
    order = {"order_id": "o-1", "customer_customer_id": "c-1", "order_main_category": "fashion",
             "order_basket_value": 120.0, "order_n_items": 3}
    status, _ = worker.request("POST", "/api/v1/returns/predict", order)
    assert status == 401
    status, body = worker.request("POST", "/api/v1/returns/predict",
                                  {"order_id": 5, "order_n_items": -1, "order_is_returned": "no"}, headers=AUTH)
    assert status == 422
    assert len(body["detail"]) == 4 and any("customer_customer_id is required" in r for r in body["detail"])
    status, body = worker.request("POST", "/api/v1/returns/predict", order, headers=AUTH)
    assert status == 200, body
    assert 0.0 <= body["return_proba"] <= 1.0 and body["model_version"] == "1" and body["order_id"] == "o-1"


def test_after_a_restart_the_dedup_table_is_recovered_and_a_replay_is_skipped(sqlite_run: SqliteRun) -> None:
    worker = sqlite_run.worker
    before = query(sqlite_run.database_url, "SELECT event_id, return_proba, predicted_at FROM table_predictions "
                                            "ORDER BY event_id")
    assert worker.stop() < 15
    worker.start()
    replayed = cli(sqlite_run.env, "produce-events", sqlite_run.events_path, "--quiet")
    assert replayed.returncode == 0, replayed.stderr
    wait_until(lambda: figures(worker)["agent"]["consumed"] >= N_ORDERS, 90, "the replay consumed")
    agent = figures(worker)["agent"]
    assert agent["duplicates_skipped"] == N_ORDERS and agent["predicted"] == 0
    assert query(sqlite_run.database_url, "SELECT event_id, return_proba, predicted_at FROM table_predictions "
                                          "ORDER BY event_id") == before
