"""The benchmarks of `make bench`, in the order they run; each one's reference runs before it."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.harness import PROJECT, BenchRun, Outcome, benchmark, stop_process
from bench.kafka_io import (
    Progress,
    commit_to_end,
    consume_all,
    create_topic,
    end_offsets,
    follow_group,
    produce,
    steady_rate,
)
from bench.messages import iot_messages, vitals

IOT_TOPIC = "iot-measurements"
REFERENCE_TOPIC = "bench-trivial-input"  # the trivial agent's input: the same messages, never appended to


async def shared_iot_messages(run: BenchRun, topic: str) -> int:
    """The run's shared IoT measurements on `topic` (created with the app's partitions), produced once per
    run; how long producing them took is kept as `<topic>-produce-ms`."""
    if topic not in run.inputs:
        from streamapp.settings import get_settings

        await create_topic(run.bootstrap, topic, get_settings().topic_partitions)
        count, seconds = await produce(run.bootstrap, topic, iot_messages(run.scale.messages))
        run.inputs[topic] = count
        run.inputs[f"{topic}-produce-ms"] = int(seconds * 1000)
    return run.inputs[topic]


async def iot_input(run: BenchRun) -> int:
    """The shared IoT measurements on `iot-measurements`, the pipelines' input."""
    return await shared_iot_messages(run, IOT_TOPIC)


async def reference_input(run: BenchRun) -> int:
    """The same measurements on a topic of their own that no benchmark appends to (the replay adds a
    million messages to `iot-measurements`): every run of the trivial agent reads the same input."""
    return await shared_iot_messages(run, REFERENCE_TOPIC)


@benchmark("raw", "Raw produce / consume through the broker (aiokafka)")
async def raw(run: BenchRun, out: Outcome) -> None:
    count = await iot_input(run)
    produce_rate = out.figure("produce_rate", count / (run.inputs[f"{IOT_TOPIC}-produce-ms"] / 1000), "msg/s")
    seconds = await consume_all(run.bootstrap, IOT_TOPIC, count)
    consume_rate = out.figure("consume_rate", count / seconds, "msg/s")
    out.figure("messages", count, "")
    out.ratio("consume / produce", consume_rate / produce_rate)


async def trivial_rate(run: BenchRun, mode: str, count: int, timeout_s: float = 300.0) -> tuple[float, float]:
    """Run bench/faust_trivial.py in `mode` over `count` messages of the reference input (`reference_input`):
    its steady rate in events per second and per CPU-second of the worker process."""
    app_id = run.unique(f"bench-trivial-{mode}")
    result = run.workdir / f"{app_id}.json"
    process = run.spawn(
        [sys.executable, "-m", "bench.faust_trivial", "--mode", mode, "--app-id", app_id, "--broker", run.broker_url,
         "--topic", REFERENCE_TOPIC, "--count", str(count), "--out", str(result)],
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
        samples = [tuple(sample) for sample in json.loads(result.read_text())["samples"]]
        return steady_rate(samples, count), steady_rate(samples, count, clock=2)
    finally:
        stop_process(process)


TRIVIAL_RUNS = 3


class Bracket:
    """The trivial agent (app configuration) run right before and right after a pipeline benchmark: the
    machine's speed drifts by up to a third within minutes, so a pipeline's ratio is taken against the
    mean of these two, measured seconds from it, rather than against the run-start median alone. Each is
    the median of `TRIVIAL_RUNS` runs, as at the start: a single run once read 35.9k events/s right after
    one of 25.6k (the phases of Faust's fetch delivery its short window happens to catch)."""

    def __init__(self, run: BenchRun, out: Outcome) -> None:
        self.run, self.out = run, out
        self.rates: list[float] = []

    async def measure(self) -> None:
        if self.run.quick:  # a smoke run: the run-start figure is close enough
            return
        count = await reference_input(self.run)
        runs = sorted([(await trivial_rate(self.run, "app", count))[0] for _ in range(TRIVIAL_RUNS)])
        self.rates.append(runs[len(runs) // 2])

    def ratio(self, label: str, rate: float, **target: float) -> None:
        """`rate` over the bracketing reference (targeted), and over the run-start median beside it."""
        start = self.run.figure("trivial", "app_rate")
        if len(self.rates) < 2:
            self.out.ratio(f"{label} / trivial agent (app configuration)", rate / start, **target)
            return
        reference = self.out.figure("trivial_app_rate_around", sum(self.rates) / 2, "events/s")
        self.out.notes.append(
            f"trivial agent (app configuration) right before / after this benchmark: "
            f"{self.rates[0]:,.0f} / {self.rates[1]:,.0f} events/s (medians of {TRIVIAL_RUNS}; their mean is the "
            "reference); "
            f"at the start of the run: {start:,.0f}"
        )
        self.out.ratio(f"{label} / trivial agent (app configuration, run around it)", rate / reference, **target)
        self.out.ratio(f"{label} / trivial agent (app configuration, start of the run)", rate / start)


@benchmark("trivial", "Trivial Faust agent: the app's configuration vs Faust defaults", needs=("raw",))
async def trivial(run: BenchRun, out: Outcome) -> None:
    count = await reference_input(run)
    rates = {}
    for mode in ("defaults", "config", "app"):  # the median of 3 runs: one 3-s run varied by up to a third
        runs = sorted([await trivial_rate(run, mode, count) for _ in range(1 if run.quick else TRIVIAL_RUNS)])
        rates[mode] = runs[len(runs) // 2]
        out.notes.append(f"{mode}: {', '.join(f'{rate:,.0f}' for rate, _ in runs)} events/s (median used)")
    defaults = out.figure("faust_defaults_rate", rates["defaults"][0], "events/s")
    config = out.figure("app_config_per_event_rate", rates["config"][0], "events/s")
    app = out.figure("app_rate", rates["app"][0], "events/s")
    out.figure("faust_defaults_per_cpu_second", rates["defaults"][1], "events/CPU-s")
    out.figure("app_per_cpu_second", rates["app"][1], "events/CPU-s")
    out.ratio("app configuration / Faust defaults", app / defaults, at_least=2.0)
    out.ratio("same, per CPU-second", rates["app"][1] / rates["defaults"][1])
    out.ratio("app settings, per-event loop / Faust defaults", config / defaults)
    out.ratio("app / raw aiokafka consumer", app / run.figure("raw", "consume_rate"))


# ---- the IoT pipeline -------------------------------------------------------------------------------


async def topic_size(run: BenchRun, topic: str) -> int:
    return await end_offsets(run.bootstrap, topic)


async def follow_worker(
    run: BenchRun, worker: Any, topic: str, total: int, timeout_s: float, interval_s: float = 0.2,
    profile: str = "", output_topic: str | None = None,
) -> Progress:
    """Follow a worker's group to `total`; with `profile`, py-spy samples it meanwhile (bench/profiling.py)."""
    process = worker.process
    spies: list[subprocess.Popen[bytes] | None] = []

    def alive() -> bool:
        return process.poll() is None

    def progressed(done: int) -> None:  # profile the steady state, not the start-up
        if profile and not spies and done >= total * 0.25:
            spies.append(run.profile(profile, process.pid))

    try:
        return await follow_group(
            run.bootstrap, worker.app_id, topic, total, timeout_s=timeout_s, interval_s=interval_s, pid=process.pid,
            alive=alive, on_progress=progressed, output_topic=output_topic,
        )
    finally:
        for spy in spies:
            if spy is not None:
                spy.wait()


async def count_rows(url: str, table: str) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
    finally:
        await engine.dispose()


def batch_figures(worker: Any, agent: str) -> dict[str, float]:
    """Mean micro-batch size and processing time of `agent`, from the worker's Prometheus text."""
    status, text = worker.get("/metrics")
    found: dict[str, float] = {}
    for line in str(text).splitlines():
        for series in ("streamapp_batch_size", "streamapp_batch_processing_seconds"):
            for part in ("sum", "count"):
                if line.startswith(f'{series}_{part}{{agent="{agent}"}}'):
                    found[f"{series}_{part}"] = float(line.rsplit(" ", 1)[1])
    figures = {}
    if found.get("streamapp_batch_size_count"):
        figures["mean_batch_size"] = found["streamapp_batch_size_sum"] / found["streamapp_batch_size_count"]
    if found.get("streamapp_batch_processing_seconds_count"):
        figures["mean_batch_processing_ms"] = 1000 * found["streamapp_batch_processing_seconds_sum"] / found[
            "streamapp_batch_processing_seconds_count"]
    return figures


def report_batches(out: Outcome, figures: dict[str, float]) -> None:
    """The agent's mean batch size and processing time as figures of the benchmark."""
    for name, value in figures.items():
        out.figure(name, value, "ms" if name.endswith("_ms") else "")


def iot_worker(run: BenchRun, name: str) -> tuple[Any, str]:
    """A streamapp worker writing IoT rows to its own PostgreSQL database."""
    app_id = run.unique(name)
    url = run.postgres_url(app_id.replace("-", "_"))
    return run.worker(app_id, STREAMAPP_DATABASE_URL=url, STREAMAPP_PIPELINES="iot"), url


@benchmark("iot", "IoT pipeline end to end: measurements -> alerts, windows, PostgreSQL, lake", needs=("trivial",))
async def iot(run: BenchRun, out: Outcome) -> None:
    count = await iot_input(run)
    bracket = Bracket(run, out)
    await bracket.measure()
    worker, url = iot_worker(run, "bench-iot")
    worker.start(timeout=180)
    try:
        progress = await follow_worker(run, worker, IOT_TOPIC, count, timeout_s=600, profile="iot")
        batches = batch_figures(worker, "iot")
    finally:
        worker.stop()
    rate = out.figure("rate", progress.rate(count), "events/s")
    out.figure("rate_per_cpu_second", progress.cpu_rate(count), "events/CPU-s")
    report_batches(out, batches)
    out.figure("measurement_rows", await count_rows(url, "iot_measurements"), "")
    out.figure("alert_rows", await count_rows(url, "iot_alerts"), "")
    out.figure("alerts_published", await topic_size(run, "iot-alerts"), "")
    out.figure("window_finals_published", await topic_size(run, "iot-aggregations"), "")
    lake = worker.workdir / "lake"
    out.figure("lake_files", sum(1 for _ in lake.rglob("*.parquet")), "")
    await bracket.measure()
    bracket.ratio("IoT pipeline", rate, at_least=0.6)


# ---- the Quix Streams peer ---------------------------------------------------------------------------


@benchmark("quix", "Peer: the same alerting and 5-minute windows with Quix Streams", needs=("iot",))
async def quix(run: BenchRun, out: Outcome) -> None:
    count = await iot_input(run)
    group = run.unique("bench-quix")
    process = run.spawn(
        [sys.executable, "-m", "bench.quix_peer", "--broker", run.bootstrap, "--group", group,
         "--state-dir", str(run.workdir / group / "state")],
        group, group,
    )
    spies: list[subprocess.Popen[bytes] | None] = []

    def progressed(done: int) -> None:
        if not spies and done >= count * 0.25:
            spies.append(run.profile("quix", process.pid))

    try:
        progress = await follow_group(
            run.bootstrap, group, IOT_TOPIC, count, timeout_s=600, pid=process.pid,
            alive=lambda: process.poll() is None, on_progress=progressed,
        )
        for spy in spies:
            if spy is not None:
                spy.wait()
    finally:
        stop_process(process)
    rate = out.figure("rate", progress.rate(count), "events/s")
    out.figure("rate_per_cpu_second", progress.cpu_rate(count), "events/CPU-s")
    out.figure("alerts_published", await topic_size(run, f"{group}-alerts"), "")
    out.figure("window_finals_published", await topic_size(run, f"{group}-windows"), "")
    out.ratio("Faust IoT pipeline / Quix Streams peer", run.figure("iot", "rate") / rate)
    out.ratio("same, per CPU-second", run.figure("iot", "rate_per_cpu_second") / out.figures["rate_per_cpu_second"])


# ---- latency at a fixed offered rate over HTTP ------------------------------------------------------

TICK_S = 0.01  # one POST per tick: rate x TICK_S measurements in it


async def alert_arrivals(bootstrap: str, arrivals: dict[str, float], ready: asyncio.Event) -> None:
    """Note when each alert (by message id) shows up on `iot-alerts`, from the topic's current end."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "iot-alerts", bootstrap_servers=bootstrap, auto_offset_reset="latest", enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka has no assignment event
            await asyncio.sleep(0.05)
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    message_id = orjson.loads(record.value)["message_id"]
                    arrivals.setdefault(message_id, now)
    finally:
        await consumer.stop()


LATENCY_PATIENTS = 500


def http_batch(tick: int, per_tick: int, rng: random.Random, alert_rate: float) -> list[dict[str, Any]]:
    stamp = datetime.now(UTC).isoformat()
    patients = [(tick * per_tick + i) % LATENCY_PATIENTS for i in range(per_tick)]
    return [
        {"patient_id": f"latency-patient-{patient}", "device_id": f"latency-device-{patient}",  # one device each
         "timestamp": stamp, "measurements": vitals(rng, rng.random() < alert_rate)}
        for patient in patients
    ]


def raises_alert(item: dict[str, Any]) -> bool:
    """Whether `vitals` made this measurement alerting (normal readings stay inside every threshold)."""
    values = item["measurements"]
    return not (55 <= values["freq_card"] <= 110 and values["spo2_pct"] >= 94 and values["temp_corp"] < 37.7)


async def offered_load(
    base_url: str, rate: int, seconds: float, alert_rate: float = 0.2,
) -> tuple[dict[str, float], set[str], int, list[float]]:
    """POST `rate` measurements per second for `seconds` (open loop, batches every 10 ms); returns the
    scheduled send time of every accepted message id, the ids that must raise an alert, the number
    of refused requests and each accepted request's answer time (ms after its scheduled time)."""
    import aiohttp

    per_tick = max(1, round(rate * TICK_S))
    rng = random.Random(7)
    sent: dict[str, float] = {}
    alerting: set[str] = set()
    refused = 0
    answered: list[float] = []  # ms from a request's scheduled time to its 202

    async def post(session: aiohttp.ClientSession, body: list[dict[str, Any]], at: float) -> None:
        nonlocal refused
        async with session.post(f"{base_url}/iot/measurements", json=body) as response:
            answer = await response.json()
            if response.status != 202:
                refused += 1
                return
            answered.append((time.perf_counter() - at) * 1000)
            for message_id, item in zip(answer["message_ids"], body, strict=True):
                sent[message_id] = at
                if raises_alert(item):
                    alerting.add(message_id)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        started = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for tick in range(int(seconds / TICK_S)):
            at = started + tick * TICK_S
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            task = asyncio.create_task(post(session, http_batch(tick, per_tick, rng, alert_rate), at))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    return sent, alerting, refused, answered


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def round_trip(base_url: str, arrivals: dict[str, float], timeout_s: float = 120.0) -> float:
    """POST alerting measurements every second until one's alert comes back (the worker has joined its
    group, the broker has its coordinator and topics ready: a cold cluster's first seconds are not
    what the load measures); returns the seconds that took."""
    import aiohttp

    rng = random.Random(3)
    started = time.perf_counter()
    posted: list[str] = []
    async with aiohttp.ClientSession() as session:
        while not any(message_id in arrivals for message_id in posted):
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"no alert came back within {timeout_s:.0f} s of posting alerting measurements")
            body = [{"patient_id": "latency-warmup", "device_id": "latency-warmup",
                     "timestamp": datetime.now(UTC).isoformat(), "measurements": vitals(rng, True)}]
            async with session.post(f"{base_url}/iot/measurements", json=body) as response:
                if response.status == 202:
                    posted.extend((await response.json())["message_ids"])
            await asyncio.sleep(1.0)
    return time.perf_counter() - started


@benchmark("latency", "Ingest-to-alert latency at a fixed offered rate over HTTP")
async def latency(run: BenchRun, out: Outcome) -> None:
    from streamapp.settings import get_settings

    for topic in (IOT_TOPIC, "iot-alerts"):
        await create_topic(run.bootstrap, topic, get_settings().topic_partitions)
    worker, _ = iot_worker(run, "bench-latency")
    await commit_to_end(run.bootstrap, worker.app_id, IOT_TOPIC)  # only the HTTP measurements, not the backlog
    worker.start(timeout=180)
    arrivals: dict[str, float] = {}
    ready = asyncio.Event()
    listener = asyncio.create_task(alert_arrivals(run.bootstrap, arrivals, ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        warmup_s = await round_trip(worker.base_url, arrivals)
        arrivals.clear()
        rate, seconds = run.scale.latency_rate, run.scale.latency_seconds
        loop = asyncio.get_running_loop()
        spies = []  # py-spy over the middle of the load, only when asked: it competes for the 2 cores
        if run.profile_models:
            loop.call_later(seconds / 3, lambda: spies.append(run.profile("latency", worker.process.pid)))
        sent, alerting, refused, answered = await offered_load(worker.base_url, rate, seconds)
        for spy in spies:
            if spy is not None:
                spy.wait()
        await asyncio.sleep(3)  # the last alerts
        waited_until = time.perf_counter()
        status, seen_by_worker = worker.get("/metrics.json")  # the worker's own ingest-to-alert figures
        batches = batch_figures(worker, "iot")
    finally:
        listener.cancel()
        worker.stop()
    warm = min(sent.values(), default=0.0) + min(3.0, seconds / 3)  # the first seconds warm the worker up
    expected = [m for m in alerting if sent[m] >= warm]
    if not expected:
        raise RuntimeError(f"no alerting measurement was accepted ({len(sent)} accepted, {refused} refused)")
    # an alert still missing when the bench stopped waiting counts with the time it was waited for (a lower bound)
    delays = [((arrivals[m] if m in arrivals else waited_until) - sent[m]) * 1000 for m in expected]
    returned = sum(1 for m in expected if m in arrivals)
    out.figure("offered_rate", rate, "msg/s")
    out.figure("accepted", len(sent), "")
    out.figure("refused_requests", refused, "")
    out.figure("alerts_expected", len(expected), "")
    out.figure("alerts_returned_share", returned / len(expected), "")
    for q in (0.5, 0.95, 0.99):
        out.figure(f"p{round(q * 100)}", percentile(delays, q), "ms")
    if status == 200 and isinstance(seen_by_worker, dict):  # ingestion timestamp to alert confirmed by the broker
        for q in (50, 99):
            if f"latency_p{q}_s" in seen_by_worker:
                out.figure(f"worker_ingest_to_alert_p{q}", 1000 * float(seen_by_worker[f"latency_p{q}_s"]), "ms")
    report_batches(out, batches)
    if answered:  # the ingestion view's share: until the broker confirmed the measurements (HTTP 202)
        out.figure("http_answer_p50", percentile(answered, 0.5), "ms")
        out.figure("http_answer_p99", percentile(answered, 0.99), "ms")
    slices: dict[int, list[float]] = defaultdict(list)  # p99 over time: steady, or spikes (a flush, a GC)?
    for message_id, delay in zip(expected, delays, strict=True):
        slices[int((sent[message_id] - warm) // 5)].append(delay)
    out.notes.append("p99 by 5-s slice of the load (ms): " + ", ".join(
        f"{percentile(values, 0.99):.0f}" for _, values in sorted(slices.items())))
    if returned < len(expected):
        out.notes.append(
            f"{len(expected) - returned} of {len(expected)} alerts had not come back 3 s after the load stopped:"
            " the worker fell behind the offered rate; their wait so far is counted (percentiles are lower bounds)"
        )
    out.notes.append(f"the first alert came back {warmup_s:.1f} s after the worker was ready (before the load)")
    budget = get_settings().latency_budget_ms
    out.ratio(f"p99 / {budget:g} ms budget", out.figures["p99"] / budget, at_most=1.0)


# ---- a long replay, memory sampled -------------------------------------------------------------------


@benchmark("replay", "Replay of 1,000,000 IoT events: worker RSS over time", needs=("raw",))
async def replay(run: BenchRun, out: Outcome) -> None:
    shared = await iot_input(run)
    await produce(run.bootstrap, IOT_TOPIC, iot_messages(run.scale.replay - shared, first=shared))
    total = await topic_size(run, IOT_TOPIC)
    worker, _ = iot_worker(run, "bench-replay")
    worker.start(timeout=180)
    try:
        progress = await follow_worker(run, worker, IOT_TOPIC, total, timeout_s=1800, interval_s=0.5)
    finally:
        worker.stop()
    samples = progress.samples
    warm = next(i for i, sample in enumerate(samples) if sample[1] >= total * 0.2)
    rss_warm = samples[warm][3] / 2**20
    rss_after = [sample[3] / 2**20 for sample in samples[warm:]]
    out.figure("events", total, "")
    out.figure("rate", progress.rate(total), "events/s")
    out.figure("rss_after_warmup", rss_warm, "MB")
    out.figure("rss_peak_after_warmup", max(rss_after), "MB")
    out.figure("rss_end", rss_after[-1], "MB")
    growth = out.figure("rss_growth_after_warmup", max(rss_after) - rss_warm, "MB")
    step = max(1, len(samples) // 12)
    out.notes.append("RSS (MB) by share processed: " + ", ".join(
        f"{sample[1] / total:.0%}:{sample[3] / 2**20:.0f}" for sample in samples[::step]
    ))
    out.ratio("RSS growth after warm-up (20 %) / 100 MB", growth / 100, at_most=1.0)


# ---- model pipelines: anomaly, RUL, returns ---------------------------------------------------------


def feature_messages(count: int, first: int) -> Iterator[tuple[bytes, bytes]]:
    """`extracted-features` messages: simulated machine cycles with every feature both models know,
    each asset's cycles in order (a new set of asset ids on every pass over the simulated pool)."""
    from models.features import FEATURE_NAMES
    from streamapp.anomaly_training import simulated_healthy_features

    pool = simulated_healthy_features(24, 40, seed=3, feature_names=FEATURE_NAMES)
    groups = pool.groups or [f"asset-{i // 40}" for i in range(len(pool.X))]
    for index in range(first, first + count):
        row, lap = index % len(pool.X), index // len(pool.X)
        asset = f"{groups[row]}-lap{lap}"
        record = {
            "asset_id": asset, "sensor_id": "vibration", "timestamp": f"2026-01-01T00:00:{index % 60:02d}Z",
            "features": {name: float(value) for name, value in zip(FEATURE_NAMES, pool.X[row], strict=True)},
            "metadata": {"cycle": index},
        }
        yield asset.encode(), orjson.dumps(record)


def model_store(run: BenchRun, model: str) -> str:
    """A private MLflow store holding `model` promoted (trained once per run); its tracking URI."""
    home = run.workdir / f"models-{model}"
    uri = f"sqlite:///{home / 'mlflow.db'}"
    if not (home / "trained").exists():
        env = {**run.env(f"models-{model}"), "MLFLOW_TRACKING_URI": uri, "STREAMAPP_VAR_DIR": str(home)}
        done = subprocess.run([sys.executable, "-m", "bench.train_models", model], cwd=PROJECT, env=env,
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"training {model} failed: {done.stderr[-2000:]}")
        (home / "trained").write_text(done.stdout)
    return uri


async def model_pipeline_rate(
    run: BenchRun, *, model: str, pipeline: str, input_topic: str,
    messages: Callable[[int, int], Iterator[tuple[bytes, bytes]]], count: int, batch_max: int | None = None,
    orders_db: bool = False, output_topic: str | None = None,
) -> Progress:
    """Send `count` fresh messages, then start a worker serving `model` (its agent waits for the model's
    first load before it takes a message) and follow its group's committed offsets over the whole input
    topic (earlier benchmarks' messages included): the rate is the worker's, not the producer's."""
    name = f"bench-{model}-{'per-event' if batch_max == 1 else 'batched'}"
    app_id = run.unique(name)
    extra = {"MLFLOW_TRACKING_URI": model_store(run, model),
             "STREAMAPP_DATABASE_URL": run.postgres_url(app_id.replace("-", "_")),
             "STREAMAPP_PIPELINES": pipeline}  # the measured pipeline only (not the backlog of the IoT benchmarks)
    if orders_db:
        extra["STREAMAPP_ORDERS_DATABASE_URL"] = run.mariadb_url(app_id.replace("-", "_"))
    if batch_max is not None:
        extra["STREAMAPP_BATCH_MAX_SIZE"] = str(batch_max)
    await create_topic(run.bootstrap, input_topic, get_settings_partitions())
    if output_topic:  # created as the worker declares it: the follower's metadata requests, sent before the
        # worker's, would have the broker auto-create it with one partition
        await create_topic(run.bootstrap, output_topic, get_settings_partitions())
    already = run.inputs.get(input_topic, 0)
    await produce(run.bootstrap, input_topic, messages(count, already))
    run.inputs[input_topic] = already + count
    worker = run.worker(app_id, **extra)
    worker.start(timeout=180, wait_assigned=False)
    try:
        progress = await follow_worker(run, worker, input_topic, already + count, timeout_s=900,
                                       profile=model if run.profile_models and batch_max != 1 else "",
                                       output_topic=output_topic)
        progress.batches = batch_figures(worker, pipeline)  # the pipeline's agent has the pipeline's name
        progress.total = already + count
        return progress
    finally:
        worker.stop()


def get_settings_partitions() -> int:
    from streamapp.settings import get_settings

    return get_settings().topic_partitions


@benchmark("anomaly", "Anomaly scoring, three models: micro-batched vs per-event", needs=("trivial",))
async def anomaly(run: BenchRun, out: Outcome) -> None:
    runs = []
    bracket = Bracket(run, out)
    for count, batch_max in ((run.scale.per_event_events, 1), (run.scale.model_events, None)):
        if batch_max is None:
            await bracket.measure()
        runs.append(await model_pipeline_rate(
            run, model="anomaly", pipeline="anomalies", input_topic="extracted-features",
            messages=feature_messages, count=count, batch_max=batch_max, output_topic="anomalies-detected",
        ))
    await bracket.measure()
    # each worker reads the topic from the start (the batched one also scores the per-event one's input)
    # and publishes one result per message: rates count results as they come out, because committed
    # offsets move only at lake flushes (every 20,000 rows or 5 s), too coarse for the short per-event run
    per_event, batched = runs
    per_event_rate = out.figure("per_event_rate", per_event.output_rate(per_event.total), "events/s")
    batched_rate = out.figure("batched_rate", batched.output_rate(batched.total), "events/s")
    out.figure("batched_committed_rate", batched.rate(batched.total), "events/s")
    out.figure("per_event_per_cpu_second", per_event.output_cpu_rate(per_event.total), "events/CPU-s")
    out.figure("batched_per_cpu_second", batched.output_cpu_rate(batched.total), "events/CPU-s")
    report_batches(out, batched.batches)
    out.ratio("micro-batched / per-event", batched_rate / per_event_rate, at_least=10)
    bracket.ratio("micro-batched", batched_rate, at_least=0.3)


@benchmark("rul", "RUL forecasts (LSTM, GRU, TCN ensemble), micro-batched", needs=("trivial",))
async def rul(run: BenchRun, out: Outcome) -> None:
    progress = await model_pipeline_rate(
        run, model="rul", pipeline="rul", input_topic="extracted-features",
        messages=feature_messages, count=run.scale.model_events, output_topic="rul-predictions",
    )
    rate = out.figure("batched_rate", progress.output_rate(progress.total), "events/s")
    out.figure("batched_committed_rate", progress.rate(progress.total), "events/s")
    out.figure("batched_per_cpu_second", progress.output_cpu_rate(progress.total), "events/CPU-s")
    report_batches(out, progress.batches)
    out.ratio("micro-batched / trivial agent (app configuration)", rate / run.figure("trivial", "app_rate"))


def order_messages(count: int, first: int) -> Iterator[tuple[bytes, bytes]]:
    from streamapp.simulators.orders import generate_orders

    for event in generate_orders(count, seed=first + 11):
        yield str(event["event_id"]).encode(), orjson.dumps(event)


@benchmark("returns", "Returns: order events -> return probability -> MariaDB", needs=("trivial",))
async def returns(run: BenchRun, out: Outcome) -> None:
    count = run.scale.model_events
    progress = await model_pipeline_rate(
        run, model="returns", pipeline="returns", input_topic="ecommerce-events",
        messages=order_messages, count=count, orders_db=True,
    )
    rate = out.figure("rate", progress.rate(count), "events/s")
    out.figure("rate_per_cpu_second", progress.cpu_rate(count), "events/CPU-s")
    report_batches(out, progress.batches)
    out.ratio("returns / trivial agent (app configuration)", rate / run.figure("trivial", "app_rate"))
