"""Clocks for simulated chargers: wall time as epoch seconds plus a sleep that follows it.

Everything a simulated charger times (heartbeats, meter samples, call timeouts, answer delays)
goes through one of these, so the same charger runs in real time against a live controller or
on a :class:`VirtualClock` that a runner or a test moves by hand. ``now()`` has the controller's
clock signature, so one ``VirtualClock`` can drive both ends of a simulated station day.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

from simulators.profiles import to_datetime

__all__ = ["Clock", "RealClock", "VirtualClock", "sleep_until", "to_datetime"]

# 2026-01-01T00:00:00Z, the same default start as the controller's ManualClock.
DEFAULT_START = 1_767_225_600.0


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of this clock's time have passed."""
        ...


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """Time moves only through :meth:`advance` / :meth:`set`; sleepers wake in deadline order.

    ``advance`` is synchronous: it resolves the due sleepers' futures, and the woken tasks run
    the next time the caller yields to the event loop.
    """

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = start
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.set(self._now + seconds)

    def set(self, timestamp: float) -> None:
        if timestamp < self._now:
            raise ValueError("a clock does not go backwards")
        self._now = timestamp
        while self._sleepers and self._sleepers[0][0] <= timestamp:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():  # a cancelled sleeper is simply forgotten
                future.set_result(None)

    def next_wakeup(self) -> float | None:
        """The earliest deadline of a live sleeper, e.g. for a runner that jumps ahead."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None


async def sleep_until(clock: Clock, timestamp: float) -> None:
    """Sleep to an absolute time. Periodic loops schedule from a fixed origin this way, so a
    clock moved before the loop got to sleep still wakes it at the right moment."""
    await clock.sleep(timestamp - clock.now())
