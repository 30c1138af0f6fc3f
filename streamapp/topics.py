"""Every topic of the contract, declared once with its key and value types."""

from __future__ import annotations

from typing import Any

from faust.types import TopicT

from streamapp.app import app
from streamapp.records import (
    AnomalyResult,
    DeadLetter,
    DeviceStatus,
    ExtractedFeatures,
    IngestError,
    IotMeasurement,
    OrderEvent,
    ReturnPrediction,
    RulPrediction,
    SensorReading,
    VitalAlert,
    VitalsWindow,
)


def contract_topic(name: str, **options: Any) -> TopicT:
    """A topic the app owns: `internal` makes Faust create it before subscribing, so a worker started on a
    fresh broker consumes it at once (Faust leaves other topics to the broker's auto-creation)."""
    return app.topic(name, internal=True, **options)


sensor_readings_topic = contract_topic("sensor-readings", key_type=str, value_type=SensorReading)
extracted_features_topic = contract_topic("extracted-features", key_type=str, value_type=ExtractedFeatures)
anomalies_topic = contract_topic("anomalies-detected", key_type=str, value_type=AnomalyResult)
rul_predictions_topic = contract_topic("rul-predictions", key_type=str, value_type=RulPrediction)
iot_measurements_topic = contract_topic("iot-measurements", key_type=str, value_type=IotMeasurement)
iot_alerts_topic = contract_topic("iot-alerts", key_type=str, value_type=VitalAlert)
iot_device_status_topic = contract_topic("iot-device-status", key_type=str, value_type=DeviceStatus)
iot_errors_topic = contract_topic("iot-errors", value_type=IngestError)
iot_aggregations_topic = contract_topic("iot-aggregations", key_type=str, value_type=VitalsWindow)
ecommerce_events_topic = contract_topic("ecommerce-events", key_type=str, value_type=OrderEvent)
return_predictions_topic = contract_topic("return-predictions", key_type=str, value_type=ReturnPrediction)
dead_letters_topic = contract_topic("dead-letters", key_type=bytes, value_type=DeadLetter, key_serializer="raw")

CONTRACT_TOPICS = [
    sensor_readings_topic,
    extracted_features_topic,
    anomalies_topic,
    rul_predictions_topic,
    iot_measurements_topic,
    iot_alerts_topic,
    iot_device_status_topic,
    iot_errors_topic,
    iot_aggregations_topic,
    ecommerce_events_topic,
    return_predictions_topic,
    dead_letters_topic,
]
