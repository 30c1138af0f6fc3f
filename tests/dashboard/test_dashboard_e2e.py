"""The live dashboard as a user sees it: a worker subprocess on a real broker, headless Chromium."""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageChops

from tests.dashboard.chromium import JS_CANVAS_RECTS, Browser, ChromiumMissing, ensure_chromium
from tests.dashboard.helpers import (
    ensure_contract_topics,
    machine_and_order_records,
    open_dashboard,
    vitals_flowing,
)
from tests.kafka_helpers import produce_json
from tests.services import in_ci
from tests.worker import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.e2e]
PATIENTS = ("pt-dash-a", "pt-dash-b")


@pytest.fixture
def worker(kafka: Any, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker of its own, for tests that stop it."""
    asyncio.run(ensure_contract_topics(kafka.bootstrap))
    process = WorkerProcess(kafka.url, tmp_path)
    yield process
    process.kill()


@pytest.fixture(scope="module")
def shared_worker(kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One running worker for the tests that only look at it."""
    asyncio.run(ensure_contract_topics(kafka.bootstrap))
    process = WorkerProcess(kafka.url, tmp_path_factory.mktemp("dashboard-worker"))
    process.start()
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
    shared_worker: WorkerProcess, kafka: Any, browser: Browser, tmp_path: Path,
) -> None:
    async with vitals_flowing(kafka.bootstrap, PATIENTS):
        opened = time.monotonic()
        page = await open_dashboard(browser, shared_worker.base_url + "/dashboard", min_points=3)
        first_render_s = time.monotonic() - opened
        plot = (await page.evaluate(JS_CANVAS_RECTS))[0]  # the temperature plot, first in the vitals grid
        before_times = await page.column("vitals-temp_corp", "time") or []
        before = await page.screenshot(clip=plot)
        newest, changed_at = max(before_times), [time.monotonic()]
        while time.monotonic() - changed_at[0] < 3.0:
            await asyncio.sleep(0.2)
            latest = max(await page.column("vitals-temp_corp", "time") or [0])
            if latest > newest:
                newest = latest
                changed_at.append(time.monotonic())
        after = await page.screenshot(clip=plot)
        whole = await page.screenshot()
    for name, data in (("vitals-before.png", before), ("vitals-after.png", after), ("vitals-page.png", whole)):
        (tmp_path / name).write_bytes(data)
    gaps = [later - earlier for earlier, later in zip(changed_at, changed_at[1:], strict=False)]
    print(f"first render {first_render_s:.2f} s; updates every <= {max(gaps, default=0):.2f} s; shots in {tmp_path}")

    assert newest > max(before_times), "no newer point was streamed to the page in 3 s"
    assert len(gaps) >= 2 and max(gaps) <= 2.0, f"updates further apart than 2 s: {gaps}"
    assert ImageChops.difference(png(before), png(after)).getbbox() is not None, "the plot looks the same 3 s later"
    assert len(png(whole).getcolors(maxcolors=1 << 20) or []) > 50, "the page looks blank"
    assert first_render_s < 30


JS_SWITCH_TAB = "Bokeh.documents[0].get_model_by_name('dashboard-tabs').active = {index}"
JS_RENDERER_POINTS = """(() => {{
  const renderer = Bokeh.documents[0].get_model_by_name({name!r});
  return renderer ? Array.from(renderer.data_source.data[{column!r}]) : null;
}})()"""


@pytest.mark.browser
@pytest.mark.xfail(reason="known bug: since the RUL pipeline landed the Machines tab's RUL line no longer renders "
                   "within 20 s in this test (failed 3 of 3 in the last full runs); under investigation", strict=False)
async def test_machines_and_orders_tabs_show_what_the_pipelines_publish(
    shared_worker: WorkerProcess, kafka: Any, browser: Browser,
) -> None:
    asset = f"asset-{uuid.uuid4().hex[:6]}"
    for topic, records in machine_and_order_records(asset).items():
        await produce_json(kafka.bootstrap, topic, records)
    page = await browser.open(shared_worker.base_url + "/dashboard")
    await page.wait_for("window.Bokeh && Bokeh.documents.length > 0")
    await page.evaluate(JS_SWITCH_TAB.format(index=1))  # Machines: built on first view
    ruls = await page.wait_for(JS_RENDERER_POINTS.format(name="rul-line", column="rul"), within_s=20)
    scores = await page.evaluate(JS_RENDERER_POINTS.format(name="anomaly-score", column="final_score"))
    await page.evaluate(JS_SWITCH_TAB.format(index=2))  # Orders
    bars = await page.wait_for(JS_RENDERER_POINTS.format(name="return-proba-by-category", column="category"),
                               within_s=20)
    await page.close()
    assert ruls == [100.0, 90.0, 80.0, 70.0, 60.0]
    assert scores == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8])
    assert {"fashion", "home"} <= set(bars)


@pytest.mark.browser
async def test_sessions_of_closed_tabs_are_discarded(shared_worker: WorkerProcess, browser: Browser) -> None:
    tabs = [await browser.open(shared_worker.base_url + "/dashboard") for _ in range(2)]
    for tab in tabs:
        await tab.wait_for("window.Bokeh && Bokeh.documents.length > 0")
    assert shared_worker.get("/health")[1]["dashboard"]["sessions"] >= 2
    for tab in tabs:
        await tab.close()
    deadline = time.monotonic() + 20
    while shared_worker.get("/health")[1]["dashboard"]["sessions"] > 0:
        assert time.monotonic() < deadline, "closed tabs' sessions were never discarded"
        await asyncio.sleep(0.5)


async def test_a_websocket_from_a_foreign_origin_is_refused(shared_worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as client:
        async def connect(origin: str) -> int:
            async with client.get(shared_worker.base_url + "/dashboard/") as page:
                token = re.search(r'"token":"([^"]+)"', await page.text())
            assert token is not None, "no Bokeh session token in the dashboard page"
            try:
                async with client.ws_connect(shared_worker.base_url + "/dashboard/ws", protocols=("bokeh", token[1]),
                                             headers={"Origin": origin}):
                    return 101
            except aiohttp.WSServerHandshakeError as refused:
                return refused.status

        port = shared_worker.web_port
        assert await connect(f"http://127.0.0.1:{port}") == 101
        assert await connect("http://evil.example") == 403


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
