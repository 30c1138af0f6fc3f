"""Blocking work that may be abandoned at shutdown (registry polls, model loads) runs in daemon threads,
so a slow MLflow store never holds a stopping worker past its deadline."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_daemon_thread(function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run `function(*args)` in a new daemon thread; the returned future resolves on the calling loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, None, exc)
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name=f"bg-{getattr(function, '__name__', 'work')}", daemon=True).start()
    return future
