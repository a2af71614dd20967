"""The core's own deadlines: retries due, chargers offline too long.

A heap of (when, kind, key). Nothing is ever removed early: an entry whose reason went away
(the retry was overtaken, the charger came back) is recognised as stale by the core's
``live`` check when it comes up, which keeps every change O(log n).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from enum import StrEnum


class Deadline(StrEnum):
    LIMIT_RETRY = "limit-retry"  # key: a session id
    DEFAULT_RETRY = "default-retry"  # key: a charger id
    OFFLINE = "offline"  # key: a charger id


Live = Callable[[float, Deadline, str], bool]


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline, str]] = []
        self._order = itertools.count()

    def add(self, when: float, kind: Deadline, key: str) -> None:
        heapq.heappush(self._heap, (when, next(self._order), kind, key))

    def due(self, now: float, live: Live) -> Iterator[tuple[Deadline, str]]:
        """Take the live deadlines at or before ``now``, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, kind, key = heapq.heappop(heap)
            if live(when, kind, key):
                yield kind, key

    def next(self, live: Live) -> float | None:
        """The earliest live deadline (stale ones at the top are dropped on the way)."""
        heap = self._heap
        while heap and not live(heap[0][0], heap[0][2], heap[0][3]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None
