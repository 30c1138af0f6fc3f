"""Anomaly detection models: three calibrated detectors, their ensemble, and per-asset criticality."""

from models.anomaly.criticality import AdaptiveCriticality, CriticalityTracker
from models.anomaly.ensemble import AnomalyEnsemble, BatchScores
from models.anomaly.isolation_forest import IsolationForestDetector
from models.anomaly.lstm_autoencoder import LstmAutoencoderDetector
from models.anomaly.one_class_svm import OneClassSvmDetector

__all__ = [
    "AdaptiveCriticality",
    "CriticalityTracker",
    "AnomalyEnsemble",
    "BatchScores",
    "IsolationForestDetector",
    "LstmAutoencoderDetector",
    "OneClassSvmDetector",
]
