"""What every anomaly detector of the ensemble shares: standardised inputs, calibrated scores, a
contamination threshold, and a directory format (`meta.json` plus the fitted estimator)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, Self

import joblib
import numpy as np
from sklearn.preprocessing import StandardScaler

from models.anomaly.calibration import ScoreCalibration
from models.base import ProgressCallback, new_version

META_FILE = "meta.json"
ESTIMATOR_FILE = "estimator.joblib"


class ContaminationThreshold:
    """Flags the `contamination` share of training rows that score highest (detectors and the ensemble)."""

    contamination: float

    @property
    def threshold(self) -> float:
        """Normalised score above which a row is anomalous: the (1 - contamination) training quantile."""
        return 1.0 - self.contamination


class CalibratedDetector(ContaminationThreshold):
    """Base of the detectors: `raw_score` is model-specific; `score` maps it to [0, 1] by training rank."""

    model_name: ClassVar[str] = "detector"

    def __init__(self, contamination: float = 0.05) -> None:
        if not 0.0 < contamination < 0.5:
            raise ValueError("contamination must be in (0, 0.5)")
        self.contamination = contamination
        self.feature_names: list[str] = []
        self.version = ""
        self.calibration: ScoreCalibration | None = None

    def _params(self) -> dict[str, Any]:
        """The constructor's hyper-parameters but `contamination` (saved apart), each kept in the attribute
        of its name (as scikit-learn's `get_params` reads them)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name not in ("self", "contamination")}

    @property
    def is_fitted(self) -> bool:
        return self.calibration is not None

    def score(self, X: np.ndarray) -> np.ndarray:
        """Normalised scores in [0, 1]: the fraction of training rows that scored lower."""
        return self._calibration().transform(self.raw_score(X))

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _calibration(self) -> ScoreCalibration:
        if self.calibration is None:
            raise RuntimeError(f"{self.model_name} is not fitted")
        return self.calibration

    def _finish_fit(
        self, feature_names: list[str] | None, n_features: int, calibration_raw: np.ndarray
    ) -> None:
        names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(n_features)]
        if len(names) != n_features:
            raise ValueError(f"{len(names)} feature names for {n_features} columns")
        self.feature_names = names
        self.calibration = ScoreCalibration.fit(calibration_raw)
        self.version = new_version(self.model_name)

    def _meta(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "feature_names": self.feature_names,
            "contamination": self.contamination,
            "calibration": self._calibration().to_dict(),
        }

    def _restore_meta(self, meta: dict[str, Any]) -> None:
        if meta.get("model_name") != self.model_name:
            raise ValueError(f"directory holds {meta.get('model_name')!r}, not {self.model_name!r}")
        self.version = str(meta["version"])
        self.feature_names = list(meta["feature_names"])
        self.calibration = ScoreCalibration.from_dict(meta["calibration"])

    @staticmethod
    def _write_meta(path: Path, meta: dict[str, Any]) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / META_FILE).write_text(json.dumps(meta, indent=1))

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads((path / META_FILE).read_text())
        return meta


class ScaledPyodDetector(CalibratedDetector):
    """A PyOD detector behind a `StandardScaler` fitted on the training rows."""

    def __init__(self, contamination: float = 0.05, max_train_rows: int | None = None, random_state: int = 0):
        super().__init__(contamination)
        self.max_train_rows = max_train_rows
        self.random_state = random_state
        self.scaler: StandardScaler | None = None
        self.detector: Any = None

    def _make_detector(self) -> Any:
        raise NotImplementedError

    def fit(
        self, X: np.ndarray, feature_names: list[str] | None = None, progress: ProgressCallback | None = None
    ) -> Self:
        """Fit on unlabelled rows (a random subset of `max_train_rows` if set); calibrate on all of them."""
        X = as_matrix(X)
        self.scaler = StandardScaler().fit(X)
        scaled = self.scaler.transform(X)
        train = scaled
        if self.max_train_rows is not None and len(scaled) > self.max_train_rows:
            rows = np.random.default_rng(self.random_state).choice(
                len(scaled), self.max_train_rows, replace=False
            )
            train = scaled[np.sort(rows)]
        self.detector = self._make_detector().fit(train)
        self._finish_fit(feature_names, X.shape[1], self.detector.decision_function(scaled))
        if progress is not None:
            progress(1, 1)
        return self

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        if self.scaler is None or self.detector is None:
            raise RuntimeError(f"{self.model_name} is not fitted")
        return np.asarray(
            self.detector.decision_function(self.scaler.transform(as_matrix(X))), dtype=np.float64
        )

    def estimator(self) -> Any:
        """The fitted scikit-learn estimator inside (for MLflow's sklearn flavour)."""
        return getattr(self.detector, "detector_", self.detector)

    def save(self, path: Path) -> None:
        self._write_meta(path, {**self._meta(), "params": self._params()})
        joblib.dump({"scaler": self.scaler, "detector": self.detector}, path / ESTIMATOR_FILE)

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = cls._read_meta(path)
        model = cls(contamination=float(meta["contamination"]), **meta["params"])
        model._restore_meta(meta)
        fitted = joblib.load(path / ESTIMATOR_FILE)
        model.scaler, model.detector = fitted["scaler"], fitted["detector"]
        return model


def as_matrix(X: np.ndarray) -> np.ndarray:
    """Rows as a finite 2-D float array, or a ValueError saying what is wrong."""
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D array of rows, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("rows contain NaN or infinite values")
    return matrix
