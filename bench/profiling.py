"""py-spy evidence for the README: sample a worker for a few seconds, summarise where its time goes."""

from __future__ import annotations

import collections
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")


def start_py_spy(pid: int, out: Path, seconds: float = 10.0, rate: int = 50) -> subprocess.Popen[bytes] | None:
    """Record `pid` for `seconds` into `out` (raw collapsed stacks of running threads); None without py-spy."""
    if not PY_SPY.exists():
        return None
    return subprocess.Popen(
        [str(PY_SPY), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate), "-f", "raw",
         "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def collapsed_stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    """(frames root first, sample count) for each line of a py-spy raw (collapsed) profile."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def _frame(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').split('site-packages/')[-1]})" if where else name


def summarise(path: Path, top: int = 10, marker_frames: tuple[str, ...] = ()) -> dict[str, list[tuple[str, float]]]:
    """The `top` frames by own samples and by inclusive samples (shares of all samples), and the
    inclusive share of every frame whose name contains one of `marker_frames`."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for raw_frames, samples in collapsed_stacks(path):
        total += samples
        frames = [_frame(frame) for frame in raw_frames]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return {"own": [], "inclusive": [], "markers": []}
    share = lambda counter, n: [(frame, samples / total) for frame, samples in counter.most_common(n)]  # noqa: E731
    markers = [(frame, samples / total) for frame, samples in inclusive.most_common()
               if any(marker in frame for marker in marker_frames)]
    return {"own": share(own, top), "inclusive": share(inclusive, top * 3), "markers": markers[:top * 2]}
