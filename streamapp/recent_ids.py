"""A bounded memory of the ids an agent has stored lately: the same message published twice (a client
resend, a producer retry) reaches the topic at two offsets, and the second copy must not be aggregated,
alerted or written again. Offsets cannot tell such copies apart; their id can."""

from __future__ import annotations

from collections import deque


class RecentIds:
    """The last `capacity` ids remembered, oldest forgotten first (a few MB for tens of thousands)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._members: set[str] = set()

    def __contains__(self, item: object) -> bool:
        return item in self._members

    def __len__(self) -> int:
        return len(self._members)

    def remember(self, ids: list[str]) -> None:
        """Call once the rows of these ids are stored: a copy seen later is then safe to skip."""
        for item in ids:
            if item in self._members or self.capacity <= 0:
                continue
            self._order.append(item)
            self._members.add(item)
            if len(self._order) > self.capacity:
                self._members.discard(self._order.popleft())
