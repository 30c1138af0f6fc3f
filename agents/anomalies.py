"""Anomaly detection: `extracted-features` -> three detectors -> `anomalies-detected`, journal and lake.

Per micro-batch: the production ensemble is re-checked (a newly promoted version is used from the next
batch on, no restart); unusable messages go to `dead-letters` (`invalid`; `missing-features` naming the
features the model needs, never zero-filled; `model-not-trained` while nothing is promoted, so they can
be replayed later); the rest join their asset's history window, are scored together in an executor,
get a criticality against the asset's own baseline, and are published keyed by `asset_id`, upserted into
`anomaly_detections` and added to `bronze/anomalies`. Offsets are acknowledged once the lake holds them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from faust.types import EventT, StreamT
from sqlalchemy import Table

from lake.sink import LakeSink
from streamapp import health, metrics
from streamapp.anomaly_scoring import (
    ANOMALIES_SCHEMA,
    absent_features,
    anomaly_figures,
    anomaly_model,
    anomaly_result,
    criticality_rule,
    journal_row,
    lake_row,
    message_problems,
    score,
)
from streamapp.app import app
from streamapp.batching import BatchTimer, micro_batches
from streamapp.db.engines import Role, get_engine
from streamapp.db.migrate import ensure_schema
from streamapp.db.telemetry import AnomalyDetectionRow
from streamapp.db.upsert import upsert
from streamapp.deadletters import INVALID, MISSING_FEATURES, MODEL_NOT_TRAINED, PROCESSING, send_dead_letter
from streamapp.records import AnomalyResult, ExtractedFeatures
from streamapp.sinks import ack_after_lake, lake_dataset, lake_sink, position_of, write_with_retry
from streamapp.topics import anomalies_topic, extracted_features_topic
from tables.criticality import criticality_state, save_criticality_states
from tables.history import anomaly_history

log = logging.getLogger(__name__)
AGENT = "anomalies"
DB_SINK = "db:anomalies"
DETECTIONS_TABLE = cast(Table, AnomalyDetectionRow.__table__)


@dataclass
class Usable:
    """A message that passed the checks, with its asset's window (oldest first, ending with it)."""

    event: EventT
    record: ExtractedFeatures
    timestamp: str
    window: list[dict[str, float]]


class AnomalyPipeline:
    """The anomaly agent's per-batch work and its sinks."""

    def __init__(self) -> None:
        self.schema_ready = False
        self.sink: LakeSink = lake_sink("anomalies", [lake_dataset("bronze/anomalies", ANOMALIES_SCHEMA, ["date"])])

    async def process(self, stream: StreamT, events: Sequence[EventT]) -> None:
        await anomaly_model.refresh_if_due()
        model, version = anomaly_model.model, anomaly_model.version  # one version for the whole batch
        anomaly_figures.consumed += len(events)
        anomaly_figures.last_batch_at = datetime.now(UTC).isoformat()
        rejected: list[tuple[EventT, str, str]] = []
        usable: list[Usable] = []
        for event in events:
            record = cast(ExtractedFeatures, event.value)
            problems = message_problems(
                record.asset_id, record.features, record.timestamp, record.sensor_id, record.metadata
            )
            if problems:
                rejected.append((event, INVALID, "; ".join(problems)))
            elif model is None:
                rejected.append((event, MODEL_NOT_TRAINED, "no anomaly model is promoted to production yet"))
            elif missing := absent_features(model, record.features):
                rejected.append((event, MISSING_FEATURES, f"missing features: {', '.join(missing)}"))
            else:
                message = event.message
                window = anomaly_history.append_and_window(
                    record.asset_id, {name: record.features[name] for name in model.feature_names},
                    message.partition, message.offset,
                )
                usable.append(Usable(event, record, record.timestamp or _message_time(event), window))
        results: list[AnomalyResult] = []
        if usable and model is not None:
            try:
                scored = await score(model, [item.window[-1] for item in usable], [item.window for item in usable])
            except Exception as exc:
                log.exception("anomaly ensemble failed on a batch of %d messages", len(usable))
                metrics.errors_total.labels(AGENT).inc()
                rejected += [(item.event, PROCESSING, f"{type(exc).__name__}: {exc}") for item in usable]
                usable = []
            else:
                results = self.assess(usable, scored, model, str(version))
        await self.dead_letter(rejected)
        await self.publish(results)
        rows = [journal_row(result, datetime.now(UTC)) for result in results]
        await self.store(rows)
        anomaly_history.persist()
        self.sink.add("bronze/anomalies", [
            (lake_row(row), position_of(item.event)) for row, item in zip(rows, usable, strict=True)
        ])
        await ack_after_lake(self.sink, stream, list(events))

    def assess(
        self, usable: list[Usable], scored: list[dict[str, Any]], model: Any, version: str
    ) -> list[AnomalyResult]:
        """Criticality per message against its asset's baseline (updated in order), then the results."""
        rule = criticality_rule(model)
        states: dict[str, tuple[dict[str, Any], int]] = {}
        results = []
        for item, row in zip(usable, scored, strict=True):
            asset = item.record.asset_id
            previous = states[asset][0] if asset in states else criticality_state(asset)
            level, state = rule.assess(row["final_score"], previous)
            states[asset] = (state, item.event.message.partition)
            results.append(anomaly_result(
                asset_id=asset, sensor_id=item.record.sensor_id or "", timestamp=item.timestamp,
                features=item.record.features, metadata=item.record.metadata, scored=row, criticality=level,
                model=model, version=version, history_length=len(item.window),
            ))
            anomaly_figures.by_criticality[level] += 1
            if row["is_anomaly"]:
                anomaly_figures.anomalies += 1
                log.warning("anomaly: %s (score=%.3f, criticality=%s)", asset, row["final_score"], level)
        save_criticality_states(states)
        anomaly_figures.scored += len(results)
        anomaly_figures.last_model_version = version
        return results

    async def dead_letter(self, rejected: list[tuple[EventT, str, str]]) -> None:
        """Every rejected message to `dead-letters`, delivered before the batch is acknowledged."""
        await asyncio.gather(*(
            send_dead_letter(event, error=error, reason=reason, agent=AGENT) for event, reason, error in rejected
        ))
        for _, reason, _ in rejected:
            anomaly_figures.dead_letters[reason] += 1

    async def publish(self, results: list[AnomalyResult]) -> None:
        """Send every result keyed by asset and wait for the broker (at-least-once before the ack)."""
        if not results:
            return

        async def send_all() -> None:
            pending = [await anomalies_topic.send(key=result.asset_id, value=result) for result in results]
            await asyncio.gather(*pending)

        await write_with_retry("kafka:anomalies", send_all)  # a retry may repeat results; the journal dedupes
        metrics.published_total.labels(anomalies_topic.get_topic_name()).inc(len(results))

    async def store(self, rows: list[dict[str, Any]]) -> None:
        """Upsert the journal (idempotent on `detection_id`), retrying while the database is down."""
        if not rows:
            return
        unique = list({row["detection_id"]: row for row in rows}.values())

        async def write() -> None:
            if not self.schema_ready:
                await ensure_schema(Role.TELEMETRY)
                self.schema_ready = True
            async with get_engine(Role.TELEMETRY).begin() as connection:
                await upsert(connection, DETECTIONS_TABLE, unique)

        await write_with_retry(DB_SINK, write)
        metrics.sink_rows_total.labels(DB_SINK).inc(len(unique))


def _message_time(event: EventT) -> str:
    """A message without a timestamp is stamped with its broker time (stable when replayed)."""
    stamp = event.message.timestamp or time.time()
    return datetime.fromtimestamp(stamp, UTC).isoformat()


_pipeline: AnomalyPipeline | None = None


@app.agent(extracted_features_topic, name="anomalies")
async def detect_anomalies(stream: StreamT) -> None:
    """Score feature messages a micro-batch at a time (see the module docstring)."""
    global _pipeline
    pipeline = _pipeline = AnomalyPipeline()
    async for events in micro_batches(stream, agent=AGENT):
        timer = BatchTimer(AGENT)
        await pipeline.process(stream, events)
        timer.done()


@app.task
async def watch_anomaly_model() -> None:
    """Keep the production ensemble current even while no messages arrive."""
    await anomaly_model.poll_forever()


async def anomaly_model_check() -> dict[str, Any]:
    status = anomaly_model.status()
    return {"ok": bool(status["ready"]), **status}


health.register_check("anomaly_model", anomaly_model_check)
