"""Lake writes in a child process: the child keeps its own `LakeDataset` per dataset (high-water marks
read from file names, as after a restart) and writes the rows a sink ships to it.

Only this module's functions run in the child (light imports: pyarrow, no Faust, no torch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from lake.writer import LakeDataset, SourcePosition, return_freed_memory

_datasets: dict[tuple[str, str], LakeDataset] = {}  # (root, name) -> the child's dataset


Shipped = tuple[dict[str, Any], tuple[str, int, int]]  # a row and its (topic, partition, offset)


def shipped(rows: list[tuple[dict[str, Any], SourcePosition]]) -> list[Shipped]:
    """In the worker: rows with their positions as tuples (pickled in half the time of the dataclass)."""
    return [(row, (position.topic, position.partition, position.offset)) for row, position in rows]


def write_rows(
    root: str, name: str, schema: pa.Schema, partition_by: Sequence[str], rows: list[Shipped],
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> int:
    """In the child: write `rows` (shaped by `shape` first, see `LakeDataset`); returns how many were new."""
    dataset = _datasets.get((root, name))
    if dataset is None:
        dataset = _datasets[(root, name)] = LakeDataset(Path(root), name, schema, partition_by, shape)
    written = dataset.write((row, SourcePosition(*position)) for row, position in rows)
    return_freed_memory()
    return written


def ready() -> bool:
    """In the child: nothing (a call that starts the process and loads this module ahead of the first flush)."""
    return True


def forget_partition(topic: str, partition: int) -> None:
    """In the child: drop the high-water marks of a source partition another worker may now write."""
    for dataset in _datasets.values():
        dataset.forget_partition(topic, partition)
