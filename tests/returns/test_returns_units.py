"""Returns pipeline pieces without a broker: validation and defaults, table rows, producer line parsing,
dedup retention, the training dispatch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.returns import build_rows
from models.returns import FIELD_DEFAULTS
from streamapp.commands.produce_events import event_key, parse_line
from streamapp.returns_scoring import validate_order_event
from streamapp.simulators import SIMULATORS, get_simulator
from streamapp.simulators.orders import generate_orders
from streamapp.training import TRAINERS, get_trainer, read_jsonl_objects
from tables.dedup import expired_keys

OPTIONAL = [name for name in FIELD_DEFAULTS if name not in ("event_id", "order_id", "customer_customer_id")]


def an_order() -> dict:
    return next(generate_orders(1, seed=3))


def test_a_simulated_order_is_valid_and_kept_as_is() -> None:
    order = an_order()
    event, reasons = validate_order_event(order)
    assert reasons == []
    assert event == order


def test_missing_or_null_optional_fields_take_the_contract_defaults() -> None:
    order = an_order()
    bare = {name: order[name] for name in ("event_id", "order_id", "customer_customer_id")}
    bare["order_device"] = None
    event, reasons = validate_order_event(bare)
    assert reasons == []
    assert {name: event[name] for name in OPTIONAL} == {name: FIELD_DEFAULTS[name] for name in OPTIONAL}
    assert event["customer_country"] == "unknown" and event["order_n_items"] == 0
    assert event["order_is_returned"] is False


def test_every_reason_is_reported_at_once() -> None:
    bad = {
        "event_id": 12, "order_id": "", "event_time": "yesterday", "order_n_items": 2.5,
        "order_basket_value": -3, "order_discount": True, "order_is_returned": "yes", "order_channel": ["web"],
    }
    _, reasons = validate_order_event(bad)
    text = " | ".join(reasons)
    for expected in ("event_id must be a string", "order_id is required", "customer_customer_id is required",
                     "event_time", "order_n_items", "order_basket_value", "order_discount",
                     "order_is_returned", "order_channel must be a string"):
        assert expected in text
    assert len(reasons) == 9


def test_ids_longer_than_their_database_column_are_refused() -> None:
    order = an_order() | {"order_id": "x" * 65}
    _, reasons = validate_order_event(order)
    assert reasons == ["order_id is longer than 64 characters"]


def test_rows_put_one_row_per_key_and_predictions_carry_the_order_and_customer() -> None:
    first, second = list(generate_orders(2, seed=5))
    second["customer_customer_id"] = first["customer_customer_id"]
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    rows = build_rows([first, second], [0.2, 0.9], "7", moment)
    assert len(rows["customers"]) == 1 and len(rows["orders"]) == 2 and len(rows["events"]) == 2
    by_event = {row["event_id"]: row for row in rows["predictions"]}
    assert by_event[second["event_id"]] == {
        "event_id": second["event_id"], "order_id": second["order_id"],
        "customer_customer_id": first["customer_customer_id"], "return_proba": 0.9,
        "model_version": "7", "predicted_at": moment,
    }
    assert rows["events"][0]["event_time"] == datetime.fromisoformat(first["event_time"].replace("Z", "+00:00"))


def test_producer_keys_by_event_id_and_sends_objects_without_one_unkeyed() -> None:
    event, reason = parse_line(b'{"event_id": "e-1", "order_id": "o"}')
    assert reason == "" and event_key(event or {}) == b"e-1"
    event, reason = parse_line(b'{"order_id": "o"}')
    assert reason == "" and event_key(event or {}) is None


@pytest.mark.parametrize("line", [b'{"event_id": "e-1"', b"[1, 2]", b"\xff\xfe"])
def test_producer_skips_lines_that_are_not_a_json_object_with_a_reason(line: bytes) -> None:
    event, reason = parse_line(line)
    assert event is None and reason


def test_dedup_entries_expire_after_the_retention() -> None:
    entries = [(b"old", 1000.0), (b"new", 9000.0)]
    assert expired_keys(entries, now=10_000.0, retention_s=5000.0) == [b"old"]
    assert expired_keys(entries, now=10_000.0, retention_s=9500.0) == []


def test_train_and_simulate_dispatch_to_registered_functions() -> None:
    assert "returns" in TRAINERS and callable(get_trainer("returns"))
    assert "orders" in SIMULATORS and callable(get_simulator("orders"))


def test_training_reader_numbers_lines_and_gives_reasons(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(an_order()) + "\n\n{broken\n[1]\n", encoding="utf-8")
    rows = list(read_jsonl_objects(path))
    assert [number for number, _, _ in rows] == [1, 3, 4]
    assert rows[0][1] is not None and rows[1][1] is None and "not valid JSON" in rows[1][2]
    assert "not an object" in rows[2][2]


@pytest.mark.parametrize(
    ("field", "value"),
    [("order_n_items", 2**40), ("order_basket_value", 1e300), ("event_time", "0999-12-31T00:00:00Z"),
     ("event_time", "0001-01-01T00:00:00+05:00")],
)
def test_values_the_database_columns_cannot_hold_are_refused(field: str, value: object) -> None:
    _, reasons = validate_order_event(an_order() | {field: value})
    assert len(reasons) == 1 and field in reasons[0]
