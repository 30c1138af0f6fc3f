"""Tables of the telemetry role (PostgreSQL in production): IoT, anomaly journal, RUL forecasts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class TelemetryBase(DeclarativeBase):
    pass


class IotMeasurementRow(TelemetryBase):
    __tablename__ = "iot_measurements"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)  # the pseudonym, never the clear id
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    freq_card: Mapped[float] = mapped_column(Float)
    freq_resp: Mapped[float] = mapped_column(Float)
    spo2_pct: Mapped[float] = mapped_column(Float)
    temp_corp: Mapped[float] = mapped_column(Float)
    ingestion_timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    api_version: Mapped[str] = mapped_column(String(16))
    quality_score: Mapped[float | None] = mapped_column(Float, nullable=True)


class IotAlertRow(TelemetryBase):
    __tablename__ = "iot_alerts"

    alert_id: Mapped[str] = mapped_column(String(96), primary_key=True)  # message_id + alert_type
    message_id: Mapped[str] = mapped_column(String(64), index=True)
    alert_type: Mapped[str] = mapped_column(String(48), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    device_id: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AnomalyDetectionRow(TelemetryBase):
    __tablename__ = "anomaly_detections"
    __table_args__ = (Index("ix_anomaly_asset_time", "asset_id", "timestamp"),)

    detection_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hash of asset, sensor, timestamp
    asset_id: Mapped[str] = mapped_column(String(128), index=True)
    sensor_id: Mapped[str] = mapped_column(String(128), index=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    final_score: Mapped[float] = mapped_column(Float)
    is_anomaly: Mapped[bool] = mapped_column(Boolean, index=True)
    criticality: Mapped[str] = mapped_column(String(16), index=True)
    scores: Mapped[list] = mapped_column(JSON)
    features: Mapped[dict] = mapped_column(JSON)
    metadata_: Mapped[dict] = mapped_column("metadata", JSON)
    model_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RulPredictionRow(TelemetryBase):
    __tablename__ = "rul_predictions"
    __table_args__ = (Index("ix_rul_asset_time", "asset_id", "timestamp"),)

    prediction_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hash of asset, sensor, timestamp
    asset_id: Mapped[str] = mapped_column(String(128), index=True)
    sensor_id: Mapped[str] = mapped_column(String(128))
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    rul_prediction: Mapped[float] = mapped_column(Float)
    confidence_interval_lower: Mapped[float] = mapped_column(Float)
    confidence_interval_upper: Mapped[float] = mapped_column(Float)
    confidence_level: Mapped[float] = mapped_column(Float)
    uncertainty: Mapped[float] = mapped_column(Float)
    model_used: Mapped[str] = mapped_column(String(32))
    model_scores: Mapped[dict] = mapped_column(JSON)
    features: Mapped[dict] = mapped_column(JSON)
    metadata_: Mapped[dict] = mapped_column("metadata", JSON)
    model_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
