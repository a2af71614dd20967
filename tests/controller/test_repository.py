"""The repository on a real SQLite file: the schema, a round trip of the whole core, the
migration of a database written by the previous version, and writes that fail."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path

import pytest

from controller.core.events import ConnectorStatusReported, MeterReading, ProfileResult
from controller.core.fields import stored_fields
from controller.core.lifecycle import LimitPhase
from controller.core.records import StoredState
from controller.core.sessions import Session, SessionStatus
from controller.core.state import (
    BatteryRecord,
    ChargerState,
    ConnectorState,
    JournalEntry,
    LimitBook,
    StartKey,
    TransactionCounter,
)
from controller.core.station import StationCore
from controller.repository import (
    BATTERY,
    CHARGERS,
    CONNECTORS,
    LIMITS,
    SCHEMA_VERSION,
    SESSIONS,
    START_KEYS,
    Repository,
    StoreError,
)
from tests.controller.conftest import example_config
from tests.controller.core_harness import T0, CoreHarness
from tests.controller.restart import restart_view

V1_DATABASE = Path(__file__).parent / "data" / "controller-v1.db"


def columns(db: Path, table: str) -> set[str]:
    with sqlite3.connect(db) as connection:
        return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def test_every_stored_field_has_its_column(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    Repository(db).close()
    for table in (SESSIONS, CHARGERS, CONNECTORS, LIMITS, START_KEYS, BATTERY):
        assert set(table.columns) == set(stored_fields(table.record))
        assert set(table.columns) <= columns(db, table.name), table.name
    # And every field of the state is stored unless marked as a connection's or a call's.
    for record in (Session, ChargerState, ConnectorState, LimitBook):
        transient = {
            f.name for f in dataclasses.fields(record) if not f.metadata.get("stored", True)
        }
        assert set(stored_fields(record)) | transient == {
            f.name for f in dataclasses.fields(record)
        }


def busy_station() -> CoreHarness:
    """A core with a value other than the default in every stored field."""
    chargers = list(example_config().model_dump(by_alias=True, exclude_none=True)["chargers"])
    # An AC charger whose current fits one car at its minimum: the second one waits.
    ac = {"kind": "AC", "maxCurrent": 10}
    chargers.append({"id": "CP004", "maxPower": 22, "connectors": 2, "electrical": ac})
    h = CoreHarness(example_config(chargers=chargers))
    h.connect(
        "CP001",
        configuration={
            "SupportedFeatureProfiles": "Core,SmartCharging",
            "ChargingScheduleAllowedChargingRateUnit": "Current",
        },
    )
    h.connect("CP002", accept=False)
    h.connect("CP003", configuration={"SupportedFeatureProfiles": "Core"})  # no limits
    h.answer_profiles("CP002", ProfileResult.REJECTED)  # refusals are counted
    h.disconnect("CP002")
    h.handle(ConnectorStatusReported(h.now, "CP001", 1, "Charging", "NoError", "cable locked"))
    a = h.start_transaction("CP001", 1, meter_start=1000)
    h.answer_profiles()
    h.advance(1)
    b = h.start_transaction("CP001", 2, meter_start=2000)
    h.answer_profiles()
    rest = h.start_rest("CP003", 0, vehicle_max_power=50)
    h.update_rest(rest.session_id, consumed_power=12.5, phases=1)
    h.connect("CP004")
    h.start_transaction("CP004", 1)
    h.start_transaction("CP004", 2)  # paused
    h.answer_profiles()
    stopped = h.start_rest("CP003", 1)
    h.stop_rest(stopped.session_id, consumed_energy=4.0)
    h.now += 300
    h.meter("CP001", b, kw=90.0)
    h.now += 1
    # a's car takes 11 kW: capped a little above, and b may have more (its reading is stale).
    h.handle(
        MeterReading(
            h.now, "CP001", 1, a, power_kw=11.0, energy_register_kwh=3.5, state_of_charge=42.0
        )
    )
    h.answer_profiles()
    h.advance(3600)  # the battery has drained a little
    # b's vehicle turns out to take 60 kW: CP001 refuses the lowering (a retry is due).
    h.update_rest(h.session_of(b).session_id, vehicle_max_power=60)
    assert h.answer_profiles("CP001", ProfileResult.REJECTED) == 1
    h.flush()
    return h


def test_the_whole_core_survives_a_round_trip_through_the_database(tmp_path: Path) -> None:
    h = busy_station()
    records = h.core.records()
    # Every stored field holds something other than its default somewhere: a field that
    # the round trip lost could not go unnoticed.
    for kind in (Session, ChargerState, ConnectorState, LimitBook):
        of_kind = [r for r in records if isinstance(r, kind)]
        for field in dataclasses.fields(kind):
            if field.name not in stored_fields(kind) or field.name in (
                "status",
                "stopped_at",
                "stop_reason",
                "in_flight",
            ):
                continue
            default = field.default
            assert any(getattr(r, field.name) != default for r in of_kind), (
                f"{kind.__name__}.{field.name} is never set in this station"
            )
    db = tmp_path / "controller.db"
    Repository(db).write(records)
    recovered = StationCore(h.core.config, now=h.now + 60, stored=Repository(db).load())
    assert restart_view(recovered.records()) == restart_view(records)
    # What a restart resets on purpose: the connections.
    for charger in recovered.chargers.values():
        assert not charger.connected and charger.disconnected_at == h.now + 60
    for session in recovered.active_sessions():
        book = recovered.limit_book(session.session_id)
        if book is not None:
            assert book.phase in (LimitPhase.PENDING, LimitPhase.UNLIMITABLE)


def test_a_limit_on_the_wire_counts_as_applied_after_a_restart(tmp_path: Path) -> None:
    h = CoreHarness(example_config(battery=None))
    h.connect("CP001")
    tx = h.start_transaction("CP001", 1)
    (call,) = h.calls.values()  # the first TxProfile is on the wire, unanswered
    assert call.request.connector_id == 1
    db = tmp_path / "controller.db"
    Repository(db).write(h.written)  # what reached the disk: the raise, before it was sent
    recovered = StationCore(h.core.config, now=h.now, stored=Repository(db).load())
    session = recovered.session_by_transaction(tx)
    assert session is not None
    assert recovered.held[session.session_id] == 200


def test_a_database_of_the_previous_version_opens_and_keeps_its_sessions(
    tmp_path: Path,
) -> None:
    db = tmp_path / "controller.db"
    shutil.copy(V1_DATABASE, db)
    repository = Repository(db)
    assert repository.schema_version == SCHEMA_VERSION
    stored = repository.load()
    assert {s.session_id for s in stored.sessions} == {"v1-session-0", "v1-session-2"}
    ocpp = next(s for s in stored.sessions if s.transaction_id == 1)
    assert (ocpp.charger_id, ocpp.connector_id, ocpp.meter_start_wh) == ("CP001", 0, 1000)
    assert ocpp.consumed_energy == 2.5 and ocpp.learned_max_power is None
    assert stored.next_transaction_id == 2
    assert [(b.session_id, b.applied, b.announced) for b in stored.limits] == [
        ("v1-session-2", 200, True)
    ]
    history = repository.session("v1-session-1")
    assert history is not None and history.status is SessionStatus.STOPPED
    assert history.consumed_energy == 12.5
    # The StartTransaction key kept its meaning: the same request is recognised.
    (key,) = stored.start_keys
    assert key.key == '["CP001",1,"OLD","2026-01-01T00:10:00+00:00",1000]'
    core = StationCore(example_config(), now=T0 + 3600, stored=stored)
    assert core.held == {"v1-session-2": 200}
    assert stored.battery == BatteryRecord(200.0, True, 1767226260.0)


def test_a_write_that_fails_for_any_reason_writes_nothing_and_leaves_the_database_usable(
    tmp_path: Path,
) -> None:
    repository = Repository(tmp_path / "a.db")
    session = Session("s1", "CP001", 0, None, T0)
    huge = dataclasses.replace(session, session_id="s2", transaction_id=2**63)  # no SQLite int
    with pytest.raises(StoreError):
        repository.write([session, TransactionCounter(5), huge])
    assert repository.session("s1") is None
    assert repository.load().next_transaction_id == 1
    repository.write([session, TransactionCounter(5)])  # the next write is not stuck
    assert repository.session("s1") is not None
    assert repository.load().next_transaction_id == 5


def test_a_write_lock_held_by_another_process_fails_the_write_after_the_busy_timeout(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a.db"
    repository = Repository(db, busy_timeout=0.2)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            repository.write([Session("s1", "CP001", 0, None, T0)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    repository.write([Session("s1", "CP001", 0, None, T0)])
    assert repository.session("s1") is not None


def test_journal_and_start_keys_round_trip(tmp_path: Path) -> None:
    repository = Repository(tmp_path / "a.db")
    key = StartKey('["CP001",1,"T",12345678901234567890123,2]', "CP001", 7, "Accepted", T0)
    entry = JournalEntry(T0, "session.started", "CP001", "s1", {"meterStart": 2**70})
    repository.write([key, entry, ConnectorState("CP001", 0, "Available", "NoError")])
    assert repository.load() == StoredState(
        connectors=(ConnectorState("CP001", 0, "Available", "NoError"),),
        start_keys=(key,),
    )
    (line,) = repository.journal(0, 10)
    assert line.entry == entry


def test_a_start_key_goes_once_the_charger_has_stopped_its_transaction(tmp_path: Path) -> None:
    """The charger sends its messages in order: after its StopTransaction it never resends
    the StartTransaction, so the key that would recognise the resend is dropped, in the
    core and on disk, in the stop's own commit (docs/persistence.md)."""
    h = CoreHarness(example_config())
    h.connect("CP001")
    kept = h.start_transaction("CP001", 1)
    stopped = h.start_transaction("CP001", 2)
    repository = Repository(tmp_path / "a.db")
    repository.write(h.written)
    assert {k.transaction_id for k in repository.load().start_keys} == {kept, stopped}
    h.written.clear()
    h.stop_transaction("CP001", stopped, 5000)
    repository.write(h.written)
    assert [k.transaction_id for k in repository.load().start_keys] == [kept]
    assert [k.transaction_id for k in h.core.records() if isinstance(k, StartKey)] == [kept]
    # A resend of the open one is still recognised: the same id, no new session.
    assert h.start_transaction("CP001", 1) == kept


def test_a_write_to_a_closed_database_is_a_store_error(tmp_path: Path) -> None:
    repository = Repository(tmp_path / "a.db")
    repository.close()
    with pytest.raises(StoreError):
        repository.write([TransactionCounter(5)])
