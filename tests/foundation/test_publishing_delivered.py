"""`publishing.delivered`: waits for every broker confirmation, whatever order they resolve in, and
raises a failure without leaving other failures unretrieved."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from streamapp.publishing import delivered


async def test_it_waits_for_every_confirmation_not_only_the_last() -> None:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(5)]
    futures[-1].set_result("last")  # the last is done first; an earlier one is still pending
    waiting = asyncio.ensure_future(delivered(futures))
    for index in (0, 2, 3):
        futures[index].set_result(index)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    futures[1].set_result(1)
    await asyncio.wait_for(waiting, 1)


async def test_a_failure_is_raised_and_the_others_are_retrieved() -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    futures = [loop.create_future() for _ in range(4)]
    waiting = asyncio.ensure_future(delivered(futures))
    futures[3].set_result(None)
    futures[1].set_exception(RuntimeError("refused"))
    futures[0].set_result(None)
    futures[2].set_exception(RuntimeError("also refused"))
    with pytest.raises(RuntimeError, match="refused"):
        await asyncio.wait_for(waiting, 1)
    await asyncio.sleep(0)
    del futures, waiting
    gc.collect()
    await asyncio.sleep(0)
    assert unretrieved == []


async def test_other_awaitables_and_nothing_at_all() -> None:
    async def confirmation() -> str:
        await asyncio.sleep(0)
        return "ok"

    await delivered([])
    await delivered([confirmation(), confirmation()])
