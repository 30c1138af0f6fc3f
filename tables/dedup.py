"""`seen_event_ids`: event ids the returns agent has already written, with the time it first wrote them.

A changelog-backed Faust table (recovered on restart and on rebalance). Keys are the raw `event_id`
bytes and the table uses the producer's partitioner, so a key lands in the changelog partition with
the number of its source partition (same default partitioner, same partition count) and the table can
be pruned from a timer. Entries older than `dedup_retention_days` are deleted, so it never grows without
bound. The table is the fast path; the database writes are idempotent on their own, so a miss
(after pruning, or a changed partition count) costs a rewrite of identical rows, never a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka.partitioner import murmur2

from streamapp.app import app
from streamapp.settings import get_settings
from tables.changelog import DeferredChangelog

log = logging.getLogger(__name__)
PRUNE_INTERVAL_S = 600.0  # at most; a quarter of the retention when that is shorter

seen_event_ids = app.Table(
    "seen-event-ids",
    key_type=bytes,
    value_type=float,
    use_partitioner=True,
    help="event_id -> unix time the returns agent first wrote it",
)
seen_changelog = DeferredChangelog("seen-event-ids")  # written by `remember` and `prune`, one hand-over at a time


def already_seen(event_id: str) -> bool:
    return event_id.encode() in seen_event_ids


def changelog_partition(key: bytes) -> int:
    """The partition the producer's default partitioner gives `key`, computed without broker metadata:
    right after a broker failure the metadata may lack the changelog topic, and Faust's own lookup then
    raised TypeError inside the agent (a crash loop)."""
    return (murmur2(key) & 0x7FFFFFFF) % app.conf.topic_partitions


async def remember(event_ids: Iterable[str], now: float | None = None) -> int:
    """Record event ids whose rows are committed (call after the database transaction); returns once the
    broker has their changelog messages."""
    stamp = time.time() if now is None else now
    for event_id in event_ids:
        key = event_id.encode()
        seen_event_ids.data[key] = stamp
        seen_changelog.mark(seen_event_ids, key, changelog_partition(key))
    return await seen_changelog.send()


def expired_keys(entries: Iterable[tuple[bytes, float]], now: float, retention_s: float) -> list[bytes]:
    """Keys first seen more than `retention_s` before `now`."""
    return [key for key, first_seen in entries if now - float(first_seen) > retention_s]


def retention_s() -> float:
    return get_settings().dedup_retention_days * 86_400.0


async def prune(now: float | None = None) -> int:
    """Delete the entries past the retention from the partitions this worker holds (tombstones in the
    changelog, confirmed by the broker); returns how many."""
    stale = expired_keys(list(seen_event_ids.items()), time.time() if now is None else now, retention_s())
    for key in stale:
        seen_event_ids.data.pop(key, None)
        seen_changelog.mark_deleted(seen_event_ids, key, changelog_partition(key))
    await seen_changelog.send()
    return len(stale)


@app.task
async def prune_seen_event_ids() -> None:
    """Prune every `PRUNE_INTERVAL_S` (or a quarter of the retention) for as long as the worker runs."""
    while True:
        await asyncio.sleep(min(PRUNE_INTERVAL_S, retention_s() / 4))
        try:
            removed = await prune()
        except Exception:  # e.g. during a rebalance: the next round tries again
            log.exception("seen_event_ids: pruning failed")
            continue
        if removed:
            log.info("seen_event_ids: pruned %d ids older than the retention", removed)
