"""Results prepared in the model process (`streamapp.anomaly_scoring.score_and_prepare`): what the agent
publishes and journals is what the contract's record and its journal row hold, for awkward inputs too."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from lake.model_outputs import anomaly_lake_row
from streamapp.anomaly_scoring import (
    CRITICALITY_LEVELS,
    PreparedResult,
    anomaly_result,
    detection_id,
    journal_row,
    score_and_prepare,
    score_rows,
)
from streamapp.db.engines import json_text
from streamapp.records import AnomalyResult

FEATURES = {"rms": 0.5, "kurtosis": 0.3, "crest_factor": 1.2, "variance": 0.1, "mean": 0.0}


def heads_and_histories(model: Any) -> tuple[list[tuple[Any, ...]], list[list[dict[str, float]]]]:
    heads, histories = [], []
    metadata_cases: list[dict[str, Any] | None] = [
        {}, None, {"cycle": 3, "note": "é \"quoted\"", "nested": {"x": [1, 2.5, None]}}, {"bad": math.nan},
    ]
    for index, metadata in enumerate(metadata_cases):
        features = {**FEATURES, "rms": 0.5 + index, "extra": "not a number", "inf": math.inf}
        history = [{name: float(FEATURES[name]) + step for name in model.feature_names} for step in range(index + 1)]
        heads.append((f"asset-{index % 2}", "" if index == 1 else "S1", f"2024-01-0{index + 1}T12:00:00+02:00",
                      features, metadata, len(history)))
        histories.append(history)
    return heads, histories


@pytest.mark.parametrize("level", CRITICALITY_LEVELS)
def test_prepared_json_is_the_records_json(small_ensemble: Any, level: str) -> None:
    heads, histories = heads_and_histories(small_ensemble)
    prepared = score_and_prepare(small_ensemble, histories, "7", heads)
    scored = score_rows(small_ensemble, histories)
    assert len(prepared) == len(heads)
    for head, item, row in zip(heads, prepared, scored, strict=True):
        asset_id, sensor_id, timestamp, features, metadata, length = head
        record = anomaly_result(
            asset_id=asset_id, sensor_id=sensor_id, timestamp=timestamp, features=features, metadata=metadata,
            scored=row, criticality=level, model=small_ensemble, version="7", history_length=length,
        )
        result = PreparedResult(asset_id, item, level)
        assert result.dumps() == record.dumps()  # the same bytes on the topic
        assert AnomalyResult.loads(result.dumps()).metadata["history_length"] == length
        assert (result.final_score, result.is_anomaly) == (record.final_score, record.is_anomaly)


def test_the_journal_row_holds_what_the_record_says(small_ensemble: Any) -> None:
    heads, histories = heads_and_histories(small_ensemble)
    created = datetime(2025, 1, 1, tzinfo=UTC)
    for head, item in zip(heads, score_and_prepare(small_ensemble, histories, "7", heads), strict=True):
        result = PreparedResult(head[0], item, "high")
        record = AnomalyResult.loads(result.dumps())
        row = journal_row(result, created)
        assert row["detection_id"] == detection_id(head[0], head[1], head[2])
        assert row["timestamp"] == datetime(2024, 1, int(head[2][9]), 10, 0, tzinfo=UTC)
        assert row["timestamp"].tzinfo is UTC and row["created_at"] == created and row["criticality"] == "high"
        assert row["final_score"] == record.final_score and row["model_version"] == "7"
        assert orjson.loads(json_text(row["scores"])) == [score.asdict() for score in record.scores]
        assert orjson.loads(json_text(row["features"])) == record.features == {
            name: value for name, value in head[3].items() if isinstance(value, float) and math.isfinite(value)
        }
        assert orjson.loads(json_text(row["metadata"])) == record.metadata
        flat = anomaly_lake_row(row)  # the lake reads the same row
        assert flat["isolation_forest_score"] == record.scores[0].score
        assert dict(flat["features"]) == record.features and flat["date"] == row["timestamp"].date().isoformat()
    # a second row of the same result is a fresh dict (a retried write may build it again)
    assert journal_row(result, created) is not journal_row(result, created)


def test_an_unknown_criticality_is_still_valid_json(small_ensemble: Any) -> None:
    heads, histories = heads_and_histories(small_ensemble)
    item = score_and_prepare(small_ensemble, histories[:1], "7", heads[:1])[0]
    assert orjson.loads(PreparedResult("asset-0", item, 'odd "level"').dumps())["criticality"] == 'odd "level"'


def test_json_text_writes_prepared_bytes_as_they_are() -> None:
    assert json_text(b'{"a":1}') == '{"a":1}'
    assert json_text({"a": 1}) == '{"a":1}'
    assert json_text([1.5, None]) == "[1.5,null]"
