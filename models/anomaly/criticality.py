"""Criticality (low / medium / high / critical) from per-asset adaptive thresholds on the final score.

A final score s in [0, 1] is first turned into surprise -log10(1 - s): 1 for "above 90 % of training",
2 for 99 %, 3 for 99.9 %. Each level has a global floor (medium = the anomaly threshold, high and
critical one and two decades rarer) and an asset-relative bar (the asset's EWMA mean of surprise plus
k EWMA standard deviations), and a score must clear both. So an asset whose scores run high for a
while stops raising alarms at every message, while a quiet asset's first jump ranks high.
The per-asset state is a plain dict of numbers, made to live in a Faust table keyed by asset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

LEVELS = ("low", "medium", "high", "critical")
MAX_SURPRISE = 12.0  # caps s == 1.0 (float rounding) so the state stays finite


def surprise(score: float) -> float:
    """-log10(1 - score), capped; 0.9 -> 1, 0.99 -> 2."""
    return min(-math.log10(max(1.0 - score, 10.0**-MAX_SURPRISE)), MAX_SURPRISE)


@dataclass(frozen=True)
class AdaptiveCriticality:
    """Maps a final score to a level against the asset's own recent baseline; the state is a plain dict."""

    anomaly_threshold: float = 0.95  # the ensemble's `1 - contamination`
    alpha: float = 0.05  # EWMA weight of each new score
    k_medium: float = 2.0
    k_high: float = 3.0
    k_critical: float = 4.0
    high_decades: float = 1.0  # high needs a score this many decades rarer than the anomaly threshold
    critical_decades: float = 2.0
    warmup: int = 20  # below this many scores an asset is judged by the global floors only
    min_std: float = 0.1  # in surprise units, so a flat baseline does not make every wobble critical

    def initial_state(self) -> dict[str, float]:
        return {"count": 0.0, "mean": 0.0, "var": 0.0}

    def thresholds(self, state: dict[str, Any] | None) -> dict[str, float]:
        """The current bars (as final scores in [0, 1]) for medium, high and critical for one asset."""
        return {name: 1.0 - 10.0 ** (-bar) for name, bar in zip(LEVELS[1:], self._bars(state), strict=True)}

    @cached_property
    def _floors(self) -> tuple[float, float, float]:
        """The global floors of medium, high and critical, in surprise units (the same for every asset)."""
        base = surprise(self.anomaly_threshold)
        return base, base + self.high_decades, base + self.critical_decades

    def _bars(self, state: dict[str, Any] | None) -> tuple[float, ...]:
        """Medium, high and critical bars in surprise units: the floors, raised by the asset's baseline once
        it has `warmup` scores."""
        floors = self._floors
        if not state or state["count"] < self.warmup:
            return floors
        std = max(math.sqrt(max(state["var"], 0.0)), self.min_std)
        mean = state["mean"]
        return (max(floors[0], mean + self.k_medium * std), max(floors[1], mean + self.k_high * std),
                max(floors[2], mean + self.k_critical * std))

    def level(self, score: float, state: dict[str, Any] | None) -> str:
        """The level of `score` for an asset in `state` (not updated)."""
        reached = "low"
        for name, bar in zip(LEVELS[1:], self._bars(state), strict=True):
            if score >= 1.0 - 10.0 ** (-bar):
                reached = name
        return reached

    def update(self, score: float, state: dict[str, Any] | None) -> dict[str, float]:
        """The asset's state after seeing `score` (a new dict; the old one is left as it was)."""
        current = state or self.initial_state()
        value = surprise(score)
        count = float(current["count"]) + 1.0
        if count == 1.0:
            return {"count": count, "mean": value, "var": 0.0}
        alpha = max(self.alpha, 1.0 / count)  # plain averages until the EWMA has enough history
        delta = value - float(current["mean"])
        mean = float(current["mean"]) + alpha * delta
        var = (1.0 - alpha) * (float(current["var"]) + alpha * delta * delta)
        return {"count": count, "mean": mean, "var": var}

    def assess(self, score: float, state: dict[str, Any] | None) -> tuple[str, dict[str, float]]:
        """Level of `score` against the asset's baseline so far, and the state updated with it."""
        return self.level(score, state), self.update(score, state)


class CriticalityTracker:
    """`AdaptiveCriticality` with the states of many assets in one dict (outside Faust, e.g. benchmarks)."""

    def __init__(self, rule: AdaptiveCriticality, states: dict[str, dict[str, float]] | None = None) -> None:
        self.rule = rule
        self.states: dict[str, dict[str, float]] = dict(states or {})

    def assess(self, asset_id: str, score: float) -> str:
        level, self.states[asset_id] = self.rule.assess(score, self.states.get(asset_id))
        return level

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {asset: dict(state) for asset, state in self.states.items()}
