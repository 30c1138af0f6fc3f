"""The anomaly ensemble of the seed: Isolation Forest, one-class SVM and LSTM autoencoder, scored together.

Each member's score is its rank among training scores (0.95 = above 95 % of training), so the three
are comparable; the final score combines them and is itself re-ranked against training, so every
threshold is the same `1 - contamination` quantile. The combination is the max by default: on the
ADBench sets the mean fell up to 0.04 ROC-AUC below the best member, the max stays within 0.015
(`bench/eval_anomaly.py`). Rows whose asset has less history than the LSTM
window are scored by the LSTM on a padded window, flagged, and left out of the final score.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np

from models.anomaly.calibration import ScoreCalibration
from models.anomaly.detector import ContaminationThreshold, as_matrix
from models.anomaly.isolation_forest import IsolationForestDetector
from models.anomaly.lstm_autoencoder import (
    MIN_CALIBRATION_WINDOWS,
    LstmAutoencoderDetector,
    sliding_windows,
    stack_histories,
)
from models.anomaly.one_class_svm import OneClassSvmDetector
from models.base import ProgressCallback, feature_matrix, missing_features, new_version

ENSEMBLE_FILE = "ensemble.json"
Combination = Literal["mean", "max"]
ROW_MODELS = ("isolation_forest", "one_class_svm")
WINDOW_MODEL = "lstm_autoencoder"
MODEL_NAMES = (*ROW_MODELS, WINDOW_MODEL)

_COMBINE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda stacked: stacked.mean(axis=0),
    "max": lambda stacked: stacked.max(axis=0),
}


@dataclass(frozen=True)
class BatchScores:
    """Scores of n rows: per model (normalised, threshold, verdict), the final score and verdict."""

    scores: dict[str, np.ndarray]
    thresholds: dict[str, float]
    verdicts: dict[str, np.ndarray]
    final_score: np.ndarray
    threshold: float
    is_anomaly: np.ndarray
    lstm_padded: np.ndarray  # the LSTM saw fewer than `window` real rows: its score is reported, not used

    def __len__(self) -> int:
        return len(self.final_score)

    def row(self, i: int) -> dict[str, Any]:
        """Row i in the shape of the contract's `AnomalyResult` (scores, final_score, is_anomaly) plus the flag."""
        return {
            "scores": [
                {
                    "score": float(self.scores[name][i]),
                    "model_name": name,
                    "threshold": self.thresholds[name],
                    "is_anomaly": bool(self.verdicts[name][i]),
                }
                for name in MODEL_NAMES
            ],
            "final_score": float(self.final_score[i]),
            "is_anomaly": bool(self.is_anomaly[i]),
            "lstm_padded": bool(self.lstm_padded[i]),
        }

    def rows(self) -> list[dict[str, Any]]:
        """Every `row`, with the arrays read once (`tolist`) rather than element by element."""
        scores = {name: self.scores[name].tolist() for name in MODEL_NAMES}
        verdicts = {name: self.verdicts[name].tolist() for name in MODEL_NAMES}
        thresholds = {name: self.thresholds[name] for name in MODEL_NAMES}
        return [
            {
                "scores": [
                    {"score": scores[name][i], "model_name": name, "threshold": thresholds[name],
                     "is_anomaly": verdicts[name][i]}
                    for name in MODEL_NAMES
                ],
                "final_score": final_score, "is_anomaly": is_anomaly, "lstm_padded": padded,
            }
            for i, (final_score, is_anomaly, padded) in enumerate(zip(
                self.final_score.tolist(), self.is_anomaly.tolist(), self.lstm_padded.tolist(), strict=True
            ))
        ]


class AnomalyEnsemble(ContaminationThreshold):
    """Three detectors fitted on the same unlabelled rows, with one comparable [0, 1] scale."""

    def __init__(
        self,
        contamination: float = 0.05,
        combination: Combination = "max",
        isolation_forest: IsolationForestDetector | None = None,
        one_class_svm: OneClassSvmDetector | None = None,
        lstm_autoencoder: LstmAutoencoderDetector | None = None,
    ) -> None:
        if combination not in _COMBINE:
            raise ValueError(f"combination must be one of {sorted(_COMBINE)}")
        self.contamination = contamination
        self.combination: Combination = combination
        self.isolation_forest = isolation_forest or IsolationForestDetector(contamination=contamination)
        self.one_class_svm = one_class_svm or OneClassSvmDetector(contamination=contamination)
        self.lstm_autoencoder = lstm_autoencoder or LstmAutoencoderDetector(contamination=contamination)
        self.feature_names: list[str] = []
        self.version = ""
        self.final_calibration: ScoreCalibration | None = None  # all three members
        self.short_history_calibration: ScoreCalibration | None = None  # row models only

    @property
    def window(self) -> int:
        return self.lstm_autoencoder.window

    @property
    def is_fitted(self) -> bool:
        return self.final_calibration is not None

    def members(self) -> dict[str, IsolationForestDetector | OneClassSvmDetector | LstmAutoencoderDetector]:
        return {
            "isolation_forest": self.isolation_forest,
            "one_class_svm": self.one_class_svm,
            "lstm_autoencoder": self.lstm_autoencoder,
        }

    # ---- features --------------------------------------------------------------------------------
    def check_features(self, features: dict[str, Any]) -> list[str]:
        """The feature names the models need that `features` lacks (or holds as non-numbers)."""
        return missing_features(self.feature_names, features)

    def vectors(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """Feature dicts to a matrix in training order; raises KeyError naming what is missing."""
        for features in rows:
            missing = self.check_features(features)
            if missing:
                raise KeyError(f"missing features: {', '.join(missing)}")
        return feature_matrix(self.feature_names, list(rows))

    # ---- training --------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        feature_names: list[str],
        groups: Sequence[Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> Self:
        """Fit all members on unlabelled rows (time-ordered per asset in `groups`); blocking, thread-safe to run
        in an executor. `progress(done, total)` ticks once per row model and once per LSTM epoch."""
        rows = as_matrix(X)
        if len(feature_names) != rows.shape[1]:
            raise ValueError(f"{len(feature_names)} feature names for {rows.shape[1]} columns")
        ticker = _Ticker(progress, total=2 + self.lstm_autoencoder.epochs)
        self.isolation_forest.fit(rows, feature_names, progress=ticker.step(0))
        self.one_class_svm.fit(rows, feature_names, progress=ticker.step(1))
        self.lstm_autoencoder.fit(rows, feature_names, groups=groups, progress=ticker.step(2))
        windows = sliding_windows(rows, self.window, groups)
        member_scores = self._member_scores(rows, windows)
        held_out = self.lstm_autoencoder.validation_index_
        calibration_rows = held_out if len(held_out) >= MIN_CALIBRATION_WINDOWS else np.arange(len(rows))
        combine = _COMBINE[self.combination]
        stacked = np.stack([member_scores[name][calibration_rows] for name in MODEL_NAMES])
        self.final_calibration = ScoreCalibration.fit(combine(stacked))
        self.short_history_calibration = ScoreCalibration.fit(combine(stacked[: len(ROW_MODELS)]))
        self.feature_names = list(feature_names)
        self.version = new_version("anomaly-ensemble")
        return self

    def _member_scores(self, rows: np.ndarray, windows: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "isolation_forest": self.isolation_forest.score(rows),
            "one_class_svm": self.one_class_svm.score(rows),
            "lstm_autoencoder": self.lstm_autoencoder.score(windows),
        }

    # ---- scoring ---------------------------------------------------------------------------------
    def score_batch(self, X_rows: np.ndarray, windows: Sequence[np.ndarray] | None = None) -> BatchScores:
        """Score n current rows; `windows[i]` is asset i's recent rows, oldest first, ending with row i
        (None: no history, every LSTM window is padded and flagged)."""
        if self.final_calibration is None or self.short_history_calibration is None:
            raise RuntimeError("the anomaly ensemble is not fitted")
        rows = as_matrix(X_rows)
        histories = list(rows[:, None, :]) if windows is None else list(windows)
        if len(histories) != len(rows):
            raise ValueError("one window per row is needed")
        stacked_windows, padded = stack_histories(histories, self.window)
        member_scores = self._member_scores(rows, stacked_windows)
        combine = _COMBINE[self.combination]
        stacked = np.stack([member_scores[name] for name in MODEL_NAMES])
        final = self.final_calibration.transform(combine(stacked))
        if padded.any():
            short = self.short_history_calibration.transform(combine(stacked[: len(ROW_MODELS)]))
            final = np.where(padded, short, final)
        thresholds = {name: model.threshold for name, model in self.members().items()}
        verdicts = {name: member_scores[name] > thresholds[name] for name in MODEL_NAMES}
        verdicts[WINDOW_MODEL] = verdicts[WINDOW_MODEL] & ~padded
        return BatchScores(
            scores=member_scores,
            thresholds=thresholds,
            verdicts=verdicts,
            final_score=final,
            threshold=self.threshold,
            is_anomaly=final > self.threshold,
            lstm_padded=padded,
        )

    def score(self, X: np.ndarray) -> np.ndarray:
        """Final scores of rows with no history (the `StreamModel` surface); use `score_batch` for windows."""
        return self.score_batch(X).final_score

    # ---- persistence -----------------------------------------------------------------------------
    def flavor_objects(self) -> dict[str, Any]:
        """The fitted estimators for MLflow's sklearn / pytorch flavours."""
        return {
            "isolation_forest": self.isolation_forest.estimator(),
            "one_class_svm": self.one_class_svm.estimator(),
            "lstm_autoencoder": self.lstm_autoencoder.module(),
        }

    def params(self) -> dict[str, Any]:
        """Flat hyper-parameters for the registry."""
        flat: dict[str, Any] = {"contamination": self.contamination, "combination": self.combination}
        for name, model in self.members().items():
            for key, value in model._params().items():
                flat[f"{name}.{key}"] = value
        return flat

    def save(self, path: Path) -> None:
        if self.final_calibration is None or self.short_history_calibration is None:
            raise RuntimeError("the anomaly ensemble is not fitted")
        path.mkdir(parents=True, exist_ok=True)
        for name, model in self.members().items():
            model.save(path / name)
        meta = {
            "version": self.version,
            "feature_names": self.feature_names,
            "contamination": self.contamination,
            "combination": self.combination,
            "final_calibration": self.final_calibration.to_dict(),
            "short_history_calibration": self.short_history_calibration.to_dict(),
        }
        (path / ENSEMBLE_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = json.loads((path / ENSEMBLE_FILE).read_text())
        ensemble = cls(
            contamination=float(meta["contamination"]),
            combination=meta["combination"],
            isolation_forest=IsolationForestDetector.load(path / "isolation_forest"),
            one_class_svm=OneClassSvmDetector.load(path / "one_class_svm"),
            lstm_autoencoder=LstmAutoencoderDetector.load(path / "lstm_autoencoder"),
        )
        ensemble.version = str(meta["version"])
        ensemble.feature_names = list(meta["feature_names"])
        ensemble.final_calibration = ScoreCalibration.from_dict(meta["final_calibration"])
        ensemble.short_history_calibration = ScoreCalibration.from_dict(meta["short_history_calibration"])
        return ensemble


class _Ticker:
    """Turns each member's own progress into one overall `progress(done, total)`; safe across threads."""

    def __init__(self, progress: ProgressCallback | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self._lock = threading.Lock()

    def step(self, offset: int) -> ProgressCallback:
        def report(done: int, total: int) -> None:
            if self.progress is not None:
                with self._lock:
                    self.progress(min(offset + done, self.total), self.total)

        return report
