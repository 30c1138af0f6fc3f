"""Returns pipeline: `ecommerce-events` -> validate -> deduplicate -> score -> orders database and
`return-predictions`.

Per micro-batch: invalid events go to `dead-letters` (reason `invalid`; events lacking a required field
are dead-lettered as `decode` by the topic before they get here); ids already written are skipped
(`seen_event_ids`, then idempotent upserts); the rest are scored with the production model and written in
ONE transaction, customers, orders and events before their predictions (the seed's foreign keys). With no
model promoted yet, events are dead-lettered as `model-not-trained` and nothing is marked seen, so they
can be replayed. Offsets are acknowledged only after the database, the output topic and the dead letters
hold the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from faust.types import EventT, StreamT
from sqlalchemy import Table

from streamapp import health, metrics
from streamapp.app import app
from streamapp.batching import BatchTimer, ack_events, micro_batches
from streamapp.db.engines import Role, get_engine
from streamapp.db.migrate import ensure_schema
from streamapp.db.orders import CustomerRow, EventRow, OrderRow, PredictionRow
from streamapp.db.upsert import upsert
from streamapp.deadletters import INVALID, MODEL_NOT_TRAINED, PROCESSING, send_dead_letter
from streamapp.publishing import publish_confirmed
from streamapp.records import ReturnPrediction
from streamapp.returns_scoring import (
    parse_event_time,
    return_model,
    returns_figures,
    score_orders,
    validate_order_event,
)
from streamapp.sinks import write_with_retry
from streamapp.topics import ecommerce_events_topic, return_predictions_topic
from tables.dedup import already_seen, remember

log = logging.getLogger(__name__)
AGENT = "returns"
SINK = "orders-db"
CUSTOMERS = cast(Table, CustomerRow.__table__)
ORDERS = cast(Table, OrderRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
PREDICTIONS = cast(Table, PredictionRow.__table__)
ORDER_COLUMNS = [column.name for column in ORDERS.columns]


def build_rows(
    events: Sequence[dict[str, Any]], probabilities: Sequence[float], model_version: str, predicted_at: datetime
) -> dict[str, list[dict[str, Any]]]:
    """Rows of the four tables for validated, scored events; one row per primary key (the last wins)."""
    customers: dict[str, dict[str, Any]] = {}
    orders: dict[str, dict[str, Any]] = {}
    rows_events: dict[str, dict[str, Any]] = {}
    predictions: dict[str, dict[str, Any]] = {}
    for event, probability in zip(events, probabilities, strict=True):
        ids = {"order_id": event["order_id"], "customer_customer_id": event["customer_customer_id"]}
        customers[event["customer_customer_id"]] = {
            "customer_customer_id": event["customer_customer_id"],
            "customer_country": event["customer_country"],
        }
        orders[event["order_id"]] = {name: event[name] for name in ORDER_COLUMNS}
        rows_events[event["event_id"]] = {
            "event_id": event["event_id"], "event_time": parse_event_time(event["event_time"]), **ids,
        }
        predictions[event["event_id"]] = {
            "event_id": event["event_id"], **ids, "return_proba": probability,
            "model_version": model_version, "predicted_at": predicted_at,
        }
    return {
        "customers": list(customers.values()),
        "orders": list(orders.values()),
        "events": list(rows_events.values()),
        "predictions": list(predictions.values()),
    }


async def write_rows(rows: dict[str, list[dict[str, Any]]]) -> None:
    """One transaction: parents first, then predictions. Predictions are never overwritten, so a replay
    (even scored by a newer model) leaves the first prediction of an event in place."""
    await ensure_schema(Role.ORDERS)
    async with get_engine(Role.ORDERS).begin() as connection:
        await upsert(connection, CUSTOMERS, rows["customers"])
        await upsert(connection, ORDERS, rows["orders"])
        await upsert(connection, EVENTS, rows["events"], update=False)
        await upsert(connection, PREDICTIONS, rows["predictions"], update=False)


async def _dead_letter(events: Sequence[EventT], reason: str, errors: Sequence[str]) -> None:
    """Publish them together and wait for every delivery (the events are acknowledged after this)."""
    await asyncio.gather(*(
        send_dead_letter(event, error=error, reason=reason, agent=AGENT, wait=True)
        for event, error in zip(events, errors, strict=True)
    ))
    returns_figures.dead_letters[reason] += len(events)


async def process_batch(events: Sequence[EventT]) -> None:
    """Validate, deduplicate, score and store one micro-batch (see the module docstring)."""
    await return_model.refresh_if_due()
    returns_figures.consumed += len(events)
    returns_figures.last_batch_at = datetime.now(UTC).isoformat()
    fresh: list[tuple[EventT, dict[str, Any]]] = []
    batch_ids: set[str] = set()
    invalid: list[tuple[EventT, str]] = []
    for event in events:
        value = event.value
        data = value.asdict() if hasattr(value, "asdict") else value
        order, reasons = validate_order_event(data) if isinstance(data, dict) else ({}, ["not a JSON object"])
        if reasons:
            invalid.append((event, "; ".join(reasons)))
        elif order["event_id"] in batch_ids or already_seen(order["event_id"]):
            returns_figures.duplicates += 1
        else:
            batch_ids.add(order["event_id"])
            fresh.append((event, order))
    if invalid:
        await _dead_letter([event for event, _ in invalid], INVALID, [error for _, error in invalid])
    model, version = return_model.model, return_model.version
    if fresh and model is None:
        await _dead_letter([event for event, _ in fresh], MODEL_NOT_TRAINED,
                           ["no returns model is promoted to production yet"] * len(fresh))
        fresh = []
    if fresh:
        orders = [order for _, order in fresh]
        try:
            probabilities = await score_orders(model, orders)
        except Exception as exc:
            log.exception("returns model failed on a batch of %d events", len(fresh))
            metrics.errors_total.labels(AGENT).inc()
            await _dead_letter([event for event, _ in fresh], PROCESSING,
                               [f"{type(exc).__name__}: {exc}"] * len(fresh))
        else:
            await _store(orders, probabilities, str(version))


async def _store(orders: list[dict[str, Any]], probabilities: list[float], version: str) -> None:
    predicted_at = datetime.now(UTC)
    rows = build_rows(orders, probabilities, version, predicted_at)
    await write_with_retry(SINK, lambda: write_rows(rows))
    metrics.sink_rows_total.labels(SINK).inc(len(rows["events"]))
    stamp = predicted_at.isoformat()
    predictions = [
        ReturnPrediction(
            event_id=row["event_id"], order_id=row["order_id"], customer_customer_id=row["customer_customer_id"],
            return_proba=row["return_proba"], model_version=version, predicted_at=stamp,
        )
        for row in rows["predictions"]
    ]

    messages = [(return_predictions_topic, prediction.event_id, prediction) for prediction in predictions]
    # a failed batch is sent again: consumers dedupe by event_id
    await write_with_retry(f"kafka:{AGENT}", lambda: publish_confirmed(messages))
    await remember(row["event_id"] for row in rows["events"])
    returns_figures.predicted += len(rows["predictions"])


@app.agent(ecommerce_events_topic, name="returns")
async def score_returns(stream: StreamT) -> None:
    """Consume order events in micro-batches; acknowledge each batch once it is stored and published."""
    async for events in micro_batches(stream, agent=AGENT):
        timer = BatchTimer(AGENT)
        await process_batch(events)
        await ack_events(stream, events)
        timer.done()


@app.task
async def watch_return_model() -> None:
    """Keep the production model current even while no events arrive."""
    await return_model.poll_forever()


async def return_model_check() -> dict[str, Any]:
    status = return_model.status()
    return {"ok": bool(status["ready"]), **status}


health.register_check("returns_model", return_model_check)
