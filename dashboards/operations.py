"""Operational figures for the dashboard, read from the app's live objects: the metrics registry and
the Faust consumer (never recomputed from a database)."""

from __future__ import annotations

import logging
import time
from typing import Any

from streamapp import metrics
from streamapp.metrics import update_consumer_lag

log = logging.getLogger(__name__)


def metric_total(name: str, label: str | None = None) -> dict[str, float]:
    """Sum of a registry metric's samples, by the value of `label` (one entry `""` without a label)."""
    totals: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket", "_count", "_sum")):
                continue
            key = sample.labels.get(label, "") if label else ""
            totals[key] = totals.get(key, 0.0) + float(sample.value)
    return totals


def duplicates_dropped() -> int | None:
    """Duplicates a pipeline counted into any registry series named `*duplicate*`; None when none exists."""
    found: int | None = None
    for family in metrics.REGISTRY.collect():
        if "duplicate" not in family.name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found = (found or 0) + int(sample.value)
    return found


def model_versions() -> dict[str, str]:
    """Model -> version the pipelines declared live through `metrics.set_model_version`."""
    versions: dict[str, str] = {}
    for family in metrics.model_version_info.collect():
        for sample in family.samples:
            if sample.value:
                versions[sample.labels["model"]] = sample.labels["version"]
    return versions


def consumer_lag(app: Any) -> int | None:
    """Total lag over the partitions this worker's streams read (the metrics registry computes it)."""
    return update_consumer_lag(app)


def table_sizes(app: Any) -> dict[str, int]:
    """Keys each Faust table holds in this worker (its partitions only): dedup sets, windows, histories."""
    sizes: dict[str, int] = {}
    for name, table in list(app.tables.items()):
        try:
            sizes[name] = len(table)
        except Exception:  # a table not started yet has no store
            continue
    return sizes


class RateMeter:
    """Per-second rates of monotonically growing totals, from successive readings."""

    def __init__(self) -> None:
        self.previous: dict[str, tuple[float, float]] = {}

    def rate(self, name: str, total: float, now_s: float | None = None) -> float:
        now = now_s if now_s is not None else time.monotonic()
        last = self.previous.get(name)
        self.previous[name] = (now, total)
        if last is None or now <= last[0]:
            return 0.0
        return max(0.0, (total - last[1]) / (now - last[0]))


def operations_sample(app: Any, meter: RateMeter) -> dict[str, Any]:
    """One point of the operations plots: consumed and published per second, consumer lag, IoT e/s."""
    consumed = sum(metric_total("streamapp_consumed").values())
    published = sum(metric_total("streamapp_published").values())
    lag = consumer_lag(app)
    return {
        "time": time.time() * 1000.0,
        "consumed_eps": meter.rate("consumed", consumed),
        "published_eps": meter.rate("published", published),
        "iot_eps": metrics.seed_figures.throughput_eps(horizon_s=10.0),
        "lag": float(lag) if lag is not None else float("nan"),
    }
