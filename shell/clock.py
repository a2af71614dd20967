"""The one clock: wall-clock seconds since the epoch, and timers set on that same scale.

Everything time-driven in the controller and the simulators reads ``now()`` from one of
these and sets its deadlines with ``call_at`` (absolute times of this clock), never with the
event loop's own monotonic time. :class:`ManualClock` moves only when told to, so tests and
simulated days decide when a battery empties, a retry is due or a call times out.

``SystemClock`` turns an absolute time into a delay when the timer is set; a wall-clock jump
afterwards moves the moment it fires, not the time it reports, and the station logic judges
what is due by the ``now`` it is given, so a late timer only delays, it never misleads.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

__all__ = [
    "DEFAULT_START",
    "Clock",
    "ManualClock",
    "SystemClock",
    "Timer",
    "iso_utc",
    "sleep_until",
    "to_datetime",
]

log = logging.getLogger(__name__)

# 2026-01-01T00:00:00Z: where a ManualClock starts unless told otherwise.
DEFAULT_START = 1_767_225_600.0


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` (on the event loop) once the clock reaches ``when``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock's time have passed."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class _ManualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time moves only through :meth:`advance` and :meth:`set`; due timers then run at
    once, in deadline order (a sleeper's task resumes the next time the caller yields)."""

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = start
        self._order = itertools.count()
        self._timers: list[tuple[float, int, _ManualTimer]] = []

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer(callback)
        if when <= self._now:
            self._run(timer)
        else:
            heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_at(self._now + seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.set(self._now + seconds)

    def set(self, timestamp: float) -> None:
        if timestamp < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = timestamp
        while self._timers and self._timers[0][0] <= timestamp:
            _, _, timer = heapq.heappop(self._timers)
            self._run(timer)

    def next_wakeup(self) -> float | None:
        """The earliest live timer, e.g. for a runner that jumps from event to event."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    @staticmethod
    def _run(timer: _ManualTimer) -> None:
        if timer.cancelled:
            return
        timer.cancelled = True  # fires once
        try:
            timer.callback()
        except Exception:
            # As the event loop would: one failing timer must not stop the others.
            log.exception("a timer callback failed")


async def sleep_until(clock: Clock, timestamp: float) -> None:
    """Sleep to an absolute time. Periodic loops schedule from a fixed origin this way, so a
    clock moved before the loop got to sleep still wakes it at the right moment."""
    await clock.sleep(timestamp - clock.now())


def to_datetime(timestamp: float) -> datetime:
    """Epoch seconds -> an aware UTC datetime (OCPP timestamps)."""
    return datetime.fromtimestamp(timestamp, tz=UTC)


def iso_utc(timestamp: float) -> str:
    """Epoch seconds -> ``2026-01-01T00:00:00.000Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
