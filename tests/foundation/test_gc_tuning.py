"""The collector thresholds the worker and its child processes set (`streamapp.gc_tuning`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streamapp.gc_tuning import raise_thresholds


@pytest.fixture
def python_thresholds() -> Iterator[tuple[int, int, int]]:
    """Python's default thresholds for the test, whatever the process had before (restored after)."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_both_thresholds_are_set_and_the_old_generation_is_kept(python_thresholds: tuple[int, int, int]) -> None:
    raise_thresholds(50_000, 100)
    assert gc.get_threshold() == (50_000, 100, 10)


def test_zero_leaves_that_generations_threshold_as_it_is(python_thresholds: tuple[int, int, int]) -> None:
    raise_thresholds(0, 100)
    assert gc.get_threshold() == (700, 100, 10)
    raise_thresholds(20_000)
    assert gc.get_threshold() == (20_000, 100, 10)
    raise_thresholds(0, 0)
    assert gc.get_threshold() == (20_000, 100, 10)


def test_a_model_load_is_frozen_and_a_replaced_model_in_a_cycle_is_still_freed() -> None:
    """`freeze_loaded_objects` keeps what is alive out of later collections, but first collects what was
    frozen before and is garbage now (an old model whose objects reference each other)."""
    import weakref

    from streamapp.gc_tuning import freeze_loaded_objects

    class Model:
        pass

    gc.unfreeze()  # whatever an earlier test in this process froze
    freeze_loaded_objects()
    assert gc.get_freeze_count() == 0  # a process that never froze its start-up: nothing done
    try:
        gc.freeze()  # as a worker does once started
        old = Model()
        old.self = old  # a cycle: only the collector frees it
        gone = weakref.ref(old)
        freeze_loaded_objects()
        assert gc.get_freeze_count() > 0
        del old
        gc.collect()
        assert gone() is not None  # frozen: no collection looks at it
        new = Model()
        new.self = new
        freeze_loaded_objects()  # the next model's load
        assert gone() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
