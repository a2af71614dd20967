"""What goes to the database, and what recovery reads back (docs/persistence.md)."""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.sessions import Session
from controller.core.site import ExternalLimit, ExternalLimitCleared
from controller.core.state import (
    BatteryRecord,
    ChargerState,
    ConnectorState,
    JournalEntry,
    LimitBook,
    LimitDropped,
    StartKey,
    StartKeyDropped,
    TransactionCounter,
)

Record = (
    Session
    | ChargerState
    | ConnectorState
    | LimitBook
    | LimitDropped
    | StartKey
    | StartKeyDropped
    | BatteryRecord
    | TransactionCounter
    | ExternalLimit
    | ExternalLimitCleared
    | JournalEntry
)


@dataclass(frozen=True, slots=True)
class StoredState:
    """Everything recovery needs, as the repository read it."""

    sessions: tuple[Session, ...] = ()  # the active ones
    chargers: tuple[ChargerState, ...] = ()
    connectors: tuple[ConnectorState, ...] = ()
    limits: tuple[LimitBook, ...] = ()
    start_keys: tuple[StartKey, ...] = ()
    battery: BatteryRecord | None = None
    # The stored counter, and the highest id any stored session has (the counter of a
    # database written before the counter was kept may lag behind it).
    next_transaction_id: int = 1
    highest_transaction_id: int = 0
    external_limit: ExternalLimit | None = None


def record_key(record: Record) -> tuple[str, ...] | None:
    """The row a record describes: a later record with the same key replaces it (None:
    a record appended, never replaced)."""
    match record:
        case Session():
            return ("sessions", record.session_id)
        case ChargerState():
            return ("chargers", record.charger_id)
        case ConnectorState():
            return ("connectors", record.charger_id, str(record.connector_id))
        case LimitBook() | LimitDropped():
            return ("limits", record.session_id)
        case StartKey() | StartKeyDropped():
            return ("start_keys", record.key)
        case BatteryRecord():
            return ("battery",)
        case TransactionCounter():
            return ("counter",)
        case ExternalLimit() | ExternalLimitCleared():
            return ("external_limit",)
        case JournalEntry():
            return None
