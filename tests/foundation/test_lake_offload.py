"""Rows shipped to the lake process (`lake.offload`): UTC datetimes travel as integer microseconds and
arrive as the same datetimes; everything else arrives as it was."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from lake.offload import received, shipped
from lake.writer import SourcePosition

MOMENT = datetime(2026, 12, 5, 9, 30, 1, 123456, tzinfo=UTC)


def round_trip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    positioned = [(row, SourcePosition("t", 0, offset)) for offset, row in enumerate(rows)]
    back = pickle.loads(pickle.dumps(shipped(positioned)))
    assert [position for _, position, _ in back] == [("t", 0, offset) for offset in range(len(rows))]
    return [received(row, names) for row, _, names in back]


def test_utc_datetimes_arrive_equal_to_the_microsecond_and_still_utc() -> None:
    rows = [{"id": n, "at": MOMENT + timedelta(microseconds=n), "seen": MOMENT - timedelta(days=25_000, seconds=n)}
            for n in range(3)]
    back = round_trip(rows)
    assert back == rows
    assert all(type(row["at"]) is datetime and row["at"].tzinfo is UTC for row in back)
    assert back[0]["seen"].year < 1970  # before the epoch too


def test_the_worker_rows_are_not_changed() -> None:
    row = {"id": 1, "at": MOMENT}
    shipped([(row, SourcePosition("t", 0, 0))])
    assert row == {"id": 1, "at": MOMENT}


def test_other_values_arrive_as_they_were() -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    paris = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    rows = [
        {"id": 1, "at": MOMENT, "naive": naive, "paris": paris, "day": date(2026, 1, 1), "n": 7, "none": None},
        {"id": 2, "at": None, "naive": MOMENT, "paris": paris, "day": None, "n": 8, "none": None},  # other columns
        {"id": 3, "at": "2026-01-01", "extra": MOMENT},  # a row with other keys altogether
        {"id": 4, "at": MOMENT, "naive": naive, "paris": paris, "day": None, "n": 9, "none": None},
    ]
    back = round_trip(rows)
    assert back == rows
    assert [type(row["at"]) for row in back] == [datetime, type(None), str, datetime]
    assert back[0]["naive"].tzinfo is None and back[0]["paris"].utcoffset() == timedelta(hours=1)
    assert back[1]["naive"].tzinfo is UTC and back[2]["extra"].tzinfo is UTC


def test_rows_of_one_shape_share_one_tuple_of_names() -> None:
    rows = [({"id": n, "at": MOMENT, "also": MOMENT}, SourcePosition("t", 0, n)) for n in range(5)]
    names = [shipped_names for _, _, shipped_names in shipped(rows)]
    assert names[0] == ("at", "also")
    assert all(name is names[0] for name in names)
