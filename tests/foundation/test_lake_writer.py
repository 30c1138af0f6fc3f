"""Lake files are Hive-partitioned, atomic, and a replay never adds a row twice."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.writer import LakeDataset, SourcePosition, read_dataset

SCHEMA = pa.schema([("patient", pa.string()), ("day", pa.string()), ("value", pa.float64())])


def rows(first: int, last: int, partition: int = 0) -> list[tuple[dict, SourcePosition]]:
    return [
        ({"patient": f"p{offset % 2}", "day": "2026-11-23", "value": float(offset)},
         SourcePosition("t", partition, offset))
        for offset in range(first, last + 1)
    ]


def test_rows_land_in_hive_partitions_and_read_back(tmp_path: Path) -> None:
    dataset = LakeDataset(tmp_path, "raw/things", SCHEMA, ["day", "patient"])
    assert dataset.write(rows(0, 9)) == 10
    table = read_dataset(tmp_path, "raw/things")
    assert table.num_rows == 10
    assert sorted(set(table.column("patient").to_pylist())) == ["p0", "p1"]
    assert (tmp_path / "raw/things/day=2026-11-23/patient=p0").is_dir()
    assert not list(tmp_path.rglob(".*tmp"))


def test_a_replay_after_a_crash_adds_no_duplicates(tmp_path: Path) -> None:
    LakeDataset(tmp_path, "raw/things", SCHEMA, ["patient"]).write(rows(0, 9))
    restarted = LakeDataset(tmp_path, "raw/things", SCHEMA, ["patient"])  # fresh process: state from file names
    assert restarted.write(rows(5, 14)) == 5
    values = sorted(read_dataset(tmp_path, "raw/things").column("value").to_pylist())
    assert values == [float(v) for v in range(15)]


def test_source_partitions_are_tracked_separately(tmp_path: Path) -> None:
    dataset = LakeDataset(tmp_path, "bronze/x", SCHEMA, [])
    dataset.write(rows(0, 4, partition=0))
    assert dataset.write(rows(0, 4, partition=1)) == 5
    assert read_dataset(tmp_path, "bronze/x").num_rows == 10


async def test_an_event_replayed_while_its_rows_are_still_buffered_is_written_once(tmp_path: Path) -> None:
    """A rebalance seeks back to the committed offset while the first pass's rows wait for the flush."""
    from lake.sink import LakeSink

    sink = LakeSink("t", [LakeDataset(tmp_path, "bronze/x", SCHEMA, [])], flush_rows=1000, flush_seconds=60)
    alerts_of_offset_0 = rows(0, 0) * 2  # one event may give several rows (two alerts): both are kept
    sink.add("bronze/x", alerts_of_offset_0 + rows(1, 3))
    sink.add("bronze/x", rows(0, 5))  # the replay from offset 0: only 4 and 5 are new
    assert sink.buffered_rows == 7
    assert await sink.flush() == 7
    values = sorted(read_dataset(tmp_path, "bronze/x").column("value").to_pylist())
    assert values == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    sink.forget_partition("t", 0)  # revoked: another worker may write it, the files on disk decide again
    sink.add("bronze/x", rows(5, 6))
    assert await sink.flush() == 1


async def test_an_event_delivered_twice_within_one_batch_is_written_once(tmp_path: Path) -> None:
    from lake.sink import LakeSink

    sink = LakeSink("t", [LakeDataset(tmp_path, "bronze/x", SCHEMA, [])], flush_rows=1000, flush_seconds=60)
    first, again = (
        [(row, SourcePosition(p.topic, p.partition, p.offset, delivery)) for row, p in rows(7, 8)]
        for delivery in (1, 2)
    )
    two_alerts_of_7 = [first[0], first[0]]
    sink.add("bronze/x", two_alerts_of_7 + first[1:] + again)  # the replay of 7 and 8 in the same batch
    assert await sink.flush() == 3
    assert sorted(read_dataset(tmp_path, "bronze/x").column("value").to_pylist()) == [7.0, 7.0, 8.0]


class _Message:
    def __init__(self, offset: int) -> None:
        self.tp, self.offset, self.acked = ("t", 0), offset, False

    def ack(self, consumer: object) -> bool:
        first, self.acked = not self.acked, True
        return first


class _Event:
    def __init__(self, offset: int) -> None:
        self.message = _Message(offset)


class _Stream:
    def __init__(self) -> None:
        self.app = type("App", (), {"consumer": object()})()
        self.out: list[int] = []

    def _on_message_out(self, tp: object, offset: int, message: object) -> None:
        self.out.append(offset)


async def test_events_waiting_for_a_lake_flush_are_freed_and_acknowledged_by_their_messages(tmp_path: Path) -> None:
    """Thousands of decoded events held until a flush made the GC walk them; only their messages wait."""
    import gc
    import weakref

    from lake.sink import LakeSink
    from streamapp.sinks import ack_after_lake

    sink = LakeSink("t", [LakeDataset(tmp_path, "bronze/x", SCHEMA, [])], flush_rows=1000, flush_seconds=60)
    stream = _Stream()
    events = [_Event(offset) for offset in range(3)]
    sink.add("bronze/x", rows(0, 2))
    await ack_after_lake(sink, stream, events)  # type: ignore[arg-type]
    messages = [event.message for event in events]
    alive = [weakref.ref(event) for event in events]
    del events
    gc.collect()
    assert [ref() for ref in alive] == [None, None, None]
    assert stream.out == []  # nothing acknowledged before the rows are on disk
    assert await sink.flush() == 3
    assert stream.out == [0, 1, 2] and all(message.acked for message in messages)


async def test_a_failed_flush_keeps_every_row_and_acknowledges_nothing(tmp_path: Path) -> None:
    """The lake writer fails (disk full, its process killed): the rows stay buffered, in order, and the
    acknowledgements wait for the flush that succeeds."""
    from lake.sink import LakeSink, ThreadRowWriter

    class FailingOnce(ThreadRowWriter):
        failures = 1

        async def write(self, dataset: LakeDataset, rows: list) -> int:
            if self.failures:
                self.failures -= 1
                raise OSError("disk full")
            return await super().write(dataset, rows)

    acked: list[str] = []

    async def acknowledge() -> None:
        acked.append("batch")

    sink = LakeSink("t", [LakeDataset(tmp_path, "bronze/x", SCHEMA, [])], flush_rows=1000, flush_seconds=60,
                    writer=FailingOnce())
    sink.add("bronze/x", rows(0, 2))
    sink.on_flushed(acknowledge)
    sink.add("bronze/x", rows(3, 4))
    with pytest.raises(OSError, match="disk full"):
        await sink.flush()
    assert sink.buffered_rows == 5 and acked == []
    sink.add("bronze/x", rows(5, 5))
    assert await sink.flush() == 6 and acked == ["batch"]
    assert sorted(read_dataset(tmp_path, "bronze/x").column("value").to_pylist()) == [float(v) for v in range(6)]


def doubled_columns(rows: list[dict]) -> dict:
    """A whole write flattened at once (`LakeDataset.columns`): the value doubled, as an Arrow array; the
    patient column left out (null)."""
    return {"day": [row["day"] for row in rows], "value": pa.array([row["value"] * 2 for row in rows])}


def test_rows_flattened_a_whole_write_at_once_land_like_rows_flattened_one_by_one(tmp_path: Path) -> None:
    dataset = LakeDataset(tmp_path, "bronze/cols", SCHEMA, ["day"], columns=doubled_columns)
    mixed = [({"day": f"2026-11-2{offset % 3}", "value": float(offset)}, SourcePosition("t", offset % 2, offset))
             for offset in range(12)]  # interleaved source partitions and days: one file per pair
    assert dataset.write(mixed) == 12
    files = sorted(path.relative_to(tmp_path / "bronze/cols").as_posix() for path in tmp_path.rglob("*.parquet"))
    assert files == [
        "day=2026-11-20/part-t-0-0-6.parquet", "day=2026-11-20/part-t-1-3-9.parquet",
        "day=2026-11-21/part-t-0-4-10.parquet", "day=2026-11-21/part-t-1-1-7.parquet",
        "day=2026-11-22/part-t-0-2-8.parquet", "day=2026-11-22/part-t-1-5-11.parquet",
    ]
    table = read_dataset(tmp_path, "bronze/cols")
    by_value = sorted(zip(table.column("value").to_pylist(), table.column("day").to_pylist(),
                          table.column("patient").to_pylist(), strict=True))
    assert by_value == [(float(offset * 2), f"2026-11-2{offset % 3}", None) for offset in range(12)]
    # each file holds its own rows in order
    first = pq.read_table(tmp_path / "bronze/cols/day=2026-11-21/part-t-1-1-7.parquet")
    assert first.column("value").to_pylist() == [2.0, 14.0]
    # a replay over what is on disk adds only the new offsets
    assert dataset.write(mixed + [({"day": "2026-11-20", "value": 12.0}, SourcePosition("t", 0, 12))]) == 1
    assert read_dataset(tmp_path, "bronze/cols").num_rows == 13
