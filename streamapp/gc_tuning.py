"""Python's garbage collector tuned for stream work, in the worker and in its child processes.

Each message, row or model input allocates a dozen objects; with Python's default young-generation
threshold (700 allocations) the collector ran every ~60 messages in the worker (~15 % of its CPU), and
in the lake process it walked each flush's rows again and again (a flush of 20,000 anomaly rows took
31 µs a row to write instead of 19).

A micro-batch's objects (events, records, results, rows) live until its tail is done, long enough to
outlive a young collection; Python's middle generation, collected every 10 young collections, then walked
them again while they were still alive: 1.7 s of the anomaly worker's 37 CPU-seconds in a bench run.
Collected every 100 young collections, most of them have been freed by then (0.07 s)."""

from __future__ import annotations

import gc


def raise_thresholds(young: int, middle: int = 0) -> None:
    """Collect the young generation every `young` allocations and the middle one every `middle` young
    collections; 0 leaves that generation's threshold as it is (Python's defaults: 700 and 10)."""
    current_young, current_middle, old = gc.get_threshold()
    gc.set_threshold(young if young > 0 else current_young, middle if middle > 0 else current_middle, old)


def freeze_loaded_objects() -> None:
    """After a model load (its libraries imported on first use: torch, scikit-learn, MLflow), keep what it
    left alive out of later full collections too: each one walked them, a ~100 ms pause of the loop.
    Everything is unfrozen and collected once first (one such pause per model version), so neither the
    load's garbage nor a replaced model caught in a reference cycle stays frozen for good. Only in a
    process that froze its start-up (a worker, a child process), not in one that never tuned its collector."""
    if gc.get_freeze_count() == 0:
        return
    gc.unfreeze()
    freeze_startup_objects()


def freeze_startup_objects() -> None:
    """Keep what start-up left alive (the imported libraries: hundreds of thousands of objects) out of
    every later full collection, which otherwise walks them all and pauses for 100s of ms."""
    gc.collect()
    gc.freeze()
