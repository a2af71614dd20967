"""The station core: one object that owns the station's state (docs/architecture.md).

``StationCore.handle(event) -> list[Command]`` is the whole interface. The asyncio shell
(``controller.driver``), the tests and the simulators' virtual clock all drive it the same
way. It reads no clock (time comes in each event's ``now``), awaits nothing and touches no
socket or file.

Durable before acknowledged (docs/persistence.md). A request that must be durable before it
is answered (a transaction started or stopped; a REST start, stop or update; a raise of a
limit, before the charger may apply it) is *proposed* (:mod:`controller.core.proposals`):
the core works out the change and the records that describe it, locks what it touches,
and emits ``Persist(records, proposal=n)`` without changing anything else. The shell commits
and reports ``CommitDone`` (the core applies the change, reallocates and answers) or
``CommitFailed`` (the core drops it and answers ``Unavailable``: nothing happened, so a
retry behaves like a first attempt). Everything else (meter readings, statuses, the
battery, limit books, the journal) is applied at once and written behind: the core marks
what changed and hands the rows over at each ``Flush``.

Limits (docs/ocpp.md, "Limits to the charger"). After every reallocation each charger whose
limits changed gets its next job, one at a time: its failsafe default while it is being set
up, then lowerings before raises. Each connector's TxProfile follows the lifecycle table of
:mod:`controller.core.lifecycle`, which its :class:`LimitBook` applies to itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import count
from typing import Any

from allocator import Demand, compile_tree
from allocator.electrical_holding import (
    ElectricalHoldingPlan,
    allocate_electrical_holding,
)
from allocator.electrical_model import compile_station
from allocator.electrical_types import (
    DC_VOLTAGE,
    SITE_PHASES,
    ElectricalDemand,
    ElectricalLimit,
)
from allocator.holding import HoldingPlan, allocate_holding
from allocator.rotation import RotationSession, paused_since_after, rotation_order
from controller.config import ChargerConfig, StationConfig, ac_failsafe_current
from controller.core.battery import Battery
from controller.core.commands import (
    Answer,
    Command,
    LimitAnswer,
    Notice,
    Persist,
    ReadConfiguration,
    Refusal,
    Reply,
    ScheduleReallocation,
    SendProfile,
    SessionAnswer,
    StopAnswer,
    TransactionAnswer,
    Unavailable,
    WakeAt,
)
from controller.core.deadlines import Deadline, Deadlines
from controller.core.demand import learned_cap
from controller.core.electrical import (
    convert,
    current_for_kw,
    electrical_demand_of,
    idle,
    kw_of_current,
    limit_unit,
    phases_used,
)
from controller.core.events import (
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    ChargerHeard,
    CommitDone,
    CommitFailed,
    ConfigurationRead,
    ConnectorStatusReported,
    Event,
    ExternalLimitRequested,
    Flush,
    MeterReading,
    ProfileAnswered,
    ProfileResult,
    Reallocate,
    SessionStartRequested,
    SessionStopRequested,
    SessionUpdateRequested,
    SiteMeterRead,
    Tick,
    TransactionStartRequested,
    TransactionStopRequested,
)
from controller.core.lifecycle import ChargerPhase, ChargerTrigger, LimitPhase, LimitTrigger
from controller.core.phases import PhaseCurrents
from controller.core.profiles import (
    RateUnit,
    current_schedule,
    failsafe_profile,
    failsafe_profile_of,
    tx_profile,
    tx_profile_of,
)
from controller.core.proposals import (
    EXTERNAL_LIMIT_LOCK,
    LockKey,
    Proposal,
    Proposals,
    RaiseLimit,
    SetExternalLimit,
    StartSession,
    StartTransaction,
    StopSession,
    UpdateSession,
    connector_lock,
    session_lock,
    start_lock,
    transaction_lock,
)
from controller.core.records import Record, StoredState
from controller.core.rules import (
    CONFIGURATION_KEYS,
    FEATURE_PROFILES_KEY,
    RATE_UNIT_KEY,
    REJECTIONS_BEFORE_UNLIMITABLE,
    START_KEY_MEMORY,
    demand_of,
    id_tag_status,
    physical_maximum,
    session_load,
    start_key_text,
)
from controller.core.sessions import (
    ConnectorBusy,
    InvalidConnector,
    LimitAlreadyOver,
    Origin,
    Session,
    SessionStatus,
    StationError,
    UnknownCharger,
    UnknownSession,
)
from controller.core.site import (
    PLAUSIBLE_FACTOR,
    ExternalLimit,
    ExternalLimitCleared,
    MeterState,
    SiteBudget,
    SiteReading,
    plausible,
)
from controller.core.state import (
    ChargerState,
    ConnectorState,
    JournalEntry,
    LimitBook,
    LimitDropped,
    LimitUnit,
    ProfileReport,
    StartKey,
    StartKeyDropped,
    TransactionCounter,
)
from protocol.messages import AuthorizationStatus, GetConfigurationRequest

# The answer to a request, built once the change is applied and the station reallocated.
AnswerLater = Callable[[], Answer]
# A budget that rose by less than this share of the grid capacity waits for the next
# reallocation: a meter's noise must not send every station-bound charger a profile each
# second (docs/site.md, "When limits follow the meter").
RAISE_STEP = 0.01
# How each kind of profile answer is named in the journal.
JOURNAL_RESULT = {
    ProfileResult.ACCEPTED: "accepted",
    ProfileResult.REJECTED: "rejected",
    ProfileResult.ERROR: "error",
    ProfileResult.TIMEOUT: "timeout",
    ProfileResult.LOST: "cancelled",
    ProfileResult.NOT_SENT: "cancelled",
}


@dataclass(frozen=True, slots=True)
class _Call:
    """A profile call of ours (or a raise being committed): what its answer is for."""

    charger_id: str
    link: int | None  # None: a raise being committed, not yet sent
    session_id: str | None  # None: the failsafe default
    value: float | None = None  # in the book's unit: kW, or A per phase
    unit: LimitUnit = LimitUnit.KW


class StationCore:
    def __init__(
        self, config: StationConfig, *, now: float, stored: StoredState | None = None
    ) -> None:
        self.config = config
        self._tree = compile_tree(config.tree())
        self._strategy = config.allocation.strategy
        self._charger_config: dict[str, ChargerConfig] = {c.id: c for c in config.chargers}
        self._now = now
        self.chargers: dict[str, ChargerState] = {
            c.id: ChargerState(c.id, smart_charging=c.smart_charging) for c in config.chargers
        }
        self.connectors: dict[tuple[str, int], ConnectorState] = {}
        # Active sessions and their indexes.
        self._sessions: dict[str, Session] = {}
        self._on_connector: dict[tuple[str, int], Session] = {}
        self._by_transaction: dict[int, Session] = {}
        # One allocator demand per active session, rebuilt only when its cap changes.
        self._demands: dict[str, Demand] = {}
        # With the electrical model (docs/electrical.md) the allocator's demands carry phases,
        # and the rotation says which sessions run when not all can.
        self._electrical = (
            compile_station(config.electrical_station()) if config.has_electrical_model else None
        )
        self._electrical_demands: dict[str, ElectricalDemand] = {}
        # Boundaries count from the start; the start is not one itself, so that recovered
        # sessions keep running or waiting as they were (docs/electrical.md, "Rotation").
        self._last_boundary = now
        # The next rotation boundary while some session waits (None: nobody waits).
        self._rotation_due: float | None = None
        # Limit books of OCPP sessions, by session and by charger.
        self._books: dict[str, LimitBook] = {}
        self._charger_books: dict[str, dict[str, LimitBook]] = {c: {} for c in self.chargers}
        # The most each profiled session's charger may be applying (allocator.holding), in
        # its book's unit.
        self._held: dict[str, float] = {}
        self.plan: HoldingPlan | ElectricalHoldingPlan | None = None
        self.available_power = 0
        self.battery: Battery | None = None
        if config.battery is not None:
            self.battery = Battery(
                initial_capacity=config.battery.initial_capacity,
                power=config.battery.power,
                grid_capacity=config.grid_capacity,
                now=now,
                reserve=config.battery_reserve,
            )
        # The site behind the connection (docs/site.md): without a meter, the grid capacity.
        self.site: SiteBudget | None = None
        if config.site.meter is not None:
            self.site = SiteBudget(
                capacity=config.grid_capacity,
                margin=config.site_margin,
                hold=config.site.hold_seconds,
                timeout=config.site.meter_timeout,
                fallback=config.site_fallback_power,
                current_limit=config.grid_current_limit,
            )
        self.meter_state = MeterState.ABSENT if self.site is None else MeterState.STALE
        self._first_site_reading_at: float | None = None
        self._implausible_reading = False
        self.external_limit: ExternalLimit | None = None
        self.next_transaction_id = 1
        self._start_keys: dict[str, StartKey] = {}
        # transaction id -> its StartTransaction's key, to drop the key when the charger stops it
        self._start_key_of: dict[int, str] = {}
        self._proposals = Proposals()
        self._calls: dict[int, _Call] = {}
        self._refs = count(1)
        self._deadlines = Deadlines()
        self._announced_wakeup: float | None = None
        self._outdated = False
        self._reallocation_asked = False
        # Chargers that may have a limit to send after the next allocation: theirs changed,
        # or a limit of theirs waited for it.
        self._to_pump: set[str] = set()
        self._load = 0.0
        self._last_run = now
        # Written behind: what changed since the last Flush.
        self._dirty_sessions: set[str] = set()
        self._dirty_chargers: set[str] = set()
        self._dirty_connectors: set[tuple[str, int]] = set()
        self._dirty_books: set[str] = set()
        self._journal: list[JournalEntry] = []
        self._out: list[Command] = []
        self.reallocations = 0
        self.profiles_sent = 0
        # Sessions whose start was committed and acknowledged, by origin (GET /metrics).
        self.sessions_started = dict.fromkeys(Origin, 0)
        self.recovered = self._recover(stored, now) if stored is not None else {}
        # The stored allocations are only a record: the first one after recovery says
        # nothing about readings going stale (each session keeps what was stored).
        self._allocate(now, recovering=True)
        # What recovery had to say, for the shell to carry out first.
        self.initial_commands: list[Command] = self._out
        self._out = []

    # -- the interface -----------------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        out = self._out = []
        now = event.now if event.now > self._now else self._now
        self._now = now
        self._dispatch(event, now)
        if self._outdated and not self._reallocation_asked:
            self._reallocation_asked = True
            out.append(ScheduleReallocation())
        # The wake-up only ever moves earlier: one that comes too early finds nothing due
        # and sets the next (a reading moves the battery's predicted moment at every
        # MeterValues; re-arming the timer each time would cost more than the reading).
        wakeup = self.next_wakeup()
        announced = self._announced_wakeup
        if wakeup is not None and (announced is None or wakeup < announced):
            self._announced_wakeup = wakeup
            out.append(WakeAt(wakeup))
        return out

    def _dispatch(self, event: Event, now: float) -> None:
        match event:  # the most frequent first
            case MeterReading():
                self._on_meter_reading(event, now)
            case ChargerHeard():
                self._heard(event.charger_id, now)
            case ProfileAnswered():
                self._on_profile_answered(event, now)
            case TransactionStartRequested():
                self._on_transaction_start(event, now)
            case TransactionStopRequested():
                self._on_transaction_stop(event, now)
            case ConnectorStatusReported():
                self._on_connector_status(event, now)
            case ChargerConnected():
                self._on_connected(event, now)
            case ChargerDisconnected():
                self._on_disconnected(event, now)
            case ChargerBooted():
                self._on_booted(event, now)
            case ConfigurationRead():
                self._on_configuration(event, now)
            case SessionStartRequested():
                self._on_session_start(event, now)
            case SessionStopRequested():
                self._on_session_stop(event, now)
            case SessionUpdateRequested():
                self._on_session_update(event, now)
            case SiteMeterRead():
                self._on_site_reading(event, now)
            case ExternalLimitRequested():
                self._on_external_limit(event, now)
            case CommitDone():
                self._on_commit_done(event, now)
            case CommitFailed():
                self._on_commit_failed(event, now)
            case Tick():
                self._announced_wakeup = None  # the wake-up came: the next one is to be set
                self._refresh(now)
            case Reallocate():
                self._reallocation_asked = False
                if self._outdated:
                    self._reallocate(now)
            case Flush():
                self._on_flush(now)

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    # -- queries (read-only: the shell renders them, tests assert on them) -------------------

    @property
    def now(self) -> float:
        """The latest time an event brought (the core reads no clock)."""
        return self._now

    def session(self, session_id: str) -> Session | None:
        """An active session."""
        return self._sessions.get(session_id)

    def session_by_transaction(self, transaction_id: int) -> Session | None:
        return self._by_transaction.get(transaction_id)

    def session_on(self, charger_id: str, connector_id: int) -> Session | None:
        return self._on_connector.get((charger_id, connector_id))

    def active_sessions(self) -> Iterable[Session]:
        return self._sessions.values()

    def limit_book(self, session_id: str) -> LimitBook | None:
        return self._books.get(session_id)

    def limit_due(self, session_id: str) -> float | None:
        """The limit the session's charger should be sent now (None: nothing to send)."""
        book = self._books.get(session_id)
        return None if book is None else self._due(book)

    @property
    def held(self) -> Mapping[str, float]:
        return self._held

    def allocated_power(self) -> float:
        return sum(s.allocated_power for s in self._sessions.values())

    def phase_bookings(self) -> dict[str, float] | None:
        """With the electrical model: the current counted on each site phase now (A), from
        the limits in force (docs/electrical.md); None without it."""
        plan = self.plan
        if self._electrical is None or not isinstance(plan, ElectricalHoldingPlan):
            return None
        booked = dict.fromkeys(SITE_PHASES, 0.0)
        for limit in plan.effective.values():
            if not limit.running or not limit.phases:
                continue
            amps = limit.current
            if amps is None:
                amps = limit.power * 1000.0 / (DC_VOLTAGE * len(limit.phases))
            for phase in limit.phases:
                booked[phase] += amps
        return booked

    def load(self) -> float:
        """Station load for the battery: reported power where known, else the limit."""
        return self._load

    def grid_power(self) -> float:
        return self._load if self.battery is None else self.battery.grid_power()

    def charger_config(self, charger_id: str) -> ChargerConfig:
        return self._charger_config[charger_id]

    def limits_confirmed(self, charger_id: str) -> bool:
        """Every limit of the charger is what it last accepted, and what the plan wants."""
        for book in self._charger_books[charger_id].values():
            if book.phase is not LimitPhase.CONFIRMED or self._due(book) is not None:
                return False
        return True

    def ready(self, charger_id: str) -> bool:
        """Connected and set up: its failsafe installed (or it takes no profiles at all)."""
        charger = self.chargers[charger_id]
        return charger.connected and charger.phase is ChargerPhase.READY

    def settled(self) -> bool:
        """Nothing left to do now: nothing being committed, no reallocation due, and every
        connected charger idle with nothing due (a limit waiting for its retry counts as
        settled; ``limits_confirmed`` tells it apart)."""
        if self._proposals or self._outdated:
            return False
        for charger in self.chargers.values():
            if not charger.connected or not charger.smart_charging:
                continue
            if charger.busy is not None:
                return False
            phase = charger.phase
            if phase in (ChargerPhase.CONFIGURING, ChargerPhase.INSTALLING):
                return False
            if phase in (ChargerPhase.READY, ChargerPhase.DEFAULT_RETRYING) and (
                self._next_job(charger) is not None
            ):
                return False
        return True

    @property
    def pending_proposals(self) -> int:
        return len(self._proposals)

    def next_wakeup(self) -> float | None:
        """When the core must be told ``Tick`` even if nothing else happens."""
        moments = []
        deadline = self._deadlines.next(self._live)
        if deadline is not None:
            moments.append(deadline)
        if self.battery is not None:
            battery_event = self.battery.next_event_at()
            if battery_event is not None:
                moments.append(battery_event)
        if self.site is not None:
            site_change = self.site.next_change_at(self._now)
            if site_change is not None:
                moments.append(site_change)
        limit = self.external_limit
        if limit is not None and limit.until is not None:
            moments.append(limit.until)
        if self._rotation_due is not None:
            moments.append(self._rotation_due)
        return min(moments) if moments else None

    def records(self) -> list[Record]:
        """Everything stored about the station now (what recovery would need)."""
        out: list[Record] = [s.copy() for s in self._sessions.values()]
        out += [c.copy() for c in self.chargers.values()]
        out += [c.copy() for c in self.connectors.values()]
        out += [b.copy() for b in self._books.values()]
        out += list(self._start_keys.values())
        if self.battery is not None:
            out.append(self.battery.record())
        out.append(TransactionCounter(self.next_transaction_id))
        if self.external_limit is not None:
            out.append(self.external_limit.copy())
        return out

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self, stored: StoredState, now: float) -> dict[str, int]:
        counts = {"sessions": 0, "limits": 0, "chargers": 0}
        for record in stored.chargers:
            config = self._charger_config.get(record.charger_id)
            if config is None:
                continue  # a charger since removed from the config
            smart = record.smart_charging and config.smart_charging
            self.chargers[record.charger_id] = replace(record, smart_charging=smart)
            counts["chargers"] += 1
        for connector in stored.connectors:
            if connector.charger_id in self.chargers:
                self.connectors[(connector.charger_id, connector.connector_id)] = connector
        for session in stored.sessions:
            config = self._charger_config.get(session.charger_id)
            if config is None or not 0 <= session.connector_id < config.connectors:
                self._emit(
                    Notice(
                        f"session {session.session_id}: its charger left the config",
                        session.charger_id,
                        session.session_id,
                    )
                )
                continue
            self._add_session(session.copy())
            counts["sessions"] += 1
        for stored_book in stored.limits:
            if stored_book.session_id in self._sessions:
                # What the charger may still apply: the larger of what it accepted and
                # what was on the wire when the controller stopped; in the unit the
                # charger's limits are counted in now.
                config = self._charger_config[stored_book.charger_id]
                unit = limit_unit(config, self._electrical is not None)
                held = stored_book.held
                if held is not None:
                    held = convert(held, stored_book.unit, unit, config.ac)
                self._add_book(replace(stored_book, applied=held, in_flight=None, unit=unit))
                counts["limits"] += 1
        for session in self._sessions.values():
            if session.origin is Origin.OCPP and session.session_id not in self._books:
                assert session.transaction_id is not None
                # Its book was not written yet: the charger was sent nothing above what the
                # book held then (raises reach the disk first), which is its failsafe default.
                config = self._charger_config[session.charger_id]
                self._add_book(
                    LimitBook(
                        session.session_id,
                        session.charger_id,
                        session.connector_id + 1,
                        session.transaction_id,
                        applied=self._failsafe_hold(config),
                        announced=True,
                        unit=limit_unit(config, self._electrical is not None),
                    )
                )
        if self.battery is not None and stored.battery is not None:
            self.battery.restore(stored.battery, now)
        limit = stored.external_limit
        if limit is not None:
            if limit.in_force(now):
                self.external_limit = limit.copy()
            else:
                self._expire_external_limit(limit, now)
        self.next_transaction_id = max(
            stored.next_transaction_id, stored.highest_transaction_id + 1
        )
        for key in stored.start_keys:
            if key.recorded_at >= now - START_KEY_MEMORY:
                self._keep_start_key(key)
        # Every charger counts as offline from now until it reconnects.
        for charger in self.chargers.values():
            charger.disconnected_at = now
            self._deadlines.add(
                now + self.config.ocpp.offline_after, Deadline.OFFLINE, charger.charger_id
            )
        self._journal.append(JournalEntry(now, "controller.started", data=dict(counts)))
        return counts

    # -- chargers ----------------------------------------------------------------------------

    def _heard(self, charger_id: str, now: float) -> ChargerState:
        charger = self.chargers[charger_id]
        charger.last_seen = now
        self._dirty_chargers.add(charger_id)
        return charger

    def _on_connected(self, event: ChargerConnected, now: float) -> None:
        charger = self._heard(event.charger_id, now)
        if self._offline_too_long(charger, now):
            self._outdated = True  # its sessions' failsafe pins lift
        charger.connected = True
        charger.link = event.link
        charger.disconnected_at = None
        charger.waiting_for = None
        call = self._calls.get(charger.busy) if charger.busy is not None else None
        if call is not None and call.link is not None:
            # A call on the connection this one replaces: its answer (a cancellation) still
            # settles its book, but it no longer blocks this connection.
            charger.busy = None
        if not charger.booted:
            charger.step(ChargerTrigger.CONNECTED)
            return
        # OCPP-J 5.4: a charger that reconnects need not boot again. Nobody knows what it
        # applies now: install the failsafe again and send every limit again.
        charger.step(ChargerTrigger.RECONNECTED)
        for book in self._charger_books[charger.charger_id].values():
            book.reconnected()
            self._dirty_books.add(book.session_id)  # its failures start again
        self._start_installing(charger, now)

    def _on_disconnected(self, event: ChargerDisconnected, now: float) -> None:
        charger = self.chargers[event.charger_id]
        if charger.link != event.link or not charger.connected:
            return  # a connection that another one already replaced
        charger.connected = False
        charger.disconnected_at = now
        charger.waiting_for = None
        charger.step(ChargerTrigger.DISCONNECTED)
        for book in self._charger_books[charger.charger_id].values():
            book.step(LimitTrigger.DISCONNECTED)
        self._deadlines.add(
            now + self.config.ocpp.offline_after, Deadline.OFFLINE, charger.charger_id
        )
        self._outdated = True

    def _on_booted(self, event: ChargerBooted, now: float) -> None:
        charger = self._heard(event.charger_id, now)
        charger.booted = True
        charger.vendor = event.vendor
        charger.model = event.model
        charger.firmware_version = event.firmware_version
        charger.serial_number = event.serial_number
        self._journal_entry(
            now, "charger.booted", charger.charger_id, vendor=event.vendor, model=event.model
        )
        if not charger.connected or charger.link != event.link:
            return
        # Every boot: learn again how the charger takes limits, then set it up.
        charger.step(ChargerTrigger.BOOTED)
        ref = next(self._refs)
        charger.waiting_for = ref
        request = GetConfigurationRequest(key=list(CONFIGURATION_KEYS))
        self._emit(ReadConfiguration(charger.charger_id, event.link, ref, request))

    def _on_configuration(self, event: ConfigurationRead, now: float) -> None:
        charger = self.chargers[event.charger_id]
        if charger.waiting_for != event.ref or charger.phase is not ChargerPhase.CONFIGURING:
            return
        charger.waiting_for = None
        config = self._charger_config[charger.charger_id]
        keys = event.keys or {}
        if FEATURE_PROFILES_KEY in keys:
            profiles = {p.strip() for p in keys[FEATURE_PROFILES_KEY].split(",")}
            self._set_smart_charging(charger, "SmartCharging" in profiles and config.smart_charging)
        if config.rate_unit is None and RATE_UNIT_KEY in keys:
            units = {u.strip() for u in keys[RATE_UNIT_KEY].split(",")}
            # "Current" alone means the charger takes amps only (OCPP 1.6 section 9.4.1).
            charger.amps = "Power" not in units and "Current" in units
        self._dirty_chargers.add(charger.charger_id)
        if charger.smart_charging:
            charger.step(ChargerTrigger.CONFIGURED)
            self._start_installing(charger, now)
        else:
            charger.step(ChargerTrigger.CONFIGURED_UNLIMITABLE)

    def _set_smart_charging(self, charger: ChargerState, smart: bool) -> None:
        if smart == charger.smart_charging:
            return
        charger.smart_charging = smart
        self._dirty_chargers.add(charger.charger_id)
        self._outdated = True
        trigger = LimitTrigger.LIMITABLE if smart else LimitTrigger.UNLIMITABLE
        books = self._charger_books[charger.charger_id]
        # Until now its cars could draw what the hardware allows, and next its failsafe
        # default: the books hold the larger until a limit of their own is accepted.
        holds: dict[str, float] = {}
        if smart:
            failsafe = self._failsafe_hold(self._charger_config[charger.charger_id])
            physical = self._physical_holds(charger.charger_id)
            holds = {s: max(hold, failsafe) for s, hold in physical.items()}
        for book in books.values():
            if book.phase not in (LimitPhase.COMMITTING, LimitPhase.SENDING):
                book.step(trigger)  # the others follow when their call ends
            if book.held is None and book.session_id in holds:
                book.applied = holds[book.session_id]
                self._sync_held(book)
                self._dirty_books.add(book.session_id)

    def _start_installing(self, charger: ChargerState, now: float) -> None:
        """The charger entered INSTALLING: its failsafe default goes out as soon as the
        charger is free (at once, unless a call of before is still out)."""
        if not charger.smart_charging:
            charger.step(ChargerTrigger.UNLIMITABLE)
            return
        self._pump(charger.charger_id, now)

    def _on_connector_status(self, event: ConnectorStatusReported, now: float) -> None:
        self._heard(event.charger_id, now)
        if event.connector_id > self._charger_config[event.charger_id].connectors:
            return  # a connector the charger does not have: nothing to record
        key = (event.charger_id, event.connector_id)
        self.connectors[key] = ConnectorState(
            event.charger_id, event.connector_id, event.status, event.error_code, event.info, now
        )
        self._dirty_connectors.add(key)

    def _offline_too_long(self, charger: ChargerState, now: float) -> bool:
        return (
            not charger.connected
            and charger.disconnected_at is not None
            and now - charger.disconnected_at >= self.config.ocpp.offline_after
        )

    def _rate(self, charger: ChargerState) -> RateUnit:
        config = self._charger_config[charger.charger_id]
        amps = config.rate_unit == "A" if config.rate_unit is not None else bool(charger.amps)
        return RateUnit(amps=amps, voltage=config.voltage, phases=config.phases)

    # -- transactions (OCPP) -----------------------------------------------------------------

    def _on_transaction_start(self, event: TransactionStartRequested, now: float) -> None:
        charger = self._heard(event.charger_id, now)
        key = start_key_text(
            event.charger_id, event.connector_id, event.id_tag, event.timestamp, event.meter_start
        )
        if self._proposals.wait_for(event, (start_lock(key),)):
            return
        known = self._start_keys.get(key)
        if known is not None:
            # A resend (the charger never saw our answer): the same answer, nothing new. Its
            # transaction's limits may go now that the charger knows the id.
            session = self._by_transaction.get(known.transaction_id)
            book = None if session is None else self._books.get(session.session_id)
            if book is not None and charger.connected and charger.link == event.link:
                book.announced = True
                self._dirty_books.add(book.session_id)
            answer = TransactionAnswer(known.transaction_id, known.status)
            self._emit(Reply(event.reply_to, answer))
            self._pump(event.charger_id, now)
            return
        status = id_tag_status(self.config, event.id_tag)
        connector = event.connector_id - 1
        if not 0 <= connector < self._charger_config[event.charger_id].connectors:
            status = AuthorizationStatus.INVALID
        locks = [start_lock(key)]
        stale = None
        if status is AuthorizationStatus.ACCEPTED:
            locks.append(connector_lock(event.charger_id, connector))
            stale = self._on_connector.get((event.charger_id, connector))
            if stale is not None:
                locks.append(session_lock(stale.session_id))
        if self._proposals.wait_for(event, tuple(locks)):
            return
        transaction_id = self._proposals.next_transaction_id(self.next_transaction_id)
        locks.append(transaction_lock(transaction_id))
        start_key = StartKey(key, event.charger_id, transaction_id, status.value, now)
        records: list[Record] = [start_key, TransactionCounter(transaction_id + 1)]
        session = None
        if status is AuthorizationStatus.ACCEPTED:
            if stale is not None:
                # One transaction per connector: a new start means the old one ended
                # without a StopTransaction reaching us.
                records += self._stop_records(stale, now, None, "Superseded")
            session = Session(
                session_id=event.new_session_id,
                charger_id=event.charger_id,
                connector_id=connector,
                vehicle_max_power=None,
                started_at=now,
                origin=Origin.OCPP,
                transaction_id=transaction_id,
                id_tag=event.id_tag,
                meter_start_wh=float(event.meter_start),
            )
            records.append(session.copy())
            records.append(
                self._session_entry(
                    now,
                    "session.started",
                    session,
                    transactionId=transaction_id,
                    idTag=event.id_tag,
                    meterStart=event.meter_start,
                )
            )
        superseded = None if stale is None else stale.session_id
        change = StartTransaction(event.charger_id, event.link, start_key, session, superseded)
        self._propose(change, tuple(locks), event.reply_to, records, transaction_id)

    def _on_transaction_stop(self, event: TransactionStopRequested, now: float) -> None:
        self._heard(event.charger_id, now)
        if self._proposals.wait_for(event, (transaction_lock(event.transaction_id),)):
            return
        info = None if event.id_tag is None else id_tag_status(self.config, event.id_tag).value
        session = self._by_transaction.get(event.transaction_id)
        if session is None or session.charger_id != event.charger_id:
            # Unknown, -1, or already stopped (a resend): answered, nothing changes
            # (OCPP 1.6 section 3.7: transaction messages are always answered).
            self._emit(Reply(event.reply_to, StopAnswer(info)))
            return
        lock = session_lock(session.session_id)
        if self._proposals.wait_for(event, (lock,)):
            return
        energy = None
        if session.meter_start_wh is not None:
            energy = max(0.0, (event.meter_stop - session.meter_start_wh) / 1000.0)
        reason = event.reason or "Local"
        change = StopSession(session.session_id, now, energy, reason, info, from_charger=True)
        records = self._stop_records(session, now, energy, reason)
        start_key = self._start_key_of.get(event.transaction_id)
        if start_key is not None:
            records.append(StartKeyDropped(start_key))
        self._propose(change, (lock,), event.reply_to, records)

    def _stop_records(
        self, session: Session, now: float, energy: float | None, reason: str
    ) -> list[Record]:
        """How a session looks once stopped: the records of the proposal that stops it."""
        stopped = replace(
            session,
            status=SessionStatus.STOPPED,
            stopped_at=now,
            stop_reason=reason,
            consumed_power=None,
            consumed_energy=session.consumed_energy if energy is None else energy,
        )
        entry = self._session_entry(
            now, "session.stopped", stopped, reason=reason, consumedEnergy=stopped.consumed_energy
        )
        return [stopped, entry, LimitDropped(session.session_id)]

    # -- REST --------------------------------------------------------------------------------

    def _refuse(self, reply_to: object, error: StationError) -> None:
        self._emit(Reply(reply_to, Refusal(error)))

    def _on_session_start(self, event: SessionStartRequested, now: float) -> None:
        config = self._charger_config.get(event.charger_id)
        if config is None:
            error = UnknownCharger(f"no charger {event.charger_id!r}", field="chargerId")
            self._refuse(event.reply_to, error)
            return
        if not 0 <= event.connector_id < config.connectors:
            message = f"charger {event.charger_id!r} has connectors 0 to {config.connectors - 1}"
            self._refuse(event.reply_to, InvalidConnector(message, field="connectorId"))
            return
        lock = connector_lock(event.charger_id, event.connector_id)
        if self._proposals.wait_for(event, (lock,)):
            return
        busy = self._on_connector.get((event.charger_id, event.connector_id))
        if busy is not None:
            message = (
                f"connector {event.connector_id} of {event.charger_id!r} is busy with "
                f"session {busy.session_id}"
            )
            self._refuse(event.reply_to, ConnectorBusy(message, field="connectorId"))
            return
        session = Session(
            session_id=event.new_session_id,
            charger_id=event.charger_id,
            connector_id=event.connector_id,
            vehicle_max_power=event.vehicle_max_power,
            started_at=now,
            phases=event.phases,
        )
        entry = self._session_entry(
            now,
            "session.started",
            session,
            vehicleMaxPower=event.vehicle_max_power,
            **({} if event.phases is None else {"phases": event.phases}),
        )
        locks = (lock, session_lock(session.session_id))
        self._propose(StartSession(session), locks, event.reply_to, [session.copy(), entry])

    def _active_or_refuse(self, session_id: str, reply_to: object) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            # Stopped or never known: the shell tells the two apart from the history.
            error = UnknownSession(f"no active session {session_id!r}", field="sessionId")
            self._refuse(reply_to, error)
        return session

    def _on_session_stop(self, event: SessionStopRequested, now: float) -> None:
        lock = session_lock(event.session_id)
        if self._proposals.wait_for(event, (lock,)):
            return
        session = self._active_or_refuse(event.session_id, event.reply_to)
        if session is None:
            return
        energy = event.consumed_energy
        change = StopSession(session.session_id, now, energy, "Remote", None, from_charger=False)
        records = self._stop_records(session, now, energy, "Remote")
        self._propose(change, (lock,), event.reply_to, records)

    def _on_session_update(self, event: SessionUpdateRequested, now: float) -> None:
        lock = session_lock(event.session_id)
        if self._proposals.wait_for(event, (lock,)):
            return
        session = self._active_or_refuse(event.session_id, event.reply_to)
        if session is None:
            return
        updated = session.copy()
        if event.consumed_power is not None:
            updated.consumed_power = event.consumed_power
        if event.vehicle_max_power is not None:
            updated.vehicle_max_power = event.vehicle_max_power
        if event.phases is not None:
            updated.phases = event.phases
        entry = self._session_entry(
            now,
            "session.updated",
            session,
            consumedPower=event.consumed_power,
            vehicleMaxPower=event.vehicle_max_power,
            **({} if event.phases is None else {"phases": event.phases}),
        )
        change = UpdateSession(
            session.session_id, event.consumed_power, event.vehicle_max_power, event.phases
        )
        self._propose(change, (lock,), event.reply_to, [updated, entry])

    # -- propose, commit, apply --------------------------------------------------------------

    def _propose(
        self,
        change: (
            RaiseLimit
            | StartTransaction
            | StartSession
            | StopSession
            | UpdateSession
            | SetExternalLimit
        ),
        locks: tuple[LockKey, ...],
        reply_to: object | None,
        records: list[Record],
        transaction_id: int | None = None,
    ) -> None:
        number = self._proposals.propose(change, locks, reply_to, transaction_id)
        self._emit(Persist(tuple(records), proposal=number))

    def _on_commit_done(self, event: CommitDone, now: float) -> None:
        answers: list[tuple[object, AnswerLater]] = []
        waited: list[Event] = []
        for number in event.proposals:
            proposal, waiting = self._proposals.resolve(number)
            waited += waiting
            if proposal is None:
                continue
            answer = self._apply(proposal, now)
            if answer is None or proposal.reply_to is None:
                continue
            if _from_charger(proposal.change):
                # A charger's answer reports no allocation: it leaves at once.
                self._emit(Reply(proposal.reply_to, answer()))
            else:
                answers.append((proposal.reply_to, answer))
        if answers:
            # REST answers report the allocation: it runs now. Limits follow all answers, so
            # that a charger knows a new transaction's id before the profile naming it.
            if self._outdated:
                self._allocate(now)
            for reply_to, answer in answers:
                self._emit(Reply(reply_to, answer()))
            self._pump_due(now)
        # Otherwise the allocation waits for the shell's Reallocate, shared with whatever
        # else arrives meanwhile (a burst of StartTransactions costs one).
        self._handle_waiting(waited, now)

    def _on_commit_failed(self, event: CommitFailed, now: float) -> None:
        waited: list[Event] = []
        for number in event.proposals:
            proposal, waiting = self._proposals.resolve(number)
            waited += waiting
            if proposal is not None:
                self._drop(proposal, now)
        self._pump_due(now)  # what waited for a dropped stop may go now
        self._handle_waiting(waited, now)

    def _handle_waiting(self, events: list[Event], now: float) -> None:
        """Requests that waited for a proposal: handled now, as if they had just arrived."""
        for event in events:
            self._dispatch(replace(event, now=now), now)

    def _apply(self, proposal: Proposal, now: float) -> AnswerLater | None:
        """Apply a committed change; returns how to build its answer (after reallocation)."""
        change = proposal.change
        match change:
            case StartTransaction():
                return self._apply_transaction_start(change)
            case StartSession(session=committed):
                live = committed.copy()
                self._add_started(live)
                self._outdated = True
                return lambda: SessionAnswer(live.copy())
            case StopSession():
                return self._apply_stop(change, now)
            case UpdateSession():
                session = self._sessions[change.session_id]
                self._record_reading(
                    session,
                    now,
                    consumed_power=change.consumed_power,
                    vehicle_max_power=change.vehicle_max_power,
                )
                if change.phases is not None and change.phases != session.phases:
                    session.phases = change.phases
                    self._set_demand(session)
                    self._outdated = True
                return lambda: SessionAnswer(session.copy())
            case RaiseLimit():
                self._apply_raise(change)
                return None
            case SetExternalLimit(limit=limit):
                self.external_limit = None if limit is None else limit.copy()
                self._outdated = True
                return lambda: LimitAnswer(None if limit is None else limit.copy())

    def _apply_transaction_start(self, change: StartTransaction) -> AnswerLater:
        key = change.key
        self._keep_start_key(key)
        self.next_transaction_id = max(self.next_transaction_id, key.transaction_id + 1)
        answer = TransactionAnswer(key.transaction_id, key.status)
        if change.session is None:
            return lambda: answer
        if change.superseded is not None and change.superseded in self._sessions:
            stale = self._sessions[change.superseded]
            self._end_session(stale, self._now, None, "Superseded")
            self._emit(Persist((stale.copy(),)))
        session = change.session.copy()
        self._add_started(session)
        charger = self.chargers[change.charger_id]
        assert session.transaction_id is not None
        config = self._charger_config[session.charger_id]
        book = LimitBook(
            session.session_id,
            session.charger_id,
            session.connector_id + 1,
            session.transaction_id,
            # Until its TxProfile is accepted the car draws under the failsafe default (it
            # started before its StartTransaction reached us): booked from now on, so that
            # the others are not raised into room it may still be using (docs/electrical.md,
            # "What goes to the charger").
            applied=self._failsafe_hold(config) if charger.smart_charging else None,
            # The answer goes out on this connection just before any profile: the charger
            # will know the id. On another connection (or none) it must resend first.
            announced=charger.connected and charger.link == change.link,
            unit=limit_unit(config, self._electrical is not None),
        )
        self._add_book(book)
        self._dirty_books.add(book.session_id)
        self._outdated = True
        return lambda: answer

    def _apply_stop(self, change: StopSession, now: float) -> AnswerLater:
        session = self._sessions[change.session_id]
        self._end_session(session, now, change.consumed_energy, change.reason, change.stopped_at)
        # The proposal wrote the session as it was then; readings since are kept too.
        self._emit(Persist((session.copy(),)))
        if change.from_charger:
            self._drop_start_key(session.transaction_id)
            status = change.id_tag_status
            return lambda: StopAnswer(status)
        return lambda: SessionAnswer(session.copy())

    def _apply_raise(self, change: RaiseLimit) -> None:
        call = self._calls.get(change.ref)
        book = self._books.get(change.session_id)
        if call is None or book is None or book.waiting_for != change.ref:
            self._release(change.ref)  # the session ended meanwhile
            return
        book.step(LimitTrigger.COMMITTED)
        assert book.in_flight is not None
        self._send_limit(self.chargers[book.charger_id], book, book.in_flight, change.ref)

    def _drop(self, proposal: Proposal, now: float) -> None:
        """A proposal that could not be committed: nothing of it happened."""
        change = proposal.change
        match change:
            case RaiseLimit():
                book = self._books.get(change.session_id)
                if book is not None and book.waiting_for == change.ref:
                    book.commit_failed(now)
                    self._deadlines.add(_when(book.retry_at), Deadline.LIMIT_RETRY, book.session_id)
                    self._sync_held(book)
                    self._dirty_books.add(book.session_id)
                self._release(change.ref)
            case StopSession() | UpdateSession():
                self._rewrite_behind(change.session_id)
            case StartTransaction(superseded=superseded) if superseded is not None:
                self._rewrite_behind(superseded)
            case _:
                pass
        if proposal.reply_to is not None:
            self._emit(Reply(proposal.reply_to, Unavailable()))

    def _rewrite_behind(self, session_id: str) -> None:
        """A failed proposal's rows (a session, its limit book) may have replaced rows that
        were waiting to be written behind: those are written again."""
        if session_id in self._sessions:
            self._dirty_sessions.add(session_id)
        if session_id in self._books:
            self._dirty_books.add(session_id)

    # -- sessions ----------------------------------------------------------------------------

    def _add_started(self, session: Session) -> None:
        """A session whose start was just committed (not one recovered)."""
        self._add_session(session)
        self.sessions_started[session.origin] += 1

    def _add_session(self, session: Session) -> None:
        self._sessions[session.session_id] = session
        self._on_connector[(session.charger_id, session.connector_id)] = session
        if session.transaction_id is not None:
            self._by_transaction[session.transaction_id] = session
        self._set_demand(session)

    def _set_demand(self, session: Session) -> None:
        if self._electrical is None:
            self._demands[session.session_id] = demand_of(session)
        else:
            ac = self._charger_config[session.charger_id].ac
            self._electrical_demands[session.session_id] = electrical_demand_of(session, ac)

    def _add_book(self, book: LimitBook) -> None:
        if not self.chargers[book.charger_id].smart_charging:
            book.phase = LimitPhase.UNLIMITABLE
        self._books[book.session_id] = book
        self._charger_books[book.charger_id][book.session_id] = book
        self._sync_held(book)

    def _end_session(
        self,
        session: Session,
        now: float,
        consumed_energy: float | None,
        reason: str,
        stopped_at: float | None = None,
    ) -> None:
        self._advance_battery(now)
        if consumed_energy is not None:
            session.consumed_energy = consumed_energy
        session.status = SessionStatus.STOPPED
        session.stopped_at = now if stopped_at is None else stopped_at
        session.stop_reason = reason
        self._load -= session_load(session)
        session.consumed_power = None  # a stopped session draws nothing
        session_id = session.session_id
        del self._sessions[session_id]
        del self._on_connector[(session.charger_id, session.connector_id)]
        if session.transaction_id is not None:
            self._by_transaction.pop(session.transaction_id, None)
        self._demands.pop(session_id, None)
        self._electrical_demands.pop(session_id, None)
        self._held.pop(session_id, None)
        book = self._books.pop(session_id, None)
        if book is not None:
            del self._charger_books[book.charger_id][session_id]
            self._dirty_books.discard(session_id)
        self._dirty_sessions.discard(session_id)
        self._outdated = True

    def _on_meter_reading(self, event: MeterReading, now: float) -> None:
        self._heard(event.charger_id, now)
        if event.transaction_id is not None:
            session = self._by_transaction.get(event.transaction_id)
            if session is None or session.charger_id != event.charger_id:
                return  # late, unknown, or another charger's
        else:
            session = self._on_connector.get((event.charger_id, event.connector_id - 1))
            if session is None:
                return  # no transaction on it, or the whole charger
        if event.phase_currents is not None:
            self._learn_phases(session, event.phase_currents)
        energy = None
        if event.energy_register_kwh is not None and session.meter_start_wh is not None:
            energy = max(0.0, event.energy_register_kwh - session.meter_start_wh / 1000.0)
        self._record_reading(
            session,
            now,
            consumed_power=event.power_kw,
            consumed_energy=energy,
            state_of_charge=event.state_of_charge,
        )

    def _learn_phases(self, session: Session, currents: PhaseCurrents) -> None:
        """Which phases the car draws on (docs/electrical.md, "Sessions and their phases")."""
        session.consumed_currents = currents
        ac = self._charger_config[session.charger_id].ac
        if ac is None or self._electrical is None:
            return
        before = session.phase_learner
        session.phase_learner = before.observe(currents, ac.phases)
        if session.phase_learner.used != before.used and session.phases is None:
            self._set_demand(session)
            self._outdated = True

    def _record_reading(
        self,
        session: Session,
        now: float,
        *,
        consumed_power: float | None = None,
        consumed_energy: float | None = None,
        state_of_charge: float | None = None,
        vehicle_max_power: float | None = None,
    ) -> None:
        """What a session reports; a change of its cap (or of the battery) makes the
        allocation outdated."""
        if self._advance_battery(now):
            self._outdated = True
        cap_before = session.cap
        if consumed_power is not None:
            before = session_load(session)
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
        self._dirty_sessions.add(session.session_id)
        if session.cap != cap_before:
            self._set_demand(session)
            self._outdated = True
        self._set_battery_load(now)

    def _learn_demand(self, session: Session, consumed: float, now: float) -> None:
        # Only for vehicles that did not say what they take, under a limit their charger
        # has accepted (it may still be on its failsafe default otherwise).
        book = self._books.get(session.session_id)
        if (
            not self.config.allocation.learn_demand
            or book is None
            or book.phase is not LimitPhase.CONFIRMED
            or book.applied is None
        ):
            return
        # What the charger applies, in kW on the phases the session uses: a 1-phase car
        # drawing its whole current uses its whole limit.
        limit = self._booked_kw(book, session, book.applied)
        if not math.isclose(limit, session.allocated_power, abs_tol=1e-9):
            return  # the charger does not apply the current allocation yet
        running_since = max(session.started_at, session.resumed_at or session.started_at)
        session.learned_max_power = learned_cap(
            session.learned_max_power, consumed, limit, now - running_since
        )

    def _booked_kw(self, book: LimitBook, session: Session, value: float) -> float:
        ac = self._charger_config[book.charger_id].ac
        if book.unit is LimitUnit.AMPS and ac is not None:
            return kw_of_current(ac, value, phases_used(ac, session))
        return value

    # -- the site (docs/site.md) -------------------------------------------------------------

    def _on_site_reading(self, event: SiteMeterRead, now: float) -> None:
        if self.site is None:
            return  # no meter configured: the shell sends none
        if not plausible(event.power, self.config.grid_capacity):
            if not self._implausible_reading:
                self._implausible_reading = True  # said once, until a plausible one comes
                limit = PLAUSIBLE_FACTOR * self.config.grid_capacity
                self._emit(
                    Notice(
                        f"site meter: a reading of {event.power:g} kW is beyond ±{limit:g} kW "
                        f"({PLAUSIBLE_FACTOR:g} times gridCapacity) and is ignored; check "
                        "the meter's register map (scale, word order, sign)"
                    )
                )
            return
        self._implausible_reading = False
        self._advance_battery(now)
        flow = 0.0 if self.battery is None else self.battery.flow().power
        # A pushed reading may carry its own time: never before the last one.
        at = event.now if self.site.last is None else max(event.now, self.site.last.at)
        if self._first_site_reading_at is None:
            self._first_site_reading_at = at
        self.site.record(at, event.power, event.currents, self._load, flow)
        self._follow_site(now)

    def _follow_site(self, now: float) -> None:
        """Reallocate when the site's budget moved: at once when it fell (the site may be
        over its limit), when it rose by at least RAISE_STEP of the grid capacity (a raise
        has already waited out the hold time)."""
        site = self.site
        if site is None:
            return
        state = site.state(now)
        if state is not self.meter_state:
            self._meter_state_changed(state, site.last, now)
        battery = 0.0 if self.battery is None else self.battery.available_power
        wanted = math.floor(self.grid_share(now) + battery)
        step = max(1, math.floor(RAISE_STEP * self.config.grid_capacity))
        if wanted < self.available_power or wanted >= self.available_power + step:
            self._outdated = True

    def _meter_state_changed(self, state: MeterState, last: SiteReading | None, now: float) -> None:
        self.meter_state = state
        if state is MeterState.STALE:
            message = (
                f"site meter: no reading for {self.config.site.meter_timeout:g} s; the "
                f"charging budget falls to {self.config.site_fallback_power:g} kW"
            )
        elif last is not None and last.at == self._first_site_reading_at:
            message = "site meter: first reading; the budget follows the site"
        else:
            message = "site meter: readings again; the budget follows the site"
        self._emit(Notice(message, warning=state is MeterState.STALE))
        data: dict[str, Any] = {"state": state.value}
        if last is not None:
            data["lastReadingAt"] = last.at
        self._journal.append(JournalEntry(now, "site.meter", data=data))

    def _on_external_limit(self, event: ExternalLimitRequested, now: float) -> None:
        if self._proposals.wait_for(event, (EXTERNAL_LIMIT_LOCK,)):
            return
        if event.max_power is None:
            limit = None
            entry = JournalEntry(now, "limit.external.cleared", data={"by": event.set_by})
            records: list[Record] = [ExternalLimitCleared(), entry]
        else:
            if event.until is not None and event.until <= now:
                error = LimitAlreadyOver(
                    "is past: the limit would never be in force", field="until"
                )
                self._refuse(event.reply_to, error)
                return
            limit = ExternalLimit(event.max_power, event.until, event.reason, event.set_by, now)
            entry = JournalEntry(
                now,
                "limit.external.set",
                data={
                    "maxPower": event.max_power,
                    "until": event.until,
                    "reason": event.reason,
                    "by": event.set_by,
                },
            )
            records = [limit.copy(), entry]
        self._propose(SetExternalLimit(limit), (EXTERNAL_LIMIT_LOCK,), event.reply_to, records)

    def _expire_external_limit(self, limit: ExternalLimit, now: float) -> None:
        entry = JournalEntry(
            now, "limit.external.expired", data={"maxPower": limit.max_power, "by": limit.set_by}
        )
        self._emit(Persist((ExternalLimitCleared(), entry)))

    # -- allocation --------------------------------------------------------------------------

    def _reallocate(self, now: float) -> None:
        self._allocate(now)
        self._pump_due(now)

    def _allocate(self, now: float, *, recovering: bool = False) -> None:
        self._advance_battery(now)
        self._last_run = now
        self.available_power = self._root_limit()
        plan: HoldingPlan | ElectricalHoldingPlan
        if self._electrical is None:
            plan = allocate_holding(
                self._tree,
                list(self._demands.values()),
                self.available_power,
                self._strategy,
                self._held,
                {s: int(kw) for s, kw in self._structural_pins(now).items()},
            )
        else:
            plan = self._allocate_electrical(now)
        before = self.plan
        changed = self._to_pump
        if before is not None:
            # A session held at what its charger holds, or no longer: what is sent changes.
            for session_id in before.pinned ^ plan.pinned:
                session = self._sessions.get(session_id)
                if session is not None:
                    changed.add(session.charger_id)
        for session in self._sessions.values():
            session_id = session.session_id
            limit = plan.effective[session_id]
            if limit.power != session.allocated_power or (
                before is None
                or session_id not in before.target
                or before.target[session_id].power != plan.target[session_id].power
            ):
                changed.add(session.charger_id)
            if (
                not recovering
                and limit.power > session.allocated_power
                and session.reading_at is not None
                and session.reading_at < now  # a reading taken this instant already knows
                and not session.reading_stale
            ):
                session.reading_stale = True
                self._dirty_sessions.add(session.session_id)
            session.allocated_power = limit.power
            session.limited_by = limit.bound
            if isinstance(limit, ElectricalLimit):
                session.allocated_current = limit.current if limit.running else None
                session.site_phases = limit.phases
        self.plan = plan
        self._outdated = False
        self._load = sum(session_load(s) for s in self._sessions.values())
        self._set_battery_load(now)
        self.reallocations += 1

    def _allocate_electrical(self, now: float) -> ElectricalHoldingPlan:
        """With the electrical model: the rotation orders the sessions, the allocation runs
        the largest set it can in that order (docs/electrical.md, "Rotation")."""
        assert self._electrical is not None
        previous = self.plan
        rotating = []
        for s in self._sessions.values():
            # A session no allocation has seen yet has not run: it waits from its arrival,
            # and between boundaries it runs only if it fits beside those running.
            new = previous is not None and s.session_id not in previous.target
            rotating.append(
                RotationSession(
                    s.session_id,
                    s.started_at,
                    s.consumed_energy,
                    running=not new and s.paused_since is None,
                    paused_since=s.started_at if new else s.paused_since,
                )
            )
        period = self.config.allocation.rotation_period
        decision = rotation_order(
            now, rotating, self._last_boundary, period, self.config.allocation.pause_limit
        )
        self._last_boundary = decision.last_boundary
        if decision.at_boundary:
            self._offer_idle_cars_again()
        plan = allocate_electrical_holding(
            self._electrical,
            list(self._electrical_demands.values()),
            self.available_power,
            self._held,
            self._structural_pins(now),
            decision.order,
        )
        running = {s: limit.running for s, limit in plan.target.items()}
        waiting = False
        for session_id, since in paused_since_after(now, rotating, running).items():
            session = self._sessions[session_id]
            if since != session.paused_since:
                if since is None or session.paused_since is None:
                    kind = "session.resumed" if since is None else "session.paused"
                    self._journal.append(self._session_entry(now, kind, session))
                if since is None:
                    session.resumed_at = now
                session.paused_since = since
                self._dirty_sessions.add(session_id)
            waiting = waiting or since is not None
        # Only while someone waits does a boundary change anything.
        self._rotation_due = decision.next_boundary if waiting else None
        return plan

    def _offer_idle_cars_again(self) -> None:
        """At a rotation boundary an idle car (paused because it drew nothing) may have its
        minimum again if it fits: it is last in the order, having the most energy, and is
        paused again after its next readings if it still takes nothing."""
        for session in self._sessions.values():
            if idle(session, self._charger_config[session.charger_id].ac):
                session.learned_max_power = None
                self._dirty_sessions.add(session.session_id)
                self._set_demand(session)

    def _pump_due(self, now: float) -> None:
        """Start the next job of the chargers whose limits the allocation changed (or that
        waited for it). Only those: with thousands connected, asking every one would cost
        more than the allocation."""
        due, self._to_pump = self._to_pump, set()
        # In id order, not the set's (which varies from process to process with the hash
        # seed): the limits go out in the same order every time.
        for charger_id in sorted(due):
            self._pump(charger_id, now)

    def _structural_pins(self, now: float) -> dict[str, float]:
        """Fixed budgets, in each book's unit: sessions of chargers that cannot be limited
        (at what they can physically draw) and of chargers offline too long (at the
        failsafe power)."""
        pins: dict[str, float] = {}
        for charger_id, books in self._charger_books.items():
            if not books:
                continue
            charger = self.chargers[charger_id]
            config = self._charger_config[charger_id]
            if not charger.smart_charging:
                pins.update(self._physical_holds(charger_id))
            elif self._offline_too_long(charger, now):
                pins.update(dict.fromkeys(books, self._failsafe_hold(config)))
        return pins

    def _physical_holds(self, charger_id: str) -> dict[str, float]:
        """What the sessions of a charger that takes no limits can draw, shared as the charger
        would share its maximum, in each book's unit."""
        config = self._charger_config[charger_id]
        ac = config.ac if self._electrical is not None else None
        sessions = [self._sessions[session_id] for session_id in self._charger_books[charger_id]]
        holds: dict[str, float] = {}
        for session_id, kw in physical_maximum(config, sessions).items():
            if ac is None:
                holds[session_id] = kw
            else:
                phases = phases_used(ac, self._sessions[session_id])
                holds[session_id] = current_for_kw(ac, kw, phases)
        return holds

    def _failsafe_hold(self, config: ChargerConfig) -> float:
        """What a session on the charger may draw under its failsafe default, in its book's
        unit (rounded down to whole kW as the allocator counts them)."""
        ac = config.ac if self._electrical is not None else None
        if ac is not None:
            return ac_failsafe_current(self.config, config, ac)
        return math.floor(self.config.failsafe_power_per_connector(config))

    def grid_share(self, now: float) -> float:
        """kW of the grid connection for the chargers and the battery: the grid capacity,
        or with a site meter what the rest of the site leaves; never above an external limit
        in force (docs/site.md)."""
        # gridCurrentLimit itself is a constraint of the electrical model, on each phase
        # (docs/electrical.md); with a site meter it also bounds the share (docs/site.md).
        share = self.config.grid_capacity if self.site is None else self.site.share(now)
        limit = self.external_limit
        if limit is not None and limit.in_force(now):
            share = min(share, limit.max_power)
        return share

    def _root_limit(self) -> int:
        share = self.grid_share(self._now)
        battery = 0.0
        if self.battery is not None:
            # The battery answers to the same share: it covers the load above it, and
            # charges only from what is left below it.
            self.battery.set_grid_capacity(share, self._now)
            battery = self.battery.available_power
        return max(0, math.floor(share + battery))

    def _advance_battery(self, now: float) -> bool:
        return self.battery is not None and self.battery.advance(now)

    def _set_battery_load(self, now: float) -> None:
        if self.battery is not None:
            self.battery.set_load(self._load, now)

    # -- pushing limits ----------------------------------------------------------------------

    def _due(self, book: LimitBook) -> float | None:
        """The limit this book's charger should be sent now (None: nothing to send)."""
        plan = self.plan
        phase = book.phase
        if plan is None or (phase is not LimitPhase.PENDING and phase is not LimitPhase.CONFIRMED):
            return None
        if not book.announced or book.session_id not in plan.effective:
            return None
        kw = plan.to_send(book.session_id, book.held)
        if phase is LimitPhase.CONFIRMED and kw == book.applied:
            return None
        return kw

    def _next_job(self, charger: ChargerState) -> tuple[LimitBook, float] | None:
        """The next limit to send on this charger: lowerings first. While a newer
        allocation is on its way, raises wait for it (they would be sent again)."""
        raising: tuple[LimitBook, float] | None = None
        for book in self._charger_books[charger.charger_id].values():
            kw = self._due(book)
            if kw is None:
                continue
            if self._proposals.locked(session_lock(book.session_id)):
                self._to_pump.add(charger.charger_id)  # its session is being stopped
                continue
            held = book.held
            if held is not None and kw < held:
                return book, kw
            if raising is None:
                raising = (book, kw)
        if raising is not None and self._outdated:
            self._to_pump.add(charger.charger_id)
            return None
        return raising

    def _pump(self, charger_id: str, now: float) -> None:
        """Start the charger's next job if it is free for one (one at a time): its failsafe
        default while it is being set up, else the next limit."""
        charger = self.chargers[charger_id]
        if not charger.connected or charger.busy is not None or not charger.smart_charging:
            return
        if charger.phase is ChargerPhase.INSTALLING:
            if charger.waiting_for is None:
                self._send_default(charger)
            return
        if charger.phase not in (ChargerPhase.READY, ChargerPhase.DEFAULT_RETRYING):
            return
        job = self._next_job(charger)
        if job is None:
            return
        book, kw = job
        ref = next(self._refs)
        charger.busy = ref
        raise_first = book.start(kw, ref)
        self._sync_held(book)
        if raise_first:
            self._calls[ref] = _Call(charger_id, None, book.session_id, kw, book.unit)
            self._propose(RaiseLimit(book.session_id, ref), (), None, [book.copy()])
        else:
            self._send_limit(charger, book, kw, ref)

    def _send_default(self, charger: ChargerState) -> None:
        assert charger.link is not None
        ref = next(self._refs)
        charger.waiting_for = ref
        charger.busy = ref
        self._calls[ref] = _Call(charger.charger_id, charger.link, None)
        config = self._charger_config[charger.charger_id]
        kw = self.config.failsafe_power_per_connector(config)
        ac = config.ac if self._electrical is not None else None
        if ac is None:
            request = failsafe_profile(kw, self._rate(charger))
            report = ProfileReport("TxDefaultProfile", 0, kw, self._now, ref)
        else:
            # 0 A unless the operator set ocpp.failsafePower (docs/electrical.md).
            amps = ac_failsafe_current(self.config, config, ac)
            request = failsafe_profile_of(current_schedule(amps, ac.phases))
            booked = kw_of_current(ac, amps, ac.phases)
            report = ProfileReport("TxDefaultProfile", 0, booked, self._now, ref, current=amps)
        self.profiles_sent += 1
        charger.last_profile = report
        self._emit(SendProfile(charger.charger_id, charger.link, ref, request))

    def _send_limit(self, charger: ChargerState, book: LimitBook, value: float, ref: int) -> None:
        if not charger.connected or charger.link is None:
            # Committed while the charger went away: it gets it on its next connection.
            book.not_sent()
            self._sync_held(book)
            self._dirty_books.add(book.session_id)
            self._release(ref)
            return
        self._calls[ref] = _Call(
            charger.charger_id, charger.link, book.session_id, value, book.unit
        )
        config = self._charger_config[charger.charger_id]
        ac = config.ac
        connector = book.connector_id
        if book.unit is LimitUnit.AMPS and ac is not None:
            # A per phase on the phases the session uses; 0 A pauses it (docs/electrical.md).
            phases = phases_used(ac, self._sessions.get(book.session_id))
            schedule = current_schedule(value, phases)
            request = tx_profile_of(connector, book.transaction_id, schedule)
            kw = kw_of_current(ac, value, phases)
            report = ProfileReport("TxProfile", connector, kw, self._now, ref, current=value)
        else:
            request = tx_profile(connector, book.transaction_id, value, self._rate(charger))
            report = ProfileReport("TxProfile", connector, value, self._now, ref)
        self.profiles_sent += 1
        charger.last_profile = report
        self._journal_entry(
            self._now,
            "limit.sent",
            charger.charger_id,
            book.session_id,
            **_limit_data(book.unit, value),
        )
        self._emit(SendProfile(charger.charger_id, charger.link, ref, request))

    def _release(self, ref: int) -> None:
        """The call (or raise) ``ref`` is over without an answer: its charger is free."""
        call = self._calls.pop(ref, None)
        if call is not None and self.chargers[call.charger_id].busy == ref:
            self.chargers[call.charger_id].busy = None
            self._pump(call.charger_id, self._now)

    def _on_profile_answered(self, event: ProfileAnswered, now: float) -> None:
        call = self._calls.pop(event.ref, None)
        if call is None:
            return
        charger = self.chargers[call.charger_id]
        if charger.busy == event.ref:
            charger.busy = None
        report = charger.last_profile
        if report is not None and report.ref == event.ref:
            charger.last_profile = replace(report, result=event.result, answered_at=now)
        if call.session_id is None:
            self._default_answered(charger, event.ref, event.result, now)
        else:
            self._limit_answered(charger, call, event, now)
        self._pump(charger.charger_id, now)

    def _default_answered(
        self, charger: ChargerState, ref: int, result: ProfileResult, now: float
    ) -> None:
        if charger.waiting_for != ref or charger.phase is not ChargerPhase.INSTALLING:
            return  # the connection it was sent on is gone, or the charger booted again
        charger.waiting_for = None
        if result is ProfileResult.ACCEPTED:
            charger.step(ChargerTrigger.DEFAULT_ACCEPTED)
            charger.default_failures = 0
            self._note_acceptance(charger)
            return
        charger.default_refused(now)
        self._deadlines.add(
            _when(charger.default_retry_at), Deadline.DEFAULT_RETRY, charger.charger_id
        )
        self._note_refusal(charger, result, now)

    def _limit_answered(
        self, charger: ChargerState, call: _Call, event: ProfileAnswered, now: float
    ) -> None:
        result = event.result
        assert call.session_id is not None
        assert call.value is not None
        self._journal_entry(
            now,
            f"limit.{JOURNAL_RESULT[result]}",
            charger.charger_id,
            call.session_id,
            **_limit_data(call.unit, call.value),
        )
        if result is ProfileResult.ACCEPTED:
            self._note_acceptance(charger)
        else:
            self._note_refusal(charger, result, now)
        book = self._books.get(call.session_id)
        if book is None or book.waiting_for != event.ref:
            return  # its session ended meanwhile
        held_before = book.held
        replaced = charger.connected and call.link != charger.link
        book.answered(result, now, connection_replaced=replaced)
        if book.phase is LimitPhase.RETRYING:
            self._deadlines.add(_when(book.retry_at), Deadline.LIMIT_RETRY, book.session_id)
        if not charger.smart_charging and book.phase is not LimitPhase.UNLIMITABLE:
            book.step(LimitTrigger.UNLIMITABLE)
        self._sync_held(book)
        self._dirty_books.add(book.session_id)
        if book.held != held_before:
            self._outdated = True

    def _note_acceptance(self, charger: ChargerState) -> None:
        if not charger.ever_accepted or charger.rejections:
            self._dirty_chargers.add(charger.charger_id)
        charger.ever_accepted = True
        charger.rejections = 0

    def _note_refusal(self, charger: ChargerState, result: ProfileResult, now: float) -> None:
        """A charger that has never accepted a profile and keeps refusing (or never
        answers) may be drawing anything its hardware allows: budget it so."""
        if result in (ProfileResult.LOST, ProfileResult.NOT_SENT):
            return  # a connection that went away says nothing about the charger
        charger.rejections += 1
        self._dirty_chargers.add(charger.charger_id)
        if (
            charger.smart_charging
            and not charger.ever_accepted
            and charger.rejections >= REJECTIONS_BEFORE_UNLIMITABLE
        ):
            self._emit(
                Notice(
                    f"{charger.charger_id} accepts no charging profile: "
                    "budgeting it at its maximum",
                    charger.charger_id,
                )
            )
            self._journal_entry(now, "charger.unlimitable", charger.charger_id)
            self._set_smart_charging(charger, False)
            charger.step(ChargerTrigger.UNLIMITABLE)
            charger.waiting_for = None

    def _sync_held(self, book: LimitBook) -> None:
        held = book.held
        if self._held.get(book.session_id) != held:
            # What the charger may send next depends on what it holds: ask it again after
            # the next allocation, even if its limits there do not change.
            self._to_pump.add(book.charger_id)
        if held is None:
            self._held.pop(book.session_id, None)
        else:
            self._held[book.session_id] = held

    # -- time --------------------------------------------------------------------------------

    def _refresh(self, now: float) -> None:
        """Bring the station up to ``now``: the battery, offline chargers, retries due, the
        site's budget and the external limit."""
        if self._advance_battery(now):
            self._outdated = True
        limit = self.external_limit
        if limit is not None and not limit.in_force(now):
            self.external_limit = None
            self._expire_external_limit(limit, now)
            self._outdated = True
        self._follow_site(now)
        if self._rotation_due is not None and now >= self._rotation_due:
            self._outdated = True  # a rotation boundary: who runs is chosen again
        pumps: set[str] = set()
        for kind, key in self._deadlines.due(now, self._live):
            if kind is Deadline.OFFLINE:
                self._outdated = True  # its sessions are budgeted at the failsafe now
            elif kind is Deadline.LIMIT_RETRY:
                book = self._books[key]
                book.retry_due()
                pumps.add(book.charger_id)
            else:
                charger = self.chargers[key]
                charger.default_retry_at = None
                charger.step(ChargerTrigger.RETRY_DUE)
                pumps.add(key)
        if self._outdated:
            self._reallocate(now)
        for charger_id in sorted(pumps):
            self._pump(charger_id, now)

    def _live(self, when: float, kind: Deadline, key: str) -> bool:
        """Whether a deadline still means something (see controller.core.deadlines)."""
        if kind is Deadline.LIMIT_RETRY:
            book = self._books.get(key)
            return book is not None and book.phase is LimitPhase.RETRYING and book.retry_at == when
        charger = self.chargers[key]
        if kind is Deadline.DEFAULT_RETRY:
            return (
                charger.phase is ChargerPhase.DEFAULT_RETRYING and charger.default_retry_at == when
            )
        return (
            not charger.connected
            and charger.disconnected_at is not None
            and charger.disconnected_at + self.config.ocpp.offline_after == when
            and when > self._last_run  # an allocation since then has seen it
        )

    # -- written behind ----------------------------------------------------------------------

    def _session_entry(self, now: float, kind: str, session: Session, **data: Any) -> JournalEntry:
        return JournalEntry(now, kind, session.charger_id, session.session_id, data)

    def _journal_entry(
        self,
        now: float,
        kind: str,
        charger_id: str | None = None,
        session_id: str | None = None,
        **data: Any,
    ) -> None:
        self._journal.append(JournalEntry(now, kind, charger_id, session_id, data))

    def _on_flush(self, now: float) -> None:
        self._refresh(now)
        records: list[Record] = []
        kept: set[str] = set()
        for session_id in self._dirty_sessions:
            session = self._sessions.get(session_id)
            if session is None:
                continue
            if self._proposals.locked(session_lock(session_id)):
                kept.add(session_id)  # written with the proposal's outcome, not under it
                continue
            records.append(session.copy())
        records += [self.chargers[c].copy() for c in self._dirty_chargers]
        records += [self.connectors[k].copy() for k in self._dirty_connectors]
        records += [self._books[s].copy() for s in self._dirty_books if s in self._books]
        records += self._journal
        if self.battery is not None:
            records.append(self.battery.record())
        self._dirty_sessions = kept
        self._dirty_chargers = set()
        self._dirty_connectors = set()
        self._dirty_books = set()
        self._journal = []
        self._forget_old_start_keys(now)
        if records:
            self._emit(Persist(tuple(records)))

    def _keep_start_key(self, key: StartKey) -> None:
        self._start_keys[key.key] = key
        self._start_key_of[key.transaction_id] = key.key

    def _drop_start_key(self, transaction_id: int | None) -> None:
        if transaction_id is not None:
            key = self._start_key_of.pop(transaction_id, None)
            if key is not None:
                del self._start_keys[key]

    def _forget_old_start_keys(self, now: float) -> None:
        """Keys older than START_KEY_MEMORY: no charger resends that late. The repository
        deletes their rows on the same rule when it prunes."""
        oldest = now - START_KEY_MEMORY
        if self._start_keys and next(iter(self._start_keys.values())).recorded_at < oldest:
            self._start_keys = {
                k: v for k, v in self._start_keys.items() if v.recorded_at >= oldest
            }
            self._start_key_of = {v.transaction_id: k for k, v in self._start_keys.items()}


def _limit_data(unit: LimitUnit, value: float) -> dict[str, float]:
    """A limit in the journal: ``kw``, or ``current`` (A per phase) for a book in amps."""
    return {"current": value} if unit is LimitUnit.AMPS else {"kw": value}


def _from_charger(change: object) -> bool:
    """A change a charger asked for (its answer carries no allocation)."""
    return isinstance(change, StartTransaction) or (
        isinstance(change, StopSession) and change.from_charger
    )


def _when(moment: float | None) -> float:
    assert moment is not None
    return moment
