"""`streamapp.records.built`: a record of computed values without Faust's per-field descriptors, the same
record as the constructor's."""

from __future__ import annotations

import pytest

from streamapp.records import AnomalyResult, ModelScore, RulPrediction, built

SCORES = [
    {"score": 0.25, "model_name": "isolation_forest", "threshold": 0.9, "is_anomaly": False},
    {"score": 0.97, "model_name": "lstm_autoencoder", "threshold": 0.9, "is_anomaly": True},
]
RESULT = {
    "asset_id": "pump-1", "sensor_id": "vibration", "timestamp": "2026-01-01T00:00:00+00:00",
    "features": {"rms": 1.5, "kurtosis": 3.25}, "metadata": {"cycle": 7, "note": "é"}, "model_version": "3",
    "final_score": 0.97, "is_anomaly": True, "criticality": "high",
}


def test_built_record_equals_the_constructed_one_and_serialises_the_same() -> None:
    constructed = AnomalyResult(**RESULT, scores=[ModelScore(**entry) for entry in SCORES])
    fast = built(AnomalyResult, **RESULT, scores=[built(ModelScore, **entry) for entry in SCORES])

    assert fast == constructed
    assert fast.dumps() == constructed.dumps()
    assert fast.scores[1].model_name == "lstm_autoencoder" and fast.criticality == "high"
    loaded = AnomalyResult.loads(fast.dumps())
    assert loaded.asset_id == "pump-1" and loaded.scores[1].is_anomaly is True
    assert loaded.metadata == {"cycle": 7, "note": "é"}


def test_built_refuses_missing_or_unknown_fields() -> None:
    partial = {key: value for key, value in RESULT.items() if key != "criticality"}
    with pytest.raises(TypeError, match=r"missing \['criticality', 'scores'\]"):
        built(AnomalyResult, **partial)
    with pytest.raises(TypeError, match=r"unknown \['colour'\]"):
        built(ModelScore, **SCORES[0], colour="red")


def test_built_prediction_keeps_its_field_order_on_the_wire() -> None:
    values = {
        "asset_id": "engine-9", "sensor_id": "", "timestamp": "2026-01-01T00:00:00+00:00", "features": {"s2": 642.5},
        "metadata": {}, "model_version": "1", "rul_prediction": 80.5, "confidence_interval_lower": 60.0,
        "confidence_interval_upper": 101.0, "confidence_level": 0.9, "uncertainty": 20.5, "model_used": "ensemble",
        "model_scores": {"lstm": 79.0, "gru": 82.0, "tcn": 80.5},
    }
    assert built(RulPrediction, **values).dumps() == RulPrediction(**values).dumps()


def test_dumps_writes_the_bytes_of_fausts_json_codec() -> None:
    """`StreamRecord.dumps` skips Faust's codec registry; every kind of value comes out as the codec writes it."""
    import datetime
    from decimal import Decimal

    import faust

    from streamapp.records import IotMeasurement, VitalSigns

    odd_metadata = {
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.UTC), "day": datetime.date(2026, 1, 2),
        "amount": Decimal("1.50"), 7: "int key", "nan": float("nan"), "nested": {"tuple": (1, 2)},
    }
    result = built(AnomalyResult, **{**RESULT, "metadata": odd_metadata},
                   scores=[built(ModelScore, **entry) for entry in SCORES])
    measurement = IotMeasurement(
        patient_id="p", device_id="d", timestamp="t", ingestion_timestamp="i", api_version="v1", message_id="m",
        measurements=VitalSigns(freq_card=70, freq_resp=14.5, spo2_pct=98, temp_corp=36.6),
    )
    for record in (result, measurement):
        assert record.dumps() == faust.Record.dumps(record)
        assert record.dumps(serializer="raw") == faust.Record.dumps(record, serializer="raw")
    assert b'"scores":[{"score":0.25,' in result.dumps() and b'"7":"int key"' in result.dumps()
