"""Stalled-consumer watchdog: partitions with messages waiting that this worker stopped reading.

Faust can stop fetching after a broker restart or a rebalance while everything looks healthy (Worker
ready, heartbeats fine, nothing read: faust-streaming issues #175 and #523). The watchdog compares the
broker's end offsets with what this worker's streams have read; a partition that has messages waiting
and made no progress for `stall_timeout_s` is a stall. The remedy climbs a ladder, one rung per
further timeout: seek the stalled partitions back to the last offset this worker delivered (delivered
once more) and resume Faust's flow and the partitions, then rejoin the group (a rebalance seeks every
stream back to its committed offset), again at every further timeout while `/health` names the stall.

The seek is the usual cure. Seen after a broker restart: aiokafka had fetched a partition to its end
(its position past every waiting message) while Faust had delivered none of those messages (dropped by
Faust's consumer around a rebalance), so nothing was ever fetched again; a rebalance does not always
repair it. A seek to an offset already delivered repeats messages (at-least-once), it never skips one.
An agent busy with a batch (a slow sink, a send waiting for a new partition leader) is not a stall."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from streamapp import health
from streamapp.batching import batch_in_flight_since, longest_batch_in_flight_s
from streamapp.fast_transport import partitions_named, seek_back

log = logging.getLogger(__name__)
COMPONENT = "consumer"
BUSY_HORIZON = 10  # a batch running longer than this many timeouts no longer counts as busy


@dataclass
class Progress:
    """Where one partition's reading stood when it last moved."""

    read: int | None
    since: float


@dataclass
class StallWatch:
    """Per-partition progress and the remedies tried since the current stall began."""

    timeout_s: float
    progress: dict[Any, Progress] = field(default_factory=dict)
    remedies_tried: int = 0
    last_remedy_at: float = 0.0
    long_batch_reported_at: float = 0.0  # how long the batch had run when it was last reported

    def stalled(self, read: dict[Any, int | None], waiting: dict[Any, bool], now: float) -> list[Any]:
        """Partitions with messages waiting whose read offset has not moved for `timeout_s`."""
        for tp in list(self.progress):
            if tp not in read:
                del self.progress[tp]  # no longer ours
        found = []
        for tp, offset in read.items():
            known = self.progress.get(tp)
            if known is None or known.read != offset or not waiting.get(tp, False):
                self.progress[tp] = Progress(offset, now)
                continue
            if now - known.since >= self.timeout_s:
                found.append(tp)
        if not found:
            self.remedies_tried = 0
        return found

    def remedy_due(self, now: float) -> bool:
        return now - self.last_remedy_at >= self.timeout_s


def _diagnosis(app: Any, stalled: list[Any]) -> str:
    consumer = app.consumer
    paused = set(getattr(consumer, "_paused_partitions", set()))
    active = set(consumer._get_active_partitions()) if hasattr(consumer, "_get_active_partitions") else set()
    fetch_task = None
    try:
        fetch_task = consumer._thread._ensure_consumer()._fetcher._fetch_task
    except Exception:  # consumer being rebuilt
        pass
    return (f"flow_active={consumer.flow_active} rebalancing={app.rebalancing} "
            f"paused={sorted(str(tp) for tp in paused & set(stalled))} "
            f"inactive={sorted(str(tp) for tp in set(stalled) - active)} "
            f"fetch_task_done={fetch_task.done() if fetch_task is not None else None} "
            f"fetch_state={_fetch_state(app, stalled)}")


def _fetch_state(app: Any, stalled: list[Any]) -> str:
    """What aiokafka's fetcher holds for each stalled partition: its position, whether fetched records wait
    undelivered, whether a request to its node is in flight (why a partition would not be fetched again)."""
    consumer = app.consumer
    try:
        kafka_consumer = consumer._thread._ensure_consumer()
        fetcher = kafka_consumer._fetcher
        assignment = fetcher._subscriptions.subscription.assignment
    except Exception as exc:  # consumer being rebuilt
        return f"unavailable ({exc!r})"
    parts = []
    for tp in stalled:
        try:
            state = assignment.state_value(tp)
            node = fetcher._select_read_replica(tp)
            held = fetcher._records.get(tp)
            parts.append(
                f"{tp.topic}[{tp.partition}]: position={state._position} paused={state.paused} "
                f"node={node} in_flight={node in fetcher._in_flight} held={type(held).__name__ if held else None} "
                f"read_offset={consumer._read_offset.get(tp)} "
                f"delivered={getattr(consumer, '_last_delivered', {}).get(tp)}")
        except Exception as exc:  # a diagnosis never fails the watchdog
            parts.append(f"{tp}: {exc!r}")
    unpositioned = [f"{tp.topic}[{tp.partition}]" for tp in list(assignment.tps)
                    if not assignment.state_value(tp).has_valid_position]
    refresh = getattr(kafka_consumer._coordinator, "_commit_refresh_task", None)
    return ("; ".join(parts) + f" in_flight_nodes={sorted(fetcher._in_flight)} "
            f"pending=[{', '.join(_innermost(task) for task in list(fetcher._pending_tasks))}] "
            f"without_position={unpositioned[:12]} commit_refresh_done={refresh.done() if refresh else None}")


def _innermost(task: Any, depth: int = 0) -> str:
    """Where a task is suspended: its coroutine chain's innermost frame (file, line and function), and,
    when that awaits another task (or tasks gathered), where those are suspended."""
    coro: Any = task.get_coro()
    frame_at = None
    awaited: Any = None
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            frame_at = f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        awaited = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        coro = awaited if hasattr(awaited, "cr_frame") or hasattr(awaited, "ag_frame") else None
    inner = [awaited] if hasattr(awaited, "get_coro") else list(getattr(awaited, "_children", None) or [])
    inner = [child for child in inner if hasattr(child, "get_coro") and not child.done()]
    if inner and depth < 4:
        return f"{frame_at} -> [{'; '.join(_innermost(child, depth + 1) for child in inner[:4])}]"
    return str(frame_at)


def _where_tasks_wait() -> str:
    """The innermost frame every task of the event loop is suspended in (what each agent awaits)."""
    return "\n".join(sorted(f"  {task.get_name()}: {_innermost(task)}" for task in asyncio.all_tasks()))


def _rejoin(app: Any) -> None:
    """Ask the group coordinator (in the consumer's own thread and loop) to rejoin: a rebalance."""
    thread = app.consumer._thread
    coordinator = thread._ensure_consumer()._coordinator
    thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)


def seek_targets(app: Any, stalled: list[Any]) -> dict[Any, int]:
    """Where each stalled partition is sought back to: the last offset delivered since the partition was
    (re)assigned or sought, which is delivered once more, never skipped (the record of the offset after it
    can be stale across a rebalance); with nothing delivered nor committed, the start (the group's
    `earliest` reset)."""
    reads = getattr(app.consumer, "_read_offset", {})
    return {tp: reads.get(tp) or 0 for tp in stalled}


def _report_long_batch(watch: StallWatch) -> None:
    """A batch running longer than the stall timeout (a sink or a send that does not answer) holds its
    agent and keeps the watchdog quiet: say so once per timeout, with where every task waits."""
    running_s = longest_batch_in_flight_s()
    if running_s < watch.timeout_s:
        watch.long_batch_reported_at = 0.0
        return
    if running_s - watch.long_batch_reported_at >= watch.timeout_s:
        watch.long_batch_reported_at = running_s
        log.warning("watchdog: a batch has been processed for %.0f s; tasks wait in:\n%s", running_s,
                    _where_tasks_wait())


def next_offsets_to_read(app: Any, assigned: list[Any]) -> dict[Any, int | None]:
    """The next offset each partition's delivery will hand over. The batch-draining consumer counts every
    message it delivers, undecodable ones (dead-lettered before any stream sees them) included; Faust's
    monitor counts what streams read; before either, the committed offset."""
    consumer = app.consumer
    delivered = getattr(consumer, "_last_delivered", None)
    consumer_reads = getattr(consumer, "_read_offset", {})
    monitor_reads = dict(app.monitor.tp_read_offsets or {})
    found: dict[Any, int | None] = {}
    for tp in assigned:
        position = consumer_reads.get(tp) if delivered is not None else None
        if delivered is not None and position is not None:  # the last delivered, or after a seek the next
            found[tp] = position + 1 if delivered.get(tp) == position else position
        elif monitor_reads.get(tp) is not None:
            found[tp] = monitor_reads[tp] + 1
        else:
            found[tp] = consumer._committed_offset.get(tp)
    return found


async def check(app: Any, watch: StallWatch, now: float | None = None) -> list[Any]:
    """One round: find stalled partitions and apply the next remedy; returns the stalled partitions."""
    now = time.monotonic() if now is None else now
    if app.rebalancing or getattr(app, "in_recovery", False):  # streams are paused on purpose then
        return []
    try:
        assigned = [tp for tp in app.consumer.assignment() if not app.consumer._is_changelog_tp(tp)]
    except Exception:  # consumer not started
        return []
    if not assigned:
        return []
    read = next_offsets_to_read(app, assigned)
    try:
        ends = await app.consumer.highwaters(*assigned)
    except Exception as exc:  # broker away: not a stall of ours
        log.debug("watchdog: end offsets unavailable: %r", exc)
        return []
    # a sink retrying (database or broker away) or a batch still being processed (a send waiting for a new
    # partition leader) holds its agent on purpose: back-pressure, not a stall
    sink_retrying = any(component != COMPONENT for component in health.degraded())
    holding = sink_retrying or batch_in_flight_since(BUSY_HORIZON * watch.timeout_s)
    if not sink_retrying:  # a sink retrying says why its batch waits, in the log and in /health
        _report_long_batch(watch)
    waiting = {tp: not holding and ends.get(tp) is not None and ends[tp] > (read[tp] or 0) for tp in assigned}
    stalled = watch.stalled(read, waiting, now)
    if not stalled:
        health.mark_recovered(COMPONENT)
        return []
    if not watch.remedy_due(now):
        return stalled
    diagnosis = _diagnosis(app, stalled)
    health.mark_degraded(COMPONENT, f"{len(stalled)} partitions not read for {watch.timeout_s:g} s with messages waiting")
    watch.remedies_tried += 1
    watch.last_remedy_at = now
    names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stalled)
    if watch.remedies_tried == 1:
        targets = seek_targets(app, stalled)
        log.warning("watchdog: %s not read for %.0f s with messages waiting (%s): seeking them back to %s, "
                    "resuming flow and partitions; tasks wait in:\n%s", names, watch.timeout_s, diagnosis,
                    partitions_named(targets), _where_tasks_wait())
        await seek_back(app.consumer, targets, log)
        app.consumer.resume_flow()
        app.consumer.resume_partitions(stalled)
        app.flow_control.resume()
    else:
        log.log(logging.WARNING if watch.remedies_tried == 2 else logging.ERROR,
                "watchdog: %s still stalled (%s): rejoining the consumer group (attempt %d)", names, diagnosis,
                watch.remedies_tried - 1)
        _rejoin(app)
    return stalled
