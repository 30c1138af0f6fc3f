"""App-wide hooks: sinks are flushed on a timer, before partitions are handed over, and at shutdown."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from streamapp.app import app
from streamapp.child_process import offloading, stop_children
from streamapp.metrics import update_consumer_lag
from streamapp.settings import get_settings
from streamapp.sinks import flush_due_lake_sinks, forget_revoked, write_with_retry
from streamapp.watchdog import StallWatch
from streamapp.watchdog import check as check_for_stalls

log = logging.getLogger(__name__)


@app.task
async def declare_contract_topics() -> None:
    """Create every contract topic at start, outputs nobody consumes yet included (the broker may not auto-create)."""
    from streamapp.topics import CONTRACT_TOPICS

    for topic in CONTRACT_TOPICS:  # retried while the broker is away: a send to a missing topic stalls the producer
        await write_with_retry(f"declare:{topic.get_topic_name()}", topic.maybe_declare)


@app.task
async def start_child_processes() -> None:
    """Start the lake process (and the model process when a model pipeline runs) with the worker, so the
    first flush or batch does not wait seconds for a process to start and import its libraries."""
    from lake import offload
    from streamapp.model_process import load_libraries, model_process
    from streamapp.sinks import lake_writer

    if not offloading():
        return
    starts = [lake_writer.child.run(offload.ready)]
    if {"anomalies", "rul"} & set(get_settings().pipelines.split(",")):
        starts.append(model_process.child.run(load_libraries))
    for outcome in await asyncio.gather(*starts, return_exceptions=True):
        if isinstance(outcome, BaseException):
            log.warning("a child process did not start: %r (it is started again when first needed)", outcome)


@app.timer(interval=0.5)
async def flush_due_sinks() -> None:
    await flush_due_lake_sinks()


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def flush_before_handover(app: Any, revoked: set[Any], **kwargs: Any) -> None:
    await flush_due_lake_sinks(force=True)
    forget_revoked(revoked)


@app.on_before_shutdown.connect  # type: ignore[arg-type]
async def flush_at_shutdown(app: Any, **kwargs: Any) -> None:
    log.info("flushing sinks before shutdown")
    await flush_due_lake_sinks(force=True)
    stop_children()  # after the last flush: its drain waited for the batches still being scored


@app.task
async def announce_security() -> None:
    """Say at start how the web server is exposed, so an open write endpoint is never a surprise."""
    settings = get_settings()
    if settings.api_token:
        log.info("web server on %s:%s; POST endpoints require a bearer token", settings.listen_host, app.conf.web_port)
    else:
        log.warning(
            "STREAMAPP_API_TOKEN is unset: the web server listens on %s only and write endpoints are open there",
            settings.listen_host,
        )


@app.timer(interval=2.0)
async def refresh_consumer_lag() -> None:
    update_consumer_lag(app)


@functools.cache
def _stall_watch() -> StallWatch:
    """The worker's one watch, made at the first round (settings are read at run time, not import)."""
    return StallWatch(get_settings().stall_timeout_s)


@app.timer(interval=2.0)
async def watch_for_stalls() -> None:
    """Partitions this worker stopped reading while messages wait: see `streamapp.watchdog`."""
    if _stall_watch().timeout_s > 0:
        await check_for_stalls(app, _stall_watch())
