"""Connection rules (docs/ocpp.md, "Connecting a charger"): path id, 404, credentials,
subprotocol, replacement."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from controller.app import ControllerApp
from controller.ocpp.server import basic_credentials, charger_id_from_path
from tests.controller.conftest import example_config, ocpp_url
from tests.controller.ocpp_client import FakeCharger


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ocpp/CP001", "CP001"),
        ("/ocpp/CP%20001", "CP 001"),
        ("/ocpp/CP001?token=x", "CP001"),
        ("/ocpp/", None),
        ("/other/CP001", None),
        ("/ocpp/a/b", None),
    ],
)
def test_charger_id_from_path(path: str, expected: str | None) -> None:
    assert charger_id_from_path(path, "/ocpp") == expected


def test_basic_credentials() -> None:
    token = base64.b64encode(b"CP001:s3cr:et").decode()
    assert basic_credentials(f"Basic {token}") == ("CP001", "s3cr:et")
    assert basic_credentials("Bearer x") is None
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials(None) is None


async def test_unknown_charger_gets_404(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    with pytest.raises(InvalidStatus) as caught:
        await websockets.connect(f"{ocpp_url(app)}/NOPE", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    assert caught.value.response.status_code == 404


async def test_credentials_are_required_when_configured(start_controller: Any) -> None:
    data = example_config().model_dump(by_alias=True, mode="json")
    data["chargers"][0]["password"] = "0123456789abcdef"
    from controller.config import config_from_dict

    app: ControllerApp = await start_controller(config_from_dict(data))
    url = f"{ocpp_url(app)}/CP001"
    for auth in (None, "CP001:wrong", "CP002:0123456789abcdef"):
        headers = (
            {}
            if auth is None
            else {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
        )
        with pytest.raises(InvalidStatus) as caught:
            await websockets.connect(url, subprotocols=["ocpp1.6"], additional_headers=headers)  # type: ignore[list-item]
        assert caught.value.response.status_code == 401
    good = "Basic " + base64.b64encode(b"CP001:0123456789abcdef").decode()
    charger = await FakeCharger(ocpp_url(app), "CP001").connect(
        additional_headers={"Authorization": good}
    )
    await charger.boot()
    await charger.close()


async def test_client_without_the_subprotocol_is_closed(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    ws = await websockets.connect(f"{ocpp_url(app)}/CP001")
    assert ws.subprotocol is None
    with pytest.raises(websockets.ConnectionClosed) as caught:
        await ws.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1002


async def test_second_connection_replaces_the_first(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    first = await FakeCharger(ocpp_url(app), "CP001").connect()
    await first.boot()
    second = await FakeCharger(ocpp_url(app), "CP001").connect()
    await first.closed.wait()
    await second.boot()
    assert app.core.chargers["CP001"].connected
    assert app.ocpp.links["CP001"][2].open
    await second.close()
    await second.closed.wait()


async def test_charger_state_survives_a_reconnect_without_boot(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    await charger.boot()
    await charger.close()
    await charger.closed.wait()
    again = await FakeCharger(ocpp_url(app), "CP001").connect()
    # No BootNotification: the failsafe default is re-sent on reconnect all the same.
    await again.wait_until(lambda: len(again.profiles()) >= 1)
    assert app.core.chargers["CP001"].vendor == "Test"
    await again.close()
