"""The controller's OCPP message table over a real WebSocket (docs/ocpp.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets

from controller.app import ControllerApp
from protocol.messages import (
    AuthorizeRequest,
    BootNotificationResponse,
    DataTransferRequest,
    HeartbeatRequest,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    StartTransactionRequest,
    StatusNotificationRequest,
    StopTransactionRequest,
)
from tests.controller.conftest import example_config, ocpp_url
from tests.controller.ocpp_client import FakeCharger

T0 = "2026-01-01T10:00:00Z"


async def booted(app: ControllerApp, charger_id: str = "CP001") -> FakeCharger:
    charger = await FakeCharger(ocpp_url(app), charger_id).connect()
    answer = await charger.boot()
    assert isinstance(answer, BootNotificationResponse)
    return charger


async def start_tx(
    charger: FakeCharger,
    connector: int,
    meter_start: int = 0,
    timestamp: str = T0,
    id_tag: str = "TAG1",
) -> int:
    answer = await charger.call(
        StartTransactionRequest(
            connector_id=connector, id_tag=id_tag, meter_start=meter_start, timestamp=timestamp
        )
    )
    assert answer.id_tag_info.status == "Accepted"
    return int(answer.transaction_id)


def sample(value: str, **fields: Any) -> SampledValue:
    return SampledValue(value=value, **fields)


async def test_boot_records_the_charger_and_installs_the_failsafe(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    await charger.wait_until(lambda: len(charger.profiles()) >= 1)
    default = charger.profiles()[0]
    assert default.connector_id == 0
    profile = default.cs_charging_profiles
    assert profile.charging_profile_purpose == "TxDefaultProfile"
    assert profile.stack_level == 0
    # 400 kW over 6 connectors, rounded down: all at once still fit the grid.
    assert profile.charging_schedule.charging_schedule_period[0].limit == 66000
    state = app.core.chargers["CP001"]
    assert state.connected and state.booted
    assert (state.vendor, state.model) == ("Test", "T1")
    await charger.close()
    await charger.closed.wait()


async def test_heartbeat_status_authorize_and_data_transfer(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    beat = await charger.call(HeartbeatRequest())
    assert beat.current_time.tzinfo is not None
    await charger.call(
        StatusNotificationRequest(connector_id=2, error_code="GroundFailure", status="Faulted")
    )
    assert app.core.connectors[("CP001", 2)].status == "Faulted"
    status = app.status()
    cp001 = next(c for c in status["chargers"] if c["id"] == "CP001")
    assert cp001["connectorStatus"][1] == {
        "connectorId": 1,
        "status": "Faulted",
        "errorCode": "GroundFailure",
        "sessionId": None,
    }
    auth = await charger.call(AuthorizeRequest(id_tag="ANY"))
    assert auth.id_tag_info.status == "Accepted"
    transfer = await charger.call(DataTransferRequest(vendor_id="acme"))
    assert transfer.status == "UnknownVendorId"


async def test_id_tag_list_is_checked_when_configured(start_controller: Any) -> None:
    config = example_config(ocpp={"authorizedIdTags": ["Alice"]})
    app: ControllerApp = await start_controller(config)
    charger = await booted(app)
    assert (await charger.call(AuthorizeRequest(id_tag="ALICE"))).id_tag_info.status == "Accepted"
    assert (await charger.call(AuthorizeRequest(id_tag="bob"))).id_tag_info.status == "Invalid"
    answer = await charger.call(
        StartTransactionRequest(connector_id=1, id_tag="bob", meter_start=0, timestamp=T0)
    )
    assert answer.id_tag_info.status == "Invalid"
    assert list(app.core.active_sessions()) == []


async def test_transaction_lifecycle_with_meter_values(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    tx = await start_tx(charger, 1, meter_start=1000)
    session = app.core.session_by_transaction(tx)
    assert session is not None and session.active
    assert (session.charger_id, session.connector_id) == ("CP001", 0)  # OCPP 1 = REST 0
    await charger.wait_until(lambda: charger.tx_limits() == [(1, 200000)])

    await charger.call(
        MeterValuesRequest(
            connector_id=1,
            transaction_id=tx,
            meter_value=[
                MeterValue(
                    timestamp=T0,
                    sampled_value=[
                        sample("45000", measurand="Power.Active.Import", unit="W"),
                        sample("13500", unit="Wh"),  # default measurand: the energy register
                        sample("57", measurand="SoC", unit="Percent"),
                    ],
                )
            ],
        )
    )
    assert session.consumed_power == 45
    assert session.consumed_energy == pytest.approx(12.5)
    assert session.state_of_charge == 57

    await charger.call(
        MeterValuesRequest(
            connector_id=1,
            transaction_id=tx,
            meter_value=[
                MeterValue(
                    timestamp=T0,
                    sampled_value=[
                        sample("10.5", measurand="Power.Active.Import", unit="kW", phase="L1"),
                        sample("11", measurand="Power.Active.Import", unit="kW", phase="L2"),
                        sample("9.5", measurand="Power.Active.Import", unit="kW", phase="L3"),
                        sample("20.25", measurand="Energy.Active.Import.Register", unit="kWh"),
                    ],
                )
            ],
        )
    )
    assert session.consumed_power == pytest.approx(31)
    assert session.consumed_energy == pytest.approx(19.25)

    stop = await charger.call(
        StopTransactionRequest(
            transaction_id=tx,
            meter_stop=26000,
            timestamp=T0,
            id_tag="TAG1",
            reason="EVDisconnected",
        )
    )
    assert stop.id_tag_info.status == "Accepted"
    assert not session.active
    assert session.consumed_energy == pytest.approx(25)
    assert session.stop_reason == "EVDisconnected"


async def test_start_transaction_resent_gets_the_same_answer(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    first = await start_tx(charger, 1, meter_start=5)
    again = await start_tx(charger, 1, meter_start=5)
    assert again == first
    assert len(list(app.core.active_sessions())) == 1
    other = await start_tx(charger, 2, meter_start=5)
    assert other != first


async def test_stop_for_unknown_or_stopped_transactions_is_answered(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    tx = await start_tx(charger, 1)
    for transaction_id in (-1, 999):
        answer = await charger.call(
            StopTransactionRequest(transaction_id=transaction_id, meter_stop=1, timestamp=T0)
        )
        assert answer.id_tag_info is None
    session = app.core.session_by_transaction(tx)
    assert session is not None and session.active
    stop = StopTransactionRequest(transaction_id=tx, meter_stop=7000, timestamp=T0)
    await charger.call(stop)
    await charger.call(stop)  # resent: answered, nothing changes
    assert not session.active and session.consumed_energy == 7
    # A late MeterValues after the stop changes nothing.
    await charger.call(
        MeterValuesRequest(
            connector_id=1,
            transaction_id=tx,
            meter_value=[MeterValue(timestamp=T0, sampled_value=[sample("99000")])],
        )
    )
    assert session.consumed_energy == 7


async def test_transaction_messages_with_a_bad_timestamp_are_still_answered(
    start_controller: Any,
) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    await charger.send_raw(
        json.dumps(
            [
                2,
                "s1",
                "StartTransaction",
                {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "yesterday"},
            ]
        )
    )
    await charger.wait_until(lambda: any(True for _ in app.core.active_sessions()))
    # A bad timestamp elsewhere is a PropertyConstraintViolation.
    answer = await charger.call(HeartbeatRequest())  # the connection still works
    assert answer.current_time is not None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('[2, "a1", "Reboot", {}]', "NotImplemented"),
        ('[2, "a2", "Heartbeat", {"extra": 1}]', "FormationViolation"),
        (
            '[2, "a3", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", '
            '"status": "Available", "timestamp": "noon"}]',
            "PropertyConstraintViolation",
        ),
        (
            '[2, "a4", "StatusNotification", {"connectorId": "1", "errorCode": "NoError", '
            '"status": "Available"}]',
            "TypeConstraintViolation",
        ),
        (
            '[2, "a5", "StatusNotification", {"connectorId": 1, "status": "Available"}]',
            "OccurenceConstraintViolation",
        ),
        ('[2, "a6", "Authorize"]', "ProtocolError"),
    ],
)
async def test_bad_calls_get_the_right_callerror_and_keep_the_connection(
    start_controller: Any, frame: str, code: str
) -> None:
    app: ControllerApp = await start_controller()
    ws = await websockets.connect(f"{ocpp_url(app)}/CP002", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    await ws.send("this is not json")  # no id to answer: ignored, connection kept
    await ws.send(frame)
    answer = json.loads(await ws.recv())
    assert answer[0] == 4 and answer[2] == code
    await ws.send('[2, "h", "Heartbeat", {}]')
    answer = json.loads(await ws.recv())
    assert answer[0] == 3 and answer[1] == "h"
    await ws.close()
