"""`KeyHashPartitioner` picks the partition Kafka's default partitioner picks, from a remembered hash."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from streamapp.partitioner import KeyHashPartitioner


def test_same_partition_as_kafkas_default_for_every_key_and_partition_count() -> None:
    partitioner, default = KeyHashPartitioner(remembered=50), DefaultPartitioner()
    keys = [f"asset-{n}".encode() for n in range(200)] + [b"", "pompe-é".encode()]
    for count in (1, 3, 4, 12):
        partitions = list(range(count))
        for key in keys * 2:  # the second pass reads remembered hashes (and refills after a clear)
            assert partitioner(key, partitions, partitions) == default(key, partitions, partitions)
    assert len(partitioner._hashes) <= 50


def test_no_key_goes_to_an_available_partition() -> None:
    partitioner = KeyHashPartitioner()
    assert {partitioner(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {partitioner(None, [0, 1], []) for _ in range(50)} <= {0, 1}
