"""Lake writes in a child process: the child keeps its own `LakeDataset` per dataset (high-water marks
read from file names, as after a restart) and writes the rows a sink ships to it.

Only this module's functions run in the child (light imports: pyarrow, no Faust, no torch)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from lake.writer import LakeDataset, SourcePosition, return_freed_memory

_datasets: dict[tuple[str, str], LakeDataset] = {}  # (root, name) -> the child's dataset


# a row, its (topic, partition, offset) and the names of its columns shipped as UTC microseconds
Shipped = tuple[dict[str, Any], tuple[str, int, int], tuple[str, ...]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def shipped(rows: list[tuple[dict[str, Any], SourcePosition]]) -> list[Shipped]:
    """In the worker: rows with their positions as tuples (pickled in half the time of the dataclass), and
    their UTC datetimes as integer microseconds since the epoch (exact): pickling a datetime costs ~3 µs,
    and 15,000 measurement rows held the worker's GIL about twice as long with them (115 ms against 58,
    this conversion included) while the loop waited.
    The tuple naming those columns is one shared object per set of names, so it is pickled once. The
    columns are looked for in the first row; a row where one of them holds something else is looked at
    whole (a datetime left as it is still arrives, at the usual cost)."""
    names_seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    expected: tuple[str, ...] | None = None
    out: list[Shipped] = []
    for row, position in rows:
        names = expected
        if names is not None:
            for name in names:
                value = row.get(name)
                if type(value) is not datetime or value.tzinfo is not UTC:
                    names = None
                    break
        if names is None:
            found = tuple(name for name, value in row.items() if type(value) is datetime and value.tzinfo is UTC)
            names = names_seen.setdefault(found, found)
            if expected is None:
                expected = names
        if names:
            row = row.copy()
            for name in names:
                row[name] = (row[name] - EPOCH) // MICROSECOND
        out.append((row, (position.topic, position.partition, position.offset), names))
    return out


def received(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """In the child: a shipped row with its UTC datetimes back (the row is the child's own copy)."""
    for name in names:
        row[name] = EPOCH + row[name] * MICROSECOND
    return row


def write_rows(
    root: str, name: str, schema: pa.Schema, partition_by: Sequence[str], rows: list[Shipped],
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    columns: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None,
) -> int:
    """In the child: write `rows` (flattened by `shape` or `columns` first, see `LakeDataset`); returns how
    many were new."""
    dataset = _datasets.get((root, name))
    if dataset is None:
        dataset = _datasets[(root, name)] = LakeDataset(Path(root), name, schema, partition_by, shape, columns)
    written = dataset.write((received(row, names), SourcePosition(*position)) for row, position, names in rows)
    return_freed_memory()
    return written


def ready() -> bool:
    """In the child: a call that starts the process and loads what the first flush would, ahead of it: this
    module, and what pyarrow imports on its first table (pandas when installed: seconds on a busy machine)."""
    pa.Table.from_pydict({"warm": [0]}).take(pa.array([0]))
    return True


def forget_partition(topic: str, partition: int) -> None:
    """In the child: drop the high-water marks of a source partition another worker may now write."""
    for dataset in _datasets.values():
        dataset.forget_partition(topic, partition)
