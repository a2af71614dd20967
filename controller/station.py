"""Station state: sessions keyed by id, one per connector, and their allocation.

The station is synchronous and does no I/O: callers (REST handlers, the OCPP
server, the battery timer) pass ``now`` from the injected clock, mutate it, and
get the new allocation back at once. Every change reruns the allocator, so an
answer that changes allocations always reflects the new ones (behaviour spec
sections 2-5).

Pins: the OCPP push layer may pin a session at a fixed kW (a lowering the
charger has not accepted yet, a charger that cannot be limited, a charger
offline too long). Pinned power is reserved before anyone else is served, so
the limits chargers may be applying never add up to more than the root limit.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from allocator import ChargerNode, Demand, StationTree, allocate, compile_tree
from allocator.holding import HoldingPlan, allocate_holding
from controller.battery import Battery
from controller.config import ChargerConfig, StationConfig
from controller.demand import learned_cap
from controller.sessions import (
    ConnectorBusy,
    InvalidConnector,
    Origin,
    Session,
    SessionAlreadyStopped,
    SessionStatus,
    UnknownCharger,
    UnknownSession,
)

Listener = Callable[[], None]

# Stopped sessions kept in memory for quick answers; older history is in the store.
RECENT_STOPPED = 10_000


@dataclass(slots=True)
class ConnectorState:
    """What a charger last said about one connector (OCPP StatusNotification)."""

    status: str | None = None
    error_code: str | None = None
    info: str | None = None
    updated_at: float | None = None


@dataclass(slots=True)
class ChargerState:
    """What the controller knows of a charger beyond its configuration."""

    config: ChargerConfig
    connected: bool = False
    booted: bool = False
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    serial_number: str | None = None
    last_seen: float | None = None
    disconnected_at: float | None = None
    limits_confirmed: bool = True
    smart_charging: bool = True
    # OCPP connector 0 is the charger itself; 1..n are the connectors.
    connectors: dict[int, ConnectorState] = field(default_factory=dict)


def default_session_id() -> str:
    return str(uuid.uuid4())


class Station:
    def __init__(
        self,
        config: StationConfig,
        *,
        now: float,
        session_id_factory: Callable[[], str] = default_session_id,
        battery: Battery | None = None,
    ) -> None:
        self.config = config
        self.tree = compile_tree(config.tree())
        self.strategy = config.allocation.strategy
        self._new_session_id = session_id_factory
        self.chargers = {
            c.id: ChargerState(config=c, smart_charging=c.smart_charging) for c in config.chargers
        }
        # Active sessions and the most recent stopped ones.
        self.sessions: dict[str, Session] = {}
        self._recent_stopped: deque[str] = deque()
        self._active: dict[tuple[str, int], Session] = {}
        # One allocator demand per active session, rebuilt only when its cap changes.
        self._demands: dict[str, Demand] = {}
        self._by_transaction: dict[int, Session] = {}
        # Fixed budgets, recomputed at every run: sessions of chargers that
        # cannot be limited (at what they can physically draw) and of chargers
        # offline for too long (at the failsafe power).
        self.pins: dict[str, int] = {}
        # The most each profiled session's charger may be applying right now
        # (kept by the OCPP push layer); see allocator.holding.
        self.held: dict[str, int] = {}
        self.plan: HoldingPlan | None = None
        self.next_transaction_id = 1
        self.allocation_version = 0
        self.allocation_outdated = False
        self._load = 0.0
        self._last_run = now
        self._listeners: list[Listener] = []
        if battery is None and config.battery is not None:
            battery = Battery(
                initial_capacity=config.battery.initial_capacity,
                power=config.battery.power,
                grid_capacity=config.grid_capacity,
                now=now,
                reserve=config.battery_reserve,
            )
        self.battery = battery
        self.available_power = self._root_limit()

    # -- queries ---------------------------------------------------------

    def active_sessions(self) -> Iterator[Session]:
        return iter(self._active.values())

    def active_on(self, charger_id: str, connector_id: int) -> Session | None:
        return self._active.get((charger_id, connector_id))

    def session(self, session_id: str) -> Session:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise UnknownSession(f"no session {session_id!r}", field="sessionId") from None

    def by_transaction(self, transaction_id: int) -> Session | None:
        return self._by_transaction.get(transaction_id)

    def charger(self, charger_id: str) -> ChargerState:
        try:
            return self.chargers[charger_id]
        except KeyError:
            raise UnknownCharger(f"no charger {charger_id!r}", field="chargerId") from None

    def allocated_power(self) -> int:
        return sum(s.allocated_power for s in self._active.values())

    def load(self) -> float:
        """Station load for the battery: reported power where known, else the limit.

        Kept as a running total (a MeterValues must not cost a pass over every
        session) and summed afresh at each reallocation, so rounding cannot drift.
        """
        return self._load

    def grid_power(self) -> float:
        if self.battery is None:
            return self.load()
        return self.battery.grid_power()

    # -- listeners -------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Called after every reallocation (the OCPP push loop listens)."""
        self._listeners.append(listener)

    # -- changes ---------------------------------------------------------

    def start_session(
        self,
        *,
        charger_id: str,
        connector_id: int,
        vehicle_max_power: float | None,
        now: float,
        origin: Origin = Origin.REST,
        id_tag: str | None = None,
        meter_start_wh: float | None = None,
        session_id: str | None = None,
        with_transaction: bool = False,
        reallocate: bool = True,
    ) -> Session:
        charger = self.charger(charger_id)
        if not 0 <= connector_id < charger.config.connectors:
            raise InvalidConnector(
                f"charger {charger_id!r} has connectors 0 to {charger.config.connectors - 1}",
                field="connectorId",
            )
        busy = self._active.get((charger_id, connector_id))
        if busy is not None:
            raise ConnectorBusy(
                f"connector {connector_id} of {charger_id!r} is busy with session "
                f"{busy.session_id}",
                field="connectorId",
            )
        self._advance(now)
        session = Session(
            session_id=session_id or self._new_session_id(),
            charger_id=charger_id,
            connector_id=connector_id,
            vehicle_max_power=vehicle_max_power,
            started_at=now,
            origin=origin,
            id_tag=id_tag,
            meter_start_wh=meter_start_wh,
        )
        if with_transaction:
            session.transaction_id = self.issue_transaction_id()
            self._by_transaction[session.transaction_id] = session
        self.sessions[session.session_id] = session
        self._active[(charger_id, connector_id)] = session
        self._demands[session.session_id] = _demand(session)
        if reallocate:
            self.reallocate(now)
        return session

    def restore(self, session: Session) -> None:
        """Put back a session read from the store (no reallocation: the caller runs one)."""
        self.sessions[session.session_id] = session
        if session.transaction_id is not None:
            self._by_transaction[session.transaction_id] = session
        if session.active:
            self._active[(session.charger_id, session.connector_id)] = session
            self._demands[session.session_id] = _demand(session)

    def issue_transaction_id(self) -> int:
        """A transaction id never given before (OCPP transaction ids are unique and stable)."""
        transaction_id = self.next_transaction_id
        self.next_transaction_id += 1
        return transaction_id

    def stop_session(
        self,
        session_id: str,
        *,
        now: float,
        consumed_energy: float | None = None,
        reason: str | None = None,
        reallocate: bool = True,
    ) -> Session:
        session = self.session(session_id)
        if not session.active:
            raise SessionAlreadyStopped(f"session {session_id!r} is already stopped")
        self._advance(now)
        if consumed_energy is not None:
            session.consumed_energy = consumed_energy
        session.status = SessionStatus.STOPPED
        session.stopped_at = now
        session.stop_reason = reason
        self._load -= _session_load(session)
        session.consumed_power = None
        del self._active[(session.charger_id, session.connector_id)]
        del self._demands[session_id]
        self.pins.pop(session_id, None)
        self.held.pop(session_id, None)
        self._forget_old_history(session_id)
        if reallocate:
            self.reallocate(now)
        else:
            self._set_battery_load(now)
        # A stopped session draws nothing; keep its last limit for the record.
        return session

    def update_session(
        self,
        session_id: str,
        *,
        now: float,
        consumed_power: float | None = None,
        vehicle_max_power: float | None = None,
        consumed_energy: float | None = None,
        state_of_charge: float | None = None,
        reallocate: bool = True,
    ) -> Session:
        """Record what a session reports. With ``reallocate=False`` a change that needs
        a new allocation only sets ``allocation_outdated`` (the caller coalesces)."""
        session = self.session(session_id)
        if not session.active:
            raise SessionAlreadyStopped(f"session {session_id!r} is stopped")
        battery_flipped = self._advance(now)
        cap_before = session.cap
        if consumed_power is not None:
            before = _session_load(session)
            session.consumed_power = consumed_power
            session.reading_stale = False
            session.reading_at = now
            self._load += consumed_power - before
            self._learn_demand(session, consumed_power, now)
        if consumed_energy is not None:
            session.consumed_energy = consumed_energy
        if state_of_charge is not None:
            session.state_of_charge = state_of_charge
        if vehicle_max_power is not None:
            session.vehicle_max_power = vehicle_max_power
        cap_changed = session.cap != cap_before
        if cap_changed:
            self._demands[session_id] = _demand(session)
        if (cap_changed or battery_flipped) and not reallocate:
            self.allocation_outdated = True
            self._set_battery_load(now)
        elif cap_changed or battery_flipped:
            self.reallocate(now)
        else:
            # Only the reported power moved: the limits stand, the battery's flow changes.
            self._set_battery_load(now)
        return session

    def _learn_demand(self, session: Session, consumed: float, now: float) -> None:
        # Only for vehicles that did not say what they take, under a limit their
        # charger has accepted (it may still be on its failsafe default otherwise).
        if (
            not self.config.allocation.learn_demand
            or session.vehicle_max_power is not None
            or self.held.get(session.session_id) != session.allocated_power
        ):
            return
        session.learned_max_power = learned_cap(
            session.learned_max_power, consumed, session.allocated_power, now - session.started_at
        )

    # -- time ------------------------------------------------------------

    def refresh(self, now: float) -> bool:
        """Bring the station up to ``now``: reallocate if the battery's availability
        changed or a charger's offline time ran out since the last run."""
        if self._advance(now) or self._offline_expired_since_last_run(now):
            self.reallocate(now)
            return True
        return False

    def _offline_expiries(self) -> Iterator[float]:
        """When each offline charger with OCPP sessions will have been offline too long."""
        offline = [
            c for c in self.chargers.values() if not c.connected and c.disconnected_at is not None
        ]
        if not offline:
            return
        with_sessions = {s.charger_id for s in self._active.values() if s.origin is Origin.OCPP}
        offline_after = self.config.ocpp.offline_after
        for charger in offline:
            if charger.config.id in with_sessions:
                assert charger.disconnected_at is not None
                yield charger.disconnected_at + offline_after

    def _offline_expired_since_last_run(self, now: float) -> bool:
        return any(self._last_run < expiry <= now for expiry in self._offline_expiries())

    def next_wakeup(self) -> float | None:
        """When the station must be refreshed even if nothing else happens: a battery
        threshold, or a charger's offline time running out."""
        moments = [e for e in self._offline_expiries() if e > self._last_run]
        if self.battery is not None:
            battery_event = self.battery.next_event_at()
            if battery_event is not None:
                moments.append(battery_event)
        return min(moments) if moments else None

    def offline_too_long(self, charger: ChargerState, now: float) -> bool:
        return (
            not charger.connected
            and charger.disconnected_at is not None
            and now - charger.disconnected_at >= self.config.ocpp.offline_after
        )

    def _structural_pins(self, now: float) -> dict[str, int]:
        by_charger: dict[str, list[Session]] = {}
        for session in self._active.values():
            if session.origin is Origin.OCPP:
                by_charger.setdefault(session.charger_id, []).append(session)
        pins: dict[str, int] = {}
        for charger_id, sessions in by_charger.items():
            charger = self.chargers[charger_id]
            if not charger.smart_charging:
                pins.update(_physical_maximum(charger.config, sessions))
            elif self.offline_too_long(charger, now):
                failsafe = math.floor(self.config.failsafe_power_per_connector(charger.config))
                pins.update({s.session_id: failsafe for s in sessions})
        return pins

    # -- allocation ------------------------------------------------------

    def reallocate(self, now: float) -> HoldingPlan:
        self._advance(now)
        self._last_run = now
        self.available_power = self._root_limit()
        self.pins = self._structural_pins(now)
        plan = allocate_holding(
            self.tree,
            list(self._demands.values()),
            self.available_power,
            self.strategy,
            self.held,
            self.pins,
        )
        for session in self._active.values():
            limit = plan.effective[session.session_id]
            if (
                limit.power > session.allocated_power
                and session.reading_at is not None
                and session.reading_at < now  # a reading taken this instant already knows
            ):
                session.reading_stale = True
            session.allocated_power = limit.power
            session.limited_by = limit.bound
        self.plan = plan
        self.allocation_outdated = False
        self._load = sum(_session_load(s) for s in self._active.values())
        self._set_battery_load(now)
        self.allocation_version += 1
        for listener in self._listeners:
            listener()
        return plan

    def _forget_old_history(self, stopped_id: str) -> None:
        self._recent_stopped.append(stopped_id)
        while len(self._recent_stopped) > RECENT_STOPPED:
            old = self.sessions.pop(self._recent_stopped.popleft(), None)
            if old is not None and old.transaction_id is not None:
                self._by_transaction.pop(old.transaction_id, None)

    def _root_limit(self) -> int:
        battery = 0.0 if self.battery is None else self.battery.available_power
        return max(0, math.floor(self.config.grid_capacity + battery))

    def _advance(self, now: float) -> bool:
        return self.battery is not None and self.battery.advance(now)

    def _set_battery_load(self, now: float) -> None:
        if self.battery is not None:
            self.battery.set_load(self.load(), now)


def _physical_maximum(charger: ChargerConfig, sessions: list[Session]) -> dict[str, int]:
    """What a charger that cannot be limited lets its sessions draw: its own maximum
    shared among them as it would share it, each up to its vehicle's maximum."""
    tree = StationTree(chargers=(ChargerNode(charger.id, charger.max_power),))
    demands = [
        Demand(s.session_id, charger.id, s.started_at, s.vehicle_max_power) for s in sessions
    ]
    limits = allocate(tree, demands, math.inf)
    return {session_id: limit.power for session_id, limit in limits.items()}


def _demand(session: Session) -> Demand:
    return Demand(
        session_id=session.session_id,
        charger_id=session.charger_id,
        started_at=session.started_at,
        vehicle_max_power=session.cap,
    )


def _session_load(session: Session) -> float:
    """What a session counts for in the station load (behaviour spec section 4): its
    reading, or its limit while it has none or its limit went up since the reading."""
    consumed = session.consumed_power
    if consumed is None:
        return float(session.allocated_power)
    if session.reading_stale:
        return max(consumed, float(session.allocated_power))
    return consumed
