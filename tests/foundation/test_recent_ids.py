"""The bounded memory of stored ids: remembers the newest, forgets the oldest, never grows past its capacity."""

from streamapp.recent_ids import RecentIds


def test_the_oldest_ids_are_forgotten_first_and_the_size_stays_bounded() -> None:
    recent = RecentIds(capacity=3)
    recent.remember(["a", "b", "a", "c"])
    assert len(recent) == 3 and "a" in recent
    recent.remember(["d", "e"])
    assert len(recent) == 3 and "a" not in recent and "b" not in recent
    assert all(item in recent for item in ("c", "d", "e"))


def test_a_capacity_of_zero_remembers_nothing() -> None:
    recent = RecentIds(capacity=0)
    recent.remember(["a"])
    assert "a" not in recent and len(recent) == 0
