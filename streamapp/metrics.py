"""The metrics registry: Prometheus series for `/metrics` and the seed's JSON figures for `/metrics.json`."""

from __future__ import annotations

import time
from collections import Counter as TallyCounter
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

consumed_total = Counter("streamapp_consumed_total", "Messages consumed", ["topic"], registry=REGISTRY)
published_total = Counter("streamapp_published_total", "Messages published", ["topic"], registry=REGISTRY)
errors_total = Counter("streamapp_errors_total", "Processing errors", ["agent"], registry=REGISTRY)
dead_letters_total = Counter(
    "streamapp_dead_letters_total", "Messages sent to dead-letters", ["agent", "reason"], registry=REGISTRY
)
ingested_total = Counter(
    "streamapp_ingested_total", "HTTP ingestion outcomes", ["outcome"], registry=REGISTRY
)
alerts_total = Counter("streamapp_alerts_total", "Vital alerts raised", ["alert_type"], registry=REGISTRY)
ingest_to_alert_seconds = Histogram(
    "streamapp_ingest_to_alert_seconds",
    "Latency from HTTP ingestion to the alert being published",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
processing_seconds = Histogram(
    "streamapp_batch_processing_seconds",
    "Time to process one micro-batch",
    ["agent"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
batch_size = Histogram(
    "streamapp_batch_size", "Events per micro-batch", ["agent"],
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000), registry=REGISTRY,
)
consumer_lag = Gauge("streamapp_consumer_lag", "Consumer lag in messages", ["topic", "partition"], registry=REGISTRY)
model_version_info = Gauge(
    "streamapp_model_version_info", "Model version in use (value 1)", ["model", "version"], registry=REGISTRY
)
sink_rows_total = Counter("streamapp_sink_rows_total", "Rows written by sinks", ["sink"], registry=REGISTRY)
duplicates_skipped_total = Counter(
    "streamapp_duplicates_skipped_total", "Messages skipped as copies of one already stored (same id)", ["agent"],
    registry=REGISTRY,
)
sink_failures_total = Counter(
    "streamapp_sink_failures_total", "Failed sink flushes (retried)", ["sink"], registry=REGISTRY
)


@dataclass
class SeedFigures:
    """The JSON figures of the IoT seed, kept over a bounded window of recent events."""

    started_at: float = field(default_factory=time.time)
    processed_messages: int = 0
    valid_messages: int = 0
    invalid_messages: int = 0
    alerts_by_type: TallyCounter[str] = field(default_factory=TallyCounter)
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    processed_at: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def record_processed(self, count: int = 1) -> None:
        now = time.time()
        self.processed_messages += count
        self.processed_at.extend([now] * min(count, 1000))

    def record_validation(self, valid: int, invalid: int) -> None:
        self.valid_messages += valid
        self.invalid_messages += invalid

    def record_alert(self, alert_type: str, latency_s: float | None) -> None:
        self.alerts_by_type[alert_type] += 1
        alerts_total.labels(alert_type).inc()
        if latency_s is not None and latency_s >= 0:
            self.latencies_s.append(latency_s)
            ingest_to_alert_seconds.observe(latency_s)

    def throughput_eps(self, horizon_s: float = 60.0) -> float:
        now = time.time()
        recent = sum(1 for stamp in self.processed_at if now - stamp <= horizon_s)
        span = min(horizon_s, max(now - self.started_at, 1e-9))
        return recent / span

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
        return ordered[index]

    def as_json(self) -> dict[str, object]:
        seen = self.valid_messages + self.invalid_messages
        return {
            "processed_messages": self.processed_messages,
            "latency_p50_s": self.percentile(50),
            "latency_p95_s": self.percentile(95),
            "latency_p99_s": self.percentile(99),
            "throughput_eps": round(self.throughput_eps(), 3),
            "valid_pct": round(100.0 * self.valid_messages / seen, 2) if seen else 100.0,
            "alerts_by_type": dict(self.alerts_by_type),
            "api_uptime_s": round(time.time() - self.started_at, 3),
            "dead_letters": int(sum(sample.value for sample in _samples(dead_letters_total, "_total"))),
        }


def _samples(metric: Counter, suffix: str) -> list:
    return [s for family in metric.collect() for s in family.samples if s.name.endswith(suffix)]


def dead_letters_by_reason() -> dict[str, int]:
    tally: TallyCounter[str] = TallyCounter()
    for sample in _samples(dead_letters_total, "_total"):
        tally[sample.labels["reason"]] += int(sample.value)
    return dict(tally)


def set_model_version(model: str, version: str) -> None:
    """Expose which version of a model is live; the previous version's series is removed."""
    for family in model_version_info.collect():
        for sample in family.samples:
            if sample.labels.get("model") == model and sample.labels.get("version") != version:
                model_version_info.remove(model, sample.labels["version"])
    model_version_info.labels(model, version).set(1)


seed_figures = SeedFigures()


def consumer_lag_by_partition(app: Any) -> dict[tuple[str, int], int] | None:
    """Messages waiting behind what this worker's streams have read, per partition they read.

    Partitions no stream reads (table changelogs) are left out: only recovery reads them.
    None while the consumer is not started (or is being rebuilt during a rebalance)."""
    try:
        consumer = app.consumer
        assigned = consumer.assignment()
        read = dict(app.monitor.tp_read_offsets or {})
    except Exception:
        return None
    lag: dict[tuple[str, int], int] = {}
    for tp in assigned:
        if tp not in read:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # no fetch for this partition yet
            continue
        if highwater is not None and highwater >= 0:
            lag[(tp.topic, tp.partition)] = max(0, int(highwater) - int(read[tp]) - 1)
    return lag


def update_consumer_lag(app: Any) -> int | None:
    """Refresh the lag gauge from the consumer; returns the total."""
    lag = consumer_lag_by_partition(app)
    if lag is None:
        return None
    for (topic, partition), waiting in lag.items():
        consumer_lag.labels(topic, str(partition)).set(waiting)
    return sum(lag.values())
