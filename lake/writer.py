"""Parquet datasets with Hive-style partitions, written atomically and effectively once.

Every file holds the rows of one source topic-partition for one Hive partition, and its name carries
the offset range (`part-<topic>-<partition>-<first>-<last>.parquet`). Before writing, rows at or below
the highest offset already on disk for that (source partition, Hive partition) are dropped, so a replay
after a crash never adds a row twice. Files are written under a hidden temporary name and renamed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

_FILE_RE = re.compile(r"^part-(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")


@dataclass(frozen=True)
class SourcePosition:
    """Where a row came from: the Kafka topic, partition and offset of its event."""

    topic: str
    partition: int
    offset: int
    # which delivery of the event (the consumer's message object): a rebalance may hand the same offset to
    # an agent twice, even within one batch; the sink keeps the rows of the first delivery only
    delivery: int = field(default=0, compare=False)


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _libc_malloc_trim()


def return_freed_memory() -> None:
    """Give the memory a flush just freed back to the system (its rows and Arrow buffers): without it the
    allocators keep it, and a long replay's RSS creeps up flush after flush."""
    pa.default_memory_pool().release_unused()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _as_list(column: Any, count: int) -> list[Any]:
    """A column given as a list, an Arrow array or left out (null), as a list of `count` values."""
    if column is None:
        return [None] * count
    if isinstance(column, pa.Array | pa.ChunkedArray):
        return column.to_pylist()  # type: ignore[no-any-return]
    return list(column)


@functools.lru_cache(maxsize=65536, typed=True)
def _safe(value: Any) -> str:
    text = "__HIVE_DEFAULT_PARTITION__" if value is None or value == "" else str(value)
    return quote(text, safe="-_.")


class LakeDataset:
    """One dataset (e.g. `raw/iot_measurements`) under the lake root."""

    def __init__(
        self, root: Path, name: str, schema: pa.Schema, partition_by: Sequence[str] = (),
        shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        columns: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.name = name
        self.schema = schema
        self.partition_by = list(partition_by)
        # how an added row becomes a lake row, applied when the rows are written (off the event loop); a
        # module-level function, so that a writer process receives it by reference
        self.shape = shape
        # or how a whole write's added rows become the lake's columns at once (lists or Arrow arrays, one
        # per schema column, partition columns included; a column left out is null): Arrow builds them
        # without a dict per row. Used instead of `shape`; also a module-level function
        self.columns = columns
        self.path = self.root / name
        self._file_schema = pa.schema([f for f in schema if f.name not in self.partition_by])
        self._high_water: dict[tuple[str, int, str], int] = {}
        self._lock = threading.Lock()

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop cached high-water marks for a source partition (after a rebalance another worker may write)."""
        with self._lock:
            for key in [k for k in self._high_water if k[0] == topic and k[1] == partition]:
                del self._high_water[key]

    def _hive_dir(self, row: dict[str, Any]) -> str:
        return "/".join(f"{col}={_safe(row.get(col))}" for col in self.partition_by)

    def _hive_dirs(self, columns: Mapping[str, Any], count: int) -> list[str]:
        """Each row's Hive directory, from a write's columns."""
        if not self.partition_by:
            return [""] * count
        values = [_as_list(columns.get(col), count) for col in self.partition_by]
        directories: dict[tuple[Any, ...], str] = {}  # partition values -> their directory
        hive_dirs = []
        for row in zip(*values, strict=True):
            directory = directories.get(row)
            if directory is None:
                directory = directories[row] = "/".join(
                    f"{col}={_safe(value)}" for col, value in zip(self.partition_by, row, strict=True)
                )
            hive_dirs.append(directory)
        return hive_dirs

    def _table(self, columns: Mapping[str, Any], count: int) -> pa.Table:
        """A write's columns as one table of the file schema (a column left out is null)."""
        return pa.Table.from_pydict(
            {field.name: columns[field.name] if field.name in columns else pa.nulls(count, field.type)
             for field in self._file_schema},
            schema=self._file_schema,
        )

    def _written_up_to(self, topic: str, partition: int, hive_dir: str) -> int:
        key = (topic, partition, hive_dir)
        if key not in self._high_water:
            highest = -1
            directory = self.path / hive_dir if hive_dir else self.path
            prefix = f"part-{topic}-{partition}-"
            if directory.is_dir():
                for entry in os.scandir(directory):
                    if entry.name.startswith(prefix):
                        match = _FILE_RE.match(entry.name)
                        if match and match["topic"] == topic and int(match["partition"]) == partition:
                            highest = max(highest, int(match["last"]))
            self._high_water[key] = highest
        return self._high_water[key]

    def write(self, rows: Iterable[tuple[dict[str, Any], SourcePosition]]) -> int:
        """Write rows (blocking: call it from an executor). Returns how many rows were new.

        The rows are grouped by (source partition, Hive partition) and the new ones converted to Arrow
        columns once, in group order, each group written as a slice of that one table (one file per group).
        With `columns`, the whole write is converted first (the Hive partitions read from its columns) and
        its new rows taken in group order."""
        shape = self.shape
        columns: Mapping[str, Any] | None = None
        if self.columns is not None:
            entries = list(rows)
            columns = self.columns([row for row, _ in entries])
            hive_dirs = self._hive_dirs(columns, len(entries))
        else:
            entries = list(rows) if shape is None else [(shape(row), position) for row, position in rows]
            hive_dirs = [self._hive_dir(row) for row, _ in entries]
        groups: dict[tuple[str, int, str], list[int]] = defaultdict(list)
        for index, ((_, position), hive_dir) in enumerate(zip(entries, hive_dirs, strict=True)):
            groups[(position.topic, position.partition, hive_dir)].append(index)
        with self._lock:
            chosen: list[tuple[tuple[str, int, str], list[int]]] = []
            for key, members in groups.items():
                done_up_to = self._written_up_to(*key)
                fresh = [index for index in members if entries[index][1].offset > done_up_to]
                if fresh:
                    chosen.append((key, fresh))
            if not chosen:
                return 0
            order = [index for _, fresh in chosen for index in fresh]
            if columns is None:
                ordered = [entries[index][0] for index in order]
                table = pa.Table.from_pydict(
                    {name: [row.get(name) for row in ordered] for name in self._file_schema.names},
                    schema=self._file_schema,
                )
            else:
                table = self._table(columns, len(entries))
                if order != list(range(len(entries))):
                    table = table.take(pa.array(order, pa.int64()))
            start = 0
            for (topic, partition, directory_name), fresh in chosen:
                offsets = [entries[index][1].offset for index in fresh]
                first, last = min(offsets), max(offsets)
                directory = self.path / directory_name if directory_name else self.path
                directory.mkdir(parents=True, exist_ok=True)
                final = directory / f"part-{topic}-{partition}-{first}-{last}.parquet"
                temporary = directory / f".{final.name}.{os.getpid()}.tmp"
                pq.write_table(table.slice(start, len(fresh)), temporary, compression="zstd")
                start += len(fresh)
                with open(temporary, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(temporary, final)
                self._high_water[(topic, partition, directory_name)] = last
        return len(order)


def read_dataset(root: Path, name: str) -> pa.Table:
    """Read a whole dataset back with its Hive partition columns (for tests, benchmarks and users)."""
    import pyarrow.dataset as ds

    path = Path(root) / name
    if not path.exists():
        return pa.table({})
    return ds.dataset(str(path), format="parquet", partitioning="hive").to_table()
