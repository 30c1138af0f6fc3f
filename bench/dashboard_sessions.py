"""Dashboard sessions and worker memory: open and close N dashboard tabs in headless Chromium while
vitals flow, and compare the worker's RSS before and after (sessions must be reaped, memory bounded).

Run: `.venv/bin/python -m bench.dashboard_sessions [--sessions 50]`; starts a private Kafka and a
worker subprocess, prints one line per phase and a JSON summary. Acceptance: growth < 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from streamapp.stack import KafkaService
from tests.dashboard.chromium import Browser
from tests.dashboard.helpers import ensure_contract_topics, open_dashboard, vitals_flowing
from tests.worker import WorkerProcess

PATIENTS = ("pt-bench-a", "pt-bench-b", "pt-bench-c")
MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def dashboard_health(worker: WorkerProcess) -> dict[str, Any]:
    _, body = worker.get("/health")
    return body.get("dashboard", {}) if isinstance(body, dict) else {}


async def wait_reaped(worker: WorkerProcess, within_s: float = 30.0) -> float:
    """Seconds until the worker reports no open dashboard session."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if dashboard_health(worker).get("sessions") == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"sessions still open after {within_s} s: {dashboard_health(worker)}")


async def run(sessions: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    kafka = KafkaService(root / "kafka")
    kafka.start()
    worker = WorkerProcess(kafka.url, root / "worker")
    try:
        await ensure_contract_topics(kafka.bootstrap)
        await asyncio.to_thread(worker.start)
        assert worker.process is not None
        pid = worker.process.pid
        url = worker.base_url + "/dashboard"
        async with vitals_flowing(kafka.bootstrap, PATIENTS), Browser() as browser:
            for _ in range(3):  # warm-up: first sessions load Panel's lazily imported modules
                await (await open_dashboard(browser, url)).close()
            await wait_reaped(worker)
            baseline = rss_mb(pid)
            print(f"baseline RSS {baseline:.1f} MB after 3 warm-up sessions", flush=True)
            open_s, peak = [], baseline
            for index in range(sessions):
                started = time.monotonic()
                page = await open_dashboard(browser, url)
                open_s.append(time.monotonic() - started)
                await page.close()
                peak = max(peak, rss_mb(pid))
                if (index + 1) % 10 == 0:
                    print(f"{index + 1} sessions: RSS {rss_mb(pid):.1f} MB", flush=True)
            reaped_s = await wait_reaped(worker)
            after = rss_mb(pid)
        stop_s = await asyncio.to_thread(worker.stop)
        summary = {
            "sessions": sessions,
            "rss_baseline_mb": round(baseline, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(after, 1),
            "rss_growth_mb": round(after - baseline, 1),
            "open_to_data_p50_s": round(statistics.median(open_s), 2),
            "open_to_data_max_s": round(max(open_s), 2),
            "sessions_reaped_after_s": round(reaped_s, 1),
            "sigterm_exit_s": round(stop_s, 2),
        }
        print(json.dumps(summary), flush=True)
        return summary
    finally:
        worker.kill()
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    summary = asyncio.run(run(args.sessions))
    verdict = "OK" if summary["rss_growth_mb"] < 50 else "TOO MUCH GROWTH"
    print(f"{verdict}: {summary['rss_growth_mb']} MB after {summary['sessions']} sessions")


if __name__ == "__main__":
    main()
