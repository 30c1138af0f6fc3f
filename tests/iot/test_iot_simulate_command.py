"""`simulate iot` posts readings at the asked rate and count, summarises, and fails clearly when nothing
is accepted."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import web

from streamapp.commands.base import CommandError
from streamapp.commands.simulate_iot import run_iot
from streamapp.simulators import SimulateOptions, get_simulator


async def test_readings_are_posted_at_the_rate_and_summarised(
    iot_env: Any, aiohttp_free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    received: list[dict[str, Any]] = []

    async def accept(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"status": "accepted"}, status=202)

    server = web.Application()
    server.router.add_post("/iot/measurements", accept)
    runner = web.AppRunner(server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", aiohttp_free_port).start()
    try:
        started = time.monotonic()
        code = await run_iot(SimulateOptions(count=30, rate=60.0, seed=3,
                                             url=f"http://127.0.0.1:{aiohttp_free_port}/iot/measurements"))
        elapsed = time.monotonic() - started
    finally:
        await runner.cleanup()
    assert code == 0 and len(received) == 30
    assert elapsed >= 29 / 60  # paced, not a burst
    assert {r["patient_id"] for r in received} == {"patient-001-ss", "patient-002-as", "patient-003-sc"}
    summary = capsys.readouterr().out
    assert "30 readings" in summary and "accepted 30, refused 0, failed 0" in summary and "scenarios: normal" in summary


async def test_nothing_accepted_is_a_clear_failure(iot_env: Any, aiohttp_free_port: int) -> None:
    with pytest.raises(CommandError, match="no reading was accepted"):
        await run_iot(SimulateOptions(count=3, rate=100.0, url=f"http://127.0.0.1:{aiohttp_free_port}/nowhere"))


async def test_an_unknown_mode_is_a_clear_failure(iot_env: Any) -> None:
    with pytest.raises(CommandError, match="mode must be one of simple, advanced"):
        await get_simulator("iot")(SimulateOptions(mode="turbo", count=1))


@pytest.fixture
def aiohttp_free_port() -> int:
    from tests.worker import free_port

    return free_port()
