"""The micro-batch loop every model agent on `extracted-features` shares (anomalies, RUL).

Per batch: the production model is re-checked (a newly promoted version serves from the next batch on, no
restart); unusable messages go to `dead-letters` (`invalid`; `model-not-trained` while nothing is promoted,
so they can be replayed later; `missing-features` naming what the model needs, never zero-filled); the
rest join their asset's history window (a changelog-backed table) and go through the model together in an
executor; results are published keyed by `asset_id` (waiting for the broker), upserted into the journal
table and added to the lake; offsets are acknowledged once the lake holds them. A model failure
dead-letters the batch as `processing-error` and the stream moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import pyarrow as pa
from faust.types import EventT, StreamT, TopicT
from sqlalchemy import Table

from streamapp import health, metrics, publishing
from streamapp.batch_tails import BackgroundBatches
from streamapp.batching import BatchTimer, micro_batches
from streamapp.db.engines import Role, get_engine
from streamapp.db.migrate import ensure_schema
from streamapp.db.upsert import upsert
from streamapp.deadletters import INVALID, MISSING_FEATURES, MODEL_NOT_TRAINED, PROCESSING, send_dead_letter
from streamapp.feature_messages import message_problems
from streamapp.model_watch import ProductionModel
from streamapp.publishing import Outgoing, count_published, publish_confirmed
from streamapp.records import ExtractedFeatures
from streamapp.sinks import ack_after_lake, lake_dataset, lake_sink, position_of, write_with_retry
from tables.changelog import DeferredChangelog

if TYPE_CHECKING:
    from lake.sink import LakeSink
    from tables.history import FeatureHistory

log = logging.getLogger(__name__)
BATCHES_IN_FLIGHT = 3  # batches being scored or finished (results, journal, acks) while the next is checked
M = TypeVar("M")
R = TypeVar("R")
Rejection = tuple[EventT, str, str]  # event, dead-letter reason, error


@dataclass
class PipelineFigures:
    """Running counts of a model agent, shown by its status view."""

    consumed: int = 0
    scored: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    last_batch_at: str | None = None
    last_model_version: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "scored": self.scored,
            "dead_letters": dict(self.dead_letters),
            "last_batch_at": self.last_batch_at,
            "last_model_version": self.last_model_version,
        }


@dataclass
class Admitted:
    """A message that passed the checks, with its asset's window (oldest first, ending with it)."""

    event: EventT
    record: ExtractedFeatures
    timestamp: str
    window: list[dict[str, float]]


@dataclass
class ScoredBatch(Generic[M]):
    """A micro-batch between its checks and its tail: the admitted messages, the rejected ones and the
    model's output being computed (None when nothing was admitted)."""

    events: Sequence[EventT]
    admitted: list[Admitted]
    rejected: list[Rejection]
    model: M | None
    version: str
    computing: asyncio.Future[list[Any]] | None
    history_saved: Awaitable[int]  # the histories' changelog, confirmed by the broker


def message_time(event: EventT) -> str:
    """A message without a timestamp is stamped with its broker time (stable when replayed)."""
    stamp = event.message.timestamp or time.time()
    return datetime.fromtimestamp(stamp, UTC).isoformat()


def model_check(watcher: ProductionModel[Any]) -> Callable[[], Coroutine[Any, Any, dict[str, Any]]]:
    """A `/health` check: ok once the watcher serves a model."""

    async def check() -> dict[str, Any]:
        status = watcher.status()
        return {"ok": bool(status["ready"]), **status}

    return check


@dataclass(frozen=True)
class JournalSpec:
    """Where results are upserted: a telemetry table, its key column and the row of a result."""

    table: Table
    key: str
    row: Callable[[Any, datetime], dict[str, Any]]


def journal_source(result: Any, journal: dict[str, Any]) -> dict[str, Any]:
    """The lake takes a result's journal row, unless its `LakeSpec` says otherwise."""
    return journal


@dataclass(frozen=True)
class LakeSpec:
    """Where results go in the lake (partitioned by date): dataset, schema, how shipped rows are flattened,
    one at a time (`row`) or a whole write at once (`columns`; module-level functions: the lake writer
    applies them, in its own process; see `lake.writer.LakeDataset`), and what a result ships (from the
    result and its journal row; by default the journal row)."""

    name: str
    schema: pa.Schema
    row: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    columns: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None
    source: Callable[[Any, dict[str, Any]], dict[str, Any]] = journal_source


class FeatureBatchPipeline(Generic[M, R]):
    """One model agent's per-batch work and its sinks; subclasses name their parts and fill the hooks."""

    def __init__(
        self, *, agent: str, watcher: ProductionModel[M], figures: PipelineFigures, history: FeatureHistory,
        output: TopicT, journal: JournalSpec, lake: LakeSpec,
    ) -> None:
        self.agent, self.watcher, self.figures, self.history = agent, watcher, figures, history
        self.output_topic, self.journal, self.lake = output, journal, lake
        self.schema_ready = False
        self.sink: LakeSink = lake_sink(agent, [lake_dataset(lake.name, lake.schema, ["date"], lake.row, lake.columns)])
        self.background = BackgroundBatches(BATCHES_IN_FLIGHT)
        self.state_changelog = DeferredChangelog(agent)  # per-asset state the `results` hook changes
        self._in_order: asyncio.Future[None] | None = None  # set once the last batch handed over its results

    # ---- hooks -------------------------------------------------------------------------------------------
    def feature_names(self, model: M) -> list[str]:
        """The features the model reads (each message must hold them all)."""
        return list(cast(Any, model).feature_names)

    async def compute(self, model: M, version: str, admitted: list[Admitted]) -> list[Any]:
        """The model's output per admitted message, computed off the event loop (`streamapp.model_process`)."""
        raise NotImplementedError

    def results(self, admitted: list[Admitted], computed: list[Any], model: M, version: str) -> list[R]:
        raise NotImplementedError

    # ---- the loop ----------------------------------------------------------------------------------------
    async def run(self, stream: StreamT) -> None:
        async for events in micro_batches(stream, agent=self.agent):
            timer = BatchTimer(self.agent)
            await self.process(stream, events)
            timer.done()

    def triage(self, record: ExtractedFeatures, model: M | None) -> tuple[str, str] | None:
        """Why a message cannot go through the model (reason, error), or None when it can."""
        from models.base import missing_features

        problems = message_problems(
            record.asset_id, record.features, record.timestamp, record.sensor_id, record.metadata
        )
        if problems:
            return INVALID, "; ".join(problems)
        if model is None:
            return MODEL_NOT_TRAINED, f"no {self.watcher.name} model is promoted to production yet"
        missing = missing_features(self.feature_names(model), dict(record.features))
        if missing:
            return MISSING_FEATURES, f"missing features: {', '.join(missing)}"
        return None

    async def process(self, stream: StreamT, events: Sequence[EventT]) -> None:
        """Check the batch and extend the histories here, in batch order; the model runs in an executor
        while the agent prepares its next batch, and the rest of the batch follows in the background."""
        await self.watcher.refresh_if_due()
        model, version = self.watcher.model, self.watcher.version  # one version for the whole batch
        self.figures.consumed += len(events)
        self.figures.last_batch_at = datetime.now(UTC).isoformat()
        rejected: list[Rejection] = []
        admitted: list[Admitted] = []
        for event in events:
            record = cast(ExtractedFeatures, event.value)
            verdict = self.triage(record, model)
            if verdict is not None or model is None:
                rejected.append((event, *cast(tuple[str, str], verdict)))
                continue
            message = event.message
            window = self.history.append_and_window(
                record.asset_id, {name: record.features[name] for name in self.feature_names(model)},
                message.partition, message.offset,
            )
            admitted.append(Admitted(event, record, record.timestamp or message_time(event), window))
        history_saved = await self.history.persist()
        computing = (
            asyncio.ensure_future(self.compute(model, str(version), admitted)) if admitted and model is not None else None
        )
        batch = ScoredBatch(events, admitted, rejected, model, str(version), computing, history_saved)
        previous, self._in_order = self._in_order, asyncio.get_running_loop().create_future()
        await self.background.submit(self.finish(stream, batch, previous, self._in_order))

    async def finish(
        self, stream: StreamT, batch: ScoredBatch[M], previous: asyncio.Future[None] | None,
        done_in_order: asyncio.Future[None],
    ) -> None:
        """A batch's tail: once its model output is in and the batch before it has handed over its
        results, the results (criticality and other per-asset state in batch order) go to the producer
        and the lake; then dead letters, the broker's confirmations (of the results and of the tables'
        changelogs) and the journal (at once), then the acks."""
        try:
            computed = await self.model_output(batch)
            if previous is not None:
                await previous
            results = self.results(batch.admitted, computed, cast(M, batch.model), batch.version) if computed else []
            if results:
                self.figures.scored += len(results)
                self.figures.last_model_version = batch.version
            messages = [(self.output_topic, cast(Any, result).asset_id, result) for result in results]
            confirmations = await publishing.send_records(messages)
            state_saved = await self.state_changelog.hand_over()
            now = datetime.now(UTC)
            rows = [self.journal.row(result, now) for result in results]
            source = self.lake.source
            self.sink.add(self.lake.name, [  # flattened by `lake.row` / `lake.columns` when written
                (source(result, row), position_of(item.event))
                for result, row, item in zip(results, rows, batch.admitted, strict=True)
            ])
        finally:
            if not done_in_order.done():
                done_in_order.set_result(None)
        # dead letters, the broker's confirmations and the journal wait on different services: together
        await asyncio.gather(
            self.dead_letter(batch.rejected), self.confirm(messages, confirmations), self.store(rows),
            batch.history_saved, state_saved,
        )
        await ack_after_lake(self.sink, stream, list(batch.events))

    async def model_output(self, batch: ScoredBatch[M]) -> list[Any]:
        """The model's output for the admitted messages; a model failure dead-letters them all."""
        if batch.computing is None:
            return []
        try:
            return await batch.computing
        except Exception as exc:
            log.exception("%s model failed on a batch of %d messages", self.agent, len(batch.admitted))
            metrics.errors_total.labels(self.agent).inc()
            batch.rejected += [(item.event, PROCESSING, f"{type(exc).__name__}: {exc}") for item in batch.admitted]
            batch.admitted = []
            return []

    async def dead_letter(self, rejected: list[Rejection]) -> None:
        """Every rejected message to `dead-letters`, delivered before the batch is acknowledged."""
        await asyncio.gather(*(
            send_dead_letter(event, error=error, reason=reason, agent=self.agent) for event, reason, error in rejected
        ))
        for _, reason, _ in rejected:
            self.figures.dead_letters[reason] += 1

    async def confirm(self, messages: list[Outgoing], confirmations: list[Awaitable[Any]]) -> None:
        """Wait until the broker has the batch's results; if it failed them, send them all again until it
        takes them (a retry may repeat results; the journal dedupes)."""
        if not messages:
            return
        try:
            await asyncio.gather(*confirmations)
        except Exception as exc:
            log.warning("%s: the broker refused %d results (%r): sending them again", self.agent, len(messages), exc)
            await write_with_retry(f"kafka:{self.agent}", lambda: publish_confirmed(messages))
        else:
            count_published(messages)

    async def store(self, rows: list[dict[str, Any]]) -> None:
        """Upsert the journal (idempotent on its key), retrying while the database is down."""
        if not rows:
            return
        unique = list({row[self.journal.key]: row for row in rows}.values())
        sink = f"db:{self.agent}"

        async def write() -> None:
            if not self.schema_ready:
                await ensure_schema(Role.TELEMETRY)
                self.schema_ready = True
            async with get_engine(Role.TELEMETRY).begin() as connection:
                await upsert(connection, self.journal.table, unique)

        await write_with_retry(sink, write)
        metrics.sink_rows_total.labels(sink).inc(len(unique))


def register_model_check(name: str, watcher: ProductionModel[Any]) -> None:
    """Show the watcher's state under `name` in `/health`."""
    health.register_check(name, model_check(watcher))
