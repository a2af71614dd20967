"""State machines as data: a charger's set-up and a connector's limit (docs/ocpp.md).

Each machine is a table from (phase, trigger) to the next phase. :func:`step` looks the
pair up; a pair that is not in the table is a bug in the caller and raises
:class:`IllegalTransition` before anything changes. The numbers that go with a phase (the
limit on the wire, what the charger may apply, the retry time) live on the state objects;
the tables decide only which phase follows which.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, TypeVar


class IllegalTransition(RuntimeError):
    """A trigger that the current phase does not accept."""


class ChargerPhase(StrEnum):
    """Where a charger is in being set up to take limits."""

    OFFLINE = "offline"  # no connection
    CONNECTED = "connected"  # connected, never booted: waits for BootNotification
    CONFIGURING = "configuring"  # GetConfiguration on the wire (after every boot)
    INSTALLING = "installing"  # the failsafe TxDefaultProfile on the wire
    DEFAULT_RETRYING = "default-retrying"  # the failsafe was refused; retry at a time
    READY = "ready"  # failsafe installed (or the charger takes no profiles at all)


class ChargerTrigger(StrEnum):
    CONNECTED = "connected"  # a connection opened (booted before: reinstall at once)
    RECONNECTED = "reconnected"  # a connection opened for a charger that booted before
    DISCONNECTED = "disconnected"
    BOOTED = "booted"
    CONFIGURED = "configured"  # GetConfiguration answered (or not); it takes profiles
    CONFIGURED_UNLIMITABLE = "configured-unlimitable"  # ... it takes no profiles
    DEFAULT_ACCEPTED = "default-accepted"
    DEFAULT_REFUSED = "default-refused"  # rejected, errored, unanswered
    RETRY_DUE = "retry-due"
    UNLIMITABLE = "unlimitable"  # found to accept no profile at all


_ANY_ONLINE = (
    ChargerPhase.CONNECTED,
    ChargerPhase.CONFIGURING,
    ChargerPhase.INSTALLING,
    ChargerPhase.DEFAULT_RETRYING,
    ChargerPhase.READY,
)

CHARGER_TRANSITIONS: Final[Mapping[tuple[ChargerPhase, ChargerTrigger], ChargerPhase]] = {
    (ChargerPhase.OFFLINE, ChargerTrigger.CONNECTED): ChargerPhase.CONNECTED,
    (ChargerPhase.OFFLINE, ChargerTrigger.RECONNECTED): ChargerPhase.INSTALLING,
    # A second connection replaces the first: set up again on the new one.
    **{(p, ChargerTrigger.CONNECTED): ChargerPhase.CONNECTED for p in _ANY_ONLINE},
    **{(p, ChargerTrigger.RECONNECTED): ChargerPhase.INSTALLING for p in _ANY_ONLINE},
    **{(p, ChargerTrigger.DISCONNECTED): ChargerPhase.OFFLINE for p in _ANY_ONLINE},
    # Every boot (a first one, or a reboot) reads the configuration again.
    **{(p, ChargerTrigger.BOOTED): ChargerPhase.CONFIGURING for p in _ANY_ONLINE},
    (ChargerPhase.CONFIGURING, ChargerTrigger.CONFIGURED): ChargerPhase.INSTALLING,
    (ChargerPhase.CONFIGURING, ChargerTrigger.CONFIGURED_UNLIMITABLE): ChargerPhase.READY,
    (ChargerPhase.INSTALLING, ChargerTrigger.DEFAULT_ACCEPTED): ChargerPhase.READY,
    (ChargerPhase.INSTALLING, ChargerTrigger.DEFAULT_REFUSED): ChargerPhase.DEFAULT_RETRYING,
    (ChargerPhase.DEFAULT_RETRYING, ChargerTrigger.RETRY_DUE): ChargerPhase.INSTALLING,
    # A charger found to take no profile has nothing left to install.
    **{(p, ChargerTrigger.UNLIMITABLE): ChargerPhase.READY for p in _ANY_ONLINE},
    (ChargerPhase.OFFLINE, ChargerTrigger.UNLIMITABLE): ChargerPhase.OFFLINE,
}


class LimitPhase(StrEnum):
    """Where one transaction's TxProfile is (one per OCPP session)."""

    PENDING = "pending"  # must be sent: never sent, or what the charger applies is unsure
    COMMITTING = "committing"  # a raise being made durable before it may be sent
    SENDING = "sending"  # on the wire, unanswered
    CONFIRMED = "confirmed"  # the charger accepted what it applies now
    RETRYING = "retrying"  # refused or unanswered: sent again at a time, with back-off
    UNLIMITABLE = "unlimitable"  # its charger takes no profile: budgeted at its maximum


class LimitTrigger(StrEnum):
    RAISE = "raise"  # a higher limit is due: make it durable first
    SEND = "send"  # a lower (or equal) limit is due: send it
    COMMITTED = "committed"
    COMMIT_FAILED = "commit-failed"
    ACCEPTED = "accepted"
    REFUSED = "refused"  # rejected: the charger keeps what it applied before
    # Timed out, answered with a CALLERROR, or the connection ended with it on the wire:
    # the charger may have applied it.
    UNANSWERED = "unanswered"
    NOT_SENT = "not-sent"  # the connection ended before it went out
    RETRY_DUE = "retry-due"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    UNLIMITABLE = "unlimitable"
    LIMITABLE = "limitable"


_SETTLED = (LimitPhase.PENDING, LimitPhase.CONFIRMED, LimitPhase.RETRYING)

LIMIT_TRANSITIONS: Final[Mapping[tuple[LimitPhase, LimitTrigger], LimitPhase]] = {
    (LimitPhase.PENDING, LimitTrigger.RAISE): LimitPhase.COMMITTING,
    (LimitPhase.PENDING, LimitTrigger.SEND): LimitPhase.SENDING,
    (LimitPhase.CONFIRMED, LimitTrigger.RAISE): LimitPhase.COMMITTING,
    (LimitPhase.CONFIRMED, LimitTrigger.SEND): LimitPhase.SENDING,
    (LimitPhase.COMMITTING, LimitTrigger.COMMITTED): LimitPhase.SENDING,
    (LimitPhase.COMMITTING, LimitTrigger.COMMIT_FAILED): LimitPhase.RETRYING,
    (LimitPhase.SENDING, LimitTrigger.ACCEPTED): LimitPhase.CONFIRMED,
    (LimitPhase.SENDING, LimitTrigger.REFUSED): LimitPhase.RETRYING,
    (LimitPhase.SENDING, LimitTrigger.UNANSWERED): LimitPhase.RETRYING,
    (LimitPhase.SENDING, LimitTrigger.NOT_SENT): LimitPhase.PENDING,
    (LimitPhase.RETRYING, LimitTrigger.RETRY_DUE): LimitPhase.PENDING,
    # After a reconnection nobody knows what the charger applies: send it again, at once.
    **{(p, LimitTrigger.DISCONNECTED): LimitPhase.PENDING for p in _SETTLED},
    **{(p, LimitTrigger.RECONNECTED): LimitPhase.PENDING for p in _SETTLED},
    # What is being committed or on the wire ends first (committed, answered, cancelled).
    (LimitPhase.COMMITTING, LimitTrigger.DISCONNECTED): LimitPhase.COMMITTING,
    (LimitPhase.SENDING, LimitTrigger.DISCONNECTED): LimitPhase.SENDING,
    (LimitPhase.COMMITTING, LimitTrigger.RECONNECTED): LimitPhase.COMMITTING,
    (LimitPhase.SENDING, LimitTrigger.RECONNECTED): LimitPhase.SENDING,
    **{(p, LimitTrigger.UNLIMITABLE): LimitPhase.UNLIMITABLE for p in _SETTLED},
    (LimitPhase.UNLIMITABLE, LimitTrigger.UNLIMITABLE): LimitPhase.UNLIMITABLE,
    (LimitPhase.UNLIMITABLE, LimitTrigger.DISCONNECTED): LimitPhase.UNLIMITABLE,
    (LimitPhase.UNLIMITABLE, LimitTrigger.RECONNECTED): LimitPhase.UNLIMITABLE,
    (LimitPhase.UNLIMITABLE, LimitTrigger.LIMITABLE): LimitPhase.PENDING,
    **{(p, LimitTrigger.LIMITABLE): p for p in _SETTLED},
}

P = TypeVar("P", ChargerPhase, LimitPhase)
T = TypeVar("T", ChargerTrigger, LimitTrigger)


def step(table: Mapping[tuple[P, T], P], phase: P, trigger: T) -> P:
    """The phase after ``trigger``; IllegalTransition when the table has no such step."""
    try:
        return table[(phase, trigger)]
    except KeyError:
        raise IllegalTransition(f"{trigger.value!r} is not allowed in {phase.value!r}") from None
