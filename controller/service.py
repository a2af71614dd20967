"""The one door through which the outside world changes the station.

REST handlers and the OCPP server call these methods; each one reads the
clock once, applies the change to the in-memory station (which reallocates),
and wakes the battery timer, whose next deadline may have moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from controller.clock import Clock
from controller.sessions import Origin, Session
from controller.station import Station
from controller.views import status_view

log = logging.getLogger(__name__)


class StationService:
    def __init__(self, station: Station, clock: Clock) -> None:
        self.station = station
        self.clock = clock
        self._wake = asyncio.Event()
        station.add_listener(self._wake.set)

    def now(self) -> float:
        return self.clock.now()

    def status(self) -> dict[str, Any]:
        self.station.refresh(self.now())
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
