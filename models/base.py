"""The one small surface every model of streamapp shares (anomaly, RUL, returns).

Models take NumPy arrays, know nothing of Kafka or databases, and save to / load from a directory
so the registry can log that directory as-is.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

# progress(done, total): called by long fits so a CLI can draw a bar; must be thread-safe to call
ProgressCallback = Callable[[int, int], None]


@runtime_checkable
class StreamModel(Protocol):
    """`fit` on arrays, `score` (anomaly) or `predict` (regression/classification), `save`/`load` a directory."""

    version: str
    feature_names: list[str]

    def fit(self, X: np.ndarray, *args: Any, **kwargs: Any) -> Self: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


@runtime_checkable
class Scorer(StreamModel, Protocol):
    """A model whose output is a score per row (higher = more anomalous / more likely)."""

    def score(self, X: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Predictor(StreamModel, Protocol):
    """A model whose output is a prediction per row (RUL, return probability)."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def missing_features(feature_names: list[str], features: dict[str, Any]) -> list[str]:
    """Names the model needs that `features` lacks or holds as non-finite numbers; never zero-filled."""
    missing: list[str] = []
    for name in feature_names:
        value = features.get(name)
        if type(value) is float and value - value == 0.0:  # the usual case, a finite float, checked without calls
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            missing.append(name)
    return missing


def feature_matrix(feature_names: list[str], rows: list[dict[str, Any]]) -> np.ndarray:
    """Rows of name -> number as a float matrix in `feature_names` order (check `missing_features` first)."""
    return np.asarray(
        [[float(row[name]) for name in feature_names] for row in rows], dtype=np.float64
    ).reshape(len(rows), len(feature_names))


def new_version(prefix: str) -> str:
    """A fresh, sortable model version: `<prefix>-<UTC time>-<random hex>`, set when a model is fitted."""
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
