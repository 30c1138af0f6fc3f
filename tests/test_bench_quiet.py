"""The bench waits for a quiet machine before each benchmark, and says so when it waited or gave up."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from bench import harness


def busy_shares(monkeypatch: pytest.MonkeyPatch, percents: list[float]) -> Iterator[float]:
    readings = iter([0.0, *percents])  # the first call only starts the measurement
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: next(readings))
    monkeypatch.setattr(harness, "QUIET_SAMPLE_S", 0.01)
    return readings


async def test_a_quiet_machine_is_measured_at_once_without_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    busy_shares(monkeypatch, [5.0])
    outcome = harness.Outcome("x", "x")
    await harness.wait_until_quiet(outcome)
    assert outcome.notes == []


async def test_a_busy_machine_is_waited_for_and_the_wait_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = busy_shares(monkeypatch, [90.0, 60.0, 15.0, 99.0])
    outcome = harness.Outcome("x", "x")
    await harness.wait_until_quiet(outcome)
    assert next(readings) == 99.0  # it stopped sampling at the first quiet reading
    assert len(outcome.notes) == 1 and outcome.notes[0].startswith("waited ")


async def test_a_machine_that_stays_busy_is_measured_anyway_and_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    busy_shares(monkeypatch, [95.0] * 1000)
    monkeypatch.setattr(harness, "QUIET_WAIT_MAX_S", 0.05)
    outcome = harness.Outcome("x", "x")
    await harness.wait_until_quiet(outcome)
    assert len(outcome.notes) == 1 and "stayed busy (95% of its CPUs)" in outcome.notes[0]
