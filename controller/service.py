"""The one door through which the outside world changes the station.

REST handlers and the OCPP server call these methods; each one reads the
clock once, applies the change to the in-memory station (which reallocates),
records it for the store and, where the caller acknowledges something, waits
for the commit before returning. It also owns the timers: the battery's
predicted events, the coalesced reallocation, the periodic flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from controller.clock import Clock
from controller.persistence import Recorder, session_from_row
from controller.sessions import Origin, Session, SessionAlreadyStopped, UnknownSession
from controller.station import Station
from controller.store import StoreError
from controller.views import session_view, status_view

log = logging.getLogger(__name__)


# Events that arrive within this many seconds share one reallocation (a burst
# of StartTransactions after a power cut), yet limits follow within milliseconds.
COALESCE_WINDOW = 0.005
# What is written behind (meter readings, the battery, charger books) reaches
# the disk at least this often.
FLUSH_INTERVAL = 1.0


class StationService:
    def __init__(
        self,
        station: Station,
        clock: Clock,
        *,
        coalesce_window: float = COALESCE_WINDOW,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.station = station
        self.clock = clock
        self.coalesce_window = coalesce_window
        self.flush_interval = flush_interval
        self.recorder: Recorder | None = None
        self._wake = asyncio.Event()
        self._reallocation: asyncio.TimerHandle | None = None
        # Called before the status is rendered (e.g. to settle whether limits are confirmed).
        self.before_status: list[Callable[[], None]] = []
        station.add_listener(self._wake.set)

    def now(self) -> float:
        return self.clock.now()

    async def commit(self) -> None:
        if self.recorder is not None:
            await self.recorder.commit()

    # -- reallocation ----------------------------------------------------

    def request_reallocation(self) -> None:
        """Reallocate soon, once for however many events ask before it runs."""
        if self._reallocation is None:
            loop = asyncio.get_running_loop()
            self._reallocation = loop.call_later(self.coalesce_window, self._reallocate_now)

    def _reallocate_now(self) -> None:
        self._reallocation = None
        self.station.reallocate(self.now())

    @property
    def reallocation_pending(self) -> bool:
        return self._reallocation is not None

    def cancel_pending(self) -> None:
        if self._reallocation is not None:
            self._reallocation.cancel()
            self._reallocation = None

    # -- reads -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        self.station.refresh(self.now())
        for hook in self.before_status:
            hook()
        return status_view(self.station)

    async def session_view(self, session_id: str) -> dict[str, Any]:
        session = self.station.sessions.get(session_id)
        if session is not None:
            return session_view(session)
        stored = await self._stored_session(session_id)
        if stored is None:
            raise UnknownSession(f"no session {session_id!r}", field="sessionId")
        return session_view(stored)

    async def _stored_session(self, session_id: str) -> Session | None:
        if self.recorder is None:
            return None
        rows = await self.recorder.store.query(
            "SELECT * FROM sessions WHERE session_id = ?", (session_id,)
        )
        return session_from_row(rows[0]) if rows else None

    async def _require_active(self, session_id: str) -> Session:
        """The active session, or the right refusal: 409 if it was stopped, else 404."""
        session = self.station.sessions.get(session_id)
        if session is None and await self._stored_session(session_id) is not None:
            raise SessionAlreadyStopped(f"session {session_id!r} is already stopped")
        return self.station.session(session_id)

    async def list_sessions(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """Active sessions from memory; the history from the store, newest first."""
        views: list[dict[str, Any]] = []
        if status in (None, "active"):
            views += [session_view(s) for s in self.station.active_sessions()]
        if status in (None, "stopped") and self.recorder is not None:
            await self.commit()  # sessions stopped a moment ago are in the answer too
            rows = await self.recorder.store.query(
                "SELECT * FROM sessions WHERE status = 'stopped' ORDER BY stopped_at DESC LIMIT ?",
                (limit,),
            )
            views += [session_view(session_from_row(r)) for r in rows]
        return views

    async def events(self, since: int, limit: int) -> list[dict[str, Any]]:
        if self.recorder is None:
            return []
        await self.commit()
        rows = await self.recorder.store.query(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (since, limit)
        )
        return [
            {
                "seq": r["seq"],
                "at": r["at"],
                "kind": r["kind"],
                "chargerId": r["charger_id"],
                "sessionId": r["session_id"],
                "data": _json(r["data"]),
            }
            for r in rows
        ]

    # -- changes ---------------------------------------------------------

    def _record(self, session: Session, event: str, **data: Any) -> None:
        if self.recorder is not None:
            self.recorder.session(session, event, self.now(), **data)

    async def start_session(
        self, *, charger_id: str, connector_id: int, vehicle_max_power: float | None
    ) -> Session:
        session = self.station.start_session(
            charger_id=charger_id,
            connector_id=connector_id,
            vehicle_max_power=vehicle_max_power,
            now=self.now(),
            origin=Origin.REST,
        )
        self._record(session, "session.started", vehicleMaxPower=vehicle_max_power)
        await self.commit()
        return session

    async def stop_session(self, session_id: str, *, consumed_energy: float | None) -> Session:
        await self._require_active(session_id)
        session = self.station.stop_session(
            session_id, now=self.now(), consumed_energy=consumed_energy, reason="Remote"
        )
        self._record(session, "session.stopped", consumedEnergy=session.consumed_energy)
        await self.commit()
        return session

    async def update_session(
        self,
        session_id: str,
        *,
        consumed_power: float | None,
        vehicle_max_power: float | None,
    ) -> Session:
        await self._require_active(session_id)
        session = self.station.update_session(
            session_id,
            now=self.now(),
            consumed_power=consumed_power,
            vehicle_max_power=vehicle_max_power,
        )
        self._record(
            session,
            "session.updated",
            consumedPower=consumed_power,
            vehicleMaxPower=vehicle_max_power,
        )
        await self.commit()
        return session

    async def check_session(self, session_id: str) -> None:
        """404 for an id that never existed, before a request body is judged."""
        if session_id in self.station.sessions:
            return
        if await self._stored_session(session_id) is None:
            raise UnknownSession(f"no session {session_id!r}", field="sessionId")

    # -- timers ----------------------------------------------------------

    async def run_battery_timer(self) -> None:
        """Refresh the station at each predicted event (battery empty, re-armed or full;
        a charger offline too long).

        The deadline comes from the prediction, not from polling; any change to
        the station wakes this task early because the prediction moved.
        """
        while True:
            self._wake.clear()
            wakeup = self.station.next_wakeup()
            timeout = None if wakeup is None else max(0.0, wakeup - self.now())
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the event fires, and the task would then
            # outlive the controller's stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if not self._wake.is_set():
                self.station.refresh(self.now())

    async def run_flusher(self) -> None:
        """Write behind what needs no acknowledgement, at least every flush_interval."""
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def flush(self) -> None:
        if self.recorder is None:
            return
        self.station.refresh(self.now())
        self.recorder.battery()
        try:
            await self.recorder.commit()
        except StoreError:
            log.exception("cannot write the database; will retry")


def _json(text: str) -> Any:
    return json.loads(text)
