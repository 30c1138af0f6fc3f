"""The returns pipeline as a user runs it, on the real broker and MariaDB: `simulate orders`, `train
returns`, the seed's topic reset, a worker, `produce-events` of a 5,000-line file with defects, then
the same file again."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.kafka_helpers import read_topic
from tests.returns.returns_e2e import (
    EventsFile,
    build_events_file,
    cli,
    cli_env,
    finish,
    query,
    reset_topic,
    start_cli,
    table_counts,
    wait_until,
)
from tests.worker import WorkerProcess

pytestmark = [pytest.mark.broker, pytest.mark.mariadb, pytest.mark.e2e]

N_VALID, N_MISSING_ID, N_DUPLICATES, N_BROKEN, N_BARE = 4670, 10, 300, 20, 50


@dataclass
class Run:
    events: EventsFile
    worker: WorkerProcess
    env: dict[str, str]
    database_url: str
    produced: Any  # CompletedProcess of the first produce-events
    reset_output: list[str]


def agent_figures(worker: WorkerProcess) -> dict[str, Any]:
    status, body = worker.get("/api/v1/returns/status")
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def first_run(kafka: Any, mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("returns-mariadb")
    database = f"returns_{uuid.uuid4().hex[:12]}"
    mariadb_database_url = mariadb.create_database(database)
    env = cli_env(kafka, root / "cli-var", root / "mlflow")
    simulate = start_cli(env, "simulate", "orders", "--out", str(root / "simulated.jsonl"),
                         "--count", str(N_VALID + N_MISSING_ID), "--seed", "11")
    train = start_cli(env, "train", "returns", "--rows", "3000", "--seed", "1")
    reset_output = reset_topic(env)
    simulated, trained = finish(simulate), finish(train)
    assert simulated.returncode == 0, simulated.stderr
    assert trained.returncode == 0 and "returns version 1" in trained.stdout, trained.stderr
    events = build_events_file(root / "simulated.jsonl", root / "events.jsonl", n_missing_id=N_MISSING_ID,
                               n_duplicates=N_DUPLICATES, n_broken=N_BROKEN, n_bare=N_BARE)
    worker = WorkerProcess(kafka.url, root / "worker", env={
        "STREAMAPP_ORDERS_DATABASE_URL": mariadb_database_url,
        "MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"],
        "STREAMAPP_MODEL_POLL_SECONDS": "1",
    })
    try:
        worker.start()
        wait_until(lambda: agent_figures(worker)["model"]["ready"], 60, "production model loaded")
        produced = cli(env, "produce-events", str(events.path))
        wait_until(lambda: table_counts(mariadb_database_url)["table_predictions"] >= N_VALID, 180,
                   f"{N_VALID} predictions in MariaDB")
        wait_until(lambda: agent_figures(worker)["agent"]["consumed"] >= N_VALID + N_DUPLICATES + 0, 60,
                   "every decodable event consumed")
        yield Run(events, worker, env, mariadb_database_url, produced, reset_output)
    finally:
        worker.kill()
        mariadb.drop_database(database)


def test_seed_reset_recipe_deletes_and_recreates_the_events_topic(first_run: Run) -> None:
    assert first_run.reset_output[0] in ("deleted ecommerce-events", "")
    assert first_run.reset_output[1] == "created ecommerce-events"


def test_producer_reports_4980_sent_and_every_broken_line_by_number(first_run: Run) -> None:
    produced = first_run.produced
    assert first_run.events.lines == 5000
    assert produced.returncode == 0, produced.stderr
    assert "sent 4980 events to ecommerce-events; skipped 20 invalid lines" in produced.stdout
    reported = [int(line.split()[1].rstrip(":")) for line in produced.stderr.splitlines()
                if line.startswith("line ") and "not valid JSON" in line]
    assert reported == first_run.events.broken_line_numbers


def test_mariadb_holds_one_event_and_one_prediction_per_distinct_event(first_run: Run) -> None:
    url = first_run.database_url
    counts = table_counts(url)
    assert counts["table_events"] == N_VALID
    assert counts["table_predictions"] == N_VALID
    stored = {row[0] for row in query(url, "SELECT event_id FROM table_events")}
    assert stored == first_run.events.event_ids
    low, high, versions = query(url, "SELECT MIN(return_proba), MAX(return_proba), "
                                     "COUNT(DISTINCT model_version) FROM table_predictions")[0]
    assert 0.0 <= low < high <= 1.0 and versions == 1


def test_customers_and_orders_are_those_of_the_events(first_run: Run) -> None:
    url = first_run.database_url
    events = first_run.events.events
    counts = table_counts(url)
    assert counts["table_orders"] == len({event["order_id"] for event in events.values()})
    assert counts["table_customers"] == len({event["customer_customer_id"] for event in events.values()})
    mismatched = query(url, """
        SELECT COUNT(*) FROM table_predictions p
        JOIN table_events e ON e.event_id = p.event_id
        JOIN table_orders o ON o.order_id = p.order_id
        JOIN table_customers c ON c.customer_customer_id = p.customer_customer_id
        WHERE e.order_id <> p.order_id OR e.customer_customer_id <> p.customer_customer_id
           OR o.customer_customer_id <> p.customer_customer_id""")
    joined = query(url, """
        SELECT COUNT(*) FROM table_predictions p JOIN table_events e ON e.event_id = p.event_id
        JOIN table_orders o ON o.order_id = p.order_id
        JOIN table_customers c ON c.customer_customer_id = p.customer_customer_id""")
    assert mismatched[0][0] == 0 and joined[0][0] == N_VALID


def test_events_lacking_optional_fields_are_stored_with_the_documented_defaults(first_run: Run) -> None:
    bare = sorted(first_run.events.bare_event_ids)
    rows = query(first_run.database_url, f"""
        SELECT o.order_device, o.order_channel, o.order_main_category, o.order_n_items, o.order_basket_value,
               o.order_is_returned, e.event_time
        FROM table_events e JOIN table_orders o ON o.order_id = e.order_id
        WHERE e.event_id IN ({",".join(f"'{event_id}'" for event_id in bare)})""")
    assert len(rows) == N_BARE
    assert set(rows) == {("unknown", "unknown", "unknown", 0, 0.0, False, None)}


def test_events_without_an_id_are_dead_lettered(first_run: Run, kafka: Any) -> None:
    wanted = first_run.events.missing_id_order_ids

    def ours(messages: list[dict[str, Any]]) -> set[str]:
        found = set()
        for message in messages:
            letter = message["value"]
            if not isinstance(letter, dict) or letter.get("topic") != "ecommerce-events":
                continue
            try:
                raw = json.loads(base64.b64decode(letter["raw_value_b64"]))
            except ValueError:
                continue
            if isinstance(raw, dict) and raw.get("order_id") in wanted and "event_id" not in raw:
                assert "event_id" in letter["error"]
                found.add(raw["order_id"])
        return found

    letters = asyncio.run(read_topic(kafka.bootstrap, "dead-letters", until=lambda got: ours(got) == wanted,
                                     within_s=60))
    assert ours(letters) == wanted


def test_predictions_are_published_with_the_model_version(first_run: Run, kafka: Any) -> None:
    wanted = first_run.events.event_ids

    def ours(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {m["value"]["event_id"]: m["value"] for m in messages
                if isinstance(m["value"], dict) and m["value"].get("event_id") in wanted}

    published = ours(asyncio.run(read_topic(kafka.bootstrap, "return-predictions",
                                            until=lambda got: len(ours(got)) == len(wanted), within_s=60)))
    assert set(published) == wanted
    assert {prediction["model_version"] for prediction in published.values()} == {"1"}
    assert all(0.0 <= prediction["return_proba"] <= 1.0 for prediction in published.values())


def test_producing_the_same_file_again_changes_no_row_and_no_prediction(first_run: Run) -> None:
    url = first_run.database_url
    before_counts = table_counts(url)
    before = query(url, "SELECT event_id, return_proba, model_version, predicted_at FROM table_predictions "
                        "ORDER BY event_id")
    consumed = agent_figures(first_run.worker)["agent"]["consumed"]
    again = cli(first_run.env, "produce-events", str(first_run.events.path), "--quiet")
    assert again.returncode == 0 and "sent 4980" in again.stdout
    decodable = 4980 - N_MISSING_ID
    wait_until(lambda: agent_figures(first_run.worker)["agent"]["consumed"] >= consumed + decodable, 120,
               "the replay consumed")
    assert table_counts(url) == before_counts
    assert query(url, "SELECT event_id, return_proba, model_version, predicted_at FROM table_predictions "
                      "ORDER BY event_id") == before
    assert agent_figures(first_run.worker)["agent"]["duplicates_skipped"] >= N_DUPLICATES + decodable
