"""The README's Performance notes, written beside the bench table from the figures of the same run."""

from __future__ import annotations

from bench.harness import BenchRun


def performance_notes(run: BenchRun) -> str:
    return ""
