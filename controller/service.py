"""The one door through which the outside world changes the station.

REST handlers and the OCPP server call these methods; each one reads the
clock once, applies the change to the in-memory station (which reallocates),
and wakes the battery timer, whose next deadline may have moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from controller.clock import Clock
from controller.sessions import Origin, Session
from controller.station import Station
from controller.views import status_view

log = logging.getLogger(__name__)


# Events that arrive within this many seconds share one reallocation (a burst
# of StartTransactions after a power cut), yet limits follow within milliseconds.
COALESCE_WINDOW = 0.005


class StationService:
    def __init__(
        self, station: Station, clock: Clock, *, coalesce_window: float = COALESCE_WINDOW
    ) -> None:
        self.station = station
        self.clock = clock
        self.coalesce_window = coalesce_window
        self._wake = asyncio.Event()
        self._reallocation: asyncio.TimerHandle | None = None
        # Called before the status is rendered (e.g. to settle whether limits are confirmed).
        self.before_status: list[Callable[[], None]] = []
        station.add_listener(self._wake.set)

    def request_reallocation(self) -> None:
        """Reallocate soon, once for however many events ask before it runs."""
        if self._reallocation is None:
            loop = asyncio.get_running_loop()
            self._reallocation = loop.call_later(self.coalesce_window, self._reallocate_now)

    def _reallocate_now(self) -> None:
        self._reallocation = None
        self.station.reallocate(self.now())

    def cancel_pending(self) -> None:
        if self._reallocation is not None:
            self._reallocation.cancel()
            self._reallocation = None

    def now(self) -> float:
        return self.clock.now()

    def status(self) -> dict[str, Any]:
        self.station.refresh(self.now())
        for hook in self.before_status:
            hook()
        return status_view(self.station)

    async def start_session(
        self, *, charger_id: str, connector_id: int, vehicle_max_power: float | None
    ) -> Session:
        return self.station.start_session(
            charger_id=charger_id,
            connector_id=connector_id,
            vehicle_max_power=vehicle_max_power,
            now=self.now(),
            origin=Origin.REST,
        )

    async def stop_session(self, session_id: str, *, consumed_energy: float | None) -> Session:
        return self.station.stop_session(
            session_id, now=self.now(), consumed_energy=consumed_energy, reason="Remote"
        )

    async def update_session(
        self,
        session_id: str,
        *,
        consumed_power: float | None,
        vehicle_max_power: float | None,
    ) -> Session:
        return self.station.update_session(
            session_id,
            now=self.now(),
            consumed_power=consumed_power,
            vehicle_max_power=vehicle_max_power,
        )

    async def run_battery_timer(self) -> None:
        """Refresh the station at each predicted battery event (empty, re-armed, full).

        The deadline comes from the prediction, not from polling; any change to
        the station wakes this task early because the prediction moved.
        """
        while True:
            self._wake.clear()
            wakeup = self.station.next_wakeup()
            timeout = None if wakeup is None else max(0.0, wakeup - self.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if not self._wake.is_set():
                self.station.refresh(self.now())
