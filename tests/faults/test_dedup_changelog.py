"""The returns dedup table writes its changelog to the partition the producer's partitioner would pick,
without asking the broker (right after a broker failure the metadata lacks the topic: that crashed the
returns agent in a loop, found by the three-broker fault scenario)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.faust_testing import faust_app  # noqa: F401


def test_remember_and_prune_changelog_to_the_partitioner_partition_without_metadata(
    faust_app: Any, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from tables.dedup import prune, remember, seen_event_ids

    sent: list[tuple[int, bytes, Any]] = []
    monkeypatch.setattr(seen_event_ids, "send_changelog",
                        lambda partition, key, value, **kwargs: sent.append((partition, key, value)))
    monkeypatch.setattr(seen_event_ids, "partition_for_key", lambda key: pytest.fail("asked the broker metadata"))
    ids = [f"event-{i}" for i in range(50)]
    remember(ids, now=1000.0)
    partitions = list(range(faust_app.conf.topic_partitions))
    expected = [DefaultPartitioner()(i.encode(), partitions, partitions) for i in ids]
    assert [(p, k) for p, k, _ in sent] == [(p, i.encode()) for p, i in zip(expected, ids, strict=True)]
    assert all(seen_event_ids.data[i.encode()] == 1000.0 for i in ids) and len(set(expected)) > 1
    sent.clear()
    assert prune(now=1000.0 + 10 * 86_400) == 50
    assert sorted(sent) == sorted((p, i.encode(), None) for p, i in zip(expected, ids, strict=True))
    assert not any(i.encode() in seen_event_ids.data for i in ids)
