"""Issue #4 acceptance against a real broker and a worker subprocess, with a model trained and registered
in the test's own MLflow store: the seed's example message gives an `AnomalyResult` (three scores,
criticality, model version) and a journal row; promoting a new version changes `model_version` on the
running worker's outputs after its next registry poll, without a restart."""

from __future__ import annotations

import asyncio
import copy
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.anomalies.conftest import SEED_EXAMPLE, small_config, small_training_data
from tests.kafka_helpers import produce_json, read_topic
from tests.worker import WorkerProcess, model_worker, private_mlflow, served_version

pytestmark = [pytest.mark.broker, pytest.mark.e2e]
POLL_SECONDS = 1.0


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory, small_ensemble: Any) -> Iterator[str]:
    """A private MLflow store (tracking + registry) holding one promoted anomaly version."""
    from streamapp.anomaly_training import register_ensemble

    with private_mlflow(tmp_path_factory.mktemp("mlflow")) as uri:
        register_ensemble(small_ensemble, small_training_data(), small_config(), {"train_rows": 180.0})
        yield uri


@pytest.fixture(scope="module")
def worker(kafka: Any, mlflow_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = model_worker(kafka.url, tmp_path_factory.mktemp("anomaly-worker"), mlflow_store, POLL_SECONDS)
    process.start()
    yield process
    process.kill()


def serving_version(worker: WorkerProcess, within_s: float = 60.0, expected: str | None = None) -> str:
    """The registry version the worker serves, once it serves one (and `expected`, if given)."""
    return served_version(worker, "/api/v1/anomalies/status", within_s, expected)


def result_for(kafka: Any, asset_id: str) -> dict[str, Any]:
    def ours(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m["value"] for m in messages if isinstance(m["value"], dict) and m["value"].get("asset_id") == asset_id]

    found = ours(asyncio.run(read_topic(kafka.bootstrap, "anomalies-detected", until=lambda m: bool(ours(m)),
                                        within_s=60)))
    assert found, f"no AnomalyResult for {asset_id}"
    return found[0]


def journal_rows(worker: WorkerProcess, asset_id: str, within_s: float = 15.0) -> list[tuple[Any, ...]]:
    database = Path(worker.env["STREAMAPP_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///"))
    deadline = time.monotonic() + within_s
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and not rows:
        try:
            with sqlite3.connect(database) as connection:
                rows = connection.execute(
                    "SELECT asset_id, criticality, model_version, final_score FROM anomaly_detections "
                    "WHERE asset_id = ?", (asset_id,)).fetchall()
        except sqlite3.OperationalError:  # not created yet
            pass
        time.sleep(0.2)
    return rows


def seed_example(asset_id: str, timestamp: str = "2024-01-01T12:00:00Z") -> dict[str, Any]:
    """The guide's example message; the asset id is made unique so this run's result can be told apart."""
    body = copy.deepcopy(SEED_EXAMPLE)
    body.update(asset_id=asset_id, timestamp=timestamp)
    return body


def test_the_seed_example_message_yields_a_scored_result_and_a_journal_row(worker: WorkerProcess, kafka: Any) -> None:
    version = serving_version(worker)
    asset_id = f"ASSET001-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features", [(asset_id, seed_example(asset_id))]))
    result = result_for(kafka, asset_id)
    assert [s["model_name"] for s in result["scores"]] == ["isolation_forest", "one_class_svm", "lstm_autoencoder"]
    assert all(isinstance(s["score"], float) and isinstance(s["is_anomaly"], bool) for s in result["scores"])
    assert result["criticality"] in ("low", "medium", "high", "critical")
    assert result["model_version"] == version
    assert result["features"] == SEED_EXAMPLE["features"] and result["sensor_id"] == "SENSOR001"
    rows = journal_rows(worker, asset_id)
    assert rows == [(asset_id, result["criticality"], version, result["final_score"])]
    status, page = worker.get(f"/api/v1/anomalies/?asset_id={asset_id}&limit=5")
    assert status == 200 and page["total"] == 1 and page["items"][0]["final_score"] == result["final_score"]
    status, figures = worker.get("/api/v1/anomalies/metrics")
    assert status == 200 and figures["mlflow"]["production"]["version"] == version
    assert figures["stream"]["scored"] >= 1
    status, health = worker.get("/health")
    assert status == 200 and health["anomaly_model"]["ok"] is True and health["anomaly_model"]["version"] == version


def test_promoting_a_new_version_changes_model_version_on_outputs_without_restart(
    worker: WorkerProcess, kafka: Any, small_ensemble: Any
) -> None:
    from streamapp.anomaly_training import register_ensemble

    before = serving_version(worker)
    pid = worker.process.pid if worker.process else None
    asset_id = f"promo-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features", [(asset_id, seed_example(asset_id))]))
    assert result_for(kafka, asset_id)["model_version"] == before
    promoted = register_ensemble(small_ensemble, small_training_data(), small_config(), {"train_rows": 180.0})
    assert promoted != before
    started = time.monotonic()
    serving_version(worker, expected=promoted, within_s=30)
    swap_s = time.monotonic() - started
    second = f"{asset_id}-after"
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features", [(second, seed_example(second))]))
    assert result_for(kafka, second)["model_version"] == promoted
    assert worker.process is not None and worker.process.pid == pid and worker.process.poll() is None
    assert swap_s < POLL_SECONDS + 15  # the poll interval plus loading the new version


def test_simulated_machines_flow_through_the_features_agent_into_anomaly_results(
    worker: WorkerProcess, kafka: Any
) -> None:
    import subprocess
    import sys

    serving_version(worker)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("faust")), "-A", "streamapp", "simulate", "machines",
         "--assets", "2", "--count", "4", "--seed", "11"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
        env={**worker.env, "STREAMAPP_VAR_DIR": str(worker.workdir / "cli-var")},
    )
    assert done.returncode == 0, done.stderr
    assert "sent 4 readings" in done.stdout

    def machine_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m["value"] for m in messages if isinstance(m["value"], dict)
                and str(m["value"].get("asset_id", "")).startswith("machine-")]

    results = machine_results(asyncio.run(read_topic(
        kafka.bootstrap, "anomalies-detected", until=lambda m: len(machine_results(m)) >= 4, within_s=60)))
    assert sorted(r["asset_id"] for r in results) == ["machine-0001"] * 2 + ["machine-0002"] * 2
    assert all(len(r["scores"]) == 3 and {"rms", "kurtosis", "crest_factor"} <= set(r["features"]) for r in results)
    assert {r["metadata"]["source"] for r in results} == {"streamapp-features"}


def test_the_history_window_survives_a_worker_restart(worker: WorkerProcess, kafka: Any) -> None:
    serving_version(worker)
    asset_id = f"restart-{uuid.uuid4().hex[:6]}"
    first = [(asset_id, seed_example(asset_id, f"2024-01-01T12:00:0{i}Z")) for i in range(3)]
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features", first))

    def ours(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m["value"] for m in messages if isinstance(m["value"], dict) and m["value"].get("asset_id") == asset_id]

    before = ours(asyncio.run(read_topic(kafka.bootstrap, "anomalies-detected", until=lambda m: len(ours(m)) >= 3,
                                         within_s=60)))
    assert [r["metadata"]["history_length"] for r in before] == [1, 2, 3]
    time.sleep(1.5)  # let the consumer commit the offsets of the batch
    worker.stop()
    worker.start()
    serving_version(worker)
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features",
                             [(asset_id, seed_example(asset_id, "2024-01-01T12:00:09Z"))]))
    after = ours(asyncio.run(read_topic(kafka.bootstrap, "anomalies-detected", until=lambda m: any(
        r["timestamp"] == "2024-01-01T12:00:09Z" for r in ours(m)), within_s=60)))
    (last,) = [r for r in after if r["timestamp"] == "2024-01-01T12:00:09Z"]
    assert len(after) == 4  # the first three were committed, not replayed: the window below is the table's
    assert last["metadata"]["history_length"] == 4  # restored from the changelog
