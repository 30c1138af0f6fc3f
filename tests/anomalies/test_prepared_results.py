"""Results prepared in the model process (`streamapp.anomaly_scoring.score_and_prepare`): what the agent
publishes and journals is what the contract's record and its journal row hold, for awkward inputs too."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pyarrow as pa
import pytest

from lake.model_outputs import ANOMALIES_SCHEMA, anomaly_lake_columns, date_partition, sorted_json
from lake.offload import EPOCH, MICROSECOND
from streamapp.anomaly_scoring import (
    CRITICALITY_LEVELS,
    PreparedResult,
    anomaly_result,
    detection_id,
    journal_row,
    lake_source,
    score_and_prepare,
    score_rows,
)
from streamapp.db.engines import json_text
from streamapp.records import AnomalyResult


def lake_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Journal rows as `bronze/anomalies` holds them (flattened a whole write at once, as the lake does)."""
    columns = anomaly_lake_columns(rows)
    return pa.Table.from_pydict(
        {field.name: columns.get(field.name, pa.nulls(len(rows), field.type)) for field in ANOMALIES_SCHEMA},
        schema=ANOMALIES_SCHEMA,
    ).to_pylist()


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
        (flat,) = lake_rows([row])  # the lake reads the same row
        assert flat["isolation_forest_score"] == record.scores[0].score
        assert flat["features"] == sorted(record.features.items()) and flat["metadata"] == sorted_json(record.metadata)
        assert flat["date"] == row["timestamp"].date().isoformat() and flat["criticality"] == "high"
        assert flat["timestamp"] == row["timestamp"]
        # what the agent ships to the lake instead (its timestamp in UTC microseconds) lands the same
        assert lake_source(result, row)["timestamp"] == (row["timestamp"] - EPOCH) // MICROSECOND
        assert lake_rows([lake_source(result, row)]) == [flat]
        assert "created_at" not in lake_source(result, row)
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


def test_lake_dates_are_utc_dates() -> None:
    last_microsecond = (datetime(2024, 2, 29, tzinfo=UTC) - EPOCH) // MICROSECOND - 1
    assert date_partition(last_microsecond) == "2024-02-28" and date_partition(last_microsecond + 1) == "2024-02-29"
    assert date_partition(-1) == "1969-12-31"
    assert date_partition(datetime(2024, 2, 29, 23, 59, tzinfo=UTC)) == "2024-02-29"
    assert date_partition(datetime(2024, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == "2024-02-29"
    assert date_partition(datetime(2024, 2, 29, 23, 59)) == "2024-02-29"  # naive: taken as UTC


def test_lake_columns_sort_each_rows_features_and_fill_what_a_row_lacks() -> None:
    base = {"detection_id": "d", "asset_id": "a", "sensor_id": "s", "final_score": 0.5, "is_anomaly": False,
            "criticality": "low", "model_version": "1", "metadata": {"z": 1, "a": {"y": 2, "b": 3}}}
    iforest = {"model_name": "isolation_forest", "score": 0.1, "threshold": 0.5, "is_anomaly": False}
    rows = [
        {**base, "timestamp": datetime(2024, 2, 29, 23, 59, tzinfo=UTC), "features": {"b": 1.0, "a": 2.0},
         "scores": [iforest, {"model_name": "new_model", "score": 0.9, "threshold": 0.2, "is_anomaly": True}]},
        {**base, "timestamp": datetime(2024, 3, 1), "features": orjson.dumps({"a": 3.0, "c": 4.0}),
         "scores": orjson.dumps([iforest]), "metadata": b'{"a":1}'},
        {**base, "timestamp": datetime(2024, 3, 1, 1, tzinfo=UTC), "features": {"b": 5.0, "a": 6.0},
         "scores": []},
    ]
    columns = anomaly_lake_columns(rows)
    assert columns["features"].to_pylist() == [[("a", 2.0), ("b", 1.0)], [("a", 3.0), ("c", 4.0)],
                                               [("a", 6.0), ("b", 5.0)]]
    assert columns["date"] == ["2024-02-29", "2024-03-01", "2024-03-01"]  # a naive timestamp is taken as UTC
    assert columns["isolation_forest_score"] == [0.1, 0.1, None] and columns["one_class_svm_score"] == [None] * 3
    assert columns["new_model_is_anomaly"] == [True, None, None]  # a model the schema lacks: not lost here
    assert columns["metadata"] == ['{"a":{"b":3,"y":2},"z":1}', '{"a":1}', '{"a":{"b":3,"y":2},"z":1}']
    landed = lake_rows(rows)
    assert [row["timestamp"] for row in landed] == [
        datetime(2024, 2, 29, 23, 59, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 1, 1, tzinfo=UTC)
    ]
