"""Raw detector scores to [0, 1] by their rank among training scores, so models compare.

A normalised score of 0.95 means "higher than about 95 % of the training scores". Between training
values the empirical CDF is interpolated; beyond them an exponential tail keeps the map strictly
increasing and inside (0, 1), so extreme points still rank above merely high ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_KNOTS = 2001


@dataclass(frozen=True)
class ScoreCalibration:
    """Empirical CDF of raw training scores (knots and cumulative levels) plus the tail scale."""

    knots: np.ndarray
    levels: np.ndarray
    tail_scale: float
    n_train: int

    @classmethod
    def fit(cls, raw_scores: np.ndarray) -> ScoreCalibration:
        raw = np.sort(np.asarray(raw_scores, dtype=np.float64).ravel())
        raw = raw[np.isfinite(raw)]
        if raw.size == 0:
            raise ValueError("cannot calibrate on an empty set of scores")
        n = raw.size
        values, counts = np.unique(raw, return_counts=True)
        # mid-rank plotting positions: P(score <= v) less half a sample, strictly inside (0, 1)
        levels = (np.cumsum(counts) - 0.5 * counts) / n
        if values.size > MAX_KNOTS:
            keep = np.unique(np.linspace(0, values.size - 1, MAX_KNOTS).round().astype(int))
            values, levels = values[keep], levels[keep]
        spread = float(np.std(raw))
        return cls(knots=values, levels=levels, tail_scale=spread if spread > 0 else 1.0, n_train=n)

    def transform(self, raw_scores: np.ndarray) -> np.ndarray:
        """Map raw scores to (0, 1); monotone, so ranking (and ROC-AUC) within a model is unchanged."""
        x = np.asarray(raw_scores, dtype=np.float64)
        out = np.interp(x, self.knots, self.levels)
        low, high = self.knots[0], self.knots[-1]
        above = x > high
        if above.any():
            out[above] = 1.0 - (1.0 - self.levels[-1]) * np.exp(-(x[above] - high) / self.tail_scale)
        below = x < low
        if below.any():
            out[below] = self.levels[0] * np.exp((x[below] - low) / self.tail_scale)
        return np.clip(out, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "knots": self.knots.tolist(),
            "levels": self.levels.tolist(),
            "tail_scale": self.tail_scale,
            "n_train": self.n_train,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreCalibration:
        return cls(
            knots=np.asarray(data["knots"], dtype=np.float64),
            levels=np.asarray(data["levels"], dtype=np.float64),
            tail_scale=float(data["tail_scale"]),
            n_train=int(data["n_train"]),
        )
