"""The tail of an agent's micro-batches (waiting for the broker, database writes, acks) as tasks, so the
agent folds or scores its next batch meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from streamapp.sinks import drain_before_forced_flush


class BackgroundBatches:
    """The tail of an agent's batches (waiting for the broker, database writes, acks) run as tasks while
    the agent goes on with its next batch: at most `limit` at once. A task's error surfaces in the agent
    at its next `submit` (as if the batch had failed inline); a forced flush waits for all of them."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Future[None]] = set()
        self._failure: BaseException | None = None
        drain_before_forced_flush(self.drain)

    def _done(self, task: asyncio.Future[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def submit(self, tail: Awaitable[None]) -> None:
        self._raise_failure()
        while len(self.tasks) >= self.limit:
            await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)
            self._raise_failure()
        task = asyncio.ensure_future(tail)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.wait(set(self.tasks))
