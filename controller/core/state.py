"""The core's state besides sessions: chargers, connectors, limit books, and the small
records that go to the database with them (docs/persistence.md).

Each class is a dataclass whose stored fields are columns of the repository's table of the
same name (see :mod:`controller.core.fields`). Snapshots (``copy()``) are what the core hands
out in ``Persist`` commands and answers; the live objects are the core's alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from controller.core.events import ProfileResult
from controller.core.fields import TRANSIENT
from controller.core.lifecycle import (
    CHARGER_TRANSITIONS,
    LIMIT_TRANSITIONS,
    ChargerPhase,
    ChargerTrigger,
    LimitPhase,
    LimitTrigger,
    step,
)
from controller.core.rules import backoff


class LimitUnit(StrEnum):
    """What a limit book counts in: whole kW, or A per phase on an AC charger with the
    electrical model (docs/electrical.md, "What goes to the charger")."""

    KW = "kW"
    AMPS = "A"


@dataclass(frozen=True, slots=True)
class ProfileReport:
    """The last profile sent to a charger and how it ended, for the dashboard
    (docs/dashboard.md). ``result`` is None while the charger has not answered."""

    purpose: Literal["TxProfile", "TxDefaultProfile"]
    connector_id: int  # OCPP numbering: 0 for the failsafe default
    limit: float  # kW (per connector for the failsafe default)
    sent_at: float
    ref: int  # the call it answers, so that only its own answer completes it
    result: ProfileResult | None = None
    answered_at: float | None = None
    current: float | None = None  # A per phase, when it was sent in amps


@dataclass(slots=True)
class ChargerState:
    """What the controller knows of a charger beyond its configuration."""

    charger_id: str
    booted: bool = False
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    serial_number: str | None = None
    last_seen: float | None = None
    # False once the charger is known to take no charging profile (docs/ocpp.md,
    # "Chargers that take no limits").
    smart_charging: bool = True
    # How it wants limits, as read from it: True amps, False watts, None not known.
    amps: bool | None = None
    # Profiles refused (rejected, CALLERROR, unanswered) since the last one accepted.
    rejections: int = 0
    ever_accepted: bool = False
    # -- the connection, which a restart ends --
    connected: bool = field(default=False, metadata=TRANSIENT)
    link: int | None = field(default=None, metadata=TRANSIENT)
    disconnected_at: float | None = field(default=None, metadata=TRANSIENT)
    phase: ChargerPhase = field(default=ChargerPhase.OFFLINE, metadata=TRANSIENT)
    # The profile call (or raise being committed) this charger is busy with: one at a time.
    busy: int | None = field(default=None, metadata=TRANSIENT)
    # The call that the current phase waits for (GetConfiguration, the failsafe).
    waiting_for: int | None = field(default=None, metadata=TRANSIENT)
    default_failures: int = field(default=0, metadata=TRANSIENT)
    default_retry_at: float | None = field(default=None, metadata=TRANSIENT)
    # The last profile sent and its answer, shown to the operator; a restart forgets it.
    last_profile: ProfileReport | None = field(default=None, metadata=TRANSIENT)

    def copy(self) -> ChargerState:
        return replace(self)

    def step(self, trigger: ChargerTrigger) -> None:
        self.phase = step(CHARGER_TRANSITIONS, self.phase, trigger)

    def default_refused(self, now: float) -> None:
        """Its failsafe default was not accepted: try again after a back-off."""
        self.step(ChargerTrigger.DEFAULT_REFUSED)
        self.default_failures += 1
        self.default_retry_at = now + backoff(self.default_failures)


@dataclass(slots=True)
class ConnectorState:
    """What a charger last said about one of its connectors (StatusNotification); OCPP
    numbering, 0 being the charger itself."""

    charger_id: str
    connector_id: int
    status: str | None = None
    error_code: str | None = None
    info: str | None = None
    updated_at: float | None = None

    def copy(self) -> ConnectorState:
        return replace(self)


@dataclass(slots=True)
class LimitBook:
    """What one OCPP session's charger holds: the lifecycle of its TxProfile.

    ``applied`` is the most the charger may be applying, apart from what is on the wire
    (None: its failsafe default); ``in_flight`` the limit being committed or sent. The most
    it may apply is the larger of the two: that is what the allocation keeps reserved.
    """

    session_id: str
    charger_id: str
    connector_id: int  # OCPP numbering, 1-based
    transaction_id: int
    applied: float | None = None
    in_flight: float | None = None
    # The charger has been told the transaction id (its StartTransaction.conf went out on
    # its connection): a TxProfile naming it before then would be rejected.
    announced: bool = False
    failures: int = 0
    unit: LimitUnit = LimitUnit.KW
    phase: LimitPhase = field(default=LimitPhase.PENDING, metadata=TRANSIENT)
    retry_at: float | None = field(default=None, metadata=TRANSIENT)
    # The call or commit the book waits for.
    waiting_for: int | None = field(default=None, metadata=TRANSIENT)

    @property
    def held(self) -> float | None:
        if self.in_flight is None:
            return self.applied
        if self.applied is None:
            return self.in_flight
        return max(self.applied, self.in_flight)

    def copy(self) -> LimitBook:
        return replace(self)

    # -- the lifecycle (docs/ocpp.md, "A connector's TxProfile") ---------------------------

    def step(self, trigger: LimitTrigger) -> None:
        self.phase = step(LIMIT_TRANSITIONS, self.phase, trigger)

    def start(self, kw: float, ref: int) -> bool:
        """``kw`` is due: True when it is a raise, which must reach the disk before it is
        sent (after a crash the books must never count less than the charger may apply);
        a lowering (or the same limit again) goes on the wire at once."""
        raise_first = kw > (self.held or 0)
        self.step(LimitTrigger.RAISE if raise_first else LimitTrigger.SEND)
        self.in_flight = kw
        self.waiting_for = ref
        return raise_first

    def not_sent(self) -> None:
        """What was due never left: the connection was gone."""
        self.in_flight = None
        self.waiting_for = None
        self.step(LimitTrigger.NOT_SENT)

    def commit_failed(self, now: float) -> None:
        self.in_flight = None
        self.waiting_for = None
        self.step(LimitTrigger.COMMIT_FAILED)
        self._retry_later(now)

    def answered(self, result: ProfileResult, now: float, *, connection_replaced: bool) -> None:
        """The charger's answer; ``connection_replaced``: it came on a connection a new one
        has since replaced, which sends the limit again at once."""
        kw = self.in_flight
        self.in_flight = None
        self.waiting_for = None
        if result is ProfileResult.ACCEPTED:
            self.applied = kw
            self.failures = 0
            self.step(LimitTrigger.ACCEPTED)
            return
        if result is ProfileResult.NOT_SENT:
            self.step(LimitTrigger.NOT_SENT)
            return
        if result is ProfileResult.REJECTED or kw is None:
            self.step(LimitTrigger.REFUSED)
        else:
            # No usable answer: the charger may have applied it. Count it as held (the
            # larger of the two) and send again to know for sure.
            self.applied = kw if self.applied is None else max(self.applied, kw)
            self.step(LimitTrigger.UNANSWERED)
        if connection_replaced:
            self.failures = 0
            self.step(LimitTrigger.RETRY_DUE)
        else:
            self._retry_later(now)

    def retry_due(self) -> None:
        self.retry_at = None
        self.step(LimitTrigger.RETRY_DUE)

    def reconnected(self) -> None:
        if self.phase is LimitPhase.RETRYING:
            self.failures = 0
            self.retry_at = None
        self.step(LimitTrigger.RECONNECTED)

    def _retry_later(self, now: float) -> None:
        self.failures += 1
        self.retry_at = now + backoff(self.failures)


@dataclass(frozen=True, slots=True)
class LimitDropped:
    """The session of a limit book ended: its row goes."""

    session_id: str


@dataclass(frozen=True, slots=True)
class StartKey:
    """What makes two StartTransaction requests the same one, resent: charger, connector,
    idTag, timestamp and meterStart (as text, so that no number is too large to keep),
    and the answer it got."""

    key: str
    charger_id: str
    transaction_id: int
    status: str
    recorded_at: float


@dataclass(frozen=True, slots=True)
class StartKeyDropped:
    """The charger stopped the transaction a StartTransaction key answered. Its messages
    arrive in order, so it will never resend that StartTransaction: the key goes."""

    key: str


@dataclass(frozen=True, slots=True)
class BatteryRecord:
    stored_energy: float
    may_discharge: bool
    updated_at: float


@dataclass(frozen=True, slots=True)
class TransactionCounter:
    """The next transaction id to hand out: durable before any id above it is given."""

    next_transaction_id: int


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One line of the append-only journal (``GET /station/events``)."""

    at: float
    kind: str
    charger_id: str | None = None
    session_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
