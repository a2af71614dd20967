"""Changes that must be durable before they are acknowledged: proposed, committed, applied
(docs/persistence.md, "Durable before acknowledged").

A proposal is a change the core has worked out but not applied: the shell commits its
records, and the core applies it (``CommitDone``) or drops it (``CommitFailed``). While it
waits, it locks what it touches (a connector, a session, a StartTransaction key, a
transaction id); a request that needs a locked thing waits for the proposal to be resolved
and is then handled as if it had just arrived, so it sees the outcome.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from controller.core.events import Event
from controller.core.sessions import Session
from controller.core.site import ExternalLimit
from controller.core.state import StartKey

LockKey = tuple[str, ...]


def connector_lock(charger_id: str, connector_id: int) -> LockKey:
    return ("connector", charger_id, str(connector_id))


def session_lock(session_id: str) -> LockKey:
    return ("session", session_id)


def start_lock(key: str) -> LockKey:
    return ("start", key)


def transaction_lock(transaction_id: int) -> LockKey:
    return ("transaction", str(transaction_id))


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
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class RaiseLimit:
    """A higher limit, made durable before the charger may apply it."""

    session_id: str
    ref: int


@dataclass(frozen=True, slots=True)
class SetExternalLimit:
    """``PUT`` (a limit) or ``DELETE`` (None) of the external limit."""

    limit: ExternalLimit | None


EXTERNAL_LIMIT_LOCK: LockKey = ("external-limit",)

Change = (
    StartTransaction | StartSession | StopSession | UpdateSession | RaiseLimit | SetExternalLimit
)


@dataclass(frozen=True, slots=True)
class Proposal:
    number: int
    change: Change
    locks: tuple[LockKey, ...]
    reply_to: object | None
    transaction_id: int | None = None


class Proposals:
    """The proposals waiting for their commit, what they lock, and who waits for them."""

    def __init__(self) -> None:
        self._numbers = itertools.count(1)
        self._pending: dict[int, Proposal] = {}
        self._locks: dict[LockKey, int] = {}
        self._waiting: dict[int, list[Event]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def locked(self, key: LockKey) -> bool:
        return key in self._locks

    def wait_for(self, event: Event, keys: tuple[LockKey, ...]) -> bool:
        """True (and ``event`` kept) when a pending proposal holds one of ``keys``: the
        event is handed back by :meth:`resolve` once that proposal is resolved."""
        for key in keys:
            number = self._locks.get(key)
            if number is not None:
                self._waiting.setdefault(number, []).append(event)
                return True
        return False

    def propose(
        self,
        change: Change,
        locks: tuple[LockKey, ...],
        reply_to: object | None,
        transaction_id: int | None = None,
    ) -> int:
        number = next(self._numbers)
        self._pending[number] = Proposal(number, change, locks, reply_to, transaction_id)
        for key in locks:
            self._locks[key] = number
        return number

    def resolve(self, number: int) -> tuple[Proposal | None, list[Event]]:
        """Forget a proposal (committed or failed): it, and the events that waited for it."""
        proposal = self._pending.pop(number, None)
        if proposal is not None:
            for key in proposal.locks:
                if self._locks.get(key) == number:
                    del self._locks[key]
        return proposal, self._waiting.pop(number, [])

    def next_transaction_id(self, durable_next: int) -> int:
        """An id above every id given or being committed: never one issued twice."""
        pending = [p.transaction_id for p in self._pending.values() if p.transaction_id]
        return max(durable_next, max(pending, default=0) + 1)
