"""One-class SVM (PyOD `OCSVM`, RBF kernel) on standardised features, with calibrated [0, 1] scores."""

from __future__ import annotations

from typing import Any

from pyod.models.ocsvm import OCSVM

from models.anomaly.detector import ScaledPyodDetector


class OneClassSvmDetector(ScaledPyodDetector):
    """Learns a boundary around the bulk of the training rows; distance outside it is the score.

    Kernel SVMs grow quadratically with rows, so fitting uses a seeded subset of `max_train_rows`.
    """

    model_name = "one_class_svm"

    def __init__(
        self,
        contamination: float = 0.05,
        nu: float = 0.5,
        gamma: str | float = "auto",
        max_train_rows: int | None = 5000,
        random_state: int = 0,
    ) -> None:
        super().__init__(contamination, max_train_rows, random_state)
        self.nu = nu
        self.gamma = gamma

    def _make_detector(self) -> Any:
        return OCSVM(kernel="rbf", nu=self.nu, gamma=self.gamma, contamination=self.contamination)
