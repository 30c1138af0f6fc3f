"""Remaining useful life: `extracted-features` -> LSTM/GRU/TCN ensemble -> `rul-predictions`, journal and lake.

Each admitted message extends its asset's window in `rul-feature-history` (a changelog-backed table, so a
restarted or rebalanced worker predicts from the next message on without the asset's history being sent
again); the batch's windows go through the production ensemble together in an executor. Predictions
(conformal interval, half-width as `uncertainty`, each member's RUL) are published keyed by `asset_id`,
upserted into `rul_predictions` and added to `bronze/rul_predictions`. Untrained model: the worker starts
anyway, says so, and dead-letters messages as `model-not-trained`; missing features are dead-lettered by
name (never zero-filled); a failing batch is dead-lettered as `processing-error` and the stream goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from faust.types import StreamT
from sqlalchemy import Table

from lake.model_outputs import RUL_SCHEMA, rul_lake_row
from streamapp.app import app
from streamapp.db.telemetry import RulPredictionRow
from streamapp.feature_pipeline import (
    Admitted,
    FeatureBatchPipeline,
    JournalSpec,
    LakeSpec,
    register_model_check,
)
from streamapp.records import RulPrediction
from streamapp.rul_scoring import (
    forecast,
    journal_row,
    rul_figures,
    rul_model,
    rul_prediction,
)
from streamapp.topics import extracted_features_topic, rul_predictions_topic
from tables.history import rul_history

if TYPE_CHECKING:
    from models.rul import RulEnsemble

log = logging.getLogger(__name__)


class RulPipeline(FeatureBatchPipeline["RulEnsemble", RulPrediction]):
    """The RUL agent's per-batch work: one forecast per admitted message, from its asset's window."""

    def __init__(self) -> None:
        super().__init__(
            agent="rul", watcher=rul_model, figures=rul_figures, history=rul_history, output=rul_predictions_topic,
            journal=JournalSpec(cast(Table, RulPredictionRow.__table__), "prediction_id", journal_row),
            lake=LakeSpec("bronze/rul_predictions", RUL_SCHEMA, rul_lake_row),
        )

    async def compute(self, model: RulEnsemble, version: str, admitted: list[Admitted]) -> list[Any]:
        return await forecast(model, version, [item.window for item in admitted])

    def results(
        self, admitted: list[Admitted], computed: list[Any], model: RulEnsemble, version: str
    ) -> list[RulPrediction]:
        return [
            rul_prediction(
                asset_id=item.record.asset_id, sensor_id=item.record.sensor_id or "", timestamp=item.timestamp,
                features=item.record.features, metadata=item.record.metadata, forecast=result, model=model,
                version=version,
            )
            for item, result in zip(admitted, computed, strict=True)
        ]


@app.task
async def watch_rul_model() -> None:
    """Load the production ensemble (warning once when there is none yet) and keep it current."""
    await rul_model.refresh_if_due()
    if not rul_model.ready:
        log.warning("no RUL model is promoted to production yet: feature messages go to dead-letters as "
                    "model-not-trained until one is (faust -A streamapp train rul, or POST /api/v1/rul/train)")
    await rul_model.poll_forever()


@app.agent(extracted_features_topic, name="rul")
async def predict_rul(stream: StreamT) -> None:
    """Forecast feature messages a micro-batch at a time (see the module docstring)."""
    await RulPipeline().run(stream)


register_model_check("rul_model", rul_model)
