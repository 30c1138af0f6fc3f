"""Helpers of the returns end-to-end tests: the CLI as a user runs it, the acceptance events file, the
topic reset of the seed, and reading the orders database."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

FAUST = str(Path(sys.executable).with_name("faust"))
PROJECT = Path(__file__).resolve().parents[2]
OPTIONAL_FIELDS = [
    "event_time", "customer_country", "order_device", "order_channel", "order_main_category", "order_n_items",
    "order_basket_value", "order_shipping_fee", "order_discount", "order_order_total", "order_is_returned",
]
EVENTS_TOPIC = "ecommerce-events"


def cli_env(kafka: Any, var_dir: Path, tracking_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every process of one test: its broker, var dir and MLflow store."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STREAMAPP_")}
    return {
        **env,
        "STREAMAPP_BROKER": kafka.url,
        "STREAMAPP_VAR_DIR": str(var_dir),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tracking_dir / 'mlflow.db'}",
        **extra,
    }


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([FAUST, "-A", "streamapp", *args], cwd=PROJECT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[str], timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def cli(env: dict[str, str], *args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    return finish(start_cli(env, *args), timeout)


def reset_topic(env: dict[str, str], topic: str = EVENTS_TOPIC, within_s: float = 30.0) -> list[str]:
    """The seed's reset recipe: `topics delete` then `topics create --partitions 1 --replication 1`
    (retried while the broker still finishes the deletion). Returns the commands' output lines."""
    deleted = cli(env, "topics", "delete", topic)
    assert deleted.returncode == 0 or "does not exist" in deleted.stderr, deleted.stderr
    deadline = time.monotonic() + within_s
    while True:
        created = cli(env, "topics", "create", topic, "--partitions", "1", "--replication", "1")
        if created.returncode == 0:
            return [deleted.stdout.strip(), created.stdout.strip()]
        assert "already exists" in created.stderr or "marked for deletion" in created.stderr, created.stderr
        assert time.monotonic() < deadline, f"topic {topic} not re-created within {within_s} s: {created.stderr}"
        time.sleep(0.5)


@dataclass
class EventsFile:
    """A JSONL file of simulated orders with known defects, and what the pipeline must make of it."""

    path: Path
    lines: int
    broken_line_numbers: list[int]
    event_ids: set[str]  # distinct events with an id (what table_events must hold)
    missing_id_order_ids: set[str]  # the events sent without an event_id
    bare_event_ids: set[str]  # events that lack every optional field
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # event_id -> the event as sent


def build_events_file(
    simulated: Path, target: Path, *, n_missing_id: int, n_duplicates: int, n_broken: int, n_bare: int, seed: int = 11
) -> EventsFile:
    """Turn `simulate orders` output into the acceptance file: the last `n_missing_id` orders lose their
    event_id, `n_bare` others lose every optional field, `n_duplicates` distinct events are repeated later
    in the file and `n_broken` truncated (invalid JSON) lines are inserted."""
    rng = random.Random(seed)
    orders = [json.loads(line) for line in simulated.read_text(encoding="utf-8").splitlines()]
    with_id, without_id = orders[:-n_missing_id], orders[-n_missing_id:]
    for order in without_id:
        del order["event_id"]
    bare = rng.sample(range(len(with_id)), n_bare)
    for index in bare:
        for name in OPTIONAL_FIELDS:
            with_id[index].pop(name, None)
    base = with_id + without_id
    rng.shuffle(base)
    texts = [json.dumps(order) for order in base]
    position = {order["event_id"]: i for i, order in enumerate(base) if "event_id" in order}
    after: dict[int, list[tuple[str, str]]] = {}
    for event_id in rng.sample(sorted(position), n_duplicates):  # each repeat comes after its original
        original = position[event_id]
        after.setdefault(rng.randrange(original, len(base)), []).append(("duplicate", texts[original]))
    for _ in range(n_broken):
        source = texts[rng.randrange(len(texts))]
        after.setdefault(rng.randrange(len(base)), []).append(("broken", source[: rng.randrange(10, len(source) - 5)]))
    final: list[tuple[str, str]] = []
    for i, line in enumerate(texts):
        final.append(("event", line))
        final.extend(after.get(i, []))
    target.write_text("".join(line + "\n" for _, line in final), encoding="utf-8")
    return EventsFile(
        path=target,
        lines=len(final),
        broken_line_numbers=[number for number, (kind, _) in enumerate(final, start=1) if kind == "broken"],
        event_ids=set(position),
        missing_id_order_ids={order["order_id"] for order in without_id},
        bare_event_ids={with_id[index]["event_id"] for index in bare},
        events={order["event_id"]: order for order in with_id},
    )


def sync_url(url: str) -> str:
    return url.replace("+aiomysql", "+pymysql").replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def table_counts(url: str) -> dict[str, int]:
    names = ("table_customers", "table_orders", "table_events", "table_predictions")
    try:
        return {name: int(query(url, f"SELECT COUNT(*) FROM {name}")[0][0]) for name in names}
    except Exception:  # schema not created yet
        return dict.fromkeys(names, 0)


def wait_until(condition: Callable[[], bool], within_s: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within_s} s")
        time.sleep(interval)
