"""App-wide hooks: sinks are flushed on a timer, before partitions are handed over, and at shutdown."""

from __future__ import annotations

import logging
from typing import Any

from streamapp.app import app
from streamapp.sinks import flush_due_lake_sinks, forget_revoked

log = logging.getLogger(__name__)


@app.timer(interval=0.5)
async def flush_due_sinks() -> None:
    await flush_due_lake_sinks()


@app.on_partitions_revoked.connect
async def flush_before_handover(app: Any, revoked: set[Any], **kwargs: Any) -> None:
    await flush_due_lake_sinks(force=True)
    forget_revoked(revoked)


@app.on_before_shutdown.connect
async def flush_at_shutdown(app: Any, **kwargs: Any) -> None:
    log.info("flushing sinks before shutdown")
    await flush_due_lake_sinks(force=True)
