"""A child process for blocking work that holds the GIL, so it runs on another core than the event loop.

A thread executor keeps the loop responsive only for work that releases the GIL; model scoring (Python
loops in scikit-learn, window building) and lake writes (rows to Arrow columns, Parquet writer calls)
mostly do not, so in a thread they share one core with the loop and stretch its latency. A
`ChildProcess` is a pool of one "spawn" process (no copy of the worker's threads or sockets): calls run
there one at a time, in the order they were made; a child that died is replaced at the next call, which
is retried once. Functions and arguments cross by pickling: pass module-level functions and plain data.

`STREAMAPP_CHILD_PROCESSES=false` runs every call in a thread of the loop's executor instead.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from streamapp.gc_tuning import freeze_startup_objects, raise_thresholds
from streamapp.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
_children: list[ChildProcess] = []


def offloading() -> bool:
    """Whether blocking work goes to child processes (else to threads)."""
    return get_settings().child_processes


def one_torch_thread() -> None:
    """A model child's start: torch on one thread (the worker's loop has the other core)."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


BACKGROUND_NICENESS = 10  # added to a background child's scheduling niceness (Linux: 0 is the default, 19 the lowest)


def background_priority() -> None:
    """A background child's start (the lake writer): a lower CPU priority than the worker, so that on a
    busy machine its bursts (a flush writes thousands of rows to Parquet for a second or more) give the
    cores to the event loop, the broker and the database first: the latency path. Its writes only gate
    the acks, which wait for it anyway."""
    import os

    try:
        os.nice(BACKGROUND_NICENESS)
    except OSError:  # pragma: no cover - a platform without it
        pass


def _start_child(initializer: Callable[[], None] | None, gc_thresholds: tuple[int, int]) -> None:
    """In the child, first: the worker's collector settings (rows and model inputs arrive by the thousand),
    then the child's own start (e.g. torch's threads), then what start-up left alive is frozen."""
    raise_thresholds(*gc_thresholds)
    if initializer is not None:
        initializer()
    freeze_startup_objects()


class ChildProcess:
    """One child process, started on first use, replaced when it dies, stopped at worker shutdown."""

    def __init__(self, name: str, initializer: Callable[[], None] | None = None) -> None:
        self.name = name
        self.initializer = initializer
        self._pool: ProcessPoolExecutor | None = None
        self.generation = 0  # bumped each time a new child starts (state held there is gone)
        _children.append(self)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_child,
                initargs=(self.initializer, (get_settings().gc_young_threshold, get_settings().gc_middle_threshold)),
            )
            self.generation += 1
        return self._pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the child; a child that died on the way is replaced and the call made again once."""
        loop = asyncio.get_running_loop()
        if not offloading():
            return await loop.run_in_executor(None, fn, *args)
        try:
            return await loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:
            log.warning("the %s process died; starting a new one", self.name)
            self.stop()
            return await loop.run_in_executor(self._executor(), fn, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """`fn(*args)` in the running child, after the calls already made; nothing when no child runs."""
        if self._pool is None:
            return
        try:
            future: Future[Any] = self._pool.submit(fn, *args)
        except (BrokenProcessPool, RuntimeError):
            self.stop()
            return
        future.add_done_callback(self._report)

    def _report(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("a call in the %s process failed: %r", self.name, future.exception())

    def stop(self) -> None:
        """Stop the child (a later call starts a new one)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def stop_children() -> None:
    """Stop every child process (worker shutdown, after the sinks' last flush)."""
    for child in _children:
        child.stop()
