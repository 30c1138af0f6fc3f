"""Simulated shop orders (OrderEvent field names) whose returns follow a known logistic mechanism.

Return mechanism (the constants below are the truth tests and benchmarks rely on)::

    logit = RETURN_INTERCEPT
          + CATEGORY_RETURN_EFFECT[category] + CHANNEL_RETURN_EFFECT[channel]
          + DEVICE_RETURN_EFFECT[device] + COUNTRY_RETURN_EFFECT[country]
          + DISCOUNT_RATE_COEF * (discount / basket_value)
          + BASKET_LOG_COEF * ln(basket_value / BASKET_REFERENCE)
          + customer_propensity                                  # latent, N(0, CUSTOMER_PROPENSITY_SD)
          + PAST_RETURN_COEF * (past_returns - PRIOR_RETURN_RATE * past_orders) / (past_orders + 1)
    P(returned) = 1 / (1 + exp(-logit))

Customers come from a fixed pool, so they repeat and carry their latent propensity and their own
return history from order to order.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

# ---- the return mechanism --------------------------------------------------------------------------
RETURN_INTERCEPT = -1.9
CATEGORY_RETURN_EFFECT: dict[str, float] = {
    "fashion": 1.5,
    "shoes": 1.3,
    "sports": 0.3,
    "electronics": 0.1,
    "home": -0.2,
    "toys": -0.4,
    "beauty": -0.7,
    "books": -1.6,
    "grocery": -2.4,
}
CHANNEL_RETURN_EFFECT: dict[str, float] = {"web": 0.0, "app": -0.3, "marketplace": 0.4, "social": 0.6}
DEVICE_RETURN_EFFECT: dict[str, float] = {"desktop": 0.0, "mobile": 0.25, "tablet": 0.1}
COUNTRY_RETURN_EFFECT: dict[str, float] = {
    "FR": 0.0,
    "DE": 0.35,
    "NL": 0.2,
    "BE": 0.0,
    "ES": -0.15,
    "IT": -0.2,
}
DISCOUNT_RATE_COEF = 3.0  # per unit of discount / basket value (a 30 % discount adds 0.9 to the logit)
BASKET_LOG_COEF = 0.35  # per e-fold of basket value above BASKET_REFERENCE
BASKET_REFERENCE = 60.0
CUSTOMER_PROPENSITY_SD = 0.6
PAST_RETURN_COEF = 1.2  # on the customer's excess past return rate, shrunk towards zero by +1
PRIOR_RETURN_RATE = 0.25  # the expected past-return rate the customer's history is compared with

# ---- how orders look --------------------------------------------------------------------------------
CATEGORY_WEIGHTS: dict[str, float] = {
    "fashion": 0.22,
    "shoes": 0.10,
    "electronics": 0.12,
    "home": 0.12,
    "beauty": 0.10,
    "sports": 0.08,
    "toys": 0.07,
    "books": 0.10,
    "grocery": 0.09,
}
MEDIAN_ITEM_PRICE: dict[str, float] = {
    "fashion": 35.0,
    "shoes": 75.0,
    "electronics": 140.0,
    "home": 40.0,
    "beauty": 22.0,
    "sports": 45.0,
    "toys": 25.0,
    "books": 14.0,
    "grocery": 6.0,
}
# items beyond the first are Poisson with this mean (1.0 for categories not listed)
EXTRA_ITEMS_MEAN: dict[str, float] = {"grocery": 6.0, "books": 1.0, "electronics": 0.3}
COUNTRY_WEIGHTS: dict[str, float] = {"FR": 0.40, "DE": 0.18, "ES": 0.12, "IT": 0.12, "BE": 0.09, "NL": 0.09}
DEVICE_WEIGHTS: dict[str, float] = {"mobile": 0.55, "desktop": 0.35, "tablet": 0.10}
CHANNEL_WEIGHTS: dict[str, float] = {"web": 0.50, "app": 0.25, "marketplace": 0.15, "social": 0.10}
DISCOUNT_PROBABILITY: dict[str, float] = {"web": 0.30, "app": 0.40, "marketplace": 0.20, "social": 0.60}
DISCOUNT_RATES = np.array([0.05, 0.10, 0.15, 0.20, 0.30, 0.40, 0.50])
FREE_SHIPPING_FROM = 50.0
SHIPPING_FEE = 4.99
MEAN_SECONDS_BETWEEN_ORDERS = 45.0
ORDERS_PER_CUSTOMER = 4  # default pool size is n // ORDERS_PER_CUSTOMER


def return_logit(
    *,
    category: str,
    channel: str,
    device: str,
    country: str,
    basket_value: float,
    discount: float,
    customer_propensity: float,
    past_orders: int,
    past_returns: int,
) -> float:
    """The log-odds of a return, exactly as the module docstring writes it."""
    discount_rate = discount / basket_value if basket_value > 0 else 0.0
    excess_past_returns = (past_returns - PRIOR_RETURN_RATE * past_orders) / (past_orders + 1)
    return (
        RETURN_INTERCEPT
        + CATEGORY_RETURN_EFFECT[category]
        + CHANNEL_RETURN_EFFECT[channel]
        + DEVICE_RETURN_EFFECT[device]
        + COUNTRY_RETURN_EFFECT[country]
        + DISCOUNT_RATE_COEF * discount_rate
        + BASKET_LOG_COEF * math.log(max(basket_value, 1.0) / BASKET_REFERENCE)
        + customer_propensity
        + PAST_RETURN_COEF * excess_past_returns
    )


def return_probability(**drivers: Any) -> float:
    """P(returned) for the drivers `return_logit` takes."""
    return 1.0 / (1.0 + math.exp(-return_logit(**drivers)))


@dataclass
class _Customer:
    """One member of the pool: fixed traits plus a running return history."""

    customer_id: str
    country: str
    device: str
    channel: str
    category_weights: np.ndarray
    propensity: float
    past_orders: int = 0
    past_returns: int = 0


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.fromiter(weights.values(), dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_customer(rng: np.random.Generator) -> _Customer:
    base = np.fromiter(CATEGORY_WEIGHTS.values(), dtype=float)
    return _Customer(
        customer_id=_uuid(rng),
        country=_choice(rng, COUNTRY_WEIGHTS),
        device=_choice(rng, DEVICE_WEIGHTS),
        channel=_choice(rng, CHANNEL_WEIGHTS),
        category_weights=rng.dirichlet(base * 8.0),  # each customer leans towards a few categories
        propensity=float(rng.normal(0.0, CUSTOMER_PROPENSITY_SD)),
    )


def generate_orders(
    n: int,
    seed: int = 0,
    start_time: datetime | None = None,
    n_customers: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield `n` order events with increasing `event_time`; same seed, same events."""
    rng = np.random.default_rng(seed)
    moment = (start_time or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
    pool_size = n_customers if n_customers is not None else max(1, n // ORDERS_PER_CUSTOMER)
    customers = [_new_customer(rng) for _ in range(pool_size)]
    activity = rng.lognormal(0.0, 0.8, size=pool_size)  # some customers order far more often than others
    activity /= activity.sum()
    categories = list(CATEGORY_WEIGHTS)
    for _ in range(n):
        moment += timedelta(seconds=round(1.0 + rng.exponential(MEAN_SECONDS_BETWEEN_ORDERS), 3))
        customer = customers[int(rng.choice(pool_size, p=activity))]
        # habits mostly hold, sometimes the customer switches device or channel
        device = customer.device if rng.random() < 0.8 else _choice(rng, DEVICE_WEIGHTS)
        channel = customer.channel if rng.random() < 0.7 else _choice(rng, CHANNEL_WEIGHTS)
        category = categories[int(rng.choice(len(categories), p=customer.category_weights))]
        n_items = 1 + int(rng.poisson(EXTRA_ITEMS_MEAN.get(category, 1.0)))
        prices = rng.lognormal(math.log(MEDIAN_ITEM_PRICE[category]), 0.5, size=n_items)
        basket_value = round(float(prices.sum()), 2)
        shipping_fee = 0.0 if basket_value >= FREE_SHIPPING_FROM or channel == "marketplace" else SHIPPING_FEE
        discount = 0.0
        if rng.random() < DISCOUNT_PROBABILITY[channel]:
            discount = round(basket_value * float(rng.choice(DISCOUNT_RATES)), 2)
        probability = return_probability(
            category=category,
            channel=channel,
            device=device,
            country=customer.country,
            basket_value=basket_value,
            discount=discount,
            customer_propensity=customer.propensity,
            past_orders=customer.past_orders,
            past_returns=customer.past_returns,
        )
        is_returned = bool(rng.random() < probability)
        customer.past_orders += 1
        customer.past_returns += int(is_returned)
        yield {
            "event_id": _uuid(rng),
            "event_time": _iso(moment),
            "order_id": _uuid(rng),
            "customer_customer_id": customer.customer_id,
            "customer_country": customer.country,
            "order_device": device,
            "order_channel": channel,
            "order_main_category": category,
            "order_n_items": n_items,
            "order_basket_value": basket_value,
            "order_shipping_fee": shipping_fee,
            "order_discount": discount,
            "order_order_total": round(basket_value + shipping_fee - discount, 2),
            "order_is_returned": is_returned,
        }


def write_jsonl(path: Path | str, events: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line (the `produce-events` input format); returns the line count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with target.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
    return count
