"""The benchmarks of `make bench`, in the order they run; each one's reference runs before it."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.harness import BenchRun, Outcome, benchmark, stop_process
from bench.kafka_io import consume_all, create_topic, produce, steady_rate
from bench.messages import iot_messages

IOT_TOPIC = "iot-measurements"


async def iot_input(run: BenchRun) -> int:
    """The shared IoT measurements on `iot-measurements`, produced once per run."""
    if IOT_TOPIC not in run.inputs:
        from streamapp.settings import get_settings

        await create_topic(run.bootstrap, IOT_TOPIC, get_settings().topic_partitions)
        count, seconds = await produce(run.bootstrap, IOT_TOPIC, iot_messages(run.scale.messages))
        run.inputs[IOT_TOPIC] = count
        run.inputs["iot-produce-seconds"] = int(seconds * 1000)
    return run.inputs[IOT_TOPIC]


@benchmark("raw", "Raw produce / consume through the broker (aiokafka)")
async def raw(run: BenchRun, out: Outcome) -> None:
    count = await iot_input(run)
    produce_rate = out.figure("produce_rate", count / (run.inputs["iot-produce-seconds"] / 1000), "msg/s")
    seconds = await consume_all(run.bootstrap, IOT_TOPIC, count)
    consume_rate = out.figure("consume_rate", count / seconds, "msg/s")
    out.figure("messages", count, "")
    out.ratio("consume / produce", consume_rate / produce_rate)


async def trivial_rate(run: BenchRun, mode: str, count: int, timeout_s: float = 300.0) -> float:
    """Run bench/faust_trivial.py in `mode` over the shared input; its steady rate in events/s."""
    app_id = run.unique(f"bench-trivial-{mode}")
    result = run.workdir / f"{app_id}.json"
    process = run.spawn(
        [sys.executable, "-m", "bench.faust_trivial", "--mode", mode, "--app-id", app_id, "--broker", run.broker_url,
         "--topic", IOT_TOPIC, "--count", str(count), "--out", str(result)],
        app_id, app_id,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not result.exists():
            if process.poll() is not None:
                raise RuntimeError(f"trivial agent ({mode}) exited {process.returncode}: see {run.workdir / app_id}.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"trivial agent ({mode}) did not finish {count} events in {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
        samples = [(t, c) for t, c in json.loads(result.read_text())["samples"]]
        return steady_rate(samples, count)
    finally:
        stop_process(process)


@benchmark("trivial", "Trivial Faust agent: the app's configuration vs Faust defaults", needs=("raw",))
async def trivial(run: BenchRun, out: Outcome) -> None:
    count = await iot_input(run)
    defaults = out.figure("faust_defaults_rate", await trivial_rate(run, "defaults", count), "events/s")
    config = out.figure("app_config_per_event_rate", await trivial_rate(run, "config", count), "events/s")
    app = out.figure("app_rate", await trivial_rate(run, "app", count), "events/s")
    out.ratio("app configuration / Faust defaults", app / defaults, at_least=2.0)
    out.ratio("app settings, per-event loop / Faust defaults", config / defaults)
    out.ratio("app / raw aiokafka consumer", app / run.figure("raw", "consume_rate"))
