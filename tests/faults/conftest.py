"""Fixtures of the fault suite: a models store (returns + anomaly production versions), a rig that runs
workers of one consumer group against given Kafka/PostgreSQL/MariaDB, and figures printed at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.workload import Sinks
from tests.worker import WorkerProcess, private_mlflow

FIGURES: dict[str, str] = {}


def record_figure(name: str, value: str) -> None:
    """A measured figure (recovery time, throughput drop): printed now and in the session summary."""
    FIGURES[name] = value
    print(f"[faults] {name}: {value}", flush=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.faults)


class ModelStore:
    """Trains and promotes a returns model and a small anomaly ensemble in a background thread, so brokers
    and databases start meanwhile; `uri()` waits for it."""

    def __init__(self, directory: Path) -> None:
        self.tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._train, daemon=True)
        self._thread.start()

    def _train(self) -> None:
        try:
            import torch

            from streamapp.anomaly_training import fit_ensemble, register_ensemble
            from streamapp.training import TrainRequest, train_returns
            from tests.anomalies.conftest import small_config, small_training_data

            torch.set_num_threads(1)
            train_returns(TrainRequest(rows=600, seed=3))
            model, _ = fit_ensemble(small_training_data(), small_config())
            register_ensemble(model, small_training_data(), small_config(), {"train_rows": 180.0})
        except BaseException as exc:  # reported by uri()
            self._error = exc

    def uri(self) -> str:
        self._thread.join(300)
        if self._error is not None:
            raise self._error
        return self.tracking_uri


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelStore]:
    directory = tmp_path_factory.mktemp("fault-models")
    with private_mlflow(directory):
        store = ModelStore(directory)
        store.uri()
    yield store


class Rig:
    """Workers of ONE consumer group sharing a lake and databases; started, killed and counted by tests."""

    def __init__(self, broker_url: str, bootstrap: str, sinks: Sinks, workdir: Path, env: dict[str, str]) -> None:
        self.broker_url = broker_url
        self.sinks = sinks
        self.workdir = workdir
        self.app_id = f"streamapp-faults-{uuid.uuid4().hex[:8]}"
        self.env = {
            "STREAMAPP_DATABASE_URL": sinks.pg_url,
            "STREAMAPP_ORDERS_DATABASE_URL": sinks.maria_url,
            "STREAMAPP_LAKE_DIR": str(sinks.lake),
            "STREAMAPP_LAKE_FLUSH_SECONDS": "0.5",
            "STREAMAPP_MODEL_POLL_SECONDS": "1",
            "STREAMAPP_DASHBOARD_ENABLED": "false",
            "STREAMAPP_DEVICE_SILENCE_SECONDS": "3600",  # no timer-driven table change while tests compare state
            "STREAMAPP_DEVICE_STATUS_INTERVAL_S": "3600",
            "STREAMAPP_SINK_RETRY_MAX_S": "1",
            "STREAMAPP_PSEUDONYM_KEY": "faults-pseudonym-key",
            "PYTHONFAULTHANDLER": "1",  # SIGABRT on a hung worker dumps every thread
            **env,
        }
        self.workers: list[WorkerProcess] = []
        self._count = 0

    def start_worker(self, timeout: float = 120.0) -> WorkerProcess:
        self._count += 1
        worker = WorkerProcess(self.broker_url, self.workdir / f"w{self._count}", env=self.env, app_id=self.app_id)
        self.workers.append(worker)
        worker.start(timeout)
        return worker

    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process is not None and w.process.poll() is None]

    def logs(self) -> str:
        """The last log lines of the newest workers and the Python stacks of those still running (a
        worker that stopped making progress shows where it waits)."""
        tails = [f"--- {w.log_path.name}\n{w.log_tail(25)}" for w in self.workers[-3:]]
        return "\n".join(tails + [stacks_of(w) for w in self.running()])

    def close(self) -> None:
        for worker in self.running():
            worker.kill()
        keep = os.environ.get("FAULTS_KEEP_LOGS")  # a directory: worker logs survive pytest's tmp cleanup
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for worker in self.workers:
                if worker.log_path.exists():
                    shutil.copy(worker.log_path, Path(keep) / f"{self.app_id}-{worker.log_path.name}")


def stacks_of(worker: WorkerProcess) -> str:
    """`py-spy dump` of a running worker (every thread, with asyncio tasks' frames), or why not."""
    assert worker.process is not None
    spy = Path(sys.executable).with_name("py-spy")
    try:
        done = subprocess.run([str(spy), "dump", "--pid", str(worker.process.pid)], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"--- stacks of pid {worker.process.pid}: {exc!r}"
    return f"--- stacks of pid {worker.process.pid}\n{done.stdout}{done.stderr}"


def wait_for(predicate: Any, within_s: float, what: str, interval: float = 0.3) -> float:
    """Poll until `predicate()` is truthy; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within_s:
            raise AssertionError(f"{what}: not within {within_s} s")
        time.sleep(interval)
    return time.monotonic() - started
