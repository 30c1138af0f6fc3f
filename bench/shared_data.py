"""Where the datasets that tests and benchmarks read live (NASA C-MAPSS, ADBench, NAB, with their licences).

They are never downloaded: `../shared/data` beside the checkout is the machines' layout; a clone made
elsewhere finds `/work/shared/data`; `STREAMAPP_SHARED_DATA` names another folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The first of `STREAMAPP_SHARED_DATA`, `../shared/data` and `/work/shared/data` that exists (else the
    sibling folder, so that the error a reader gets names where the data is expected)."""
    given = os.environ.get("STREAMAPP_SHARED_DATA", "").strip()
    candidates = ([Path(given).expanduser()] if given else []) + [
        PROJECT.parent / "shared" / "data", Path("/work/shared/data"),
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return candidates[0]
