"""Persistence and recovery (docs/persistence.md) on a real SQLite file in tmp_path.

A "restart" here stops the app and starts a new one on the same database,
as the process would after a crash; the crash itself (SIGKILL of a real
process) is in test_crash.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.app import ControllerApp
from controller.repository import SCHEMA_VERSION, Repository, StoreError
from protocol import CallReceived
from protocol.messages import (
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    SetChargingProfileRequest,
    StartTransactionRequest,
    StopTransactionRequest,
)
from protocol.messages.base import OcppModel
from shell.clock import ManualClock
from tests.controller.conftest import ocpp_url
from tests.controller.ocpp_client import FakeCharger, accept_everything

T0 = "2026-01-01T10:00:00Z"


def start_request(connector: int, meter_start: int = 1000) -> StartTransactionRequest:
    return StartTransactionRequest(
        connector_id=connector, id_tag="TAG", meter_start=meter_start, timestamp=T0
    )


async def rest(app: ControllerApp, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"http://127.0.0.1:{app.rest_port}{path}", json=body) as response,
    ):
        return response.status, await response.json()


def test_schema_is_created_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    repository = Repository(path)
    assert repository.schema_version == SCHEMA_VERSION
    tables = {
        r[0]
        for r in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert {
        "sessions",
        "start_keys",
        "battery",
        "chargers",
        "connectors",
        "limits",
        "events",
        "meta",
    } <= tables
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this program"):
        Repository(path)


def test_an_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        Repository(tmp_path / "file" / "controller.db")


async def test_acknowledged_sessions_and_ids_survive_a_restart(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    await charger.boot()
    tx = (await charger.call(start_request(1))).transaction_id
    code, rest_session = await rest(
        app, "POST", "/sessions", {"chargerId": "CP003", "connectorId": 1, "vehicleMaxPower": 50}
    )
    assert code == 201
    code, stopped = await rest(app, "POST", "/sessions", {"chargerId": "CP002", "connectorId": 0})
    await rest(app, "POST", f"/sessions/{stopped['sessionId']}/stop", {"consumedEnergy": 12})
    ocpp_session = app.core.session_by_transaction(tx)
    assert ocpp_session is not None
    await charger.close()
    await app.stop()

    clock.advance(60)
    again: ControllerApp = await start_controller()
    assert again.recovered["sessions"] == 2
    restored = again.core.session_by_transaction(tx)
    assert restored is not None and restored.session_id == ocpp_session.session_id
    assert restored.active and restored.meter_start_wh == 1000
    assert again.core.session(rest_session["sessionId"]).vehicle_max_power == 50  # type: ignore[union-attr]
    # Transaction ids keep counting: never one given twice.
    charger = await FakeCharger(ocpp_url(again), "CP001").connect()
    other = (await charger.call(start_request(2))).transaction_id
    assert other > tx
    # The history comes from the store; a stopped session is still 409 to stop again.
    code, history = await rest(again, "GET", "/sessions?status=stopped")
    assert [s["sessionId"] for s in history] == [stopped["sessionId"]]
    assert history[0]["consumedEnergy"] == 12
    code, body = await rest(again, "POST", f"/sessions/{stopped['sessionId']}/stop", {})
    assert code == 409
    code, body = await rest(again, "GET", f"/sessions/{stopped['sessionId']}")
    assert code == 200 and body["status"] == "stopped"
    await charger.close()


async def test_resent_transaction_messages_after_restart_are_recognised(
    start_controller: Any,
) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    await charger.boot()
    first = await charger.call(start_request(1, meter_start=500))
    await charger.close()
    await app.stop()

    again: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(again), "CP001").connect()
    resent = await charger.call(start_request(1, meter_start=500))
    assert resent.transaction_id == first.transaction_id
    assert len(list(again.core.active_sessions())) == 1
    stop = StopTransactionRequest(
        transaction_id=first.transaction_id, meter_stop=20500, timestamp=T0
    )
    await charger.call(stop)
    await charger.close()
    await again.stop()

    third: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(third), "CP001").connect()
    await charger.call(stop)  # resent after yet another restart: answered, recorded once
    code, history = await rest(third, "GET", "/sessions?status=stopped")
    assert code == 200
    assert len(history) == 1 and history[0]["consumedEnergy"] == 20
    code, events = await rest(third, "GET", "/station/events?since=0&limit=1000")
    stops = [e for e in events if e["kind"] == "session.stopped"]
    assert len(stops) == 1
    await charger.close()


async def test_limits_held_before_a_restart_count_until_confirmed(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    cp1 = await FakeCharger(ocpp_url(app), "CP001").connect()
    await cp1.boot()
    await cp1.call(start_request(1))
    await cp1.wait_until(lambda: cp1.tx_limits() == [(1, 200000)])
    await cp1.close()
    await app.stop()

    again: ControllerApp = await start_controller()
    # CP001 has not reconnected: it may still be drawing 200 kW on its last profile.
    assert dict(again.core.held) == {next(iter(again.core.active_sessions())).session_id: 200}
    code, session = await rest(again, "POST", "/sessions", {"chargerId": "CP003", "connectorId": 0})
    assert code == 201
    assert session["allocatedPower"] == 300  # 500 - 200 still booked for CP001
    cp1 = await FakeCharger(ocpp_url(again), "CP001").connect()  # no boot: a reconnect
    await cp1.wait_until(lambda: cp1.tx_limits() == [(1, 200000)])
    await cp1.close()


async def test_battery_energy_survives_a_restart(start_controller: Any, clock: ManualClock) -> None:
    app: ControllerApp = await start_controller()
    for charger in ("CP001", "CP002", "CP003"):
        await rest(app, "POST", "/sessions", {"chargerId": charger, "connectorId": 0})
    clock.advance(1800)  # half an hour at 100 kW of discharge: 50 kWh
    battery = app.status()["battery"]
    assert battery is not None
    assert battery["storedEnergy"] == pytest.approx(150)
    await app.stop()
    clock.advance(3600)  # nothing flows while the controller is down
    again: ControllerApp = await start_controller()
    assert again.core.battery is not None
    assert again.core.battery.stored_energy == pytest.approx(150)


async def test_meter_readings_are_written_behind(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    await charger.boot()
    tx = (await charger.call(start_request(1, meter_start=0))).transaction_id
    await charger.call(
        MeterValuesRequest(
            connector_id=1,
            transaction_id=tx,
            meter_value=[MeterValue(timestamp=T0, sampled_value=[SampledValue(value="7250")])],
        )
    )
    await app.driver.flush()
    await charger.close()
    await app.stop()
    again: ControllerApp = await start_controller()
    session = again.core.session_by_transaction(tx)
    assert session is not None and session.consumed_energy == pytest.approx(7.25)


async def test_a_charger_offline_too_long_is_budgeted_at_its_failsafe(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP003").connect()
    await charger.boot()
    tx = (await charger.call(start_request(1))).transaction_id
    await charger.wait_until(lambda: charger.tx_limits() == [(1, 300000)])
    await charger.close()
    await charger.closed.wait()
    await app.wait_until(lambda: not app.core.chargers["CP003"].connected)
    session = app.core.session_by_transaction(tx)
    assert session is not None
    app.status()
    assert session.allocated_power == 300  # offline: keeps charging on its last profile
    assert app.core.next_wakeup() == pytest.approx(clock.now() + 900)
    clock.advance(900)
    app.status()
    assert session.allocated_power == 66  # the failsafe: 400 kW over 6 connectors
    assert session.limited_by == "pinned"
    # Its queued StopTransaction arrives later and closes it with the right energy.
    charger = await FakeCharger(ocpp_url(app), "CP003").connect()
    await charger.call(StopTransactionRequest(transaction_id=tx, meter_stop=31000, timestamp=T0))
    assert not session.active and session.consumed_energy == 30
    await charger.close()


async def test_events_journal(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    code, session = await rest(app, "POST", "/sessions", {"chargerId": "CP001", "connectorId": 0})
    await rest(
        app, "POST", f"/sessions/{session['sessionId']}/power-update", {"vehicleMaxPower": 20}
    )
    await rest(app, "POST", f"/sessions/{session['sessionId']}/stop", {"consumedEnergy": 1})
    code, events = await rest(app, "GET", "/station/events")
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "controller.started"
    assert kinds[1:] == ["session.started", "session.updated", "session.stopped"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    code, later = await rest(app, "GET", f"/station/events?since={seqs[1]}")
    assert [e["seq"] for e in later] == seqs[2:]
    code, error = await rest(app, "GET", "/station/events?since=abc")
    assert code == 400 and error["details"][0]["field"] == "since"


async def test_a_raise_is_on_disk_before_the_charger_can_apply_it(
    start_controller: Any, db_path: Path
) -> None:
    app: ControllerApp = await start_controller()

    def hold_tx_profiles(call: CallReceived) -> OcppModel | None:
        request = call.request
        if isinstance(request, SetChargingProfileRequest) and request.connector_id > 0:
            return None  # the charger has it, the controller does not know yet
        return accept_everything(call)

    charger = await FakeCharger(ocpp_url(app), "CP002", policy=hold_tx_profiles).connect()
    await charger.boot()
    await charger.call(start_request(1))
    await charger.wait_until(lambda: len(charger.pending()) == 1)
    # Were the process killed now, the restarted controller must count 200 kW here.
    row = sqlite3.connect(db_path).execute("SELECT applied, in_flight FROM limits").fetchone()
    # 66 kW: the failsafe default it started under, booked from its StartTransaction on.
    assert row == (66, 200)
    await charger.close()
