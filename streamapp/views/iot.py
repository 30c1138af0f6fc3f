"""IoT ingestion: `POST /iot/measurements` and the legacy `POST /ingest`, one measurement or a list.

Every item is validated; any invalid item refuses the whole request with 422 listing every problem
(and one `iot-errors` record per invalid item). Valid items are pseudonymised, enriched and published
to `iot-measurements`; the answer is 202 only once the broker confirmed them all, else 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from faust.web import Request, Response, View

from streamapp import metrics
from streamapp.app import app
from streamapp.iot.validation import Reading, ingest_error, to_measurement, validate_reading
from streamapp.publishing import Outgoing, publish_confirmed
from streamapp.records import IngestError, IotMeasurement
from streamapp.settings import get_settings
from streamapp.topics import iot_errors_topic, iot_measurements_topic
from streamapp.views.common import RequestError, error_response, write_body

log = logging.getLogger(__name__)


async def _deliver(messages: Sequence[Outgoing], timeout_s: float) -> None:
    """Publish and wait for the broker's acknowledgement of every message, within `timeout_s`."""
    await asyncio.wait_for(publish_confirmed(messages), timeout_s)


def _items(body: Any) -> list[Any]:
    items = body if isinstance(body, list) else [body]
    limit = get_settings().max_batch_items
    if not items:
        raise RequestError(422, ["the list of measurements is empty"])
    if len(items) > limit:
        raise RequestError(413, [f"{len(items)} measurements are over the limit of {limit} per request"])
    return items


async def report_invalid(errors: list[IngestError], timeout_s: float) -> None:
    """Send the refused items to `iot-errors`; a broker outage here must not hide the 422 from the client."""
    try:
        await _deliver([(iot_errors_topic, None, error) for error in errors], timeout_s)
    except Exception as exc:
        log.warning("could not publish %d ingestion errors to %s: %r", len(errors), iot_errors_topic.get_topic_name(),
                    exc)


async def ingest(view: View, request: Request, *, source: str, legacy: bool) -> Response:
    """Validate, pseudonymise, publish; 202 with the message ids, 422 with every reason, 503 if not stored."""
    settings = get_settings()
    try:
        items = _items(await write_body(request))
    except RequestError as error:
        metrics.ingested_total.labels(f"refused_{error.status}").inc()
        return error_response(view, error)
    now = datetime.now(UTC)
    readings: list[Reading] = []
    reasons: list[str] = []
    errors: list[IngestError] = []
    for index, payload in enumerate(items):
        reading, problems = validate_reading(
            payload, now=now, max_future_skew_s=settings.max_future_skew_seconds, legacy=legacy
        )
        if reading is not None:
            readings.append(reading)
            continue
        reasons.extend(problems if len(items) == 1 else [f"[{index}] {problem}" for problem in problems])
        errors.append(ingest_error(payload, problems, source=source, received_at=now))
    metrics.seed_figures.record_validation(valid=len(readings), invalid=len(errors))
    if errors:
        metrics.ingested_total.labels("invalid").inc(len(errors))
        await report_invalid(errors, settings.ingest_delivery_timeout_s)
        return error_response(view, RequestError(422, reasons))
    records: list[IotMeasurement] = [to_measurement(reading, ingested_at=now) for reading in readings]
    message_ids = [record.message_id for record in records]
    try:
        await _deliver(
            [(iot_measurements_topic, record.patient_id, record) for record in records],
            settings.ingest_delivery_timeout_s,
        )
    except Exception as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        log.warning("ingestion of %d measurements not confirmed by the broker: %s", len(records), reason)
        metrics.ingested_total.labels("unavailable").inc(len(records))
        refusal = {
            "status": 503, "message_ids": message_ids,
            "detail": [f"the broker did not confirm the measurements within "
                       f"{settings.ingest_delivery_timeout_s:g} s ({reason}); retry later (a retry keeps "
                       f"the same message ids, so nothing is stored twice)"],
        }
        return view.json(refusal, status=503)
    metrics.ingested_total.labels("accepted").inc(len(records))
    body: dict[str, Any] = {"status": "accepted", "count": len(records), "message_ids": message_ids}
    if len(records) == 1:
        body["message_id"] = message_ids[0]
    return view.json(body, status=202)


@app.page("/iot/measurements")
class MeasurementsView(View):
    """The seed's ingestion endpoint: nested `measurements`."""

    async def post(self, request: Request) -> Response:
        return await ingest(self, request, source="/iot/measurements", legacy=False)


@app.page("/ingest")
class LegacyIngestView(View):
    """The seed's legacy endpoint: the nested shape or the vitals at the top level."""

    async def post(self, request: Request) -> Response:
        return await ingest(self, request, source="/ingest", legacy=True)
