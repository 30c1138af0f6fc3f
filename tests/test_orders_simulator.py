"""The orders simulator: deterministic, consistent totals, repeating customers, the documented return mechanism."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamapp.records import OrderEvent
from streamapp.simulators import orders
from streamapp.simulators.orders import generate_orders, return_logit, return_probability, write_jsonl

START = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def many_orders() -> list[dict]:
    return list(generate_orders(6000, seed=11, start_time=START))


def _return_rate(events: list[dict], **match: object) -> float:
    selected = [e for e in events if all(e[k] == v for k, v in match.items())]
    return sum(e["order_is_returned"] for e in selected) / len(selected)


def test_same_seed_gives_the_same_orders_and_another_seed_different_ones() -> None:
    first = list(generate_orders(300, seed=3, start_time=START))
    assert first == list(generate_orders(300, seed=3, start_time=START))
    assert first != list(generate_orders(300, seed=4, start_time=START))


def test_events_carry_exactly_the_order_event_fields_and_parse_as_records() -> None:
    for event in generate_orders(50, seed=1):
        assert set(event) == set(OrderEvent._options.fields)
        assert OrderEvent(**event).asdict() == event


def test_event_times_are_iso_8601_utc_and_strictly_increasing(many_orders: list[dict]) -> None:
    times = [datetime.fromisoformat(e["event_time"].replace("Z", "+00:00")) for e in many_orders]
    assert all(t.tzinfo is not None for t in times)
    assert times[0] > START
    assert all(later > earlier for earlier, later in zip(times, times[1:], strict=False))


def test_order_total_is_basket_plus_shipping_minus_discount(many_orders: list[dict]) -> None:
    for e in many_orders:
        assert e["order_order_total"] == pytest.approx(
            e["order_basket_value"] + e["order_shipping_fee"] - e["order_discount"], abs=0.006
        )
        assert 0.0 <= e["order_discount"] < e["order_basket_value"]
        assert e["order_shipping_fee"] in (0.0, orders.SHIPPING_FEE)
        assert e["order_n_items"] >= 1
    assert any(e["order_discount"] > 0 for e in many_orders)
    assert any(e["order_shipping_fee"] > 0 for e in many_orders)


def test_ids_are_unique_and_customers_come_back(many_orders: list[dict]) -> None:
    assert len({e["event_id"] for e in many_orders}) == len(many_orders)
    assert len({e["order_id"] for e in many_orders}) == len(many_orders)
    orders_per_customer = Counter(e["customer_customer_id"] for e in many_orders)
    assert len(orders_per_customer) < len(many_orders) / 2
    assert max(orders_per_customer.values()) >= 5
    # a customer keeps one country across orders
    countries: dict[str, set[str]] = {}
    for e in many_orders:
        countries.setdefault(e["customer_customer_id"], set()).add(e["customer_country"])
    assert all(len(c) == 1 for c in countries.values())


def test_fashion_and_shoes_are_returned_far_more_than_books_and_grocery(many_orders: list[dict]) -> None:
    high = [_return_rate(many_orders, order_main_category=c) for c in ("fashion", "shoes")]
    low = [_return_rate(many_orders, order_main_category=c) for c in ("books", "grocery")]
    assert min(high) > max(low) + 0.25


def test_discounted_and_social_orders_are_returned_more(many_orders: list[dict]) -> None:
    discounted = [e for e in many_orders if e["order_discount"] > 0]
    full_price = [e for e in many_orders if e["order_discount"] == 0]
    assert _return_rate(discounted) > _return_rate(full_price)
    assert _return_rate(many_orders, order_channel="social") > _return_rate(many_orders, order_channel="app")


def test_return_logit_is_the_documented_sum_of_effects() -> None:
    neutral = dict(
        channel="web",
        device="desktop",
        country="FR",
        basket_value=orders.BASKET_REFERENCE,
        discount=0.0,
        customer_propensity=0.0,
        past_orders=0,
        past_returns=0,
    )
    for category, effect in orders.CATEGORY_RETURN_EFFECT.items():
        assert return_logit(category=category, **neutral) == pytest.approx(orders.RETURN_INTERCEPT + effect)
    discounted = {**neutral, "discount": 0.3 * orders.BASKET_REFERENCE}
    assert return_logit(category="home", **discounted) - return_logit(
        category="home", **neutral
    ) == pytest.approx(0.3 * orders.DISCOUNT_RATE_COEF)
    doubled = {**neutral, "basket_value": 2 * orders.BASKET_REFERENCE}
    assert return_logit(category="home", **doubled) - return_logit(
        category="home", **neutral
    ) == pytest.approx(orders.BASKET_LOG_COEF * math.log(2))


def test_past_returns_and_latent_propensity_raise_the_return_probability() -> None:
    base = dict(
        category="home", channel="web", device="mobile", country="DE", basket_value=80.0, discount=0.0
    )
    no_history = return_probability(**base, customer_propensity=0.0, past_orders=4, past_returns=0)
    serial_returner = return_probability(**base, customer_propensity=0.0, past_orders=4, past_returns=4)
    prone = return_probability(**base, customer_propensity=1.0, past_orders=4, past_returns=0)
    assert 0.0 < no_history < serial_returner < 1.0
    assert no_history < prone


def test_write_jsonl_writes_one_json_object_per_line(tmp_path: Path) -> None:
    events = list(generate_orders(20, seed=5))
    target = tmp_path / "nested" / "orders.jsonl"
    assert write_jsonl(target, events) == 20
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == events
