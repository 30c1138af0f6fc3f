"""Kafka's default partitioner (murmur2 of the key, as the Java client and aiokafka compute it), with each
key's hash remembered: results are keyed by asset, so a worker hashes the same few thousand keys again and
again, and aiokafka's murmur2 is pure Python (about a third of a send)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from aiokafka.partitioner import murmur2


class KeyHashPartitioner:
    """Chooses the same partition as `aiokafka.partitioner.DefaultPartitioner` for every key (co-partitioning
    with other Kafka clients holds); at most `remembered` key hashes are kept."""

    def __init__(self, remembered: int = 100_000) -> None:
        self.remembered = remembered
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.remembered:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]
