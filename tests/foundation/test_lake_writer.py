"""Lake files are Hive-partitioned, atomic, and a replay never adds a row twice."""

from pathlib import Path

import pyarrow as pa

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
