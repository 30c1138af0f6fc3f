"""Isolation Forest (PyOD `IForest`) on standardised features, with calibrated [0, 1] scores."""

from __future__ import annotations

from typing import Any

from pyod.models.iforest import IForest

from models.anomaly.detector import ScaledPyodDetector


class IsolationForestDetector(ScaledPyodDetector):
    """Isolates rows by random splits; rows isolated in few splits are anomalous."""

    model_name = "isolation_forest"

    def __init__(
        self,
        contamination: float = 0.05,
        n_estimators: int = 300,
        max_train_rows: int | None = None,
        random_state: int = 0,
    ) -> None:
        super().__init__(contamination, max_train_rows, random_state)
        self.n_estimators = n_estimators

    def _make_detector(self) -> Any:
        return IForest(
            n_estimators=self.n_estimators, contamination=self.contamination, random_state=self.random_state
        )
