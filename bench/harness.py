"""The bench harness: one private Kafka per run, benchmarks registered by name, every figure reported
beside a reference measured in the same run (the machine is shared, so only ratios mean something)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.shared_data import PROJECT  # the repository root, defined once

RESULTS = PROJECT / "bench" / "results"
README = PROJECT / "README.md"
START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass
class Scale:
    """How big each benchmark is: the full run, or `--quick` for a smoke run."""

    messages: int = 100_000  # IoT measurements shared by raw, trivial, IoT and Quix benchmarks
    model_events: int = 100_000  # anomaly / RUL / returns inputs (enough for a steady state: lake flushes every 20,000 rows gate the acks)
    per_event_events: int = 500  # the per-event anomaly reference (slow by design)
    replay: int = 1_000_000
    latency_seconds: float = 30.0
    latency_rate: int = 2_000

    @classmethod
    def quick(cls, count: int | None = None) -> Scale:
        n = count or 20_000
        return cls(messages=n, model_events=max(n // 4, 500), per_event_events=max(n // 40, 200),
                   replay=max(n * 2, 2_000), latency_seconds=5.0)


@dataclass
class Ratio:
    label: str  # what over what
    value: float
    target: str = ""  # the acceptance rule, e.g. ">= 2"
    passed: bool | None = None


@dataclass
class Outcome:
    name: str
    title: str
    figures: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    def figure(self, name: str, value: float, unit: str) -> float:
        self.figures[name] = float(value)
        self.units[name] = unit
        return float(value)

    def ratio(self, label: str, value: float, *, at_least: float | None = None, at_most: float | None = None) -> None:
        target, passed = "", None
        if at_least is not None:
            target, passed = f">= {at_least:g}", value >= at_least
        elif at_most is not None:
            target, passed = f"<= {at_most:g}", value <= at_most
        self.ratios.append(Ratio(label, float(value), target, passed))


Bench = Callable[["BenchRun", Outcome], Awaitable[None]]


@dataclass
class Registered:
    name: str
    title: str
    run: Bench
    needs: tuple[str, ...]


REGISTRY: dict[str, Registered] = {}


def benchmark(name: str, title: str, needs: tuple[str, ...] = ()) -> Callable[[Bench], Bench]:
    """Register a benchmark; `needs` run first (their figures are this one's references)."""

    def register(fn: Bench) -> Bench:
        REGISTRY[name] = Registered(name, title, fn, needs)
        return fn

    return register


class BenchRun:
    """What every benchmark shares: the scale, a work dir, the broker and the outcomes so far."""

    def __init__(self, scale: Scale, workdir: Path, quick: bool, profile_models: bool = False) -> None:
        self.scale = scale
        # py-spy on the model benchmarks' workers: evidence, but it takes ~0.2 CPU from their measured span
        self.profile_models = profile_models
        self.quick = quick
        self.workdir = workdir
        self.outcomes: dict[str, Outcome] = {}
        self._kafka: Any = None
        self._postgres: Any = None
        self._mariadb: Any = None
        self.inputs: dict[str, int] = {}
        self.profiles: dict[str, Path] = {}
        self.kept_profile_lines: dict[str, str] = {}  # from the run a `--merge` completes
        self.profile_seconds = 3.0 if quick else 8.0

    # ---- services (started once per run, stopped at the end) ----
    @property
    def kafka(self) -> Any:
        if self._kafka is None:
            from streamapp.stack import KafkaService

            self._kafka = KafkaService(self.workdir / "kafka", attached=True)
            self._kafka.start()
        return self._kafka

    @property
    def bootstrap(self) -> str:
        return str(self.kafka.bootstrap)

    @property
    def broker_url(self) -> str:
        return str(self.kafka.url)

    def postgres_url(self, database: str) -> str:
        from streamapp.stack import PostgresService

        if self._postgres is None:
            self._postgres = PostgresService(self.workdir / "postgres", durable=False, attached=True)
            self._postgres.start()
        return str(self._postgres.create_database(database))

    def mariadb_url(self, database: str) -> str:
        from streamapp.stack import MariaDBService

        if self._mariadb is None:
            self._mariadb = MariaDBService(self.workdir / "mariadb", attached=True)
            self._mariadb.start()
        return str(self._mariadb.create_database(database))

    def settle_databases(self) -> None:
        """Before a benchmark: PostgreSQL writes out what earlier benchmarks left dirty in its shared buffers
        (a CHECKPOINT), so this benchmark's inserts do not pay for evicting them."""
        if self._postgres is not None:
            with contextlib.suppress(Exception):
                self._postgres.psql("CHECKPOINT")

    def stop(self) -> None:
        for service in (self._mariadb, self._postgres, self._kafka):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()

    # ---- helpers ----
    def figure(self, benchmark: str, name: str) -> float:
        outcome = self.outcomes.get(benchmark)
        if outcome is None or name not in outcome.figures:
            raise LookupError(f"reference {benchmark}.{name} is missing (did {benchmark} fail?)")
        return outcome.figures[name]

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def env(self, app_id: str, **extra: str) -> dict[str, str]:
        """Environment of a streamapp process of this run: its own app id (consumer group) and var dir."""
        var = self.workdir / app_id
        return {
            **os.environ,
            "STREAMAPP_BROKER": self.broker_url,
            "STREAMAPP_APP_ID": app_id,
            "STREAMAPP_VAR_DIR": str(var),
            "STREAMAPP_DASHBOARD_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def worker(self, app_id: str, **extra: str) -> Any:
        """A `faust -A streamapp worker` of this run (tests/worker.py), not yet started."""
        sys.path.insert(0, str(PROJECT))
        from tests.worker import WorkerProcess

        env = self.env(app_id, **extra)
        return WorkerProcess(self.broker_url, self.workdir / app_id, env=env, app_id=app_id)

    def profile(self, name: str, pid: int) -> subprocess.Popen[bytes] | None:
        """py-spy on `pid` for a few seconds (the README's profile evidence); the caller waits for it."""
        from bench.profiling import start_py_spy

        path = self.workdir / f"profile-{name}.txt"
        self.profiles[name] = path
        return start_py_spy(pid, path, self.profile_seconds)

    def spawn(self, args: list[str], app_id: str, log_name: str, **extra: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{log_name}.log", "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(
            args, cwd=PROJECT, env=self.env(app_id, **extra), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL the process group after `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(10)


# ---- running and reporting -------------------------------------------------------------------------


def plan(only: list[str]) -> list[Registered]:
    """The benchmarks to run, references first, in registration order."""
    wanted: set[str] = set()

    def add(name: str) -> None:
        if name not in REGISTRY:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(REGISTRY)}")
        for need in REGISTRY[name].needs:
            add(need)
        wanted.add(name)

    for name in only or list(REGISTRY):
        add(name)
    return [entry for name, entry in REGISTRY.items() if name in wanted]


QUIET_BUSY_SHARE = 0.2  # the machine is quiet when its CPUs are at most this busy over a sample
QUIET_SAMPLE_S = 1.0
QUIET_WAIT_MAX_S = 120.0


async def wait_until_quiet(outcome: Outcome) -> None:
    """Before a benchmark, wait (up to `QUIET_WAIT_MAX_S`) until the machine is quiet: what the previous
    benchmark left running (PostgreSQL's autovacuum of a million inserted rows, the broker's log work) would
    otherwise take CPU from the measurement, more from a pipeline spread over several processes than from
    the one-process trivial agent it is compared with. A wait is noted, and so is giving up."""
    import psutil

    started = time.monotonic()
    psutil.cpu_percent(None)
    samples = 0
    while True:
        await asyncio.sleep(QUIET_SAMPLE_S)
        samples += 1
        busy = psutil.cpu_percent(None) / 100
        waited = time.monotonic() - started
        if busy <= QUIET_BUSY_SHARE:
            if samples > 1:
                outcome.notes.append(f"waited {waited:.0f} s for the machine to become quiet before this benchmark")
            return
        if waited >= QUIET_WAIT_MAX_S:
            outcome.notes.append(f"the machine stayed busy ({busy:.0%} of its CPUs) for {waited:.0f} s before this "
                                 "benchmark: measured anyway")
            return


async def run_one(run: BenchRun, entry: Registered) -> Outcome:
    outcome = Outcome(entry.name, entry.title)
    started = time.perf_counter()
    print(f"\n== {entry.name}: {entry.title}", flush=True)
    try:
        if not run.quick:  # a smoke run measures nothing
            run.settle_databases()
            await wait_until_quiet(outcome)
        await entry.run(run, outcome)
    except Exception as exc:  # a failed benchmark is reported, the others still run
        outcome.error = f"{type(exc).__name__}: {exc}"[:2000]
        traceback.print_exc()
    outcome.seconds = time.perf_counter() - started
    run.outcomes[entry.name] = outcome
    print(format_outcome(outcome), flush=True)
    return outcome


def _number(value: float, unit: str) -> str:
    if unit in ("msg/s", "events/s", "MB", "ms") and abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:,.3g} {unit}".strip()


def format_outcome(outcome: Outcome) -> str:
    lines = [f"   {name}: {_number(value, outcome.units.get(name, ''))}" for name, value in outcome.figures.items()]
    for ratio in outcome.ratios:
        verdict = "" if ratio.passed is None else (" PASS" if ratio.passed else " FAIL")
        lines.append(f"   ratio {ratio.label}: {ratio.value:.3g}{f' (target {ratio.target})' if ratio.target else ''}{verdict}")
    lines.extend(f"   note: {note}" for note in outcome.notes)
    if outcome.error:
        lines.append(f"   ERROR: {outcome.error}")
    lines.append(f"   ({outcome.seconds:.0f} s)")
    return "\n".join(lines)


def markdown_table(outcomes: list[Outcome], meta: dict[str, Any]) -> str:
    rows = ["| benchmark | figures | ratio to its reference (same run) | target | |", "|---|---|---|---|---|"]
    for outcome in outcomes:
        figures = "<br>".join(
            f"{name}: {_number(value, outcome.units.get(name, ''))}" for name, value in outcome.figures.items()
        ) or "—"
        if outcome.error:
            figures += f"<br>**error**: {outcome.error[:200]}"
        ratios = outcome.ratios or [Ratio("—", float("nan"))]
        for index, ratio in enumerate(ratios):
            verdict = "" if ratio.passed is None else ("pass" if ratio.passed else "**FAIL**")
            value = "" if ratio.label == "—" else f"{ratio.value:.3g}"
            rows.append(
                f"| {outcome.title if index == 0 else ''} | {figures if index == 0 else ''} | "
                f"{ratio.label}: {value} | {ratio.target} | {verdict} |"
            )
    header = (
        f"Latest `make bench` ({meta['finished']}, {meta['cpus']} CPUs shared with other work, "
        + ("quick scale)." if meta["quick"] else "full scale; `bench/results/latest.json`).")
    )
    for rerun in meta.get("merged", []):
        header += (f" Re-run on {rerun['finished']} and merged: {', '.join(rerun['benchmarks'])}"
                   f" (replay of {rerun['scale']['replay']:,} events).")
    return header + "\n\n" + "\n".join(rows)


def write_readme(table: str, notes: str) -> None:
    text = README.read_text() if README.exists() else "# streamapp\n"
    block = f"{START_MARK}\n{table}\n\n{notes.strip()}\n{END_MARK}"
    if START_MARK in text and END_MARK in text:
        head, rest = text.split(START_MARK, 1)
        tail = rest.split(END_MARK, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Performance\n\n" + block + "\n"
    README.write_text(text)


def outcome_from(data: dict[str, Any]) -> Outcome:
    return Outcome(**{**data, "ratios": [Ratio(**ratio) for ratio in data["ratios"]]})


def merged(latest: Path, document: dict[str, Any], run: BenchRun) -> tuple[dict[str, Any], list[Outcome], dict[str, Any]]:
    """`latest.json` with the benchmarks of `document` replaced (a re-run of some of them), noted in its meta."""
    base = json.loads(latest.read_text())
    fresh = {outcome["name"]: outcome for outcome in document["benchmarks"] if outcome["name"] in document["meta"]["only"]}
    benchmarks = [fresh.pop(outcome["name"], outcome) for outcome in base["benchmarks"]] + list(fresh.values())
    meta = {**base["meta"], "merged": [*base["meta"].get("merged", []), {
        "benchmarks": document["meta"]["only"], "finished": document["meta"]["finished"],
        "scale": document["meta"]["scale"]}]}
    kept = meta.get("profile_lines") or {}
    if not kept and README.exists():  # a run written before profile lines were kept in the JSON
        kept = {name: line for line in README.read_text().splitlines() for name in ("iot", "quix")
                if line.startswith(f"- {name} worker (")}
    run.kept_profile_lines = kept
    outcomes = [outcome_from(outcome) for outcome in benchmarks]
    run.outcomes = {outcome.name: outcome for outcome in outcomes}
    merged_document = {"meta": meta, "benchmarks": benchmarks}
    return merged_document, outcomes, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", default=[], help="run this benchmark (and its references); repeatable")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--count", type=int, help="with --quick: the number of IoT messages")
    parser.add_argument("--replay", type=int, help="events in the replay benchmark (default 1,000,000)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, help="where services and workers keep their data (default var/bench/<time>)")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README's bench section")
    parser.add_argument("--merge", action="store_true",
                        help="with --only: replace these benchmarks' outcomes in latest.json and the README table")
    parser.add_argument("--profile-models", action="store_true",
                        help="py-spy the anomaly, RUL and latency workers while they are measured (slows them: evidence only)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    args = parser.parse_args(argv)

    from bench import suite  # noqa: F401 - registers the benchmarks

    if args.list:
        for entry in REGISTRY.values():
            print(f"{entry.name:10s} {entry.title}")
        return 0
    only = [name for item in args.only for name in item.split(",") if name]
    entries = plan(only)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or PROJECT / "var" / "bench" / stamp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    scale = Scale.quick(args.count) if args.quick else Scale()
    if args.replay:
        scale.replay = args.replay
    run = BenchRun(scale, workdir, args.quick, args.profile_models)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: workers and services are stopped
    started = time.perf_counter()
    try:
        for entry in entries:
            asyncio.run(run_one(run, entry))
    finally:
        run.stop()
    outcomes = [run.outcomes[entry.name] for entry in entries]
    meta = {
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick, "only": only,
        "cpus": os.cpu_count(), "python": platform.python_version(), "seconds": round(time.perf_counter() - started, 1),
        "scale": asdict(scale),
    }
    from bench.report import performance_notes, profile_line

    meta["profile_lines"] = {name: profile_line(run, name) for name in ("iot", "quix") if name in run.profiles}
    document = {"meta": meta, "benchmarks": [asdict(outcome) for outcome in outcomes]}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{stamp}.json").write_text(json.dumps(document, indent=2))
    full_run = not args.quick and not only
    if args.merge and only and not args.quick:
        document, outcomes, meta = merged(args.results_dir / "latest.json", document, run)
        full_run = True
    if full_run:
        (args.results_dir / "latest.json").write_text(json.dumps(document, indent=2))
    table = markdown_table(outcomes, meta)
    print("\n" + table)
    if full_run and not args.no_readme:
        write_readme(table, performance_notes(run))
    if not args.workdir and not any(o.error for o in outcomes):
        shutil.rmtree(workdir, ignore_errors=True)  # kept (logs of every worker) when something failed
    failed = [o.name for o in outcomes if o.error]
    print(f"\nbench finished in {meta['seconds']:.0f} s" + (f"; errors in {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
