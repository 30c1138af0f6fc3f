"""Anomaly detection: `extracted-features` -> three detectors -> `anomalies-detected`, journal and lake.

Per micro-batch: the production ensemble is re-checked (a newly promoted version is used from the next
batch on, no restart); unusable messages go to `dead-letters` (`invalid`; `missing-features` naming the
features the model needs, never zero-filled; `model-not-trained` while nothing is promoted, so they can
be replayed later); the rest join their asset's history window and are scored together in the model
process, which also writes each result's JSON and journal row; here each gets its criticality against the
asset's own baseline, in order, and the results are published keyed by `asset_id`, upserted into
`anomaly_detections` and added to `bronze/anomalies`. Offsets are acknowledged once the lake holds them.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from faust.types import StreamT
from sqlalchemy import Table

from lake.model_outputs import ANOMALIES_SCHEMA, anomaly_lake_columns
from streamapp.anomaly_scoring import (
    PreparedResult,
    anomaly_figures,
    anomaly_model,
    criticality_rule,
    journal_row,
    lake_source,
    score_prepared,
)
from streamapp.app import app
from streamapp.db.telemetry import AnomalyDetectionRow
from streamapp.feature_pipeline import (
    Admitted,
    FeatureBatchPipeline,
    JournalSpec,
    LakeSpec,
    model_check,
    register_model_check,
)
from streamapp.topics import anomalies_topic, extracted_features_topic
from tables.criticality import criticality_state, save_criticality_states
from tables.history import anomaly_history

if TYPE_CHECKING:
    from models.anomaly import AnomalyEnsemble

log = logging.getLogger(__name__)
AGENT = "anomalies"


class AnomalyPipeline(FeatureBatchPipeline["AnomalyEnsemble", PreparedResult]):
    """The anomaly agent's per-batch work: three detectors, then a criticality per asset."""

    def __init__(self) -> None:
        super().__init__(
            agent=AGENT, watcher=anomaly_model, figures=anomaly_figures, history=anomaly_history,
            output=anomalies_topic, journal=JournalSpec(cast(Table, AnomalyDetectionRow.__table__), "detection_id",
                                                        journal_row),
            lake=LakeSpec("bronze/anomalies", ANOMALIES_SCHEMA, columns=anomaly_lake_columns, source=lake_source),
        )

    async def compute(self, model: AnomalyEnsemble, version: str, admitted: list[Admitted]) -> list[Any]:
        heads = [
            (item.record.asset_id, item.record.sensor_id or "", item.timestamp, item.record.features,
             item.record.metadata, len(item.window))
            for item in admitted
        ]
        return await score_prepared(model, version, [item.window for item in admitted], heads)

    def results(
        self, admitted: list[Admitted], computed: list[Any], model: AnomalyEnsemble, version: str
    ) -> list[PreparedResult]:
        """Criticality per message against its asset's baseline (updated in order), then the results (the
        rest of each was prepared with its scores, in the model process)."""
        rule = criticality_rule(model)
        states: dict[str, tuple[dict[str, Any], int]] = {}
        results = []
        flagged: Counter[str] = Counter()  # criticality -> anomalies in this batch
        for item, prepared in zip(admitted, computed, strict=True):
            asset = item.record.asset_id
            previous = states[asset][0] if asset in states else criticality_state(asset)
            level, state = rule.assess(prepared[0], previous)
            states[asset] = (state, item.event.message.partition)
            result = PreparedResult(asset, prepared, level)
            results.append(result)
            if result.is_anomaly:
                flagged[level] += 1
        save_criticality_states(states, self.state_changelog)
        anomaly_figures.by_criticality.update(result.criticality for result in results)
        if flagged:
            anomaly_figures.anomalies += flagged.total()
            worst = [result for result in results if result.is_anomaly and result.criticality in ("high", "critical")]
            log.warning(  # one line per batch: a burst of anomalies must not flood the log
                "%d anomalies in a batch of %d (%s)%s", flagged.total(), len(results),
                ", ".join(f"{level}: {count}" for level, count in sorted(flagged.items())),
                "; high or critical: " + ", ".join(sorted({r.asset_id for r in worst})[:10]) if worst else "",
            )
        return results


@app.agent(extracted_features_topic, name="anomalies")
async def detect_anomalies(stream: StreamT) -> None:
    """Score feature messages a micro-batch at a time (see the module docstring)."""
    await AnomalyPipeline().run(stream)


@app.task
async def watch_anomaly_model() -> None:
    """Keep the production ensemble current even while no messages arrive."""
    await anomaly_model.poll_forever()


anomaly_model_check = model_check(anomaly_model)
register_model_check("anomaly_model", anomaly_model)
