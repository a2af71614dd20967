"""The station core under random event sequences (a hypothesis state machine).

The test plays the shell and the chargers: it connects, boots and drops chargers, starts and
stops transactions (and resends them, as chargers do after losing an answer), sends meter
readings, starts, stops and updates REST sessions, answers the core's profile calls in every
way a charger can, commits or fails the core's proposals on a real SQLite database, moves
time, and crashes: everything not committed is dropped and the core is rebuilt from the
database while the chargers keep applying what they accepted.

After every step:

* **Nothing acknowledged is lost.** A StartTransaction.conf or a REST 201 means the session
  is active in the core until a stop is acknowledged (or a later start supersedes it), also
  after any crash; an acknowledged stop stays stopped; a request refused as unavailable left
  nothing behind.
* **No transaction id is issued twice**: never the same id for two different
  StartTransactions, across crashes.
* **The books never count a charger below what it may apply**, also right after a crash.
* **No limit is left behind**: once chargers answer, the database writes and time moves on,
  every limit a charger may be sent reaches it and is confirmed.
* **What the chargers may draw never grows above a limit.** The chargers here are modelled
  independently of the core: a charger may apply every TxProfile it accepted last or still
  has unanswered, and one whose answer was lost. For the station and each group and charger,
  the sum must stay within the limit; only what the controller does not control (a charger
  that takes no limits, found out or starting a transaction) may break it, and while it is
  broken no session under that node may be given more.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controller.config import config_from_dict
from controller.core.commands import (
    Answer,
    Command,
    Persist,
    ReadConfiguration,
    Reply,
    ScheduleReallocation,
    SendProfile,
    SessionAnswer,
    StopAnswer,
    TransactionAnswer,
    Unavailable,
    WakeAt,
)
from controller.core.events import (
    ChargerBooted,
    ChargerConnected,
    ChargerDisconnected,
    CommitDone,
    CommitFailed,
    ConfigurationRead,
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
from controller.core.lifecycle import LimitPhase
from controller.core.sessions import Origin, Session
from controller.core.station import StationCore
from controller.repository import Repository
from controller.writer import Batch
from tests.controller.restart import restart_view

T0 = 1_767_225_600.0
CONFIG = config_from_dict(
    {
        "stationId": "MACHINE",
        "gridCapacity": 100,
        "chargers": [
            {"id": "A", "maxPower": 60, "connectors": 2},
            {"id": "B", "maxPower": 50, "connectors": 2},
            {"id": "C", "maxPower": 40, "connectors": 1},
        ],
        "groups": [{"id": "feeder", "maxPower": 80, "chargers": ["A", "B"]}],
        # Offline chargers are budgeted at the failsafe only after a very long time here:
        # the model of the chargers keeps applying their last profile while offline.
        "ocpp": {"offlineAfter": 604_800},  # the most allowed: 7 days
    }
)
CHARGERS = {c.id: c for c in CONFIG.chargers}


def failsafe(charger_id: str) -> int:
    """What a new car draws before its TxProfile: the charger's failsafe default."""
    return math.floor(CONFIG.failsafe_power_per_connector(CHARGERS[charger_id]))


NODES = {"station": set(CHARGERS), "feeder": {"A", "B"}, **{c: {c} for c in CHARGERS}}
NODE_LIMITS = {"feeder": 80, **{c.id: math.floor(c.max_power) for c in CONFIG.chargers}}


@dataclass
class Token:
    request: object


@dataclass(frozen=True)
class StartRequest:
    """A StartTransaction as the charger sent it (resent identically)."""

    charger_id: str
    connector_id: int
    id_tag: str
    meter_start: int


@dataclass
class Applied:
    """What a charger may apply on one connector for its running transaction."""

    transaction_id: int
    # Until a TxProfile is accepted the car draws under the charger's failsafe default.
    default: int
    possible: set[int] = field(default_factory=set)  # accepted, or answered unknowably
    pending: dict[int, int] = field(default_factory=dict)  # call ref -> kW on the wire

    def may_apply(self) -> int:
        values = (self.possible or {self.default}) | set(self.pending.values())
        return max(values)


class StationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.repository = Repository(":memory:")
        self.core = StationCore(CONFIG, now=self.now, stored=self.repository.load())
        self.batch = Batch()
        self.numbers = itertools.count(1)
        self.links: dict[str, int] = {}
        self.calls: dict[int, SendProfile] = {}
        self.reads: dict[int, ReadConfiguration] = {}
        self.reallocation_due = False
        self.wakeup: float | None = None
        # The chargers' side: what runs on each connector, and what they apply.
        self.applied: dict[tuple[str, int], Applied] = {}
        self.starts: list[StartRequest] = []
        # What was acknowledged.
        self.transaction_of: dict[int, StartRequest] = {}
        self.open_transactions: dict[int, tuple[str, int]] = {}
        self.stopped_transactions: set[int] = set()
        self.open_rest: dict[str, tuple[str, int]] = {}
        # StopTransactions the chargers sent and have no answer to yet (they resend them).
        self.unanswered_stops: dict[int, tuple[str, int]] = {}
        self.stopped_rest: set[str] = set()
        self.refused_session_ids: set[str] = set()
        self.revealed = False
        self.previous_draw: dict[str, float] = {}
        # How the world behaves until a rule changes it: the database commits at once, and
        # prompt chargers answer profiles (accepting) at once; the others sit on them.
        self.database_stalled = False
        self.prompt = {"A": True, "B": False, "C": True}
        self.take(self.core.initial_commands)

    # -- the shell ---------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        self.take(self.core.handle(event))
        # A call meant for a connection that is gone was never sent (the shell says so).
        while stale := [
            ref for ref, call in self.calls.items() if self.links.get(call.charger_id) != call.link
        ]:
            for ref in stale:
                self.answer(ref, ProfileResult.NOT_SENT)
        for ref, call in list(self.calls.items()):
            if ref in self.calls and self.prompt[call.charger_id]:
                self.answer(ref, ProfileResult.ACCEPTED)
        if self.batch.proposals and not self.database_stalled:
            self.write_batch()

    def take(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case Reply(reply_to=Token() as token, answer=answer):
                    self.answered(token.request, answer)
                case Persist():
                    self.batch.add(command)
                case SendProfile():
                    self.sent(command)
                case ReadConfiguration():
                    self.reads[command.ref] = command
                case WakeAt(when=when):
                    self.wakeup = when
                case ScheduleReallocation():
                    self.reallocation_due = True
                case _:
                    pass

    def sent(self, command: SendProfile) -> None:
        self.calls[command.ref] = command
        request = command.request
        if request.connector_id == 0:
            return
        applied = self.applied.get((command.charger_id, request.connector_id))
        profile = request.cs_charging_profiles
        if applied is not None and applied.transaction_id == profile.transaction_id:
            limit = profile.charging_schedule.charging_schedule_period[0].limit
            applied.pending[command.ref] = round(limit / 1000)

    def answered(self, request: object, answer: Answer) -> None:
        match request, answer:
            case ("start", StartRequest() as start, _), TransactionAnswer(
                transaction_id=tx, status=status
            ):
                owner = self.transaction_of.setdefault(tx, start)
                assert owner == start, f"transaction id {tx} issued twice"
                if status == "Accepted" and tx not in self.stopped_transactions:
                    self.open_start(start, tx)
            case ("start", _, str() as session_id), Unavailable():
                self.refused_session_ids.add(session_id)
            case ("stop", int() as tx), StopAnswer():
                self.open_transactions.pop(tx, None)
                self.stopped_transactions.add(tx)
                self.unanswered_stops.pop(tx, None)
            case ("rest-start", str() as charger_id, int() as connector, _), SessionAnswer(
                session=session
            ):
                self.supersede((charger_id, connector))
                self.open_rest[session.session_id] = (charger_id, connector)
            case ("rest-start", _, _, str() as session_id), _:
                self.refused_session_ids.add(session_id)  # refused or not stored
            case ("rest-stop", str() as session_id), SessionAnswer():
                self.open_rest.pop(session_id, None)
                self.stopped_rest.add(session_id)
            case _:
                pass

    def open_start(self, start: StartRequest, tx: int) -> None:
        if tx in self.open_transactions:
            return  # a resend: the same answer
        connector = (start.charger_id, start.connector_id - 1)
        self.supersede(connector)
        self.open_transactions[tx] = connector
        self.applied[(start.charger_id, start.connector_id)] = Applied(
            tx, failsafe(start.charger_id)
        )

    def supersede(self, connector: tuple[str, int]) -> None:
        """A new session on a connector ends the one the station had there."""
        for tx, where in list(self.open_transactions.items()):
            if where == connector:
                del self.open_transactions[tx]
                self.stopped_transactions.add(tx)
        for session_id, where in list(self.open_rest.items()):
            if where == connector:
                del self.open_rest[session_id]
                self.stopped_rest.add(session_id)

    def ask(self, request: object, build: object) -> None:
        token = Token(request)
        assert callable(build)
        self.handle(build(token))

    # -- chargers ----------------------------------------------------------------------------

    @rule(charger=st.sampled_from(sorted(CHARGERS)))
    def come_online(self, charger: str) -> None:
        """Connect, boot, and answer the configuration read: a charger that takes limits."""
        self.connect(charger)
        self.handle(ChargerBooted(self.now, charger, self.links[charger], "Test", "T1"))
        for ref, read in list(self.reads.items()):
            if read.charger_id == charger:
                del self.reads[ref]
                keys = {"SupportedFeatureProfiles": "Core,SmartCharging"}
                self.handle(ConfigurationRead(self.now, charger, ref, keys))

    @rule(charger=st.sampled_from(sorted(CHARGERS)), prompt=st.booleans())
    def change_pace(self, charger: str, prompt: bool) -> None:
        self.prompt[charger] = prompt

    @rule(charger=st.sampled_from(sorted(CHARGERS)))
    def connect(self, charger: str) -> None:
        old = self.links.get(charger)
        link = next(self.numbers)
        self.links[charger] = link
        self.handle(ChargerConnected(self.now, charger, link))
        if old is not None:
            # The replaced connection closes after the new one opened.
            self.lose_calls(charger, ProfileResult.LOST)
            self.handle(ChargerDisconnected(self.now, charger, old))

    @precondition(lambda self: self.links)
    @rule(data=st.data(), lost=st.booleans(), chance=st.integers(0, 2))
    def disconnect(self, data: st.DataObject, lost: bool, chance: int) -> None:
        if chance:
            return
        charger = data.draw(st.sampled_from(sorted(self.links)))
        self.lose_calls(charger, ProfileResult.LOST if lost else ProfileResult.NOT_SENT)
        self.handle(ChargerDisconnected(self.now, charger, self.links.pop(charger)))

    def lose_calls(self, charger: str, result: ProfileResult) -> None:
        for ref, call in list(self.calls.items()):
            if call.charger_id == charger:
                self.answer(ref, result)
        for ref, read in list(self.reads.items()):
            if read.charger_id == charger:
                del self.reads[ref]
                self.handle(ConfigurationRead(self.now, charger, ref, None))

    @precondition(lambda self: self.links)
    @rule(data=st.data())
    def boot(self, data: st.DataObject) -> None:
        charger = data.draw(st.sampled_from(sorted(self.links)))
        self.handle(ChargerBooted(self.now, charger, self.links[charger], "Test", "T1"))

    @precondition(lambda self: self.reads)
    @rule(data=st.data(), smart=st.sampled_from([True, True, True, False]))
    def answer_configuration(self, data: st.DataObject, smart: bool) -> None:
        ref = data.draw(st.sampled_from(sorted(self.reads)))
        read = self.reads.pop(ref)
        profiles = "Core,SmartCharging" if smart else "Core"
        before = self.core.chargers[read.charger_id].smart_charging
        self.handle(
            ConfigurationRead(
                self.now, read.charger_id, ref, {"SupportedFeatureProfiles": profiles}
            )
        )
        if before and not self.core.chargers[read.charger_id].smart_charging:
            self.revealed = True

    @precondition(lambda self: self.calls)
    @rule(
        data=st.data(),
        result=st.sampled_from(
            [ProfileResult.ACCEPTED] * 6
            + [ProfileResult.REJECTED, ProfileResult.ERROR, ProfileResult.TIMEOUT]
        ),
    )
    def answer_profile(self, data: st.DataObject, result: ProfileResult) -> None:
        self.answer(data.draw(st.sampled_from(sorted(self.calls))), result)

    def answer(self, ref: int, result: ProfileResult) -> None:
        call = self.calls.pop(ref)
        request = call.request
        applied = self.applied.get((call.charger_id, request.connector_id))
        if request.connector_id > 0:
            if applied is None or ref not in applied.pending:
                # A profile for a transaction the charger does not run: refused.
                result = ProfileResult.REJECTED if result is not ProfileResult.NOT_SENT else result
            else:
                kw = applied.pending.pop(ref)
                if result is ProfileResult.ACCEPTED:
                    applied.possible = {kw}
                elif result in (ProfileResult.ERROR, ProfileResult.TIMEOUT, ProfileResult.LOST):
                    applied.possible.add(kw)  # it may have been applied
        smart = self.core.chargers[call.charger_id].smart_charging
        self.handle(ProfileAnswered(self.now, call.charger_id, ref, result))
        if smart and not self.core.chargers[call.charger_id].smart_charging:
            self.revealed = True

    # -- transactions ------------------------------------------------------------------------

    @precondition(lambda self: self.links)
    @rule(
        data=st.data(),
        tag=st.sampled_from(["T1", "T2"]),
        meter_start=st.sampled_from([0, 1000, 2**63, 2**70]),
    )
    def start_transaction(self, data: st.DataObject, tag: str, meter_start: int) -> None:
        charger = data.draw(st.sampled_from(sorted(self.links)))
        connector = data.draw(st.integers(1, CHARGERS[charger].connectors))
        start = StartRequest(charger, connector, tag, meter_start)
        self.starts.append(start)
        self.send_start(start)

    def send_start(self, start: StartRequest) -> None:
        # The controller names a new session for every request, resends included.
        session_id = f"s{next(self.numbers)}"
        self.ask(
            ("start", start, session_id),
            lambda token: TransactionStartRequested(
                self.now,
                start.charger_id,
                self.links[start.charger_id],
                token,
                start.connector_id,
                start.id_tag,
                "2026-01-01T00:00:00Z",
                start.meter_start,
                session_id,
            ),
        )

    @precondition(lambda self: self.starts and self.links)
    @rule(data=st.data())
    def resend_start(self, data: st.DataObject) -> None:
        candidates = [s for s in self.starts if s.charger_id in self.links]
        if candidates:
            self.send_start(data.draw(st.sampled_from(candidates)))

    @precondition(lambda self: self.open_transactions)
    @rule(data=st.data(), meter_stop=st.sampled_from([0, 5000, 2**63]))
    def stop_transaction(self, data: st.DataObject, meter_stop: int) -> None:
        tx = data.draw(st.sampled_from(sorted(self.open_transactions)))
        charger, connector = self.open_transactions[tx]
        if charger not in self.links:
            return
        # The charger ends the transaction at once; its TxProfile no longer applies.
        applied = self.applied.get((charger, connector + 1))
        if applied is not None and applied.transaction_id == tx:
            del self.applied[(charger, connector + 1)]
        self.unanswered_stops[tx] = (charger, meter_stop)
        self.send_stop(tx)

    def send_stop(self, tx: int) -> None:
        charger, meter_stop = self.unanswered_stops[tx]
        self.ask(
            ("stop", tx),
            lambda token: TransactionStopRequested(self.now, charger, token, tx, meter_stop),
        )

    @precondition(lambda self: self.open_transactions)
    @rule(data=st.data(), kw=st.floats(0, 80, allow_nan=False))
    def meter(self, data: st.DataObject, kw: float) -> None:
        tx = data.draw(st.sampled_from(sorted(self.open_transactions)))
        charger, connector = self.open_transactions[tx]
        self.handle(MeterReading(self.now, charger, connector + 1, tx, power_kw=kw))

    # -- REST --------------------------------------------------------------------------------

    @rule(
        charger=st.sampled_from(sorted(CHARGERS)),
        connector=st.integers(0, 1),
        vehicle=st.one_of(st.none(), st.integers(1, 70)),
    )
    def rest_start(self, charger: str, connector: int, vehicle: int | None) -> None:
        session_id = f"r{next(self.numbers)}"
        self.ask(
            ("rest-start", charger, connector, session_id),
            lambda token: SessionStartRequested(
                self.now, token, charger, connector, vehicle, session_id
            ),
        )

    @precondition(lambda self: self.open_rest)
    @rule(data=st.data())
    def rest_stop(self, data: st.DataObject) -> None:
        session_id = data.draw(st.sampled_from(sorted(self.open_rest)))
        self.ask(
            ("rest-stop", session_id),
            lambda token: SessionStopRequested(self.now, token, session_id, 1.5),
        )

    @precondition(lambda self: self.open_rest or self.open_transactions)
    @rule(data=st.data(), vehicle=st.integers(1, 70))
    def rest_update(self, data: st.DataObject, vehicle: int) -> None:
        sessions = [s.session_id for s in self.core.active_sessions()]
        if sessions:
            session_id = data.draw(st.sampled_from(sorted(sessions)))
            self.ask(
                ("rest-update", session_id),
                lambda token: SessionUpdateRequested(self.now, token, session_id, None, vehicle),
            )

    # -- the database, time, crashes ---------------------------------------------------------

    @rule()
    def stall_database(self) -> None:
        """Another process holds the write lock: proposals wait for a commit or a failure."""
        self.database_stalled = True

    @rule()
    def commit(self) -> None:
        self.database_stalled = False
        self.write_batch()

    def write_batch(self) -> None:
        self.take(self.core.handle(Flush(self.now)))
        batch, self.batch = self.batch, Batch()
        self.repository.write(batch.records())
        if batch.proposals:
            self.handle(CommitDone(self.now, tuple(batch.proposals)))

    @precondition(lambda self: not self.batch.proposals and not self.database_stalled)
    @rule()
    def restart_would_bring_back_everything(self) -> None:
        """With nothing waiting for a commit, what is on disk after a flush is the core:
        recovered from it, every stored field comes back (docs/persistence.md)."""
        # A commit may set off more changes (a raise to write, an answer to record): write
        # until there is nothing left to write.
        for _ in range(10):
            self.write_batch()
            recovered = StationCore(CONFIG, now=self.now, stored=self.repository.load())
            if restart_view(recovered.records()) == restart_view(self.core.records()):
                return
        assert restart_view(recovered.records()) == restart_view(self.core.records())

    @rule()
    def everything_settles(self) -> None:
        """With chargers that answer, a database that writes and time that moves on, every
        limit a charger may be sent reaches it and is confirmed: none is left behind."""
        pace = dict(self.prompt)
        self.prompt = dict.fromkeys(CHARGERS, True)
        self.database_stalled = False
        # Chargers deliver their transaction messages: a stop that got no answer is resent.
        for tx, (charger, _) in list(self.unanswered_stops.items()):
            # Resending one lets the database write what waited: the answer to another
            # stop may come with it, and that one needs no resend.
            if charger in self.links and tx in self.unanswered_stops:
                self.send_stop(tx)
        for _ in range(100):
            if self.batch.proposals:
                self.write_batch()
            for ref in list(self.calls):
                if ref in self.calls:
                    self.answer(ref, ProfileResult.ACCEPTED)
            for ref, read in list(self.reads.items()):
                del self.reads[ref]
                keys = {"SupportedFeatureProfiles": "Core,SmartCharging"}
                self.handle(ConfigurationRead(self.now, read.charger_id, ref, keys))
            if self.reallocation_due:
                self.reallocate()
            elif self.core.settled() and not self.calls and not self.unconfirmed():
                break
            elif self.wakeup is not None:
                self.advance(max(0.0, self.wakeup - self.now))  # a retry, say
        self.prompt = pace
        assert not self.unconfirmed()

    def unconfirmed(self) -> list[str]:
        """Sessions whose charger is set up to take limits but does not hold the one it
        should (except those waiting for the charger to resend its StartTransaction)."""
        left = []
        for session in self.core.active_sessions():
            charger_id = session.charger_id
            book = self.core.limit_book(session.session_id)
            if (
                book is None
                or not book.announced
                or charger_id not in self.links
                or not self.core.ready(charger_id)
                or not self.core.chargers[charger_id].smart_charging
            ):
                continue
            if book.phase is not LimitPhase.CONFIRMED or self.core.limit_due(session.session_id):
                left.append(session.session_id)
        return left

    @precondition(lambda self: self.batch.proposals)
    @rule()
    def fail_commit(self) -> None:
        self.database_stalled = False
        self.take(self.core.handle(Flush(self.now)))
        batch, self.batch = self.batch, Batch()
        batch.requeue_behind(self.batch)
        self.handle(CommitFailed(self.now, tuple(batch.proposals)))

    @precondition(lambda self: self.reallocation_due)
    @rule()
    def reallocate(self) -> None:
        self.reallocation_due = False
        self.handle(Reallocate(self.now))

    @rule(seconds=st.sampled_from([0.5, 1.0, 5.0, 61.0, 3600.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds
        if self.wakeup is not None and self.wakeup <= self.now:
            self.handle(Tick(self.now))

    @rule(chance=st.integers(0, 3))
    def crash(self, chance: int) -> None:
        """kill -9: what was not committed is gone; the chargers carry on as they were."""
        if chance:
            return  # rarer than the other events, so that sessions build up in between
        self.batch = Batch()
        self.calls.clear()
        self.reads.clear()
        self.links.clear()
        self.reallocation_due = False
        for applied in self.applied.values():
            applied.possible |= set(applied.pending.values())  # sent: maybe applied
            applied.pending.clear()
        self.now += 1
        self.core = StationCore(CONFIG, now=self.now, stored=self.repository.load())
        self.take(self.core.initial_commands)
        self.check_acknowledged_survived()

    def check_acknowledged_survived(self) -> None:
        for tx, (charger, connector) in self.open_transactions.items():
            session = self.core.session_by_transaction(tx)
            assert session is not None, f"acknowledged transaction {tx} lost"
            assert (session.charger_id, session.connector_id) == (charger, connector)
        for tx in self.stopped_transactions:
            assert self.core.session_by_transaction(tx) is None
        for session_id, (charger, connector) in self.open_rest.items():
            session = self.core.session(session_id)
            assert session is not None, f"acknowledged session {session_id} lost"
            assert (session.charger_id, session.connector_id) == (charger, connector)
        for session_id in self.stopped_rest:
            stored = self.repository.session(session_id)
            assert stored is not None and not stored.active
        for session_id in self.refused_session_ids:
            assert self.repository.session(session_id) is None
        if self.transaction_of:
            assert self.core.next_transaction_id > max(self.transaction_of)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def acknowledged_sessions_are_active(self) -> None:
        for tx in self.open_transactions:
            assert self.core.session_by_transaction(tx) is not None
        for session_id in self.open_rest:
            assert self.core.session(session_id) is not None

    @invariant()
    def the_books_never_count_a_charger_below_what_it_may_apply(self) -> None:
        """What the core reserves for a transaction covers every limit its charger may be
        applying, also right after a crash (a raise reaches the disk before it is sent)."""
        for session in self.core.active_sessions():
            if (
                session.origin is Origin.REST
                or not self.core.chargers[session.charger_id].smart_charging
            ):
                continue  # budgeted at what it can physically draw, not by its book
            applied = self.applied.get((session.charger_id, session.connector_id + 1))
            if applied is None or applied.transaction_id != session.transaction_id:
                continue
            held = self.core.held.get(session.session_id, 0)
            assert held >= applied.may_apply(), (
                f"{session.session_id}: the books hold {held} kW, the charger may apply "
                f"{applied.may_apply()} kW"
            )

    def may_draw(self, session: Session) -> float:
        if (
            session.origin is Origin.REST
            or not self.core.chargers[session.charger_id].smart_charging
        ):
            return session.allocated_power
        applied = self.applied.get((session.charger_id, session.connector_id + 1))
        if applied is None or applied.transaction_id != session.transaction_id:
            return failsafe(session.charger_id)  # the car started under the default
        return applied.may_apply()

    def excursion(self, session: Session) -> float:
        """What a new car draws under its charger's failsafe default before any TxProfile of
        its own was accepted: it started before the controller heard of it, the one
        excursion outside the controller's hands."""
        if (
            session.origin is Origin.REST
            or not self.core.chargers[session.charger_id].smart_charging
        ):
            return 0
        applied = self.applied.get((session.charger_id, session.connector_id + 1))
        mine = applied is not None and applied.transaction_id == session.transaction_id
        if mine and applied is not None and applied.possible:
            return 0
        return failsafe(session.charger_id)

    @invariant()
    def chargers_never_may_draw_more_than_a_limit(self) -> None:
        draw = {s.session_id: self.may_draw(s) for s in self.core.active_sessions()}
        limits = {**NODE_LIMITS, "station": self.core.available_power}
        revealed, self.revealed = self.revealed, False
        for node, chargers in NODES.items():
            under = [s for s in self.core.active_sessions() if s.charger_id in chargers]
            total = sum(draw[s.session_id] for s in under)
            excursions = sum(min(self.excursion(s), draw[s.session_id]) for s in under)
            if total - excursions <= limits[node] or revealed:
                continue
            # Over the limit: only something outside the controller's hands did that, and
            # meanwhile nobody under this node may be given more.
            grown = [
                s.session_id
                for s in under
                # A new car starts at its failsafe default: outside the controller's hands.
                if draw[s.session_id] > self.previous_draw.get(s.session_id, failsafe(s.charger_id))
                # A charger that takes no limits draws what it likes: not the controller's.
                and self.core.chargers[s.charger_id].smart_charging
            ]
            assert not grown, f"{node}: {total} kW over {limits[node]} and {grown} grew"
        self.previous_draw = draw


StationMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_station_core_state_machine = StationMachine.TestCase
