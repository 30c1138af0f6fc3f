"""What the returns agent and the returns views share: order-event validation (the contract's defaults
applied in one place), the production return model, scoring off the event loop, and running figures."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamapp.db.orders import CustomerRow, EventRow, OrderRow
from streamapp.model_watch import ProductionModel
from streamapp.training import RETURNS_MODEL_NAME

REQUIRED_FIELDS = ("event_id", "order_id", "customer_customer_id")
TEXT_FIELDS = ("customer_country", "order_device", "order_channel", "order_main_category")
MAX_ITEMS = 2**31 - 1  # the INTEGER column
MAX_AMOUNT = 1e12
EARLIEST_YEAR = 1000  # DATETIME range of MySQL/MariaDB
AMOUNT_FIELDS = ("order_basket_value", "order_shipping_fee", "order_discount", "order_order_total")
_COLUMNS = {**CustomerRow.__table__.c, **OrderRow.__table__.c, **EventRow.__table__.c}


def _max_length(name: str) -> int:
    return int(getattr(_COLUMNS[name].type, "length", None) or 255)


def _field_defaults() -> dict[str, Any]:
    from models.returns import FIELD_DEFAULTS  # the one place the contract's defaults live

    return FIELD_DEFAULTS


def parse_event_time(text: str) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (naive means UTC); None for the empty default."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _take_text(name: str, value: Any, event: dict[str, Any], reasons: list[str]) -> None:
    """Store a non-blank text field stripped, or say why it cannot be stored."""
    if not isinstance(value, str):
        reasons.append(f"{name} must be a string, not {type(value).__name__}")
    elif len(value) > _max_length(name):
        reasons.append(f"{name} is longer than {_max_length(name)} characters")
    else:
        event[name] = value.strip()


def validate_order_event(
    data: Mapping[str, Any], *, required: Sequence[str] = REQUIRED_FIELDS
) -> tuple[dict[str, Any], list[str]]:
    """(the event with every contract field, missing/null optional fields set to their defaults,
    every reason it is invalid). Valid when the reasons list is empty."""
    defaults = _field_defaults()
    reasons: list[str] = []
    event: dict[str, Any] = {}
    for name in REQUIRED_FIELDS:
        if _is_blank(data.get(name)):
            if name in required:
                reasons.append(f"{name} is required")
            event[name] = ""
        else:
            _take_text(name, data.get(name), event, reasons)
    for name in TEXT_FIELDS:
        if _is_blank(data.get(name)):
            event[name] = defaults[name]
        else:
            _take_text(name, data.get(name), event, reasons)
    time_text = data.get("event_time")
    if time_text is None or time_text == "":
        event["event_time"] = defaults["event_time"]
    elif not isinstance(time_text, str):
        reasons.append(f"event_time must be an ISO 8601 string, not {type(time_text).__name__}")
    else:
        try:
            moment = parse_event_time(time_text)
        except (ValueError, OverflowError):
            reasons.append(f"event_time {time_text[:40]!r} is not an ISO 8601 time")
        else:
            if moment is not None and moment.year < EARLIEST_YEAR:
                reasons.append(f"event_time {time_text[:40]!r} is before the year {EARLIEST_YEAR}")
            else:
                event["event_time"] = time_text
    items = data.get("order_n_items")
    if items is None:
        event["order_n_items"] = defaults["order_n_items"]
    elif not _is_number(items) or float(items) != int(items) or not 0 <= items <= MAX_ITEMS:
        reasons.append(f"order_n_items must be a whole number from 0 to {MAX_ITEMS}")
    else:
        event["order_n_items"] = int(items)
    for name in AMOUNT_FIELDS:
        value = data.get(name)
        if value is None:
            event[name] = defaults[name]
        elif not _is_number(value) or not 0 <= value <= MAX_AMOUNT:
            reasons.append(f"{name} must be a number from 0 to {MAX_AMOUNT:g}")
        else:
            event[name] = float(value)
    returned = data.get("order_is_returned")
    if returned is None:
        event["order_is_returned"] = defaults["order_is_returned"]
    elif not isinstance(returned, bool):
        reasons.append("order_is_returned must be true or false")
    else:
        event["order_is_returned"] = returned
    return event, reasons


def _load_return_model(path: Path) -> Any:
    from models.returns import ReturnModel

    return ReturnModel.load(path)


return_model: ProductionModel[Any] = ProductionModel(RETURNS_MODEL_NAME, _load_return_model)


async def score_orders(model: Any, events: Sequence[Mapping[str, Any]]) -> list[float]:
    """P(returned) per validated event, computed in an executor thread."""
    loop = asyncio.get_running_loop()
    probabilities = await loop.run_in_executor(None, model.predict_proba, list(events))
    return [float(value) for value in probabilities]


@dataclass
class ReturnsFigures:
    """Running counts of the returns agent, shown by `/api/v1/returns/status`."""

    consumed: int = 0
    predicted: int = 0
    duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    last_batch_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "predicted": self.predicted,
            "duplicates_skipped": self.duplicates,
            "dead_letters": dict(self.dead_letters),
            "last_batch_at": self.last_batch_at,
        }


returns_figures = ReturnsFigures()
