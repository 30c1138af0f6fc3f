"""Child processes: calls run in another process, a dead child is replaced, models are sent once per version,
lake rows are written there effectively once, and `STREAMAPP_CHILD_PROCESSES=false` keeps it all in threads."""

from __future__ import annotations

import operator
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from lake.writer import LakeDataset, SourcePosition, read_dataset
from streamapp.child_process import ChildProcess
from streamapp.model_process import ModelProcess
from streamapp.settings import get_settings
from streamapp.sinks import ChildLakeWriter

SCHEMA = pa.schema([("id", pa.string()), ("value", pa.float64()), ("day", pa.string())])


@pytest.fixture
def child() -> Iterator[ChildProcess]:
    process = ChildProcess("test")
    yield process
    process.stop()


async def test_a_call_runs_in_another_process_and_a_killed_child_is_replaced(child: ChildProcess) -> None:
    first = await child.run(os.getpid)
    assert first != os.getpid() and await child.run(os.getpid) == first  # one child, kept between calls
    os.kill(first, signal.SIGKILL)
    second = await child.run(os.getpid)  # the broken pool is replaced and the call made again
    assert second not in (first, os.getpid())
    assert child.generation == 2


async def test_threads_instead_when_child_processes_are_off(
    child: ChildProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMAPP_CHILD_PROCESSES", "false")
    get_settings.cache_clear()
    try:
        assert await child.run(os.getpid) == os.getpid()
        assert child.generation == 0  # no process was started
    finally:
        monkeypatch.delenv("STREAMAPP_CHILD_PROCESSES")
        get_settings.cache_clear()


async def test_a_model_is_sent_once_per_version_and_again_to_a_new_child() -> None:
    models = ModelProcess()
    try:
        assert await models.call("m", "1", 3, operator.mul, 5) == 15
        sent = dict(models._sent)
        assert await models.call("m", "1", 3, operator.mul, 7) == 21 and models._sent == sent  # not sent again
        assert await models.call("m", "2", 10, operator.mul, 7) == 70  # a new version replaces the old one
        os.kill(await models.child.run(os.getpid), signal.SIGKILL)
        assert await models.call("m", "2", 10, operator.mul, 2) == 20  # the new child gets the model again
        assert models._sent["m"][0] == models.child.generation == 2
    finally:
        models.child.stop()


def rows(first: int, last: int, partition: int = 0) -> list[tuple[dict[str, object], SourcePosition]]:
    return [({"id": f"r{offset}", "value": float(offset), "day": "d1"}, SourcePosition("t", partition, offset))
            for offset in range(first, last + 1)]


async def test_lake_rows_are_written_by_the_child_once_even_when_replayed(tmp_path: Path) -> None:
    writer = ChildLakeWriter()
    dataset = LakeDataset(tmp_path, "raw/things", SCHEMA, ["day"])
    try:
        assert await writer.write(dataset, rows(0, 9)) == 10
        assert await writer.write(dataset, rows(5, 14)) == 5  # offsets 5-9 are already on disk
        assert await writer.child.run(os.getpid) != os.getpid()
        # after a rebalance the child forgets what it knew of the partition and reads the file names again
        (tmp_path / "raw/things/day=d1/part-t-0-10-14.parquet").unlink()
        writer.forget_partition("t", 0)
        assert await writer.write(dataset, rows(10, 14)) == 5
    finally:
        writer.child.stop()
    table = read_dataset(tmp_path, "raw/things")
    assert sorted(table.column("id").to_pylist()) == sorted(f"r{offset}" for offset in range(15))


def doubled_on_day_two(row: dict[str, object]) -> dict[str, object]:
    """A dataset's `shape`: the lake row of an added row (module level: the child gets it by reference)."""
    return {"id": row["key"], "value": 2 * float(row["amount"]), "day": "d2"}  # type: ignore[arg-type]


@pytest.mark.parametrize("in_child", [True, False], ids=["child", "thread"])
async def test_a_dataset_shapes_its_rows_where_they_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_child: bool
) -> None:
    monkeypatch.setenv("STREAMAPP_CHILD_PROCESSES", "true" if in_child else "false")
    get_settings.cache_clear()
    writer = ChildLakeWriter()
    dataset = LakeDataset(tmp_path, "bronze/things", SCHEMA, ["day"], shape=doubled_on_day_two)
    added = [({"key": f"k{n}", "amount": n}, SourcePosition("t", 1, n)) for n in range(4)]
    try:
        assert await writer.write(dataset, added) == 4
        assert await writer.write(dataset, added[2:]) == 0  # shaped rows keep their source offsets
    finally:
        writer.child.stop()
        get_settings.cache_clear()
    table = read_dataset(tmp_path, "bronze/things")
    assert sorted(zip(table.column("id").to_pylist(), table.column("value").to_pylist(), strict=True)) == [
        ("k0", 0.0), ("k1", 2.0), ("k2", 4.0), ("k3", 6.0)]
    assert [path.parent.name for path in (tmp_path / "bronze/things").rglob("*.parquet")] == ["day=d2"]


async def test_a_child_collects_garbage_like_the_worker(child: ChildProcess) -> None:
    """Rows and model inputs reach a child by the thousand: its young and middle generations are collected
    at the worker's thresholds, not Python's (700 allocations, 10 young collections), and what its
    start-up loaded is frozen."""
    import gc

    young, middle, _ = await child.run(gc.get_threshold)
    assert young == get_settings().gc_young_threshold != 700
    assert middle == get_settings().gc_middle_threshold != 10
    assert await child.run(gc.get_freeze_count) > 0


def dated(row: dict[str, object]) -> dict[str, object]:
    """A `shape` that reads a datetime (as the anomaly and RUL lake rows do for their date partition)."""
    at = row["at"]
    assert isinstance(at, datetime)
    return {"id": row["key"], "value": 1.0, "day": at.date().isoformat(), "at": at}


async def test_timestamps_reach_the_lake_process_as_datetimes(tmp_path: Path) -> None:
    """Rows cross to the lake process with their UTC datetimes as integers (cheaper to pickle): the shape
    and the Parquet file still get the same datetimes."""
    schema = pa.schema([("id", pa.string()), ("value", pa.float64()), ("day", pa.string()),
                        ("at", pa.timestamp("us", tz="UTC"))])
    moment = datetime(2026, 12, 5, 23, 59, 59, 999999, tzinfo=UTC)
    writer = ChildLakeWriter()
    dataset = LakeDataset(tmp_path, "bronze/dated", schema, ["day"], shape=dated)
    try:
        assert await writer.write(dataset, [({"key": "k", "at": moment}, SourcePosition("t", 0, 0))]) == 1
    finally:
        writer.child.stop()
    table = read_dataset(tmp_path, "bronze/dated")
    assert table.column("at").to_pylist() == [moment]
    assert [path.parent.name for path in (tmp_path / "bronze/dated").rglob("*.parquet")] == ["day=2026-12-05"]


def _niceness() -> int:
    return os.nice(0)


async def test_the_lake_process_runs_at_a_lower_cpu_priority_than_the_worker_and_model_process() -> None:
    from streamapp.child_process import BACKGROUND_NICENESS

    lake, models = ChildLakeWriter(), ModelProcess()
    try:
        assert await lake.child.run(_niceness) == min(19, os.nice(0) + BACKGROUND_NICENESS)
        assert await models.child.run(_niceness) == os.nice(0)  # scoring is on the results' path: not lowered
    finally:
        lake.child.stop()
        models.child.stop()
