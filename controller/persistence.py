"""Between the live station and its store: which rows change when, and start-up recovery.

``Recorder`` is called wherever the station changes and marks the rows to
write (``controller.store`` explains when they reach the disk); ``recover``
rebuilds the station, the transaction-id counter, the battery, the charger
books and the limits chargers hold from the database at start-up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from controller.ocpp.push import LimitPusher, ProfileBook
from controller.sessions import Origin, Session, SessionStatus
from controller.station import ChargerState, ConnectorState, Station
from controller.store import Row, Store

log = logging.getLogger(__name__)

NEXT_TRANSACTION_ID = "next_transaction_id"
# StartTransaction dedupe keys older than this are not kept in memory: a charger
# resends an unanswered start within minutes of reconnecting, not weeks later.
START_KEY_MEMORY = 7 * 24 * 3600.0


def session_row(session: Session) -> Row:
    return (
        session.session_id,
        session.charger_id,
        session.connector_id,
        session.origin.value,
        session.status.value,
        session.vehicle_max_power,
        session.allocated_power,
        session.limited_by,
        session.consumed_power,
        session.consumed_energy,
        session.state_of_charge,
        session.started_at,
        session.stopped_at,
        session.transaction_id,
        session.id_tag,
        session.meter_start_wh,
        session.stop_reason,
    )


def session_from_row(row: Any) -> Session:
    return Session(
        session_id=row["session_id"],
        charger_id=row["charger_id"],
        connector_id=row["connector_id"],
        vehicle_max_power=row["vehicle_max_power"],
        started_at=row["started_at"],
        origin=Origin(row["origin"]),
        allocated_power=row["allocated_power"],
        limited_by=row["limited_by"],
        consumed_power=row["consumed_power"],
        consumed_energy=row["consumed_energy"],
        stopped_at=row["stopped_at"],
        status=SessionStatus(row["status"]),
        transaction_id=row["transaction_id"],
        id_tag=row["id_tag"],
        meter_start_wh=row["meter_start_wh"],
        state_of_charge=row["state_of_charge"],
        stop_reason=row["stop_reason"],
    )


class Recorder:
    def __init__(self, store: Store, station: Station, pusher: LimitPusher) -> None:
        self.store = store
        self.station = station
        self.pusher = pusher

    async def commit(self) -> None:
        await self.store.commit()

    def session(
        self, session: Session, event: str | None = None, at: float | None = None, **data: Any
    ) -> None:
        self.store.mark_session(session.session_id, lambda: session_row(session))
        if event is not None:
            self.store.record_event(
                at if at is not None else time.time(),
                event,
                charger_id=session.charger_id,
                session_id=session.session_id,
                **data,
            )

    def transaction_ids(self) -> None:
        self.store.set_meta(NEXT_TRANSACTION_ID, str(self.station.next_transaction_id))

    def start_key(
        self, key: tuple[str, int, str, str, int], transaction_id: int, status: str, at: float
    ) -> None:
        self.store.add_start_key((*key, transaction_id, status, at))
        self.transaction_ids()

    def charger(self, charger_id: str) -> None:
        state = self.station.chargers[charger_id]
        book = self.pusher.chargers[charger_id]

        def row() -> Row:
            return (
                charger_id,
                int(state.booted),
                state.vendor,
                state.model,
                state.firmware_version,
                state.serial_number,
                state.last_seen,
                int(state.smart_charging),
                int(book.rate.amps),
            )

        self.store.mark_charger(charger_id, row)

    def connector(self, charger_id: str, connector_id: int) -> None:
        state = self.station.chargers[charger_id].connectors[connector_id]
        self.store.mark_connector(
            charger_id,
            connector_id,
            lambda: (
                charger_id,
                connector_id,
                state.status,
                state.error_code,
                state.info,
                state.updated_at,
            ),
        )

    def limit(self, book: ProfileBook) -> None:
        if book.session_id not in self.pusher.sessions:
            self.store.drop_limit(book.session_id)
            return
        self.store.mark_limit(
            book.session_id,
            lambda: (
                book.session_id,
                book.charger_id,
                book.connector_id,
                book.transaction_id,
                book.confirmed,
                book.in_flight,
            ),
        )

    def battery(self) -> None:
        battery = self.station.battery
        if battery is not None:
            self.store.mark_battery(
                lambda: (battery.stored_energy, int(battery.may_discharge), battery.updated_at)
            )

    def event(self, at: float, kind: str, **data: Any) -> None:
        self.store.record_event(at, kind, **data)


def recover(store: Store, station: Station, pusher: LimitPusher, now: float) -> dict[str, int]:
    """Rebuild the station from the database; returns counts for the log."""
    counts = {"sessions": 0, "limits": 0, "chargers": 0}
    for row in store.load("SELECT * FROM sessions WHERE status = 'active'"):
        station.restore(session_from_row(row))
        counts["sessions"] += 1
    stored_next = store.meta(NEXT_TRANSACTION_ID)
    highest = store.load("SELECT MAX(transaction_id) AS m FROM sessions")[0]["m"] or 0
    station.next_transaction_id = max(int(stored_next or 1), highest + 1)

    battery_rows = store.load("SELECT * FROM battery WHERE id = 1")
    battery = station.battery
    if battery is not None and battery_rows:
        row = battery_rows[0]
        # Nothing flowed while the controller was down: same energy, clock moved on.
        battery.stored_energy = min(max(row["stored_energy"], 0.0), battery.initial_capacity)
        battery.may_discharge = bool(row["may_discharge"])
        battery.updated_at = now

    for row in store.load("SELECT * FROM chargers"):
        state = station.chargers.get(row["charger_id"])
        if state is None:
            continue  # a charger since removed from the config
        _restore_charger(state, row)
        if row["amps"] is not None and state.config.rate_unit is None:
            pusher.set_rate_unit(state.config.id, amps=bool(row["amps"]))
        counts["chargers"] += 1
    for row in store.load("SELECT * FROM connectors"):
        state = station.chargers.get(row["charger_id"])
        if state is not None:
            state.connectors[row["connector_id"]] = ConnectorState(
                status=row["status"],
                error_code=row["error_code"],
                info=row["info"],
                updated_at=row["updated_at"],
            )

    for row in store.load("SELECT * FROM limits"):
        session = station.sessions.get(row["session_id"])
        if session is None or not session.active:
            continue
        # What the charger may still apply: the larger of what it accepted and what
        # was on the wire when the controller stopped.
        values = [v for v in (row["confirmed"], row["in_flight"]) if v is not None]
        pusher.track(
            session.session_id,
            session.charger_id,
            row["connector_id"],
            row["transaction_id"],
            confirmed=max(values) if values else None,
        )
        counts["limits"] += 1
    for session in station.active_sessions():
        if session.origin is Origin.OCPP and session.session_id not in pusher.sessions:
            assert session.transaction_id is not None
            pusher.track(
                session.session_id,
                session.charger_id,
                session.connector_id + 1,
                session.transaction_id,
            )
    # Chargers with sessions count as offline from now until they reconnect.
    for state in station.chargers.values():
        state.connected = False
        state.disconnected_at = now
    return counts


def _restore_charger(state: ChargerState, row: Any) -> None:
    state.booted = bool(row["booted"])
    state.vendor = row["vendor"]
    state.model = row["model"]
    state.firmware_version = row["firmware_version"]
    state.serial_number = row["serial_number"]
    state.last_seen = row["last_seen"]
    state.smart_charging = bool(row["smart_charging"]) and state.config.smart_charging


def load_start_keys(
    store: Store, now: float
) -> dict[tuple[str, int, str, str, int], tuple[int, str]]:
    rows = store.load("SELECT * FROM start_keys WHERE recorded_at >= ?", (now - START_KEY_MEMORY,))
    return {
        (r["charger_id"], r["connector_id"], r["id_tag"], r["timestamp"], r["meter_start"]): (
            r["transaction_id"],
            r["status"],
        )
        for r in rows
    }
