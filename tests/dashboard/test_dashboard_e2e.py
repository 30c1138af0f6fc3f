"""The live dashboard as a user sees it: a worker subprocess on a real broker, headless Chromium."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from tests.dashboard.chromium import JS_CANVAS_RECTS, Browser, ChromiumMissing, ensure_chromium
from tests.dashboard.helpers import ensure_contract_topics, open_dashboard, vitals_flowing
from tests.services import in_ci
from tests.worker import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.e2e]
PATIENTS = ("pt-dash-a", "pt-dash-b")


@pytest.fixture
def worker(kafka: Any, tmp_path: Path) -> Iterator[WorkerProcess]:
    asyncio.run(ensure_contract_topics(kafka.bootstrap))
    process = WorkerProcess(kafka.url, tmp_path)
    yield process
    process.kill()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    try:
        await asyncio.to_thread(ensure_chromium)
    except ChromiumMissing as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    async with Browser() as started:
        yield started


def png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.browser
async def test_the_vitals_tab_plots_live_data_that_moves_between_two_screenshots_3_s_apart(
    worker: WorkerProcess, kafka: Any, browser: Browser, tmp_path: Path,
) -> None:
    await asyncio.to_thread(worker.start)
    async with vitals_flowing(kafka.bootstrap, PATIENTS):
        opened = time.monotonic()
        page = await open_dashboard(browser, worker.base_url + "/dashboard", min_points=3)
        first_render_s = time.monotonic() - opened
        plot = (await page.evaluate(JS_CANVAS_RECTS))[0]  # the temperature plot, first in the vitals grid
        before_times = await page.column("vitals-temp_corp", "time")
        before = await page.screenshot(clip=plot)
        await asyncio.sleep(3)
        after_times = await page.column("vitals-temp_corp", "time")
        after = await page.screenshot(clip=plot)
        whole = await page.screenshot()
    for name, data in (("vitals-before.png", before), ("vitals-after.png", after), ("vitals-page.png", whole)):
        (tmp_path / name).write_bytes(data)
    print(f"first render {first_render_s:.2f} s; screenshots in {tmp_path}")

    assert before_times and after_times
    assert max(after_times) > max(before_times), "no newer point was streamed to the page in 3 s"
    changed = ImageChops.difference(png(before), png(after)).getbbox()
    assert changed is not None, "the temperature plot looks the same 3 s later"
    colors = png(whole).getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 50, "the page looks blank"
    assert first_render_s < 30


@pytest.mark.browser
async def test_sigterm_stops_the_worker_within_10_s_with_two_dashboard_tabs_open(
    worker: WorkerProcess, kafka: Any, browser: Browser,
) -> None:
    await asyncio.to_thread(worker.start)
    async with vitals_flowing(kafka.bootstrap, PATIENTS):
        tabs = [await open_dashboard(browser, worker.base_url + "/dashboard") for _ in range(2)]
        assert len(tabs) == 2
        stop_s = await asyncio.to_thread(worker.stop)
    print(f"SIGTERM to exit with two tabs open: {stop_s:.2f} s")
    assert stop_s < 10, worker.log_tail()
    assert "dashboard_vitals" in worker.log_text()  # the agent the disabled worker must not start


def test_with_the_dashboard_disabled_no_dashboard_is_served_and_its_agents_do_not_run(
    kafka: Any, tmp_path: Path,
) -> None:
    worker = WorkerProcess(kafka.url, tmp_path, env={"STREAMAPP_DASHBOARD_ENABLED": "false"})
    try:
        worker.start()
        status, body = worker.get("/dashboard")
        assert status == 503 and "dashboard not running" in body["error"]
        assert "dashboard_vitals" not in worker.log_text() and "dashboard on /dashboard" not in worker.log_text()
    finally:
        worker.kill()
