"""The micro-batch size adapts to the load within the latency budget: it doubles while batches fill up
quickly, halves when a batch is slow or leaves under-filled, and stays between its bounds."""

from __future__ import annotations

import pytest

from streamapp.batching import AdaptiveBatchSize


def test_the_size_doubles_under_load_up_to_the_maximum() -> None:
    sizer = AdaptiveBatchSize(minimum=16, maximum=100, budget_s=0.25)
    sizes = [sizer.update(sizer.size, 0.01) for _ in range(6)]  # full batches, processed well within budget
    assert sizes == [32, 64, 100, 100, 100, 100]


def test_a_slow_batch_halves_the_size_and_an_idle_one_too_down_to_the_minimum() -> None:
    sizer = AdaptiveBatchSize(minimum=16, maximum=1024, budget_s=0.25)
    sizer.size = 1024
    assert sizer.update(1024, 0.2) == 512  # took more than half the budget
    assert sizer.update(0, 0.001) == 256  # left under-filled: the load dropped
    for _ in range(10):
        sizer.update(0, 0.001)
    assert sizer.size == 16


def test_a_full_batch_near_the_budget_keeps_its_size() -> None:
    sizer = AdaptiveBatchSize(minimum=16, maximum=1024, budget_s=0.25)
    sizer.size = 256
    assert sizer.update(256, 0.1) == 256  # between a quarter and a half of the budget: neither grows nor shrinks


def test_the_maximum_comes_from_the_settings_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamapp.settings import get_settings

    monkeypatch.setenv("STREAMAPP_BATCH_MAX_SIZE", "300")
    monkeypatch.setenv("STREAMAPP_LATENCY_BUDGET_MS", "100")
    get_settings.cache_clear()
    try:
        sizer = AdaptiveBatchSize()
        assert (sizer.maximum, sizer.budget_s) == (300, 0.1)
    finally:
        monkeypatch.delenv("STREAMAPP_BATCH_MAX_SIZE")
        monkeypatch.delenv("STREAMAPP_LATENCY_BUDGET_MS")
        get_settings.cache_clear()
