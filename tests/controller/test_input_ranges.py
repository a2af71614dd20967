"""Numbers and JSON from outside stay within range (docs/security-input.md).

Each defect found over the sockets is reproduced over them: REST through the real aiohttp
server, OCPP through a real websockets client; config bounds through ``parse_config``; the
command line through ``main`` and one real process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controller.app import ControllerApp
from controller.cli import main
from controller.config import ConfigError, StationConfig, config_from_dict, parse_config
from controller.views import finite_dumps
from protocol import Call, MessageTypeId, OcppError, parse_frame
from protocol.messages import (
    BootNotificationResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    StartTransactionRequest,
)
from tests.controller.conftest import ROOT, Api, example_config, ocpp_url
from tests.controller.ocpp_client import FakeCharger
from tests.protocol.ocpp_corpus import CALLS
from tests.protocol.test_protocol_fuzz import ANY_INPUT, frames_near_limits, mutated_frames

T0 = "2026-01-01T10:00:00Z"


def strict_json(text: str) -> Any:
    """What a browser's JSON.parse accepts: no NaN, no Infinity."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response")

    return json.loads(text, parse_constant=refuse)


async def raw_post(api: Api, path: str, body: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    async with api.http.post(api.base + path, data=body, headers=headers) as response:
        assert response.content_type == "application/json"
        return response.status, strict_json(await response.text())


async def raw_status(api: Api) -> dict[str, Any]:
    async with api.http.get(api.base + "/station/status") as response:
        assert response.status == 200
        status: dict[str, Any] = strict_json(await response.text())
        return status


async def new_session(api: Api, charger: str = "CP001", connector: int = 0) -> str:
    code, session = await api.post("/sessions", {"chargerId": charger, "connectorId": connector})
    assert code == 201, session
    session_id: str = session["sessionId"]
    return session_id


# -- REST: powers and energies --------------------------------------------------------------


async def test_huge_consumed_powers_are_refused_and_the_status_stays_json(api: Api) -> None:
    # Found on loopback: two sessions at 1e308 kW made the station load overflow, and the
    # status carried Infinity, which the dashboard cannot parse.
    first, second = await new_session(api, "CP001"), await new_session(api, "CP002")
    for session_id in (first, second):
        code, body = await raw_post(
            api, f"/sessions/{session_id}/power-update", b'{"consumedPower": 1e308}'
        )
        assert code == 400
        assert body["error"] == "invalid_field"
        assert body["details"] == [{"field": "consumedPower", "message": "must be at most 1000000"}]
    status = await raw_status(api)
    assert all(s["consumedPower"] is None for s in status["sessions"])
    assert math.isfinite(status["gridPower"])


async def test_the_largest_powers_keep_every_sum_finite(api: Api) -> None:
    sessions = [await new_session(api, c, n) for c in ("CP001", "CP002", "CP003") for n in (0, 1)]
    for session_id in sessions:
        code, _ = await api.post(
            f"/sessions/{session_id}/power-update",
            {"consumedPower": 1_000_000, "vehicleMaxPower": 1_000_000},
        )
        assert code == 200
    status = await raw_status(api)
    assert [s["consumedPower"] for s in status["sessions"]] == [1_000_000] * 6
    assert math.isfinite(status["gridPower"])


BODY_NUMBERS = [
    ("-1", "must be"),
    ("1000000.5", "must be at most 1000000"),
    ("1e308", "must be at most 1000000"),
    ("1e400", "must be a finite number"),
    ("NaN", "must be a finite number"),
    ("Infinity", "must be a finite number"),
    ("-Infinity", "must be a finite number"),
    ('"5"', "must be a number"),
]


@pytest.mark.parametrize(("number", "message"), BODY_NUMBERS)
@pytest.mark.parametrize(
    ("target", "field"),
    [
        ("start", "vehicleMaxPower"),
        ("update", "vehicleMaxPower"),
        ("update", "consumedPower"),
        ("stop", "consumedEnergy"),
    ],
)
async def test_every_power_and_energy_has_a_range(
    api: Api, target: str, field: str, number: str, message: str
) -> None:
    session_id = await new_session(api, "CP003", 1)
    path = {
        "start": "/sessions",
        "update": f"/sessions/{session_id}/power-update",
        "stop": f"/sessions/{session_id}/stop",
    }[target]
    extra = '"chargerId": "CP003", "connectorId": 0, ' if target == "start" else ""
    code, body = await raw_post(api, path, f'{{{extra}"{field}": {number}}}'.encode())
    assert code == 400, body
    assert body["error"] == "invalid_field"
    [detail] = body["details"]
    assert detail["field"] == field
    assert detail["message"].startswith(message)
    # Nothing changed: the session is still active and the connector still free.
    assert [s["sessionId"] for s in (await raw_status(api))["sessions"]] == [session_id]


async def test_ids_and_connectors_have_bounds_too(api: Api) -> None:
    code, body = await api.post("/sessions", {"chargerId": "C" * 65, "connectorId": 0})
    assert (code, body["details"][0]["field"]) == (400, "chargerId")
    code, body = await api.post("/sessions", {"chargerId": "CP001", "connectorId": 2**31})
    assert (code, body["details"][0]["field"]) == (400, "connectorId")


# -- REST: JSON limits ----------------------------------------------------------------------


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Found on loopback: both answered 500 (RecursionError; Python's int-string limit).
        (f'{{"chargerId": "CP001", "connectorId": 1{"0" * 100_000}}}', "more than 100 digits"),
        ('{"chargerId": ' + deep(100_000) + "}", "nested deeper than 64 levels"),
        ('{"x": ' + deep(64) + "}", "nested deeper than 64 levels"),
        (f'{{"chargerId": "CP001", "connectorId": -{"1" * 101}}}', "more than 100 digits"),
    ],
)
async def test_bodies_over_the_json_limits_are_400(api: Api, body: str, message: str) -> None:
    code, answer = await raw_post(api, "/sessions", body.encode())
    assert code == 400
    assert answer["error"] == "malformed_json"
    assert message in answer["message"]
    assert (await raw_status(api))["sessions"] == []


async def test_bodies_at_the_json_limits_are_judged_by_their_fields(api: Api) -> None:
    body = f'{{"chargerId": "CP001", "connectorId": {"9" * 100}, "x": {deep(63)}}}'
    code, answer = await raw_post(api, "/sessions", body.encode())
    assert code == 400
    assert answer["error"] == "invalid_field"
    assert {d["field"] for d in answer["details"]} == {"connectorId", "x"}


async def test_a_non_finite_number_in_a_response_is_sent_as_null_and_logged(
    start_controller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Only a bug could put one there (every input is bounded): made here by hand.
    app: ControllerApp = await start_controller()
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.rest_port}"
        code, session = 0, {}
        async with http.post(
            base + "/sessions", json={"chargerId": "CP001", "connectorId": 0}
        ) as r:
            code, session = r.status, await r.json()
        assert code == 201
        app.core.session(session["sessionId"]).consumed_power = math.inf  # type: ignore[union-attr]
        with caplog.at_level(logging.ERROR, logger="controller.views"):
            async with http.get(base + f"/sessions/{session['sessionId']}") as r:
                assert r.status == 200
                view = strict_json(await r.text())
    assert view["consumedPower"] is None
    assert view["sessionId"] == session["sessionId"]
    assert "$.consumedPower = inf" in caplog.text


def test_finite_dumps_writes_what_json_dumps_writes() -> None:
    data = {"a": [1, 2.5, None, "x"], "b": {"c": True}}
    assert finite_dumps(data) == json.dumps(data)
    assert strict_json(finite_dumps({"a": [math.nan, {"b": -math.inf}]})) == {
        "a": [None, {"b": None}]
    }


# -- OCPP ---------------------------------------------------------------------------------------


async def booted(app: ControllerApp, charger_id: str) -> FakeCharger:
    charger = await FakeCharger(ocpp_url(app), charger_id).connect()
    assert isinstance(await charger.boot(), BootNotificationResponse)
    return charger


async def start_tx(charger: FakeCharger, connector: int) -> int:
    answer = await charger.call(
        StartTransactionRequest(connector_id=connector, id_tag="T", meter_start=0, timestamp=T0)
    )
    assert answer.id_tag_info.status == "Accepted"
    return int(answer.transaction_id)


def power(value: str, unit: str = "W") -> MeterValuesRequest:
    sampled = [SampledValue(value=value, measurand="Power.Active.Import", unit=unit)]
    return MeterValuesRequest(
        connector_id=1, meter_value=[MeterValue(timestamp=T0, sampled_value=sampled)]
    )


async def raw_call(charger: FakeCharger, frame: list[Any] | str) -> list[Any]:
    """Send a frame as written; the controller's answer to it (skipping its own CALLs)."""
    text = frame if isinstance(frame, str) else json.dumps(frame)
    unique_id = json.loads(text[: text.index(",", text.index(",") + 1)] + "]")[1]
    await charger.send_raw(text)
    while True:
        message: list[Any] = json.loads(await charger.next_raw())
        if message[0] in (3, 4) and message[1] == unique_id:
            return message


async def still_served(charger: FakeCharger) -> None:
    assert isinstance(await charger.call(HeartbeatRequest()), HeartbeatResponse)
    assert not charger.closed.is_set()


async def test_a_power_above_the_charger_maximum_is_clamped_and_logged_once(
    start_controller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Found on loopback: 1e12 W was taken as 1e9 kW on a 300 kW charger.
    app: ControllerApp = await start_controller()
    charger = await booted(app, "CP003")
    tx = await start_tx(charger, 1)
    session = app.core.session_by_transaction(tx)
    assert session is not None
    with caplog.at_level(logging.WARNING, logger="controller.ocpp.handlers"):
        for value, unit in (("1e12", "W"), ("5e6", "kW"), ("300001", "W")):
            await charger.call(power(value, unit))
            assert session.consumed_power == 300
        await charger.call(power("299000", "W"))
        assert session.consumed_power == 299
    clamped = [r for r in caplog.records if "above the charger's maximum" in r.getMessage()]
    assert len(clamped) == 1
    assert clamped[0].getMessage().startswith("CP003: MeterValues power 1e+09 kW")
    assert math.isfinite(app.status()["gridPower"])


@pytest.mark.parametrize("value", ["9007199254740992", "-1e16", "1e300", "1e400", "-inf"])
async def test_a_sampled_value_of_2_53_or_more_is_refused(
    start_controller: Any, value: str
) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app, "CP003")
    tx = await start_tx(charger, 1)
    session = app.core.session_by_transaction(tx)
    assert session is not None
    await charger.call(power("7000"))
    sampled = [
        {"value": "3000", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": value, "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
    ]
    payload = {"connectorId": 1, "meterValue": [{"timestamp": T0, "sampledValue": sampled}]}
    answer = await raw_call(charger, [2, "mv", "MeterValues", payload])
    assert answer[:3] == [4, "mv", "PropertyConstraintViolation"]
    assert "below 2**53" in answer[3]
    # Nothing of the message counted: not even its valid power reading.
    assert session.consumed_power == 7
    assert session.consumed_energy == 0
    await still_served(charger)


async def test_the_largest_meter_register_is_read(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app, "CP003")
    tx = await start_tx(charger, 1)
    sampled = [SampledValue(value=str(2**53 - 1), unit="Wh")]
    await charger.call(
        MeterValuesRequest(
            connector_id=1, meter_value=[MeterValue(timestamp=T0, sampled_value=sampled)]
        )
    )
    session = app.core.session_by_transaction(tx)
    assert session is not None and session.consumed_energy == pytest.approx((2**53 - 1) / 1000)


@pytest.mark.parametrize("action", ["MeterValues", "StatusNotification"])
async def test_a_connector_the_charger_does_not_have_is_refused(
    start_controller: Any, action: str
) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app, "CP003")  # 2 connectors
    meter = [{"timestamp": T0, "sampledValue": [{"value": "1"}]}]
    payloads = {
        "MeterValues": lambda n: {"connectorId": n, "meterValue": meter},
        "StatusNotification": lambda n: {
            "connectorId": n,
            "errorCode": "NoError",
            "status": "Faulted",
        },
    }
    for connector in (3, 2**31 - 1):
        answer = await raw_call(charger, [2, "c", action, payloads[action](connector)])
        assert answer[:3] == [4, "c", "PropertyConstraintViolation"]
        assert "connectorId" in answer[3]
    for connector in (-1, 2**31):
        answer = await raw_call(charger, [2, "c", action, payloads[action](connector)])
        assert answer[:3] == [4, "c", "PropertyConstraintViolation"]
    assert [k for k in app.core.connectors if k[0] == "CP003"] == []
    answer = await raw_call(charger, [2, "ok", action, payloads[action](2)])
    assert answer == [3, "ok", {}]
    await still_served(charger)


async def test_start_transaction_on_a_missing_connector_is_invalid(start_controller: Any) -> None:
    # StartTransaction.conf has a status of its own: Invalid, so the charger does not resend.
    app: ControllerApp = await start_controller()
    charger = await booted(app, "CP003")
    answer = await charger.call(
        StartTransactionRequest(connector_id=3, id_tag="T", meter_start=0, timestamp=T0)
    )
    assert answer.id_tag_info.status == "Invalid"
    assert list(app.core.active_sessions()) == []


@pytest.mark.parametrize(
    ("action", "payload", "field"),
    [
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 2**53, "timestamp": T0},
            "meterStart",
        ),
        (
            "StartTransaction",
            {"connectorId": 2**31, "idTag": "T", "meterStart": 0, "timestamp": T0},
            "connectorId",
        ),
        ("StopTransaction", {"meterStop": 2**60, "timestamp": T0, "transactionId": 1}, "meterStop"),
        (
            "StopTransaction",
            {"meterStop": 0, "timestamp": T0, "transactionId": -(2**31) - 1},
            "transactionId",
        ),
    ],
)
async def test_integers_outside_their_schema_type_touch_nothing(
    start_controller: Any, action: str, payload: dict[str, Any], field: str
) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app, "CP003")
    answer = await raw_call(charger, [2, "x", action, payload])
    assert answer[:3] == [4, "x", "PropertyConstraintViolation"]
    assert field in answer[3]
    # No transaction id was used up: the next start gets the first one.
    assert list(app.core.active_sessions()) == []
    assert await start_tx(charger, 1) == 1


@pytest.mark.parametrize(
    "payload",
    [
        # Found on loopback: nothing came back and the charger would wait for its timeout.
        '{"vendorId": "v", "data": "d", "x": ' + deep(100_000) + "}",
        '{"vendorId": "v", "messageId": 1' + "0" * 100_000 + "}",
    ],
)
async def test_frames_over_the_json_limits_are_answered_and_the_next_is_served(
    start_controller: Any, payload: str
) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app, "CP003")
    answer = await raw_call(charger, f'[2, "big", "DataTransfer", {payload}]')
    assert answer[:3] == [4, "big", "FormationViolation"]
    assert "frame is over a JSON limit" in answer[3]
    await still_served(charger)


# -- config bounds ------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "stationId": "S",
    "gridCapacity": 400,
    "chargers": [{"id": "A", "maxPower": 50, "connectors": 2}],
}


def config_problems(**changes: Any) -> list[str]:
    data = json.loads(json.dumps(BASE)) | changes
    try:
        config_from_dict(data)
    except ConfigError as error:
        return error.problems
    return []


def with_charger(**fields: Any) -> list[dict[str, Any]]:
    return [BASE["chargers"][0] | fields]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"ocpp": {"callTimeout": 301}}, "ocpp.callTimeout: must be at most 300"),
        ({"ocpp": {"callTimeout": math.inf}}, "ocpp.callTimeout: must be a finite number"),
        ({"ocpp": {"callTimeout": math.nan}}, "ocpp.callTimeout: must be a finite number"),
        ({"ocpp": {"offlineAfter": 604_801}}, "ocpp.offlineAfter: must be at most 604800"),
        ({"ocpp": {"offlineAfter": -math.inf}}, "ocpp.offlineAfter: must be a finite number"),
        ({"ocpp": {"heartbeatInterval": 86_401}}, "ocpp.heartbeatInterval: must be at most 86400"),
        ({"ocpp": {"heartbeatInterval": 10**23}}, "ocpp.heartbeatInterval: must be at most 86400"),
        ({"ocpp": {"failsafePower": math.inf}}, "ocpp.failsafePower: must be a finite number"),
        (
            {"ocpp": {"authorizedIdTags": ["T" * 21]}},
            "ocpp.authorizedIdTags[0]: must have at most 20",
        ),
        ({"gridCapacity": 1e7}, "gridCapacity: must be at most 1000000"),
        ({"server": {"restPort": 65_536}}, "server.restPort: must be at most 65535"),
        ({"server": {"ocppPort": -1}}, "server.ocppPort: must be at least 0"),
        ({"server": {"host": "h" * 254}}, "server.host: must have at most 253"),
        ({"server": {"ocppPath": "/" * 201}}, "server.ocppPath: must have at most 200"),
        ({"database": {"path": "d" * 4097}}, "database.path: must have at most 4096"),
        ({"database": {"path": ""}}, "database.path: must have at least 1"),
        ({"chargers": with_charger(voltage=1001)}, "chargers[0].voltage: must be at most 1000"),
        ({"chargers": with_charger(connectors=33)}, "chargers[0].connectors: must be at most 32"),
        ({"chargers": with_charger(id="I" * 65)}, "chargers[0].id: must have at most 64"),
        (
            {"battery": {"initialCapacity": 10, "power": 5, "reserve": 2e6}},
            "battery.reserve: must be at most 1000000",
        ),
        (
            {"groups": [{"id": "G", "maxPower": 10, "chargers": ["x" * 65]}]},
            "groups[0].chargers[0]: must have at most 64",
        ),
    ],
)
def test_every_config_value_has_finite_bounds(changes: dict[str, Any], problem: str) -> None:
    problems = config_problems(**changes)
    assert any(p.startswith(problem) for p in problems), problems


def test_config_values_at_their_bounds_are_accepted() -> None:
    config = config_from_dict(
        BASE
        | {
            "ocpp": {
                "callTimeout": 300,
                "offlineAfter": 604_800,
                "heartbeatInterval": 86_400,
                "authorizedIdTags": ["T" * 20],
            },
            "server": {"host": "h" * 253, "restPort": 65_535, "ocppPort": 0},
            "chargers": with_charger(voltage=1000),
        }
    )
    assert config.ocpp.call_timeout == 300


def test_lists_have_bounds() -> None:
    chargers = [{"id": f"C{i}", "maxPower": 1, "connectors": 1} for i in range(10_001)]
    assert config_problems(chargers=chargers) == ["chargers: must have at most 10000 item(s)"]


@pytest.mark.parametrize(
    "text",
    [
        # Found on loopback: Infinity passed, then every charger's handshake failed.
        '{"stationId": "S", "gridCapacity": 1, "chargers": [], "ocpp": {"callTimeout": Infinity}}',
        '{"stationId": "S", "gridCapacity": 1, "chargers": [], "ocpp": {"callTimeout": NaN}}',
        '{"stationId": "S", "gridCapacity": 1, "chargers": [], "ocpp": {"callTimeout": 1e999}}',
    ],
)
def test_nan_and_infinity_in_the_file_name_their_field(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert "ocpp.callTimeout: must be a finite number" in caught.value.problems


def test_an_over_deep_config_is_one_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('{"stationId": ' + deep(100_000) + "}")
    assert caught.value.problems == ["JSON over a limit: nested deeper than 64 levels"]


# -- the command line ---------------------------------------------------------------------------


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``main`` on a REST port already taken: a start-up that should have been refused ends at
    once (exit 1, cannot start) instead of serving forever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code = main([*args, "--host", "127.0.0.1", "--rest-port", port, "--ocpp-port", "0"])
    return code, capsys.readouterr().err.splitlines()


def test_an_over_deep_config_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "deep.json"
    config.write_text(deep(100_000))
    code, lines = run_main(["--config", str(config), "--db", str(tmp_path / "c.db")], capsys)
    assert code == 2
    assert lines == [
        f"ev-controller: invalid configuration in {config}: "
        "JSON over a limit: nested deeper than 64 levels"
    ]


def test_an_infinite_call_timeout_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    text = (ROOT / "config.json").read_text().rstrip().removesuffix("}")
    config.write_text(text + ', "ocpp": {"callTimeout": Infinity}}')
    code, lines = run_main(["--config", str(config), "--db", str(tmp_path / "c.db")], capsys)
    assert code == 2
    assert lines == [
        f"ev-controller: invalid configuration in {config}: "
        "ocpp.callTimeout: must be a finite number"
    ]


def test_a_port_flag_out_of_range_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--rest-port", "70000"])
    assert caught.value.code == 2
    assert "argument --rest-port: '70000' is not a port from 0 to 65535" in capsys.readouterr().err


def corrupt_database(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def test_a_corrupt_database_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "controller.db"
    corrupt_database(db)
    code, lines = run_main(["--config", str(ROOT / "config.json"), "--db", str(db)], capsys)
    assert code == 1
    assert lines == [f"ev-controller: cannot open database {db}: file is not a database"]


async def stored_session(config: StationConfig, db: Path) -> None:
    app = ControllerApp(config, host="127.0.0.1", rest_port=0, ocpp_port=0, db_path=db)
    await app.start()
    try:
        charger = await booted(app, "CP001")
        await start_tx(charger, 1)
        await charger.close()
    finally:
        await app.stop()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("UPDATE sessions SET origin = 'bogus'", "'bogus' is not a valid Origin"),
        ("UPDATE sessions SET consumed_energy = 'lots'", "'lots' is not a number"),
        ("UPDATE sessions SET charger_id = CAST(x'ff00fe' AS TEXT)", "Could not decode to UTF-8"),
    ],
)
async def test_a_damaged_row_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, reason: str
) -> None:
    import sqlite3

    db = tmp_path / "controller.db"
    await stored_session(example_config(), db)
    with sqlite3.connect(db) as connection:
        connection.execute(damage)
    connection.close()
    code, lines = run_main(["--config", str(ROOT / "config.json"), "--db", str(db)], capsys)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"ev-controller: cannot read {db}: ")
    assert reason in lines[0]


def test_a_corrupt_database_gives_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    db = tmp_path / "controller.db"
    corrupt_database(db)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller",
            "--config",
            str(ROOT / "config.json"),
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"ev-controller: cannot open database {db}: file is not a database"
    ]


# -- fuzz over the sockets (seeded: the same examples on every run, in CI too) ----------------

SOCKET_FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

numbers = (
    st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes NaN and Infinity
    | st.sampled_from([0, -1, 10**6, 10**6 + 1, 2**31, 2**53, 10**100, 10**101, 1e308])
)
fuzz_json = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
body_fields = st.fixed_dictionaries(
    {},
    optional={
        name: numbers | fuzz_json
        for name in (
            "chargerId",
            "connectorId",
            "vehicleMaxPower",
            "consumedPower",
            "consumedEnergy",
        )
    },
)
bodies = (
    body_fields.map(lambda body: json.dumps(body).encode())
    | fuzz_json.map(lambda body: json.dumps(body).encode())
    | st.integers(min_value=60, max_value=70).map(lambda n: deep(n).encode())
    | st.integers(min_value=95, max_value=5000).map(lambda n: b'{"connectorId": ' + b"7" * n + b"}")
    | st.binary(max_size=40)
    | st.none()
)
path_text = st.text(st.characters(codec="ascii", exclude_characters="#"), max_size=12)
ROUTES = ("/sessions", "/sessions/{id}", "/sessions/{id}/stop", "/sessions/{id}/power-update")
paths = st.sampled_from(
    [*ROUTES, "/station/status", "/station/events", "/sessions/{id}/x", "/"]
) | st.builds(
    "{}{}".format,
    st.sampled_from(
        ["/sessions/", "/station/events?since=", "/sessions?limit=", "/sessions?status="]
    ),
    path_text,
)


@SOCKET_FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), path=paths, body=bodies)
async def test_rest_fuzz_never_a_5xx_always_json(
    api: Api, method: str, path: str, body: bytes | None
) -> None:
    code, session = await api.post("/sessions", {"chargerId": "CP002", "connectorId": 1})
    if code == 201:
        session_id = session["sessionId"]
    else:
        _, sessions = await api.get("/sessions?status=active")
        session_id = next(s["sessionId"] for s in sessions if s["chargerId"] == "CP002")
    url = api.base + path.replace("{id}", session_id)
    headers = {"Content-Type": "application/json"}
    async with api.http.request(method, url, data=body, headers=headers) as response:
        text = await response.text()
        assert response.status < 500, text
        if path == "/" and response.status == 200:
            assert response.content_type == "text/html"
        else:
            assert response.content_type == "application/json", text
            answer = strict_json(text)
            if response.status >= 400:
                assert set(answer) == {"error", "message", "details"}
    await raw_status(api)


@pytest.fixture
async def station(start_controller: Any) -> ControllerApp:
    app: ControllerApp = await start_controller()
    return app


def sendable(text: str | bytes) -> str:
    """The fuzz input as a WebSocket text message (valid UTF-8)."""
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    return text.encode("utf-8", "replace").decode("utf-8")


def answered_id(text: str) -> str | None:
    """The id the controller must answer, if the frame is a CALL whose id can be read."""
    try:
        frame = parse_frame(text)
    except OcppError as error:
        return error.unique_id if error.message_type_id == MessageTypeId.CALL else None
    return frame.unique_id if isinstance(frame, Call) else None


# Mostly CALLs, valid or nearly, so that most frames are handled by the controller itself.
OCPP_INPUT = (
    st.sampled_from(list(CALLS.values())) | mutated_frames() | frames_near_limits() | ANY_INPUT
)


async def answer_to(ws: Any, unique_id: str) -> list[Any]:
    """The controller's CALLRESULT or CALLERROR for ``unique_id``; its own CALLs are skipped."""
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            if message[0] in (3, 4) and message[1] == unique_id:
                return list(message)


@SOCKET_FUZZ
@given(frames=st.lists(OCPP_INPUT.map(sendable), min_size=1, max_size=5))
async def test_ocpp_fuzz_every_call_is_answered_and_the_connection_stays(
    station: ControllerApp, frames: list[str]
) -> None:
    async with websockets.connect(f"{ocpp_url(station)}/CP001", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        for text in frames:
            await ws.send(text)
            unique_id = answered_id(text)
            if unique_id is None:
                event("not answerable")
            else:
                kind, _, *rest = await answer_to(ws, unique_id)
                assert kind in (3, 4)
                event("CALLRESULT" if kind == 3 else f"CALLERROR {rest[0]}")
        await ws.send('[2,"still-there","Heartbeat",{}]')
        answer = await answer_to(ws, "still-there")
        # Served: answered, or refused by a per-charger rate limit (a GenericError), never a
        # closed connection.
        assert answer[0] == 3 or answer[2] == "GenericError", answer
    status_url = f"http://127.0.0.1:{station.rest_port}/station/status"
    async with aiohttp.ClientSession() as http, http.get(status_url) as response:
        assert response.status == 200
        strict_json(await response.text())
