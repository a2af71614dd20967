"""What the controller reads from a charger's messages, over a real WebSocket (docs/ocpp.md,
"Meter values" and "Transactions")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.app import ControllerApp
from tests.controller.ocpp_client import FakeCharger
from tests.controller.test_ocpp_messages import booted

LEAP = "2026-12-31T23:59:60Z"


async def raw_call(charger: FakeCharger, unique_id: str, action: str, body: Any) -> list[Any]:
    """Send a CALL written as the charger writes it (no model in between to normalise its
    timestamps); the controller's answer to it, skipping the controller's own CALLs."""
    await charger.send_raw(json.dumps([2, unique_id, action, body]))
    while True:
        message: list[Any] = json.loads(await charger.next_raw())
        if message[0] in (3, 4) and message[1] == unique_id:
            return message


async def test_a_leap_second_timestamp_gets_normal_answers(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": LEAP}
    started = await raw_call(charger, "s1", "StartTransaction", start)
    assert started[0] == 3 and started[2]["idTagInfo"]["status"] == "Accepted"
    tx = started[2]["transactionId"]
    # A resend with the same leap second is the same transaction.
    again = await raw_call(charger, "s2", "StartTransaction", start)
    assert again == [3, "s2", started[2]]

    status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": LEAP}
    assert await raw_call(charger, "n1", "StatusNotification", status) == [3, "n1", {}]
    assert app.core.connectors[("CP001", 1)].status == "Charging"

    sampled = [{"value": "22", "measurand": "Power.Active.Import", "unit": "kW"}]
    meter = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": LEAP, "sampledValue": sampled}],
    }
    assert await raw_call(charger, "m1", "MeterValues", meter) == [3, "m1", {}]
    session = app.core.session_by_transaction(tx)
    assert session is not None and session.consumed_power == 22

    stop = {"transactionId": tx, "meterStop": 6000, "timestamp": LEAP, "idTag": "TAG1"}
    stopped = await raw_call(charger, "t1", "StopTransaction", stop)
    assert stopped == [3, "t1", {"idTagInfo": {"status": "Accepted"}}]
    assert not session.active and session.consumed_energy == pytest.approx(5)
