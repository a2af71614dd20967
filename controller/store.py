"""Persistence on embedded SQLite (behaviour spec section 7).

Theory. The station lives in memory; the store keeps a copy on disk that is
good enough to come back from a crash. Changes are *marked* as they happen
(cheap, on the event loop): a session, a charger, a profile book, the battery,
or an event for the append-only journal. ``commit()`` makes everything marked
so far durable: it snapshots the marked rows on the loop (so no later change
can tear them), writes them in one SQLite transaction on the store's own
thread, and returns once that transaction is committed. Callers that
acknowledge something (a REST 201/200, a StartTransaction.conf or
StopTransaction.conf) await ``commit()`` before answering; concurrent callers
share one transaction (group commit). Everything else (meter readings, charger
statuses, profile books, the battery) is written behind, by the next commit
or by the periodic flush.

Durability: WAL journal, ``synchronous=FULL`` by default, so a committed
transaction survives a power cut, not only a process crash; ``NORMAL`` is
available for hardware where fsync is too slow (then a power cut may lose the
last commits, a process crash still loses nothing committed).

Schema versions are applied in order by ``MIGRATIONS`` (``PRAGMA user_version``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
)

SCHEMA_VERSION = len(MIGRATIONS)

SESSION_COLUMNS = (
    "session_id",
    "charger_id",
    "connector_id",
    "origin",
    "status",
    "vehicle_max_power",
    "allocated_power",
    "limited_by",
    "consumed_power",
    "consumed_energy",
    "state_of_charge",
    "started_at",
    "stopped_at",
    "transaction_id",
    "id_tag",
    "meter_start_wh",
    "stop_reason",
)
CHARGER_COLUMNS = (
    "charger_id",
    "booted",
    "vendor",
    "model",
    "firmware_version",
    "serial_number",
    "last_seen",
    "smart_charging",
    "amps",
)
CONNECTOR_COLUMNS = ("charger_id", "connector_id", "status", "error_code", "info", "updated_at")
LIMIT_COLUMNS = (
    "session_id",
    "charger_id",
    "connector_id",
    "transaction_id",
    "confirmed",
    "in_flight",
)
START_KEY_COLUMNS = (
    "charger_id",
    "connector_id",
    "id_tag",
    "timestamp",
    "meter_start",
    "transaction_id",
    "status",
    "recorded_at",
)

Row = tuple[Any, ...]
RowSource = Callable[[], Row | None]


class StoreError(Exception):
    """The database cannot be written: nothing new may be acknowledged."""


def _upsert(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({marks})"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Rows to write in one transaction, taken on the event loop."""

    sessions: list[Row]
    chargers: list[Row]
    connectors: list[Row]
    limits: list[Row]
    dropped_limits: list[str]
    start_keys: list[Row]
    events: list[Row]
    battery: Row | None
    meta: list[tuple[str, str]]

    def empty(self) -> bool:
        return not (
            self.sessions
            or self.chargers
            or self.connectors
            or self.limits
            or self.dropped_limits
            or self.start_keys
            or self.events
            or self.battery
            or self.meta
        )


class Store:
    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create the folder of {self.path}: {error}") from None
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._migrate()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open database {self.path}: {error}") from error
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._lock = threading.Lock()  # reads from the loop thread vs. the writer
        # Marked since the last snapshot: key -> how to read its current row.
        self._sessions: dict[str, RowSource] = {}
        self._chargers: dict[str, RowSource] = {}
        self._connectors: dict[tuple[str, int], RowSource] = {}
        self._limits: dict[str, RowSource] = {}
        self._dropped_limits: set[str] = set()
        self._start_keys: list[Row] = []
        self._events: list[Row] = []
        self._battery: RowSource | None = None
        self._meta: dict[str, str] = {}
        self._marked = 0
        self._durable = 0
        self._flushing: asyncio.Future[None] | None = None
        self.commits = 0

    # -- schema ----------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
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
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- marking (on the event loop) -------------------------------------

    def mark_session(self, session_id: str, source: RowSource) -> None:
        self._sessions[session_id] = source
        self._marked += 1

    def mark_charger(self, charger_id: str, source: RowSource) -> None:
        self._chargers[charger_id] = source
        self._marked += 1

    def mark_connector(self, charger_id: str, connector_id: int, source: RowSource) -> None:
        self._connectors[(charger_id, connector_id)] = source
        self._marked += 1

    def mark_limit(self, session_id: str, source: RowSource) -> None:
        self._dropped_limits.discard(session_id)
        self._limits[session_id] = source
        self._marked += 1

    def drop_limit(self, session_id: str) -> None:
        self._limits.pop(session_id, None)
        self._dropped_limits.add(session_id)
        self._marked += 1

    def mark_battery(self, source: RowSource) -> None:
        self._battery = source
        self._marked += 1

    def add_start_key(self, row: Row) -> None:
        self._start_keys.append(row)
        self._marked += 1

    def set_meta(self, key: str, value: str) -> None:
        self._meta[key] = value
        self._marked += 1

    def record_event(
        self,
        at: float,
        kind: str,
        *,
        charger_id: str | None = None,
        session_id: str | None = None,
        **data: Any,
    ) -> None:
        self._events.append(
            (at, kind, charger_id, session_id, json.dumps(data, separators=(",", ":")))
        )
        self._marked += 1

    @property
    def dirty(self) -> bool:
        return self._marked > self._durable

    # -- committing ------------------------------------------------------

    async def commit(self) -> None:
        """Return once everything marked before this call is committed to disk."""
        wanted = self._marked
        while self._durable < wanted:
            if self._flushing is None:
                self._flushing = asyncio.ensure_future(self._flush())
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        seq = self._marked
        snapshot = self._snapshot()
        try:
            if not snapshot.empty():
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._executor, self._write, snapshot)
                self.commits += 1
            self._durable = max(self._durable, seq)
        finally:
            self._flushing = None

    def _snapshot(self) -> Snapshot:
        def rows(sources: Iterable[RowSource]) -> list[Row]:
            return [row for row in (source() for source in sources) if row is not None]

        snapshot = Snapshot(
            sessions=rows(self._sessions.values()),
            chargers=rows(self._chargers.values()),
            connectors=rows(self._connectors.values()),
            limits=rows(self._limits.values()),
            dropped_limits=list(self._dropped_limits),
            start_keys=self._start_keys,
            events=self._events,
            battery=None if self._battery is None else self._battery(),
            meta=list(self._meta.items()),
        )
        self._sessions, self._chargers, self._connectors, self._limits = {}, {}, {}, {}
        self._dropped_limits = set()
        self._start_keys, self._events, self._battery, self._meta = [], [], None, {}
        return snapshot

    def _write(self, snapshot: Snapshot) -> None:
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_upsert("sessions", SESSION_COLUMNS), snapshot.sessions)
                db.executemany(_upsert("chargers", CHARGER_COLUMNS), snapshot.chargers)
                db.executemany(_upsert("connectors", CONNECTOR_COLUMNS), snapshot.connectors)
                db.executemany(_upsert("limits", LIMIT_COLUMNS), snapshot.limits)
                db.executemany(
                    "DELETE FROM limits WHERE session_id = ?",
                    [(s,) for s in snapshot.dropped_limits],
                )
                db.executemany(
                    "INSERT OR IGNORE INTO start_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    snapshot.start_keys,
                )
                db.executemany(
                    "INSERT INTO events (at, kind, charger_id, session_id, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    snapshot.events,
                )
                if snapshot.battery is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO battery VALUES (1, ?, ?, ?)", snapshot.battery
                    )
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", snapshot.meta)
                db.execute("COMMIT")
            except sqlite3.Error as error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"cannot write {self.path}: {error}") from error

    async def close(self) -> None:
        try:
            await self.commit()
        finally:
            self._executor.shutdown(wait=True)
            self._db.close()

    # -- reading ---------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Read on the store's thread so a large history never stalls the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._query, sql, params)

    def load(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Read synchronously: for start-up, before the loop serves anyone."""
        return self._query(sql, params)

    def meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return None if not rows else str(rows[0]["value"])
