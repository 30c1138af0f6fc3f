"""Issue #5 acceptance on a real broker with a worker subprocess serving a quick ensemble (three epochs on
train_FD001) from the test's own MLflow store: test_FD001 replayed by `simulate machines --cmapss` gives,
as the last prediction of each engine, the same figures as a direct evaluation of the model (to 0.01);
a worker killed with SIGKILL resumes an asset's predictions from the recovered table; the seed's
three-feature example becomes a dead letter naming the missing features."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.kafka_helpers import produce_json, read_topic
from tests.rul.conftest import CMAPSS_DIR, SEED_EXAMPLE, engine_messages
from tests.worker import PROJECT, WorkerProcess, model_worker, private_mlflow, served_version

pytestmark = [pytest.mark.broker, pytest.mark.e2e]
STATUS = "/api/v1/rul/status"


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory, quick_ensemble: Any, fd001_training: Any) -> Iterator[str]:
    """A private MLflow store holding the quick ensemble as the promoted `rul` version."""
    from streamapp.rul_training import register_ensemble

    with private_mlflow(tmp_path_factory.mktemp("mlflow")) as uri:
        register_ensemble(quick_ensemble, fd001_training)
        yield uri


@pytest.fixture(scope="module")
def worker(kafka: Any, mlflow_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = model_worker(kafka.url, tmp_path_factory.mktemp("rul-worker"), mlflow_store, 1.0)
    process.start()
    yield process
    process.kill()


def predictions_for(kafka: Any, assets: set[str], enough: Any, within_s: float) -> list[dict[str, Any]]:
    """`rul-predictions` values of `assets`, read until `enough(values)` holds."""

    def ours(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m["value"] for m in messages if isinstance(m["value"], dict) and m["value"].get("asset_id") in assets]

    return ours(asyncio.run(read_topic(kafka.bootstrap, "rul-predictions", until=lambda m: enough(ours(m)),
                                       within_s=within_s)))


def test_replayed_test_fd001_gives_the_direct_evaluations_figures(
    worker: WorkerProcess, kafka: Any, quick_ensemble: Any
) -> None:
    from bench.eval_rul import metrics
    from models.rul.cmapss import last_windows, load_subset

    version = served_version(worker, STATUS)
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("faust")), "-A", "streamapp", "simulate", "machines",
         "--cmapss", str(CMAPSS_DIR / "test_FD001.txt")],
        cwd=PROJECT, capture_output=True, text=True, timeout=300,
        env={**worker.env, "STREAMAPP_VAR_DIR": str(worker.workdir / "cli-var")},
    )
    assert done.returncode == 0, done.stderr
    assert "replayed 13096 cycles of 100 engines from test_FD001.txt" in done.stdout
    subset = load_subset(CMAPSS_DIR)
    final_cycles = subset.test.groupby("unit")["cycle"].max()
    wanted = {f"test_FD001-{unit:03d}": int(cycle) for unit, cycle in final_cycles.items()}

    def finals(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {v["asset_id"]: v for v in values if v["metadata"]["cycle"] == wanted[v["asset_id"]]}

    last = finals(predictions_for(kafka, set(wanted), lambda values: len(finals(values)) == 100, within_s=400))
    stream_s = time.monotonic() - started
    assert len(last) == 100, f"final predictions for {len(last)} engines only\n{worker.log_tail()}"
    streamed = np.asarray([last[asset]["rul_prediction"] for asset in sorted(wanted)])
    lower = np.asarray([last[asset]["confidence_interval_lower"] for asset in sorted(wanted)])
    upper = np.asarray([last[asset]["confidence_interval_upper"] for asset in sorted(wanted)])
    windows, _, _ = last_windows(subset.test, quick_ensemble.config.window, quick_ensemble.feature_names)
    direct = quick_ensemble.predict_interval(windows)
    assert np.abs(streamed - direct.mean).max() <= 0.01
    cap = quick_ensemble.config.rul_cap
    via_stream = metrics(streamed, lower, upper, subset.test_rul, cap)
    via_model = metrics(direct.mean, direct.lower, direct.upper, subset.test_rul, cap)
    for name in ("rmse_capped", "score", "coverage_capped"):
        assert via_stream[name] == pytest.approx(via_model[name], abs=0.01), name
    assert 0 < via_stream["rmse_capped"] < 60 and 0.5 <= via_stream["coverage_capped"] <= 1.0  # a quick model
    assert {v["model_version"] for v in last.values()} == {version}
    assert all(v["uncertainty"] == pytest.approx(quick_ensemble.quantile) for v in last.values())
    print(f"\nstreamed vs direct (quick model): {via_stream} vs {via_model}; replay + predictions {stream_s:.0f} s")


def test_a_worker_killed_with_sigkill_resumes_an_assets_predictions_from_its_table(
    worker: WorkerProcess, kafka: Any, quick_ensemble: Any
) -> None:
    from models.rul import pad_history

    served_version(worker, STATUS)
    asset = f"kill-{uuid.uuid4().hex[:6]}"
    bodies = [{**body, "asset_id": asset} for body in engine_messages(unit=9, cycles=25)]
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features", [(asset, body) for body in bodies[:24]]))
    before = predictions_for(kafka, {asset}, lambda values: len(values) >= 24, within_s=60)
    assert max(v["metadata"]["history_len"] for v in before) == 24
    time.sleep(2.0)  # offsets committed (1 s interval) and the table's changelog delivered
    worker.kill()
    worker.start()
    served_version(worker, STATUS)
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features", [(asset, bodies[24])]))
    after = predictions_for(kafka, {asset}, lambda values: any(v["timestamp"] == bodies[24]["timestamp"]
                                                                for v in values), within_s=60)
    (resumed,) = [v for v in after if v["timestamp"] == bodies[24]["timestamp"]]
    assert resumed["metadata"]["history_len"] == 25  # 24 cycles recovered from the changelog + the new one
    rows = np.asarray([[b["features"][n] for n in quick_ensemble.feature_names] for b in bodies])
    direct = quick_ensemble.predict(pad_history(rows, quick_ensemble.config.window)[0][None])[0]
    assert resumed["rul_prediction"] == pytest.approx(float(direct[0]), abs=1e-3)


def test_the_seed_example_becomes_a_dead_letter_naming_the_missing_features(
    worker: WorkerProcess, kafka: Any, quick_ensemble: Any
) -> None:
    served_version(worker, STATUS)
    asset = f"ASSET001-{uuid.uuid4().hex[:6]}"
    asyncio.run(produce_json(kafka.bootstrap, "extracted-features", [(asset, {**SEED_EXAMPLE, "asset_id": asset})]))

    def letters(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m["value"] for m in messages if m["key"] == asset.encode() and m["value"].get("agent") == "rul"]

    (letter,) = letters(asyncio.run(read_topic(kafka.bootstrap, "dead-letters", until=lambda m: bool(letters(m)),
                                               within_s=60)))
    assert letter["reason"] == "missing-features"
    assert letter["error"] == "missing features: " + ", ".join(quick_ensemble.feature_names)
    status, health = worker.get("/health")
    assert status == 200 and health["rul_model"]["ok"] is True


def test_simulated_machines_get_live_rul_from_a_model_trained_on_simulated_lives(
    worker: WorkerProcess, kafka: Any, mlflow_store: str
) -> None:
    from models.rul import RulConfig
    from streamapp.rul_training import fit_ensemble, register_ensemble, simulated_lives, training_config

    before = served_version(worker, STATUS)
    data = simulated_lives(6, seed=3)
    tiny = RulConfig(window=10, max_epochs=2, hidden=8, layers=1, tcn_channels=4, tcn_levels=1)
    promoted, _ = register_ensemble(fit_ensemble(data, training_config(data, tiny)), data)  # into mlflow_store
    assert promoted != before
    served_version(worker, STATUS, expected=promoted)  # swapped in on the next poll, no restart
    done = subprocess.run(
        [str(Path(sys.executable).with_name("faust")), "-A", "streamapp", "simulate", "machines",
         "--assets", "2", "--count", "4", "--seed", "11"],
        cwd=PROJECT, capture_output=True, text=True, timeout=120,
        env={**worker.env, "STREAMAPP_VAR_DIR": str(worker.workdir / "cli-var")},
    )
    assert done.returncode == 0, done.stderr
    machines = predictions_for(kafka, {"machine-0001", "machine-0002"}, lambda values: len(values) >= 4, 60)
    assert sorted(v["asset_id"] for v in machines) == ["machine-0001"] * 2 + ["machine-0002"] * 2
    assert all(v["model_version"] == promoted and v["rul_prediction"] >= 0 for v in machines)
    assert {v["metadata"]["source"] for v in machines} == {"streamapp-features"}
