"""Driving the station core by hand: a test plays the shell.

``CoreHarness`` hands events to a :class:`controller.core.station.StationCore` and keeps what
comes back: answers by ``reply_to``, proposals waiting for their commit, profile calls
waiting for their answer, the records written. By default it commits every proposal at
once (as a working database would); a test that wants to see the window between proposal
and commit turns ``auto_commit`` off and commits or fails them itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from controller.config import StationConfig
from controller.core.commands import (
    Answer,
    Command,
    Persist,
    ReadConfiguration,
    Reply,
    ScheduleReallocation,
    SendProfile,
    SessionAnswer,
    TransactionAnswer,
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
from controller.core.records import Record, StoredState
from controller.core.sessions import Session
from controller.core.station import StationCore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass
class Token:
    """A reply_to: who asked."""

    name: str


@dataclass
class CoreHarness:
    config: StationConfig
    now: float = T0
    stored: StoredState | None = None
    auto_commit: bool = True
    # Run the reallocation the core asks for at once, as the shell does after the events
    # at hand.
    auto_reallocate: bool = True
    core: StationCore = field(init=False)
    answers: dict[int, Answer] = field(default_factory=dict)
    proposals: dict[int, tuple[Record, ...]] = field(default_factory=dict)
    # Profile calls on the wire, by ref, in the order they were sent.
    calls: dict[int, SendProfile] = field(default_factory=dict)
    configuration_reads: dict[int, ReadConfiguration] = field(default_factory=dict)
    written: list[Record] = field(default_factory=list)
    wakeup: float | None = None
    links: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.core = StationCore(self.config, now=self.now, stored=self.stored)
        self._tokens = itertools.count(1)
        self._ids = itertools.count(1)
        self._links = itertools.count(1)
        self._take(self.core.initial_commands)

    # -- the loop ----------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        commands = self.core.handle(event)
        self._take(commands)
        if self.auto_commit and self.proposals:
            self.commit()
        if self.auto_reallocate and any(isinstance(c, ScheduleReallocation) for c in commands):
            self.reallocate()
        return commands

    def _take(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case Reply(reply_to=Token() as token, answer=answer):
                    self.answers[id(token)] = answer
                case Reply():
                    raise AssertionError(f"a reply to an unknown target: {command}")
                case Persist(proposal=None, records=records):
                    self.written += records
                case Persist(proposal=number, records=records):
                    assert number is not None
                    self.proposals[number] = records
                case SendProfile():
                    self.calls[command.ref] = command
                case ReadConfiguration():
                    self.configuration_reads[command.ref] = command
                case WakeAt(when=when):
                    self.wakeup = when
                case _:
                    pass

    def commit(self, numbers: list[int] | None = None) -> None:
        chosen = list(self.proposals) if numbers is None else numbers
        for number in chosen:
            self.written += self.proposals.pop(number)
        self.handle(CommitDone(self.now, tuple(chosen)))

    def fail_commits(self, numbers: list[int] | None = None) -> None:
        chosen = list(self.proposals) if numbers is None else numbers
        for number in chosen:
            del self.proposals[number]
        self.handle(CommitFailed(self.now, tuple(chosen)))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        if self.wakeup is not None and self.wakeup <= self.now:
            self.handle(Tick(self.now))

    def reallocate(self) -> None:
        self.handle(Reallocate(self.now))

    def flush(self) -> None:
        self.handle(Flush(self.now))

    def ask(self, build: Any) -> Answer:
        """Handle the event ``build(reply_to)`` and return its answer (committed at once)."""
        token = Token(f"t{next(self._tokens)}")
        self.handle(build(token))
        return self.answers.pop(id(token))

    # -- chargers ----------------------------------------------------------------------------

    def connect(
        self,
        charger_id: str,
        *,
        boot: bool = True,
        accept: bool = True,
        configuration: dict[str, str] | None = None,
    ) -> int:
        """Connect (and boot, and set up) a charger; returns its link number.
        ``configuration``: its answer to GetConfiguration (None: no usable answer)."""
        link = next(self._links)
        self.links[charger_id] = link
        self.handle(ChargerConnected(self.now, charger_id, link))
        if boot:
            self.handle(
                ChargerBooted(self.now, charger_id, link, "Test", "T1", "1.2.3", f"SN-{charger_id}")
            )
            for ref, read in list(self.configuration_reads.items()):
                if read.charger_id == charger_id:
                    del self.configuration_reads[ref]
                    self.handle(ConfigurationRead(self.now, charger_id, ref, configuration))
        if accept:
            self.answer_profiles(charger_id)
        return link

    def disconnect(self, charger_id: str) -> None:
        link = self.links.pop(charger_id)
        for ref, call in list(self.calls.items()):
            if call.charger_id == charger_id:
                del self.calls[ref]
                self.handle(ProfileAnswered(self.now, charger_id, ref, ProfileResult.LOST))
        self.handle(ChargerDisconnected(self.now, charger_id, link))

    def answer_profiles(
        self, charger_id: str | None = None, result: ProfileResult = ProfileResult.ACCEPTED
    ) -> int:
        """Answer every profile call on the wire (of one charger), including the ones the
        answers set off; returns how many were answered."""
        count = 0
        while True:
            due = [
                ref
                for ref, call in self.calls.items()
                if charger_id is None or call.charger_id == charger_id
            ]
            if not due:
                return count
            for ref in due:
                call = self.calls.pop(ref)
                count += 1
                self.handle(ProfileAnswered(self.now, call.charger_id, ref, result))

    def tx_limits(self, charger_id: str) -> list[tuple[int, float]]:
        """(OCPP connector, W) of the TxProfiles on the wire to a charger."""
        out = []
        for call in self.calls.values():
            if call.charger_id == charger_id and call.request.connector_id > 0:
                period = call.request.cs_charging_profiles.charging_schedule
                out.append((call.request.connector_id, period.charging_schedule_period[0].limit))
        return out

    # -- sessions ----------------------------------------------------------------------------

    def start_rest(
        self, charger_id: str, connector_id: int, vehicle_max_power: float | None = None
    ) -> Session:
        session_id = f"s{next(self._ids)}"
        answer = self.ask(
            lambda token: SessionStartRequested(
                self.now, token, charger_id, connector_id, vehicle_max_power, session_id
            )
        )
        assert isinstance(answer, SessionAnswer), answer
        return answer.session

    def stop_rest(self, session_id: str, consumed_energy: float | None = None) -> Answer:
        return self.ask(
            lambda token: SessionStopRequested(self.now, token, session_id, consumed_energy)
        )

    def update_rest(
        self,
        session_id: str,
        consumed_power: float | None = None,
        vehicle_max_power: float | None = None,
        phases: int | None = None,
    ) -> Answer:
        return self.ask(
            lambda token: SessionUpdateRequested(
                self.now, token, session_id, consumed_power, vehicle_max_power, phases
            )
        )

    def start_transaction(
        self, charger_id: str, connector_id: int, *, meter_start: int = 0, tag: str = "TAG"
    ) -> int:
        """StartTransaction on an OCPP connector (1-based); returns the transaction id."""
        session_id = f"s{next(self._ids)}"
        link = self.links.get(charger_id, 0)
        answer = self.ask(
            lambda token: TransactionStartRequested(
                self.now,
                charger_id,
                link,
                token,
                connector_id,
                tag,
                "2026-01-01T00:00:00Z",
                meter_start,
                session_id,
            )
        )
        assert isinstance(answer, TransactionAnswer), answer
        return answer.transaction_id

    def stop_transaction(self, charger_id: str, transaction_id: int, meter_stop: int) -> Answer:
        return self.ask(
            lambda token: TransactionStopRequested(
                self.now, charger_id, token, transaction_id, meter_stop
            )
        )

    def meter(self, charger_id: str, transaction_id: int, *, kw: float | None = None) -> None:
        self.handle(MeterReading(self.now, charger_id, 1, transaction_id, power_kw=kw))

    def session_of(self, transaction_id: int) -> Session:
        session = self.core.session_by_transaction(transaction_id)
        assert session is not None
        return session
