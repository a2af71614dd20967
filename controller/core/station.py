"""The station core: one object that owns the station's state (docs/architecture.md).

``StationCore.handle(event) -> list[Command]`` is the whole interface. The asyncio shell
(``controller.driver``), the tests and the simulators' virtual clock all drive it the same
way. It reads no clock (time comes in each event's ``now``), awaits nothing and touches no
socket or file.

Durable before acknowledged (docs/persistence.md). A request that must be durable before it
is answered (a transaction started or stopped, a REST start, stop or update, and a raise of
a limit before a charger may apply it) is *proposed*: the core works out the change and the
records that describe it, locks what it touches, and emits ``Persist(records, proposal=n)``
without changing anything else. The shell commits and reports ``CommitDone`` (the core then
applies the change, reallocates and answers) or ``CommitFailed`` (the core drops it and
answers ``Unavailable``: nothing happened, so a retry behaves like a first attempt).
Requests that touch something locked wait for the proposal to be resolved and are then
handled as if they had just arrived. Everything else (meter readings, statuses, the
battery, limit books, the journal) is applied at once and written behind: the core marks
what changed and hands the rows over at each ``Flush``.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from allocator import ChargerNode, Demand, StationTree, allocate, compile_tree
from allocator.holding import HoldingPlan, allocate_holding
from controller.config import ChargerConfig, StationConfig
from controller.core.battery import Battery
from controller.core.commands import (
    Answer,
    Command,
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
from controller.core.demand import learned_cap
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
    Flush,
    MeterReading,
    ProfileAnswered,
    ProfileResult,
    Reallocate,
    SessionStartRequested,
    SessionStopRequested,
    SessionUpdateRequested,
    Tick,
    TransactionStartRequested,
    TransactionStopRequested,
)
from controller.core.lifecycle import (
    CHARGER_TRANSITIONS,
    LIMIT_TRANSITIONS,
    ChargerPhase,
    ChargerTrigger,
    LimitPhase,
    LimitTrigger,
    step,
)
from controller.core.profiles import RateUnit, failsafe_profile, tx_profile
from controller.core.records import Record, StoredState
from controller.core.sessions import (
    ConnectorBusy,
    InvalidConnector,
    Origin,
    Session,
    SessionStatus,
    StationError,
    UnknownCharger,
    UnknownSession,
)
from controller.core.state import (
    ChargerState,
    ConnectorState,
    JournalEntry,
    LimitBook,
    LimitDropped,
    StartKey,
    TransactionCounter,
)
from protocol.messages import AuthorizationStatus, GetConfigurationRequest

MAX_BACKOFF = 60.0
# After this many refusals (rejected, CALLERROR or no answer) with none ever accepted, a
# charger is taken for one that cannot be limited (docs/ocpp.md, "Chargers that take no
# limits").
REJECTIONS_BEFORE_UNLIMITABLE = 3
# GetConfiguration keys (OCPP 1.6 section 9.1) read after every boot.
FEATURE_PROFILES_KEY = "SupportedFeatureProfiles"
RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"
CONFIGURATION_KEYS = (FEATURE_PROFILES_KEY, RATE_UNIT_KEY)
# StartTransaction keys older than this are not kept: a charger resends an unanswered
# start within minutes of reconnecting, not weeks later.
START_KEY_MEMORY = 7 * 24 * 3600.0

LockKey = tuple[str, ...]


def backoff(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones: 1, 2, 4 ... 60."""
    return min(MAX_BACKOFF, 2.0 ** max(0, failures - 1))


def start_key_text(
    charger_id: str, connector_id: int, id_tag: str, timestamp: str, meter_start: int
) -> str:
    """The identity of a StartTransaction, as stored (compact JSON: numbers of any size)."""
    return json.dumps(
        [charger_id, connector_id, id_tag, timestamp, meter_start], separators=(",", ":")
    )


def id_tag_status(config: StationConfig, id_tag: str | None) -> AuthorizationStatus:
    """Accepted unless the config lists the idTags it accepts and this is not one of them."""
    allowed = config.ocpp.authorized_id_tags
    if allowed is None or id_tag is None:
        return AuthorizationStatus.ACCEPTED
    # idTags are CiString20: compared without regard to case (OCPP 1.6 section 7).
    wanted = id_tag.casefold()
    if any(tag.casefold() == wanted for tag in allowed):
        return AuthorizationStatus.ACCEPTED
    return AuthorizationStatus.INVALID


# -- proposals -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTransaction:
    charger_id: str
    link: int
    key: StartKey
    session: Session | None  # None: refused (the answer still needs its id durable)
    superseded: str | None  # a session the charger left running on the same connector


@dataclass(frozen=True, slots=True)
class StartSession:
    session: Session


@dataclass(frozen=True, slots=True)
class StopSession:
    session_id: str
    stopped_at: float
    consumed_energy: float | None
    reason: str
    # OCPP StopTransaction: the answer names the idTag's status; REST: the session.
    id_tag_status: str | None
    from_charger: bool


@dataclass(frozen=True, slots=True)
class UpdateSession:
    session_id: str
    consumed_power: float | None
    vehicle_max_power: float | None


@dataclass(frozen=True, slots=True)
class RaiseLimit:
    session_id: str
    ref: int


Change = StartTransaction | StartSession | StopSession | UpdateSession | RaiseLimit


@dataclass(slots=True)
class Proposal:
    number: int
    change: Change
    locks: tuple[LockKey, ...]
    reply_to: object | None
    transaction_id: int | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    """A CALL of ours to a charger (or a raise being committed): what its answer is for."""

    charger_id: str
    link: int | None  # None: a commit, not yet a call
    session_id: str | None  # None: the failsafe default
    kw: int | None = None


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
        # Limit books of OCPP sessions, by session and by charger.
        self._books: dict[str, LimitBook] = {}
        self._charger_books: dict[str, dict[str, LimitBook]] = {c: {} for c in self.chargers}
        # The most each profiled session's charger may be applying (allocator.holding).
        self._held: dict[str, int] = {}
        self._pins: dict[str, int] = {}
        self.plan: HoldingPlan | None = None
        self.battery: Battery | None = None
        if config.battery is not None:
            self.battery = Battery(
                initial_capacity=config.battery.initial_capacity,
                power=config.battery.power,
                grid_capacity=config.grid_capacity,
                now=now,
                reserve=config.battery_reserve,
            )
        self.next_transaction_id = 1
        self._start_keys: dict[str, StartKey] = {}
        # Proposals waiting for their commit, what they lock, and who waits for them.
        self._proposals: dict[int, Proposal] = {}
        self._locks: dict[LockKey, int] = {}
        self._deferred: dict[int, list[Event]] = {}
        self._numbers = itertools.count(1)
        self._calls: dict[int, _Call] = {}
        # Deadlines: (when, order, kind, key); stale entries are skipped when they come up.
        self._timers: list[tuple[float, int, str, str]] = []
        self._order = itertools.count()
        self._announced_wakeup: float | None = None
        self._outdated = False
        self._reallocation_asked = False
        self._load = 0.0
        self._last_run = now
        self.available_power = 0
        # Written behind: what changed since the last Flush.
        self._dirty_sessions: set[str] = set()
        self._dirty_chargers: set[str] = set()
        self._dirty_connectors: set[tuple[str, int]] = set()
        self._dirty_books: set[str] = set()
        self._journal: list[JournalEntry] = []
        self._out: list[Command] = []
        self.reallocations = 0
        self.profiles_sent = 0
        self.recovered = self._recover(stored, now) if stored is not None else {}
        self._reallocate(now)
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
        wakeup = self.next_wakeup()
        if wakeup != self._announced_wakeup:
            self._announced_wakeup = wakeup
            out.append(WakeAt(wakeup))
        self._out = []
        return out

    def _dispatch(self, event: Event, now: float) -> None:
        match event:
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
            case CommitDone():
                self._on_commit_done(event, now)
            case CommitFailed():
                self._on_commit_failed(event, now)
            case Tick():
                self._refresh(now)
            case Reallocate():
                self._reallocation_asked = False
                if self._outdated:
                    self._reallocate(now)
            case Flush():
                self._on_flush(now)

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    # -- queries (read-only: the shell renders them, tests assert on them) ---------------------

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

    @property
    def held(self) -> Mapping[str, int]:
        return self._held

    def allocated_power(self) -> int:
        return sum(s.allocated_power for s in self._sessions.values())

    def load(self) -> float:
        """Station load for the battery: reported power where known, else the limit."""
        return self._load

    def grid_power(self) -> float:
        return self._load if self.battery is None else self.battery.grid_power()

    def charger_config(self, charger_id: str) -> ChargerConfig:
        return self._charger_config[charger_id]

    def limits_confirmed(self, charger_id: str) -> bool:
        """Every limit of the charger is what it last accepted, and what the plan wants."""
        plan = self.plan
        for book in self._charger_books[charger_id].values():
            if book.phase is not LimitPhase.CONFIRMED:
                return False
            if (
                plan is not None
                and book.session_id in plan.effective
                and plan.to_send(book.session_id, book.held) != book.applied
            ):
                return False
        return True

    def ready(self, charger_id: str) -> bool:
        """Connected and set up: its failsafe installed (or it takes no profiles at all)."""
        charger = self.chargers[charger_id]
        return charger.connected and charger.phase is ChargerPhase.READY

    def settled(self) -> bool:
        """Nothing left to do now: nothing being committed, no reallocation due, and every
        connected charger idle with nothing due (a limit waiting for a retry counts as
        settled; ``limits_confirmed`` tells it apart)."""
        if self._proposals or self._outdated:
            return False
        now = self._now
        for charger in self.chargers.values():
            if not charger.connected or not charger.smart_charging:
                continue
            if charger.busy is not None:
                return False
            phase = charger.phase
            if phase in (ChargerPhase.CONFIGURING, ChargerPhase.INSTALLING):
                return False
            if phase is ChargerPhase.DEFAULT_RETRYING and (
                charger.default_retry_at is None or charger.default_retry_at <= now
            ):
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
        timers = self._timers
        while timers and not self._timer_live(*timers[0]):
            heapq.heappop(timers)
        moments = [timers[0][0]] if timers else []
        if self.battery is not None:
            battery_event = self.battery.next_event_at()
            if battery_event is not None:
                moments.append(battery_event)
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
        return out

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self, stored: StoredState, now: float) -> dict[str, int]:
        counts = {"sessions": 0, "limits": 0, "chargers": 0}
        for record in stored.chargers:
            charger = self.chargers.get(record.charger_id)
            if charger is None:
                continue  # a charger since removed from the config
            restored = replace(
                record,
                smart_charging=record.smart_charging
                and self._charger_config[record.charger_id].smart_charging,
            )
            self.chargers[record.charger_id] = restored
            counts["chargers"] += 1
        for connector in stored.connectors:
            if connector.charger_id in self.chargers:
                self.connectors[(connector.charger_id, connector.connector_id)] = connector.copy()
        for session in stored.sessions:
            config = self._charger_config.get(session.charger_id)
            if config is None or not 0 <= session.connector_id < config.connectors:
                self._emit(Notice(f"session {session.session_id}: charger left the config"))
                continue
            self._add_session(session.copy())
            counts["sessions"] += 1
        for stored_book in stored.limits:
            if stored_book.session_id not in self._sessions:
                continue
            # What the charger may still apply: the larger of what it accepted and what was
            # on the wire when the controller stopped.
            book = replace(stored_book, applied=stored_book.held, in_flight=None)
            self._add_book(book)
            counts["limits"] += 1
        for active in self._sessions.values():
            if active.origin is Origin.OCPP and active.session_id not in self._books:
                assert active.transaction_id is not None
                self._add_book(
                    LimitBook(
                        active.session_id,
                        active.charger_id,
                        active.connector_id + 1,
                        active.transaction_id,
                        announced=True,
                    )
                )
        if self.battery is not None and stored.battery is not None:
            self.battery.restore(stored.battery, now)
        self.next_transaction_id = max(
            stored.next_transaction_id, stored.highest_transaction_id + 1
        )
        for key in stored.start_keys:
            if key.recorded_at >= now - START_KEY_MEMORY:
                self._start_keys[key.key] = key
        # Every charger counts as offline from now until it reconnects.
        for charger in self.chargers.values():
            charger.disconnected_at = now
            self._push_timer(now + self.config.ocpp.offline_after, "offline", charger.charger_id)
        self._journal.append(JournalEntry(now, "controller.started", data=dict(counts)))
        return counts

    # -- chargers ----------------------------------------------------------------------------

    def _heard(self, charger_id: str, now: float) -> ChargerState:
        charger = self.chargers[charger_id]
        charger.last_seen = now
        self._dirty_chargers.add(charger_id)
        return charger

    def _charger_step(self, charger: ChargerState, trigger: ChargerTrigger) -> None:
        charger.phase = step(CHARGER_TRANSITIONS, charger.phase, trigger)

    def _book_step(self, book: LimitBook, trigger: LimitTrigger) -> None:
        book.phase = step(LIMIT_TRANSITIONS, book.phase, trigger)

    def _on_connected(self, event: ChargerConnected, now: float) -> None:
        charger = self._heard(event.charger_id, now)
        if self._offline_too_long(charger, now):
            self._outdated = True  # its sessions' failsafe pins lift
        charger.connected = True
        charger.link = event.link
        charger.disconnected_at = None
        charger.waiting_for = None
        busy = self._calls.get(charger.busy) if charger.busy is not None else None
        if busy is not None and busy.link is not None:
            # A call on the connection this one replaces: its answer (a cancellation) still
            # settles its book, but it no longer blocks this connection.
            charger.busy = None
        if not charger.booted:
            self._charger_step(charger, ChargerTrigger.CONNECTED)
            return
        # OCPP-J 5.4: a charger that reconnects need not boot again. Nobody knows what it
        # applies now: install the failsafe again and send every limit again.
        self._charger_step(charger, ChargerTrigger.RECONNECTED)
        for book in self._charger_books[charger.charger_id].values():
            if book.phase is LimitPhase.RETRYING:
                book.failures = 0
                book.retry_at = None
            self._book_step(book, LimitTrigger.RECONNECTED)
        self._start_installing(charger, now)

    def _on_disconnected(self, event: ChargerDisconnected, now: float) -> None:
        charger = self.chargers[event.charger_id]
        if charger.link != event.link or not charger.connected:
            return  # a connection that another one already replaced
        charger.connected = False
        charger.disconnected_at = now
        charger.waiting_for = None
        self._charger_step(charger, ChargerTrigger.DISCONNECTED)
        for book in self._charger_books[charger.charger_id].values():
            self._book_step(book, LimitTrigger.DISCONNECTED)
        self._push_timer(now + self.config.ocpp.offline_after, "offline", charger.charger_id)
        self._outdated = True

    def _on_booted(self, event: ChargerBooted, now: float) -> None:
        charger = self._heard(event.charger_id, now)
        charger.booted = True
        charger.vendor = event.vendor
        charger.model = event.model
        charger.firmware_version = event.firmware_version
        charger.serial_number = event.serial_number
        self._journal_entry(
            now,
            "charger.booted",
            charger_id=charger.charger_id,
            vendor=event.vendor,
            model=event.model,
        )
        if not charger.connected or charger.link != event.link:
            return
        # Every boot: learn again how the charger takes limits, then set it up.
        self._charger_step(charger, ChargerTrigger.BOOTED)
        ref = self._new_ref()
        charger.waiting_for = ref
        self._emit(
            ReadConfiguration(
                charger.charger_id,
                event.link,
                ref,
                GetConfigurationRequest(key=list(CONFIGURATION_KEYS)),
            )
        )

    def _on_configuration(self, event: ConfigurationRead, now: float) -> None:
        charger = self.chargers[event.charger_id]
        if charger.waiting_for != event.ref or charger.phase is not ChargerPhase.CONFIGURING:
            return
        charger.waiting_for = None
        config = self._charger_config[charger.charger_id]
        keys = event.keys or {}
        if FEATURE_PROFILES_KEY in keys:
            profiles = {p.strip() for p in keys[FEATURE_PROFILES_KEY].split(",")}
            self._set_smart_charging(
                charger, "SmartCharging" in profiles and config.smart_charging, now
            )
        if config.rate_unit is None and RATE_UNIT_KEY in keys:
            units = {u.strip() for u in keys[RATE_UNIT_KEY].split(",")}
            # "Current" alone means the charger takes amps only (OCPP 1.6 section 9.4.1).
            charger.amps = "Power" not in units and "Current" in units
        self._dirty_chargers.add(charger.charger_id)
        if charger.smart_charging:
            self._charger_step(charger, ChargerTrigger.CONFIGURED)
            self._start_installing(charger, now)
        else:
            self._charger_step(charger, ChargerTrigger.CONFIGURED_UNLIMITABLE)

    def _set_smart_charging(self, charger: ChargerState, smart: bool, now: float) -> None:
        if smart == charger.smart_charging:
            return
        charger.smart_charging = smart
        self._dirty_chargers.add(charger.charger_id)
        self._outdated = True
        trigger = LimitTrigger.LIMITABLE if smart else LimitTrigger.UNLIMITABLE
        for book in self._charger_books[charger.charger_id].values():
            if book.phase not in (LimitPhase.COMMITTING, LimitPhase.SENDING):
                self._book_step(book, trigger)

    def _start_installing(self, charger: ChargerState, now: float) -> None:
        """The charger entered INSTALLING: its failsafe default goes out as soon as the
        charger is free (at once, unless a call of the previous phase is still out)."""
        if not charger.smart_charging:
            self._charger_step(charger, ChargerTrigger.UNLIMITABLE)
            return
        self._pump(charger.charger_id, now)

    def _send_default(self, charger: ChargerState) -> None:
        assert charger.link is not None
        ref = self._new_ref()
        charger.waiting_for = ref
        charger.busy = ref
        self._calls[ref] = _Call(charger.charger_id, charger.link, None)
        config = self._charger_config[charger.charger_id]
        request = failsafe_profile(
            self.config.failsafe_power_per_connector(config), self._rate(charger)
        )
        self.profiles_sent += 1
        self._emit(SendProfile(charger.charger_id, charger.link, ref, request))

    def _on_connector_status(self, event: ConnectorStatusReported, now: float) -> None:
        self._heard(event.charger_id, now)
        if event.connector_id > self._charger_config[event.charger_id].connectors:
            return  # a connector the charger does not have: nothing to record
        key = (event.charger_id, event.connector_id)
        self.connectors[key] = ConnectorState(
            event.charger_id,
            event.connector_id,
            event.status,
            event.error_code,
            event.info,
            now,
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
        if self._wait_for_locks(event, (("start", key),)):
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
            self._emit(Reply(event.reply_to, TransactionAnswer(known.transaction_id, known.status)))
            self._pump(event.charger_id, now)
            return
        config = self._charger_config[event.charger_id]
        status = id_tag_status(self.config, event.id_tag)
        connector = event.connector_id - 1
        if not 0 <= connector < config.connectors:
            status = AuthorizationStatus.INVALID
        locks: list[LockKey] = [("start", key)]
        stale = None
        if status is AuthorizationStatus.ACCEPTED:
            locks.append(("connector", event.charger_id, str(connector)))
            stale = self._on_connector.get((event.charger_id, connector))
            if stale is not None:
                locks.append(("session", stale.session_id))
        if self._wait_for_locks(event, tuple(locks)):
            return
        transaction_id = self._reserve_transaction_id()
        locks.append(("tx", str(transaction_id)))
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
                self._entry(
                    now,
                    "session.started",
                    session,
                    transactionId=transaction_id,
                    idTag=event.id_tag,
                    meterStart=event.meter_start,
                )
            )
        change = StartTransaction(
            event.charger_id,
            event.link,
            start_key,
            session,
            None if stale is None else stale.session_id,
        )
        self._propose(change, tuple(locks), event.reply_to, records, transaction_id)

    def _on_transaction_stop(self, event: TransactionStopRequested, now: float) -> None:
        self._heard(event.charger_id, now)
        if self._wait_for_locks(event, (("tx", str(event.transaction_id)),)):
            return
        info = None if event.id_tag is None else id_tag_status(self.config, event.id_tag).value
        session = self._by_transaction.get(event.transaction_id)
        if session is None or session.charger_id != event.charger_id:
            # Unknown, -1, or already stopped (a resend): answered, nothing changes
            # (OCPP 1.6 section 3.7: transaction messages are always answered).
            self._emit(Reply(event.reply_to, StopAnswer(info)))
            return
        if self._wait_for_locks(event, (("session", session.session_id),)):
            return
        energy = None
        if session.meter_start_wh is not None:
            energy = max(0.0, (event.meter_stop - session.meter_start_wh) / 1000.0)
        reason = event.reason or "Local"
        change = StopSession(session.session_id, now, energy, reason, info, from_charger=True)
        records = self._stop_records(session, now, energy, reason)
        self._propose(change, (("session", session.session_id),), event.reply_to, records)

    def _stop_records(
        self, session: Session, now: float, energy: float | None, reason: str
    ) -> list[Record]:
        stopped = replace(
            session,
            status=SessionStatus.STOPPED,
            stopped_at=now,
            stop_reason=reason,
            consumed_power=None,
            consumed_energy=session.consumed_energy if energy is None else energy,
        )
        entry = self._entry(
            now, "session.stopped", stopped, reason=reason, consumedEnergy=stopped.consumed_energy
        )
        return [stopped, entry, LimitDropped(session.session_id)]

    # -- REST --------------------------------------------------------------------------------

    def _on_session_start(self, event: SessionStartRequested, now: float) -> None:
        config = self._charger_config.get(event.charger_id)
        error: StationError
        if config is None:
            error = UnknownCharger(f"no charger {event.charger_id!r}", field="chargerId")
            self._emit(Reply(event.reply_to, Refusal(error)))
            return
        if not 0 <= event.connector_id < config.connectors:
            error = InvalidConnector(
                f"charger {event.charger_id!r} has connectors 0 to {config.connectors - 1}",
                field="connectorId",
            )
            self._emit(Reply(event.reply_to, Refusal(error)))
            return
        lock = ("connector", event.charger_id, str(event.connector_id))
        if self._wait_for_locks(event, (lock,)):
            return
        busy = self._on_connector.get((event.charger_id, event.connector_id))
        if busy is not None:
            error = ConnectorBusy(
                f"connector {event.connector_id} of {event.charger_id!r} is busy with "
                f"session {busy.session_id}",
                field="connectorId",
            )
            self._emit(Reply(event.reply_to, Refusal(error)))
            return
        session = Session(
            session_id=event.new_session_id,
            charger_id=event.charger_id,
            connector_id=event.connector_id,
            vehicle_max_power=event.vehicle_max_power,
            started_at=now,
            origin=Origin.REST,
        )
        entry = self._entry(
            now, "session.started", session, vehicleMaxPower=event.vehicle_max_power
        )
        locks = (lock, ("session", session.session_id))
        self._propose(StartSession(session), locks, event.reply_to, [session.copy(), entry])

    def _active_or_refuse(self, session_id: str, reply_to: object) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            # Stopped or never known: the shell tells the two apart from the history.
            error = UnknownSession(f"no active session {session_id!r}", field="sessionId")
            self._emit(Reply(reply_to, Refusal(error)))
        return session

    def _on_session_stop(self, event: SessionStopRequested, now: float) -> None:
        lock = ("session", event.session_id)
        if self._wait_for_locks(event, (lock,)):
            return
        session = self._active_or_refuse(event.session_id, event.reply_to)
        if session is None:
            return
        energy = event.consumed_energy
        change = StopSession(session.session_id, now, energy, "Remote", None, from_charger=False)
        records = self._stop_records(session, now, energy, "Remote")
        self._propose(change, (lock,), event.reply_to, records)

    def _on_session_update(self, event: SessionUpdateRequested, now: float) -> None:
        lock = ("session", event.session_id)
        if self._wait_for_locks(event, (lock,)):
            return
        session = self._active_or_refuse(event.session_id, event.reply_to)
        if session is None:
            return
        updated = session.copy()
        if event.consumed_power is not None:
            updated.consumed_power = event.consumed_power
        if event.vehicle_max_power is not None:
            updated.vehicle_max_power = event.vehicle_max_power
        entry = self._entry(
            now,
            "session.updated",
            session,
            consumedPower=event.consumed_power,
            vehicleMaxPower=event.vehicle_max_power,
        )
        change = UpdateSession(session.session_id, event.consumed_power, event.vehicle_max_power)
        self._propose(change, (lock,), event.reply_to, [updated, entry])

    # -- propose, commit, apply --------------------------------------------------------------

    def _wait_for_locks(self, event: Event, keys: tuple[LockKey, ...]) -> bool:
        """True (and the event is kept for later) when a pending proposal holds one of
        ``keys``: it is handled again, as new, once that proposal is resolved."""
        for key in keys:
            number = self._locks.get(key)
            if number is not None:
                self._deferred.setdefault(number, []).append(event)
                return True
        return False

    def _reserve_transaction_id(self) -> int:
        """An id above every id given or being committed: never one issued twice."""
        pending = [p.transaction_id for p in self._proposals.values() if p.transaction_id]
        return max(self.next_transaction_id, max(pending, default=0) + 1)

    def _propose(
        self,
        change: Change,
        locks: tuple[LockKey, ...],
        reply_to: object | None,
        records: list[Record],
        transaction_id: int | None = None,
    ) -> None:
        number = next(self._numbers)
        self._proposals[number] = Proposal(number, change, locks, reply_to, transaction_id)
        for key in locks:
            self._locks[key] = number
        self._emit(Persist(tuple(records), proposal=number))

    def _resolve(self, number: int) -> Proposal | None:
        proposal = self._proposals.pop(number, None)
        if proposal is not None:
            for key in proposal.locks:
                if self._locks.get(key) == number:
                    del self._locks[key]
        return proposal

    def _on_commit_done(self, event: CommitDone, now: float) -> None:
        answers: list[tuple[object, Callable[[], Answer]]] = []
        resolved: list[int] = []
        for number in event.proposals:
            proposal = self._resolve(number)
            if proposal is None:
                continue
            resolved.append(number)
            answer = self._apply(proposal, now)
            if answer is not None and proposal.reply_to is not None:
                answers.append((proposal.reply_to, answer))
        if self._outdated:
            self._reallocate(now)
        # Answers after the reallocation: they report the new allocation.
        for reply_to, answer in answers:
            self._emit(Reply(reply_to, answer()))
        self._handle_deferred(resolved, now)

    def _on_commit_failed(self, event: CommitFailed, now: float) -> None:
        resolved: list[int] = []
        for number in event.proposals:
            proposal = self._resolve(number)
            if proposal is None:
                continue
            resolved.append(number)
            self._drop(proposal, now)
        self._handle_deferred(resolved, now)

    def _handle_deferred(self, numbers: list[int], now: float) -> None:
        for number in numbers:
            for event in self._deferred.pop(number, []):
                self._dispatch(replace(event, now=now), now)

    def _apply(self, proposal: Proposal, now: float) -> Callable[[], Answer] | None:
        """Apply a committed change; returns how to build its answer (after reallocation)."""
        change = proposal.change
        match change:
            case StartTransaction():
                return self._apply_transaction_start(change, now)
            case StartSession(session=session):
                live = session.copy()
                self._add_session(live)
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
                return lambda: SessionAnswer(session.copy())
            case RaiseLimit():
                self._apply_raise(change, now)
                return None

    def _apply_transaction_start(
        self, change: StartTransaction, now: float
    ) -> Callable[[], Answer]:
        key = change.key
        self._start_keys[key.key] = key
        self.next_transaction_id = max(self.next_transaction_id, key.transaction_id + 1)
        answer = TransactionAnswer(key.transaction_id, key.status)
        if change.session is None:
            return lambda: answer
        if change.superseded is not None:
            stale = self._sessions.get(change.superseded)
            if stale is not None:
                self._end_session(stale, now, None, "Superseded")
                self._emit(Persist((stale.copy(),)))
        session = change.session.copy()
        self._add_session(session)
        charger = self.chargers[change.charger_id]
        assert session.transaction_id is not None
        book = LimitBook(
            session.session_id,
            session.charger_id,
            session.connector_id + 1,
            session.transaction_id,
            # The answer goes out on this connection just before any profile: the charger
            # will know the id. On another connection (or none) it must resend first.
            announced=charger.connected and charger.link == change.link,
        )
        self._add_book(book)
        self._dirty_books.add(book.session_id)
        self._outdated = True
        return lambda: answer

    def _apply_stop(self, change: StopSession, now: float) -> Callable[[], Answer]:
        session = self._sessions[change.session_id]
        self._end_session(session, now, change.consumed_energy, change.reason, change.stopped_at)
        # The proposal wrote the session as it was then; readings since are kept too.
        self._emit(Persist((session.copy(),)))
        if change.from_charger:
            status = change.id_tag_status
            return lambda: StopAnswer(status)
        return lambda: SessionAnswer(session.copy())

    def _apply_raise(self, change: RaiseLimit, now: float) -> None:
        call = self._calls.get(change.ref)
        book = self._books.get(change.session_id)
        if call is None or book is None or book.waiting_for != change.ref:
            # The session ended meanwhile.
            self._calls.pop(change.ref, None)
            self._release(call, change.ref)
            return
        self._book_step(book, LimitTrigger.COMMITTED)
        charger = self.chargers[book.charger_id]
        assert book.in_flight is not None
        self._send_limit(charger, book, book.in_flight, change.ref)

    def _drop(self, proposal: Proposal, now: float) -> None:
        """A proposal that could not be committed: nothing of it happened."""
        change = proposal.change
        match change:
            case RaiseLimit():
                call = self._calls.pop(change.ref, None)
                book = self._books.get(change.session_id)
                if book is not None and book.waiting_for == change.ref:
                    book.waiting_for = None
                    book.in_flight = None
                    book.failures += 1
                    self._book_step(book, LimitTrigger.COMMIT_FAILED)
                    self._retry_later(book, now)
                    self._sync_held(book)
                    self._dirty_books.add(book.session_id)
                self._release(call, change.ref)
            case StopSession() | UpdateSession():
                # Its rows may have replaced rows waiting to be written behind.
                self._dirty_sessions.add(change.session_id)
            case StartTransaction(superseded=superseded) if superseded is not None:
                self._dirty_sessions.add(superseded)
            case _:
                pass
        if proposal.reply_to is not None:
            self._emit(Reply(proposal.reply_to, Unavailable()))

    # -- sessions ----------------------------------------------------------------------------

    def _add_session(self, session: Session) -> None:
        self._sessions[session.session_id] = session
        self._on_connector[(session.charger_id, session.connector_id)] = session
        if session.transaction_id is not None:
            self._by_transaction[session.transaction_id] = session
        self._demands[session.session_id] = _demand(session)

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
        self._load -= _session_load(session)
        session.consumed_power = None
        session_id = session.session_id
        del self._sessions[session_id]
        del self._on_connector[(session.charger_id, session.connector_id)]
        if session.transaction_id is not None:
            self._by_transaction.pop(session.transaction_id, None)
        del self._demands[session_id]
        self._pins.pop(session_id, None)
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
        flipped = self._advance_battery(now)
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
        self._dirty_sessions.add(session.session_id)
        if session.cap != cap_before:
            self._demands[session.session_id] = _demand(session)
            self._outdated = True
        if flipped:
            self._outdated = True
        self._set_battery_load(now)

    def _learn_demand(self, session: Session, consumed: float, now: float) -> None:
        # Only for vehicles that did not say what they take, under a limit their charger
        # has accepted (it may still be on its failsafe default otherwise).
        book = self._books.get(session.session_id)
        if (
            not self.config.allocation.learn_demand
            or session.vehicle_max_power is not None
            or book is None
            or book.phase is not LimitPhase.CONFIRMED
            or book.applied != session.allocated_power
        ):
            return
        session.learned_max_power = learned_cap(
            session.learned_max_power, consumed, session.allocated_power, now - session.started_at
        )

    # -- allocation --------------------------------------------------------------------------

    def _reallocate(self, now: float) -> None:
        self._advance_battery(now)
        self._last_run = now
        self.available_power = self._root_limit()
        self._pins = self._structural_pins(now)
        plan = allocate_holding(
            self._tree,
            list(self._demands.values()),
            self.available_power,
            self._strategy,
            self._held,
            self._pins,
        )
        for session in self._sessions.values():
            limit = plan.effective[session.session_id]
            if (
                limit.power > session.allocated_power
                and session.reading_at is not None
                and session.reading_at < now  # a reading taken this instant already knows
                and not session.reading_stale
            ):
                session.reading_stale = True
                self._dirty_sessions.add(session.session_id)
            session.allocated_power = limit.power
            session.limited_by = limit.bound
        self.plan = plan
        self._outdated = False
        self._load = sum(_session_load(s) for s in self._sessions.values())
        self._set_battery_load(now)
        self.reallocations += 1
        for charger_id in {book.charger_id for book in self._pumpable()}:
            self._pump(charger_id, now)

    def _structural_pins(self, now: float) -> dict[str, int]:
        """Fixed budgets: sessions of chargers that cannot be limited (at what they can
        physically draw) and of chargers offline too long (at the failsafe power)."""
        by_charger: dict[str, list[Session]] = {}
        for session in self._sessions.values():
            if session.origin is Origin.OCPP:
                by_charger.setdefault(session.charger_id, []).append(session)
        pins: dict[str, int] = {}
        for charger_id, sessions in by_charger.items():
            charger = self.chargers[charger_id]
            config = self._charger_config[charger_id]
            if not charger.smart_charging:
                pins.update(_physical_maximum(config, sessions))
            elif self._offline_too_long(charger, now):
                failsafe = math.floor(self.config.failsafe_power_per_connector(config))
                pins.update({s.session_id: failsafe for s in sessions})
        return pins

    def _root_limit(self) -> int:
        battery = 0.0 if self.battery is None else self.battery.available_power
        return max(0, math.floor(self.config.grid_capacity + battery))

    def _advance_battery(self, now: float) -> bool:
        return self.battery is not None and self.battery.advance(now)

    def _set_battery_load(self, now: float) -> None:
        if self.battery is not None:
            self.battery.set_load(self._load, now)

    def _refresh(self, now: float) -> None:
        """Bring the station up to ``now``: the battery, offline chargers, retries due."""
        if self._advance_battery(now):
            self._outdated = True
        pumps: set[str] = set()
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            if not self._timer_live(*entry):
                continue
            _, _, kind, key = entry
            if kind == "offline":
                self._outdated = True
            elif kind == "book":
                book = self._books[key]
                book.retry_at = None
                self._book_step(book, LimitTrigger.RETRY_DUE)
                pumps.add(book.charger_id)
            elif kind == "default":
                charger = self.chargers[key]
                charger.default_retry_at = None
                self._charger_step(charger, ChargerTrigger.RETRY_DUE)
                pumps.add(key)
        if self._outdated:
            self._reallocate(now)
        for charger_id in pumps:
            self._pump(charger_id, now)

    # -- pushing limits ----------------------------------------------------------------------

    def _pumpable(self) -> Iterator[LimitBook]:
        """Books that may have something to send (their charger decides in ``_pump``)."""
        plan = self.plan
        if plan is None:
            return
        for book in self._books.values():
            if book.phase is LimitPhase.PENDING or (
                book.phase is LimitPhase.CONFIRMED
                and book.session_id in plan.effective
                and plan.to_send(book.session_id, book.held) != book.applied
            ):
                yield book

    def _next_job(self, charger: ChargerState) -> tuple[LimitBook, int] | None:
        """The next limit to send on this charger: lowerings first. While a newer
        allocation is on its way, raises wait for it (they would be sent again)."""
        plan = self.plan
        if plan is None:
            return None
        raising: tuple[LimitBook, int] | None = None
        for book in self._charger_books[charger.charger_id].values():
            phase = book.phase
            if phase is not LimitPhase.PENDING and phase is not LimitPhase.CONFIRMED:
                continue
            session_id = book.session_id
            if not book.announced or session_id not in plan.effective:
                continue
            if ("session", session_id) in self._locks:
                continue  # its session is being stopped
            held = book.held
            kw = plan.to_send(session_id, held)
            if phase is LimitPhase.CONFIRMED and kw == book.applied:
                continue
            if held is not None and kw < held:
                return book, kw
            if raising is None:
                raising = (book, kw)
        return None if self._outdated else raising

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
        held = book.held
        ref = self._new_ref()
        charger.busy = ref
        book.waiting_for = ref
        book.in_flight = kw
        if kw > (held or 0):
            # A raise reaches the disk before the charger may apply it: after a crash the
            # books must never count the charger at less than it may be drawing.
            self._book_step(book, LimitTrigger.RAISE)
            self._calls[ref] = _Call(charger_id, None, book.session_id, kw)
            self._sync_held(book)
            self._propose(RaiseLimit(book.session_id, ref), (), None, [book.copy()])
            return
        self._book_step(book, LimitTrigger.SEND)
        self._sync_held(book)
        self._send_limit(charger, book, kw, ref)

    def _send_limit(self, charger: ChargerState, book: LimitBook, kw: int, ref: int) -> None:
        if not charger.connected or charger.link is None:
            # Committed while the charger went away: it gets it on its next connection.
            self._calls.pop(ref, None)
            if charger.busy == ref:
                charger.busy = None
            book.waiting_for = None
            book.in_flight = None
            self._book_step(book, LimitTrigger.NOT_SENT)
            self._sync_held(book)
            return
        self._calls[ref] = _Call(charger.charger_id, charger.link, book.session_id, kw)
        request = tx_profile(book.connector_id, book.transaction_id, kw, self._rate(charger))
        self.profiles_sent += 1
        self._journal_entry(
            self._now,
            "limit.sent",
            charger_id=charger.charger_id,
            session_id=book.session_id,
            kw=kw,
        )
        self._emit(SendProfile(charger.charger_id, charger.link, ref, request))

    def _release(self, call: _Call | None, ref: int) -> None:
        """The charger of ``call`` is free again (its raise will not be sent)."""
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
            self._charger_step(charger, ChargerTrigger.DEFAULT_ACCEPTED)
            charger.default_failures = 0
            self._note_acceptance(charger)
            return
        self._charger_step(charger, ChargerTrigger.DEFAULT_REFUSED)
        charger.default_failures += 1
        charger.default_retry_at = now + backoff(charger.default_failures)
        self._push_timer(charger.default_retry_at, "default", charger.charger_id)
        self._note_refusal(charger, result, now)

    def _limit_answered(
        self, charger: ChargerState, call: _Call, event: ProfileAnswered, now: float
    ) -> None:
        result = event.result
        assert call.session_id is not None
        self._journal_entry(
            now,
            f"limit.{_journal_name(result)}",
            charger_id=charger.charger_id,
            session_id=call.session_id,
            kw=call.kw,
        )
        book = self._books.get(call.session_id)
        if book is None or book.waiting_for != event.ref:
            self._note_refusal(charger, result, now)
            return  # its session ended meanwhile
        held_before = book.held
        kw = book.in_flight
        book.waiting_for = None
        book.in_flight = None
        if result is ProfileResult.ACCEPTED:
            book.applied = kw
            book.failures = 0
            self._book_step(book, LimitTrigger.ACCEPTED)
            self._note_acceptance(charger)
        elif result is ProfileResult.NOT_SENT:
            self._book_step(book, LimitTrigger.NOT_SENT)
        else:
            if result is not ProfileResult.REJECTED and kw is not None:
                # No usable answer: the charger may have applied it. Count it as held (the
                # larger of the two) and send again to know for sure.
                book.applied = kw if book.applied is None else max(book.applied, kw)
                self._book_step(book, LimitTrigger.UNANSWERED)
            else:
                self._book_step(book, LimitTrigger.REFUSED)
            book.failures += 1
            if call.link != charger.link and charger.connected:
                # Answered on a connection since replaced: the new one sends it at once.
                self._book_step(book, LimitTrigger.RETRY_DUE)
            else:
                self._retry_later(book, now)
            self._note_refusal(charger, result, now)
        if not charger.smart_charging and book.phase is not LimitPhase.UNLIMITABLE:
            self._book_step(book, LimitTrigger.UNLIMITABLE)
        self._sync_held(book)
        self._dirty_books.add(book.session_id)
        if book.held != held_before:
            self._outdated = True

    def _retry_later(self, book: LimitBook, now: float) -> None:
        book.retry_at = now + backoff(book.failures)
        self._push_timer(book.retry_at, "book", book.session_id)

    def _note_acceptance(self, charger: ChargerState) -> None:
        if not charger.ever_accepted or charger.rejections:
            self._dirty_chargers.add(charger.charger_id)
        charger.ever_accepted = True
        charger.rejections = 0

    def _note_refusal(self, charger: ChargerState, result: ProfileResult, now: float) -> None:
        """A charger that has never accepted a profile and keeps refusing (or never
        answers) may be drawing anything its hardware allows: budget it so."""
        if result in (ProfileResult.ACCEPTED, ProfileResult.LOST, ProfileResult.NOT_SENT):
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
                    f"{charger.charger_id} accepts no charging profile: budgeting it at its maximum"
                )
            )
            self._journal_entry(now, "charger.unlimitable", charger_id=charger.charger_id)
            self._set_smart_charging(charger, False, now)
            self._charger_step(charger, ChargerTrigger.UNLIMITABLE)
            charger.waiting_for = None

    def _sync_held(self, book: LimitBook) -> None:
        held = book.held
        if held is None:
            self._held.pop(book.session_id, None)
        else:
            self._held[book.session_id] = held

    # -- timers ------------------------------------------------------------------------------

    def _new_ref(self) -> int:
        return next(self._numbers)

    def _push_timer(self, when: float, kind: str, key: str) -> None:
        heapq.heappush(self._timers, (when, next(self._order), kind, key))

    def _timer_live(self, when: float, _order: int, kind: str, key: str) -> bool:
        if kind == "book":
            book = self._books.get(key)
            return book is not None and book.phase is LimitPhase.RETRYING and book.retry_at == when
        if kind == "default":
            charger = self.chargers[key]
            return (
                charger.phase is ChargerPhase.DEFAULT_RETRYING and charger.default_retry_at == when
            )
        charger = self.chargers[key]  # "offline"
        return (
            not charger.connected
            and charger.disconnected_at is not None
            and charger.disconnected_at + self.config.ocpp.offline_after == when
            and when > self._last_run
        )

    # -- written behind ----------------------------------------------------------------------

    def _entry(self, now: float, kind: str, session: Session, **data: Any) -> JournalEntry:
        return JournalEntry(now, kind, session.charger_id, session.session_id, data)

    def _journal_entry(
        self,
        now: float,
        kind: str,
        *,
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
            if ("session", session_id) in self._locks:
                kept.add(session_id)  # written with the proposal's outcome, not under it
                continue
            records.append(session.copy())
        self._dirty_sessions = kept
        records += [self.chargers[c].copy() for c in self._dirty_chargers]
        records += [self.connectors[k].copy() for k in self._dirty_connectors]
        for session_id in self._dirty_books:
            book = self._books.get(session_id)
            if book is not None:
                records.append(book.copy())
        records += self._journal
        if self.battery is not None:
            records.append(self.battery.record())
        self._dirty_chargers = set()
        self._dirty_connectors = set()
        self._dirty_books = set()
        self._journal = []
        self._forget_old_start_keys(now)
        if records:
            self._emit(Persist(tuple(records)))

    def _forget_old_start_keys(self, now: float) -> None:
        oldest = now - START_KEY_MEMORY
        if self._start_keys and next(iter(self._start_keys.values())).recorded_at < oldest:
            self._start_keys = {
                k: v for k, v in self._start_keys.items() if v.recorded_at >= oldest
            }


def _journal_name(result: ProfileResult) -> str:
    return {
        ProfileResult.ACCEPTED: "accepted",
        ProfileResult.REJECTED: "rejected",
        ProfileResult.ERROR: "error",
        ProfileResult.TIMEOUT: "timeout",
        ProfileResult.LOST: "cancelled",
        ProfileResult.NOT_SENT: "cancelled",
    }[result]


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
    """What a session counts for in the station load (docs/allocation.md, "The battery"):
    its reading, or its limit while it has none or its limit went up since the reading."""
    consumed = session.consumed_power
    if consumed is None:
        return float(session.allocated_power)
    if session.reading_stale:
        return max(consumed, float(session.allocated_power))
    return consumed
