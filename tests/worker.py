"""Run `faust -A streamapp worker` as a user would, as a subprocess of a test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FAUST = Path(sys.executable).with_name("faust")
PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WorkerProcess:
    """One worker with its own app id (consumer group), var dir and web port unless told otherwise."""

    def __init__(
        self, broker_url: str, workdir: Path, *, env: dict[str, str] | None = None,
        app_id: str | None = None, web_port: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.web_port = web_port or free_port()
        self.app_id = app_id or f"streamapp-test-{uuid.uuid4().hex[:8]}"
        self.log_path = self.workdir / f"worker-{self.web_port}.log"
        self.env = {
            **os.environ,
            "STREAMAPP_BROKER": broker_url,
            "STREAMAPP_APP_ID": self.app_id,
            "STREAMAPP_VAR_DIR": str(self.workdir / "var"),
            "STREAMAPP_WEB_PORT": str(self.web_port),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 90.0, wait_assigned: bool = True) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [str(FAUST), "-A", "streamapp", "worker", "-l", "info"],
            cwd=PROJECT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.wait_ready(timeout, wait_assigned=wait_assigned)
        return self

    def wait_ready(self, timeout: float = 90.0, wait_assigned: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, body = self.get("/health")
                last = body
                if status == 200 and (not wait_assigned or body["worker"]["assigned_partitions"] > 0) \
                        and not body["worker"]["rebalancing"]:
                    return body
            except (OSError, ValueError) as exc:
                last = exc
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready in {timeout} s (last: {last}):\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        return self.request("GET", path, timeout=timeout)

    def request(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None, timeout: float = 10.0,
    ) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Send `sig` and wait for exit; returns the seconds it took."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@contextmanager
def private_mlflow(directory: Path) -> Iterator[str]:
    """This process's MLflow store (tracking + registry) moved to `directory` until the block ends."""
    from streamapp.settings import get_settings

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    get_settings.cache_clear()
    try:
        yield uri
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
        get_settings.cache_clear()


def model_worker(broker_url: str, workdir: Path, mlflow_uri: str, poll_seconds: float, **env: str) -> WorkerProcess:
    """A worker serving models from `mlflow_uri` (polled every `poll_seconds`), with a SQLite telemetry
    journal in `workdir`, lake flushes every 0.5 s and no dashboard."""
    return WorkerProcess(broker_url, workdir, env={
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "STREAMAPP_MODEL_POLL_SECONDS": str(poll_seconds),
        "STREAMAPP_DATABASE_URL": f"sqlite+aiosqlite:///{Path(workdir) / 'telemetry.db'}",
        "STREAMAPP_LAKE_FLUSH_SECONDS": "0.5",
        "STREAMAPP_DASHBOARD_ENABLED": "false",
        **env,
    })


def served_version(worker: WorkerProcess, status_path: str, within_s: float = 60.0, expected: str | None = None) -> str:
    """The registry version a pipeline's status view says the worker serves, once it serves one (and
    `expected`, if given)."""
    deadline = time.monotonic() + within_s
    body: Any = None
    while time.monotonic() < deadline:
        status, body = worker.get(status_path)
        version = body["model"]["version"] if status == 200 else None
        if version is not None and (expected is None or version == expected):
            return str(version)
        time.sleep(0.2)
    raise AssertionError(f"worker does not serve {expected or 'a model'}: {body}\n{worker.log_tail()}")
