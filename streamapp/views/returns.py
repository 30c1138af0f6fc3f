"""Return probability on demand (`POST /api/v1/returns/predict`) and the pipeline's state
(`GET /api/v1/returns/status`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from faust.web import Request, Response, View

from streamapp.app import app
from streamapp.returns_scoring import return_model, returns_figures, score_orders, validate_order_event
from streamapp.views.common import RequestError, error_response, write_body
from tables.dedup import seen_event_ids

# on demand an order may not have an event yet: only the order and customer ids are required
PREDICT_REQUIRED = ("order_id", "customer_customer_id")


@app.page("/api/v1/returns/predict")
class ReturnPredictView(View):
    async def post(self, request: Request) -> Response:
        """Score one order (OrderEvent fields); 422 lists every reason the body is invalid."""
        try:
            body = await write_body(request)
            if not isinstance(body, dict):
                raise RequestError(422, ["body must be a JSON object with the OrderEvent fields"])
            order, reasons = validate_order_event(body, required=PREDICT_REQUIRED)
            if reasons:
                raise RequestError(422, reasons)
            await return_model.refresh_if_due()
            model, version = return_model.model, return_model.version
            if model is None:
                raise RequestError(503, ["model-not-trained: no returns model is promoted to production yet"])
        except RequestError as error:
            return error_response(self, error)
        order["event_id"] = order["event_id"] or str(uuid.uuid4())
        (probability,) = await score_orders(model, [order])
        body_out: dict[str, Any] = {
            "event_id": order["event_id"],
            "order_id": order["order_id"],
            "customer_customer_id": order["customer_customer_id"],
            "return_proba": probability,
            "model_version": version,
            "predicted_at": datetime.now(UTC).isoformat(),
        }
        return self.json(body_out)


@app.page("/api/v1/returns/status")
class ReturnStatusView(View):
    async def get(self, request: Request) -> Response:
        """The production model (or why there is none) and the agent's running counts."""
        return self.json({
            "model": return_model.status(),
            "agent": returns_figures.as_json(),
            "seen_event_ids_local": len(seen_event_ids),
        })
