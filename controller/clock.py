"""Clocks: the controller reads time only through one of these.

``now()`` is wall-clock time in seconds since the epoch: it stamps sessions and
integrates the battery's energy, and it must survive restarts (the battery is
advanced by the time the process was down). Tests and the simulators pass a
``ManualClock`` and move it themselves.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds

    def set(self, timestamp: float) -> None:
        if timestamp < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = timestamp


def iso_utc(timestamp: float) -> str:
    """Epoch seconds -> ``2026-01-01T00:00:00.000Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
