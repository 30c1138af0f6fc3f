"""`make run`: the whole app on embedded defaults in one terminal.

Starts the local Apache Kafka when `STREAMAPP_BROKER` is unset, the worker (with its web server and
dashboard), trains any model the registry lacks in the background, and runs the simulators. Ctrl+C or
SIGTERM stops everything it started, children first, within a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from streamapp import stack
from streamapp.settings import get_settings

FAUST = str(Path(sys.executable).with_name("faust"))
STOP_GRACE_S = 7.0


class Launcher:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.started_kafka = False
        self.stopping = False

    def say(self, message: str) -> None:
        print(f"[run] {message}", flush=True)

    def spawn(self, name: str, *args: str, quiet: bool = False) -> subprocess.Popen[bytes]:
        log_dir = self.settings.var_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        output = open(log_dir / f"{name}.log", "ab") if quiet else None  # noqa: SIM115 - the child keeps it
        process = subprocess.Popen(
            [FAUST, "-A", "streamapp", *args], stdout=output, stderr=subprocess.STDOUT if quiet else None,
            start_new_session=True,
        )
        self.children.append((name, process))
        if quiet:
            self.say(f"{name} started (log: {log_dir / (name + '.log')})")
        return process

    def start_broker(self) -> None:
        if not self.settings.broker_is_local_default:
            self.say(f"using broker {self.settings.broker_url}")
            return
        state = stack._read_state("kafka")
        if state and stack._state_alive(state):
            self.say(f"using the local Kafka already running at {state['url']}")
            return
        stack.cmd_up(["kafka"])
        self.started_kafka = True

    def wait_for_worker(self, worker: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
        """Poll the worker's web port (it may have moved to the next free port) until /health answers."""
        deadline = time.monotonic() + timeout
        first = self.settings.web_port
        while time.monotonic() < deadline and not self.stopping:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with code {worker.returncode}")
            for port in range(first, first + 5):
                url = f"http://127.0.0.1:{port}"
                try:
                    with urllib.request.urlopen(url + "/health", timeout=1) as response:
                        body = json.loads(response.read())
                        if body.get("broker", {}).get("reachable"):
                            return url
                except (OSError, ValueError, urllib.error.URLError):
                    continue
            time.sleep(0.5)
        raise SystemExit("the worker did not answer /health in time")

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        try:
            self.start_broker()
            worker = self.spawn("worker", "worker", "-l", "info")
            url = self.wait_for_worker(worker)
            self.say(f"worker ready: {url}/health  dashboard: {url}/dashboard  metrics: {url}/metrics")
            self.spawn("train", "train", "missing", quiet=True)
            self.spawn("simulate-iot", "simulate", "iot", "--url", f"{url}/iot/measurements", quiet=True)
            self.spawn("simulate-machines", "simulate", "machines", "--produce", "--rate", "5", quiet=True)
            self.spawn("simulate-orders", "simulate", "orders", "--produce", "--rate", "20", quiet=True)
            self.say("running; press Ctrl+C to stop everything")
            while not self.stopping:
                if worker.poll() is not None:
                    self.say(f"the worker exited with code {worker.returncode}")
                    return worker.returncode or 1
                time.sleep(0.5)
            return 0
        finally:
            self.shutdown()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        started = time.monotonic()
        for _, process in reversed(self.children):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in self.children:
            remaining = max(0.1, STOP_GRACE_S - (time.monotonic() - started))
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop in time; killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(2)
        if self.started_kafka:
            stack.cmd_down(["kafka"])
        self.say(f"stopped in {time.monotonic() - started:.1f} s")


def main() -> int:
    return Launcher().run()


if __name__ == "__main__":
    sys.exit(main())
