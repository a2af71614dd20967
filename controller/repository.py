"""The database: every table and every SQL statement of the controller (docs/persistence.md).

Embedded SQLite in WAL mode. Each table holds one of the core's record types and has one
column per stored field of it, named like the field (:mod:`controller.core.fields`); rows
are mapped to records by column name, through the field's type (booleans, enums). The
core decides what to write; this module only knows how.

* :meth:`Repository.write` writes a batch of records in one transaction. Whatever goes
  wrong inside it (an SQLite error, a value SQLite cannot bind, a lock held too long by
  another process) rolls the transaction back and raises :class:`StoreError`: then
  nothing of the batch was written.
* :meth:`Repository.load` reads what recovery needs (:class:`StoredState`).
* The history queries (a session, sessions by status, the journal) serve the REST API.

Schema versions are applied in order by ``MIGRATIONS`` (``PRAGMA user_version``); a
database written by an earlier version opens and keeps its data.

Calls block: the shell runs them on one thread of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import threading
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from controller.core.fields import stored_fields
from controller.core.records import Record, StoredState
from controller.core.sessions import Session, SessionStatus
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

log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        charger_id TEXT NOT NULL,
        connector_id INTEGER NOT NULL,
        origin TEXT NOT NULL,
        status TEXT NOT NULL,
        vehicle_max_power REAL,
        allocated_power INTEGER NOT NULL,
        limited_by TEXT,
        consumed_power REAL,
        consumed_energy REAL NOT NULL,
        state_of_charge REAL,
        started_at REAL NOT NULL,
        stopped_at REAL,
        transaction_id INTEGER UNIQUE,
        id_tag TEXT,
        meter_start_wh REAL,
        stop_reason TEXT
    );
    CREATE INDEX sessions_by_status ON sessions (status, stopped_at);
    CREATE TABLE start_keys (
        charger_id TEXT NOT NULL,
        connector_id INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        meter_start INTEGER NOT NULL,
        transaction_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (charger_id, connector_id, id_tag, timestamp, meter_start)
    );
    CREATE TABLE battery (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        stored_energy REAL NOT NULL,
        may_discharge INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE chargers (
        charger_id TEXT PRIMARY KEY,
        booted INTEGER NOT NULL,
        vendor TEXT,
        model TEXT,
        firmware_version TEXT,
        serial_number TEXT,
        last_seen REAL,
        smart_charging INTEGER NOT NULL,
        amps INTEGER
    );
    CREATE TABLE connectors (
        charger_id TEXT NOT NULL,
        connector_id INTEGER NOT NULL,
        status TEXT,
        error_code TEXT,
        info TEXT,
        updated_at REAL,
        PRIMARY KEY (charger_id, connector_id)
    );
    CREATE TABLE limits (
        session_id TEXT PRIMARY KEY,
        charger_id TEXT NOT NULL,
        connector_id INTEGER NOT NULL,
        transaction_id INTEGER NOT NULL,
        confirmed INTEGER,
        in_flight INTEGER
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        charger_id TEXT,
        session_id TEXT,
        data TEXT NOT NULL
    );
    """,
    # 2: every field of the station core is stored. Sessions keep what was learned of their
    # vehicle; chargers how often they refused a profile; limit books whether the charger
    # knows the transaction id. StartTransaction keys become one text key, so that no
    # number in them is too large to store (a meterStart of 2**63 once broke every commit).
    """
    ALTER TABLE sessions ADD COLUMN reading_stale INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN reading_at REAL;
    ALTER TABLE sessions ADD COLUMN learned_max_power REAL;
    ALTER TABLE chargers ADD COLUMN rejections INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chargers ADD COLUMN ever_accepted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE limits RENAME COLUMN confirmed TO applied;
    ALTER TABLE limits ADD COLUMN announced INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE limits ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE start_keys RENAME TO start_keys_v1;
    CREATE TABLE start_keys (
        key TEXT PRIMARY KEY,
        charger_id TEXT NOT NULL,
        transaction_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        recorded_at REAL NOT NULL
    );
    INSERT INTO start_keys (key, charger_id, transaction_id, status, recorded_at)
        SELECT json_array(charger_id, connector_id, id_tag, timestamp, meter_start),
               charger_id, transaction_id, status, recorded_at
        FROM start_keys_v1;
    DROP TABLE start_keys_v1;
    CREATE INDEX start_keys_by_age ON start_keys (recorded_at);
    CREATE INDEX events_by_session ON events (session_id);
    """,
    # 3: the external limit on the station (docs/site.md): one row while one is set.
    """
    CREATE TABLE external_limit (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        max_power REAL NOT NULL,
        until REAL,
        reason TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at REAL NOT NULL
    );
    """,
    # 4: the electrical model (docs/electrical.md): a session's stated phases and since when
    # it waits; a limit book's unit (A per phase on AC chargers), so that a book stored
    # before a charger's configuration changed is read in the unit it was written in.
    """
    ALTER TABLE sessions ADD COLUMN phases INTEGER;
    ALTER TABLE sessions ADD COLUMN paused_since REAL;
    ALTER TABLE limits ADD COLUMN unit TEXT NOT NULL DEFAULT 'kW';
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
NEXT_TRANSACTION_ID = "next_transaction_id"
# How long a write waits for another process's lock before it gives up (seconds).
BUSY_TIMEOUT = 5.0
# Rows of each kind one pruning transaction deletes at most.
PRUNE_BATCH = 5_000

T = TypeVar("T")


class StoreError(Exception):
    """The database cannot be opened or written: nothing new may be acknowledged."""


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows one pruning transaction deleted."""

    sessions: int
    events: int
    start_keys: int

    def __bool__(self) -> bool:
        return bool(self.sessions or self.events or self.start_keys)

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(
            self.sessions + other.sessions,
            self.events + other.events,
            self.start_keys + other.start_keys,
        )


@dataclass(frozen=True, slots=True)
class JournalLine:
    """A journal entry as stored, with its place in the journal."""

    seq: int
    entry: JournalEntry


# -- records <-> rows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    """How one record type maps to one table."""

    name: str
    record: type[Any]
    columns: tuple[str, ...]
    key: tuple[str, ...]
    decoders: dict[str, Callable[[Any], Any]]

    def row(self, record: Any) -> tuple[Any, ...]:
        return tuple(_encode(getattr(record, column)) for column in self.columns)

    def record_of(self, row: sqlite3.Row) -> Any:
        values = {}
        for column in self.columns:
            value = row[column]
            decode = self.decoders.get(column)
            values[column] = value if value is None or decode is None else decode(value)
        return self.record(**values)

    @property
    def upsert(self) -> str:
        marks = ", ".join("?" for _ in self.columns)
        return f"INSERT OR REPLACE INTO {self.name} ({', '.join(self.columns)}) VALUES ({marks})"


def _encode(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _number(value: Any) -> float:
    # A damaged file may hold text where a number belongs: refused here, at start-up, rather
    # than failing later in the middle of the core (docs/security-input.md).
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ValueError(f"{value!r:.40} is not a number")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"{value!r:.40} is not text")


def _decoders(record: type[Any]) -> dict[str, Callable[[Any], Any]]:
    """Per column, how to turn the stored value back into the field's type."""
    hints = typing.get_type_hints(record)
    decoders: dict[str, Callable[[Any], Any]] = {}
    for field in dataclasses.fields(record):
        kind = hints[field.name]
        options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
        for option in options:
            if option is bool:
                decoders[field.name] = bool
            elif isinstance(option, type) and issubclass(option, Enum):
                decoders[field.name] = option
            elif option in (int, float):
                decoders[field.name] = _number
            elif option is str:
                decoders[field.name] = _text
    return decoders


def _table(name: str, record: type[Any], key: tuple[str, ...]) -> _Table:
    return _Table(name, record, stored_fields(record), key, _decoders(record))


SESSIONS = _table("sessions", Session, ("session_id",))
CHARGERS = _table("chargers", ChargerState, ("charger_id",))
CONNECTORS = _table("connectors", ConnectorState, ("charger_id", "connector_id"))
LIMITS = _table("limits", LimitBook, ("session_id",))
START_KEYS = _table("start_keys", StartKey, ("key",))
BATTERY = _table("battery", BatteryRecord, ())
EXTERNAL_LIMIT = _table("external_limit", ExternalLimit, ())
TABLES = (SESSIONS, CHARGERS, CONNECTORS, LIMITS, START_KEYS, BATTERY, EXTERNAL_LIMIT)


# -- the repository --------------------------------------------------------------------------


class Repository:
    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = str(path)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the folder of {self.path}: {error}") from None
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._migrate()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open database {self.path}: {error}") from error
        self.commits = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this program's "
                f"{SCHEMA_VERSION}"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
            log.info("database %s migrated to schema version %d", self.path, number)

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- writing -----------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Write ``records`` in one transaction, in order; StoreError and nothing written
        when anything fails."""
        upserts: dict[str, list[tuple[Any, ...]]] = {}
        dropped: list[tuple[str]] = []
        starts: list[tuple[Any, ...]] = []
        dropped_keys: list[tuple[str]] = []
        journal: list[tuple[Any, ...]] = []
        meta: list[tuple[str, str]] = []
        battery: tuple[Any, ...] | None = None
        # The last word on the external limit in this batch: its row, or () to delete it.
        external: tuple[Any, ...] | None = None
        for record in records:
            match record:
                case Session():
                    upserts.setdefault(SESSIONS.upsert, []).append(SESSIONS.row(record))
                case ChargerState():
                    upserts.setdefault(CHARGERS.upsert, []).append(CHARGERS.row(record))
                case ConnectorState():
                    upserts.setdefault(CONNECTORS.upsert, []).append(CONNECTORS.row(record))
                case LimitBook():
                    upserts.setdefault(LIMITS.upsert, []).append(LIMITS.row(record))
                case LimitDropped(session_id=session_id):
                    dropped.append((session_id,))
                case StartKey():
                    starts.append(START_KEYS.row(record))
                case StartKeyDropped(key=key):
                    dropped_keys.append((key,))
                case BatteryRecord():
                    battery = BATTERY.row(record)
                case TransactionCounter(next_transaction_id=next_id):
                    meta.append((NEXT_TRANSACTION_ID, str(next_id)))
                case ExternalLimit():
                    external = EXTERNAL_LIMIT.row(record)
                case ExternalLimitCleared():
                    external = ()
                case JournalEntry():
                    journal.append(
                        (
                            record.at,
                            record.kind,
                            record.charger_id,
                            record.session_id,
                            json.dumps(record.data, separators=(",", ":")),
                        )
                    )

        def write_all(db: sqlite3.Connection) -> None:
            for statement, rows in upserts.items():
                db.executemany(statement, rows)
            db.executemany("DELETE FROM limits WHERE session_id = ?", dropped)
            db.executemany(
                "INSERT OR REPLACE INTO start_keys "
                f"({', '.join(START_KEYS.columns)}) VALUES (?, ?, ?, ?, ?)",
                starts,
            )
            db.executemany("DELETE FROM start_keys WHERE key = ?", dropped_keys)
            db.executemany(
                "INSERT INTO events (at, kind, charger_id, session_id, data) "
                "VALUES (?, ?, ?, ?, ?)",
                journal,
            )
            if battery is not None:
                db.execute(
                    "INSERT OR REPLACE INTO battery "
                    "(id, stored_energy, may_discharge, updated_at) VALUES (1, ?, ?, ?)",
                    battery,
                )
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta)
            if external == ():
                db.execute("DELETE FROM external_limit")
            elif external is not None:
                columns = ", ".join(EXTERNAL_LIMIT.columns)
                marks = ", ".join("?" for _ in EXTERNAL_LIMIT.columns)
                db.execute(
                    f"INSERT OR REPLACE INTO external_limit (id, {columns}) VALUES (1, {marks})",
                    external,
                )

        self._in_transaction(write_all)
        self.commits += 1

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one write transaction: all of it or, on any error, none of it."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                result = work(db)
                db.execute("COMMIT")
            except BaseException as error:
                # Anything at all (not only sqlite3.Error: a value too large to bind raises
                # OverflowError) ends the transaction, or every later one would fail.
                # (A closed or broken connection cannot even say whether it is in one.)
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                if isinstance(error, Exception):
                    raise StoreError(f"cannot write {self.path}: {error}") from error
                raise
        return result

    def prune(
        self, history_before: float, start_keys_before: float, *, batch: int = PRUNE_BATCH
    ) -> Pruned:
        """Delete at most ``batch`` rows of each kind that are older than the cutoffs: stopped
        sessions and journal lines before ``history_before``, StartTransaction keys before
        ``start_keys_before``. One short transaction, so that commits waiting behind it are not
        held up; the caller repeats while something was deleted."""

        def delete_old(db: sqlite3.Connection) -> Pruned:
            sessions = db.execute(
                "DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM sessions "
                "WHERE status = ? AND stopped_at < ? LIMIT ?)",
                (SessionStatus.STOPPED.value, history_before, batch),
            ).rowcount
            events = db.execute(
                "DELETE FROM events WHERE seq IN "
                "(SELECT seq FROM events WHERE at < ? ORDER BY seq LIMIT ?)",
                (history_before, batch),
            ).rowcount
            keys = db.execute(
                "DELETE FROM start_keys WHERE key IN "
                "(SELECT key FROM start_keys WHERE recorded_at < ? LIMIT ?)",
                (start_keys_before, batch),
            ).rowcount
            return Pruned(sessions, events, keys)

        return self._in_transaction(delete_old)

    # -- reading -----------------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params).fetchall())
            # ValueError: text that is not UTF-8 in a damaged file.
            except (sqlite3.Error, ValueError) as error:
                raise StoreError(f"cannot read {self.path}: {error}") from error

    def load(self) -> StoredState:
        """What recovery needs: active sessions, charger books, limits, keys, the battery.
        StoreError when a row cannot be read back as its record (a damaged file)."""
        try:
            return self._load()
        except (ValueError, TypeError, KeyError, IndexError) as error:
            raise StoreError(
                f"cannot read {self.path}: a stored row is damaged ({error})"
            ) from error

    def _load(self) -> StoredState:
        sessions = [
            SESSIONS.record_of(r)
            for r in self._rows(
                "SELECT * FROM sessions WHERE status = ?", (SessionStatus.ACTIVE.value,)
            )
        ]
        battery = self._rows("SELECT * FROM battery WHERE id = 1")
        counter = self._rows("SELECT value FROM meta WHERE key = ?", (NEXT_TRANSACTION_ID,))
        highest = self._rows("SELECT MAX(transaction_id) AS m FROM sessions")[0]["m"]
        external = self._rows("SELECT * FROM external_limit WHERE id = 1")
        return StoredState(
            sessions=tuple(sessions),
            chargers=tuple(CHARGERS.record_of(r) for r in self._rows("SELECT * FROM chargers")),
            connectors=tuple(
                CONNECTORS.record_of(r) for r in self._rows("SELECT * FROM connectors")
            ),
            limits=tuple(LIMITS.record_of(r) for r in self._rows("SELECT * FROM limits")),
            start_keys=tuple(
                START_KEYS.record_of(r)
                for r in self._rows("SELECT * FROM start_keys ORDER BY recorded_at")
            ),
            battery=BATTERY.record_of(battery[0]) if battery else None,
            next_transaction_id=int(counter[0]["value"]) if counter else 1,
            highest_transaction_id=int(highest or 0),
            external_limit=EXTERNAL_LIMIT.record_of(external[0]) if external else None,
        )

    def session(self, session_id: str) -> Session | None:
        rows = self._rows("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        return SESSIONS.record_of(rows[0]) if rows else None

    def session_by_transaction(self, transaction_id: int) -> Session | None:
        rows = self._rows("SELECT * FROM sessions WHERE transaction_id = ?", (transaction_id,))
        return SESSIONS.record_of(rows[0]) if rows else None

    def stopped_sessions(self, limit: int) -> list[Session]:
        """The history, newest first."""
        rows = self._rows(
            "SELECT * FROM sessions WHERE status = ? ORDER BY stopped_at DESC LIMIT ?",
            (SessionStatus.STOPPED.value, limit),
        )
        return [SESSIONS.record_of(r) for r in rows]

    def journal(self, since: int, limit: int) -> list[JournalLine]:
        rows = self._rows("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (since, limit))
        return [
            JournalLine(
                r["seq"],
                JournalEntry(
                    r["at"], r["kind"], r["charger_id"], r["session_id"], json.loads(r["data"])
                ),
            )
            for r in rows
        ]

    def limit_rows(self) -> list[LimitBook]:
        """The limit books as stored (tests check what would survive a crash)."""
        return [LIMITS.record_of(r) for r in self._rows("SELECT * FROM limits")]
