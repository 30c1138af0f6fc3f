"""Cheap agents that copy the pipelines' output topics into the dashboard's live state.

They read only what the pipelines publish (never their internals), in micro-batches, and ack at once:
a dashboard never holds back a pipeline. Like every agent they consume in the app's consumer group,
so each worker sees only its own partitions (see `dashboards.live_state`).
Switched off with STREAMAPP_DASHBOARD_ENABLED=false (benchmarks): then nothing here is registered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from faust.types import StreamT, TopicT

from dashboards.live_state import live_state
from dashboards.operations import RateMeter, operations_sample
from streamapp import health
from streamapp.app import app
from streamapp.iot.pseudonym import is_pseudonym, pseudonymise
from streamapp.settings import get_settings
from streamapp.topics import (
    anomalies_topic,
    dead_letters_topic,
    ecommerce_events_topic,
    iot_alerts_topic,
    iot_device_status_topic,
    iot_measurements_topic,
    return_predictions_topic,
    rul_predictions_topic,
)

log = logging.getLogger(__name__)

BATCH_MAX = 2000
BATCH_WITHIN_S = 0.25  # well inside the dashboard's 1 s refresh
HEALTH_EVERY_S = 5.0


def _register(topic: TopicT, add: Callable[[Iterable[Any]], None], name: str) -> None:
    async def copy_to_live_state(stream: StreamT) -> None:
        async for values in stream.take(BATCH_MAX, within=BATCH_WITHIN_S):  # acked once this batch is done
            try:
                add(values)
            except Exception:  # best effort: a record the dashboard cannot show never stops the copy
                log.exception("dashboard agent %s could not record a batch of %d", name, len(values))

    copy_to_live_state.__name__ = copy_to_live_state.__qualname__ = f"dashboard_{name.replace('-', '_')}"
    copy_to_live_state.__module__ = __name__
    app.agent(topic, name=f"dashboard-{name}")(copy_to_live_state)


def shown_patient(patient_id: str) -> str:
    """A clear id a producer left on the topic is pseudonymised here too (as the IoT agent does), so it
    is never shown and matches the patient of the alerts."""
    return patient_id if is_pseudonym(patient_id) else pseudonymise(patient_id)


def add_vitals(measurements: Iterable[Any]) -> None:
    live_state.add_measurements(measurements, patient_of=shown_patient)


_meter = RateMeter()


async def sample_operations() -> None:
    """Throughput and lag, once a second, into the live state's operations series."""
    live_state.add_operations_sample(operations_sample(app, _meter))


async def refresh_health() -> None:
    """Broker and database health from `streamapp.health`, every few seconds, for every open tab at once."""
    live_state.set_health(await health.run_checks())


def register_dashboard_agents() -> bool:
    """Declare the agents and timers when the dashboard is enabled; returns whether it is."""
    settings = get_settings()
    if not settings.dashboard_enabled:
        return False
    live_state.history_points = settings.dashboard_history_points
    _register(iot_measurements_topic, add_vitals, "vitals")
    _register(iot_alerts_topic, live_state.add_alerts, "alerts")
    _register(iot_device_status_topic, live_state.add_device_statuses, "devices")
    _register(anomalies_topic, live_state.add_anomalies, "anomalies")
    _register(rul_predictions_topic, live_state.add_rul_predictions, "rul")
    _register(ecommerce_events_topic, live_state.add_order_events, "orders")
    _register(return_predictions_topic, live_state.add_return_predictions, "returns")
    _register(dead_letters_topic, live_state.add_dead_letters, "dead-letters")
    app.timer(interval=1.0, name="dashboard-operations")(sample_operations)
    app.timer(interval=HEALTH_EVERY_S, name="dashboard-health")(refresh_health)
    return True


dashboard_enabled = register_dashboard_agents()
