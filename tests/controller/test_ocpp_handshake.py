"""Connection rules (docs/ocpp.md, "Connecting a charger"): path id, 404, credentials,
subprotocol, replacement."""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from controller.app import ControllerApp
from controller.config import ConfigError, config_from_dict
from controller.ocpp.server import basic_credentials, charger_id_from_path
from protocol.messages import HeartbeatRequest, HeartbeatResponse
from shell.clock import ManualClock
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


# -- passwords (docs/security-chargers.md) ------------------------------------------------------

PASSWORD = "correct horse battery"


def with_passwords(**by_charger: dict[str, Any]) -> dict[str, Any]:
    """The example config as a dict, with these fields added to the chargers named."""
    data = example_config().model_dump(by_alias=True, mode="json", exclude_none=True)
    for charger in data["chargers"]:
        charger.update(by_charger.get(charger["id"], {}))
    return data


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def handshake_status(app: ControllerApp, charger_id: str, headers: dict[str, str]) -> int:
    """The HTTP status of a refused handshake (101 when the upgrade went through)."""
    try:
        ws = await websockets.connect(
            f"{ocpp_url(app)}/{charger_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
        )
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


async def test_a_password_given_as_its_sha256_is_checked(start_controller: Any) -> None:
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest().upper()
    config = config_from_dict(with_passwords(CP001={"passwordSha256": digest}))
    assert config.chargers[0].password_sha256 == digest.lower()
    app: ControllerApp = await start_controller(config)
    assert await handshake_status(app, "CP001", {}) == 401
    assert await handshake_status(app, "CP001", basic("CP001", PASSWORD + "x")) == 401
    assert await handshake_status(app, "CP001", basic("CP001", digest)) == 401
    assert await handshake_status(app, "CP001", basic("CP002", PASSWORD)) == 401
    charger = await FakeCharger(ocpp_url(app), "CP001").connect(
        additional_headers=basic("CP001", PASSWORD)
    )
    await charger.boot()
    await charger.close()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"CP002": {"password": PASSWORD, "passwordSha256": "ab" * 32}},
            "chargers[1].passwordSha256: give password or passwordSha256, not both",
        ),
        (
            {"CP002": {"passwordSha256": "ab" * 31}},
            "chargers[1].passwordSha256: must be 64 hexadecimal digits: a SHA-256",
        ),
        (
            {"CP002": {"passwordSha256": "xy" * 32}},
            "chargers[1].passwordSha256: must be 64 hexadecimal digits: a SHA-256",
        ),
    ],
)
def test_password_config_errors(change: dict[str, dict[str, Any]], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(with_passwords(**change))
    assert caught.value.problems == [problem]


def test_require_auth_refuses_a_charger_without_a_password() -> None:
    data = with_passwords(CP001={"password": PASSWORD}, CP003={"passwordSha256": "ab" * 32})
    data["ocpp"]["requireAuth"] = True
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert caught.value.problems == [
        "chargers[1]: needs a password or passwordSha256 (ocpp.requireAuth is true)"
    ]
    data["chargers"][1]["password"] = PASSWORD
    assert config_from_dict(data).ocpp.require_auth


async def test_the_start_up_log_names_the_chargers_without_a_password(
    start_controller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_from_dict(with_passwords(CP002={"password": PASSWORD}))
    with caplog.at_level(logging.INFO, logger="controller.ocpp.server"):
        await start_controller(config)
    lines = [r.getMessage() for r in caplog.records if "without a password" in r.getMessage()]
    assert lines == [
        "2 charger(s) connect without a password (ocpp.requireAuth refuses that): CP001, CP003"
    ]


async def test_ten_failed_logins_within_a_minute_block_the_address_for_a_minute(
    start_controller: Any, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app: ControllerApp = await start_controller(
        config_from_dict(with_passwords(CP001={"password": PASSWORD}))
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="controller.ocpp.server"):
        for attempt in range(10):
            clock.advance(5.0)
            assert await handshake_status(app, "CP001", basic("CP001", f"guess{attempt}")) == 401
        blocked_at = clock.now()  # the 10th failure, 45 s after the first
        # The 11th attempt: refused unchecked, even with the right password, for 60 s.
        clock.advance(5.0)
        assert await handshake_status(app, "CP001", basic("CP001", PASSWORD)) == 401
        clock.set(blocked_at + 59.9)
        assert await handshake_status(app, "CP001", basic("CP001", PASSWORD)) == 401
        clock.set(blocked_at + 60.0)
        assert await handshake_status(app, "CP001", basic("CP001", PASSWORD)) == 101
    lines = [r.getMessage() for r in caplog.records]
    # One line for the first failure, one for the block: not one per attempt.
    assert lines == [
        "127.0.0.1: failed charger logins (1 since the last report)",
        "127.0.0.1: 10 failed charger logins within 60 s: refused for 60 s",
    ]


async def test_an_impostor_without_the_password_cannot_replace_a_connected_charger(
    start_controller: Any,
) -> None:
    app: ControllerApp = await start_controller(
        config_from_dict(with_passwords(CP001={"password": PASSWORD}))
    )
    real = await FakeCharger(ocpp_url(app), "CP001").connect(
        additional_headers=basic("CP001", PASSWORD)
    )
    await real.boot()
    number = app.ocpp.links["CP001"][0]
    for headers in ({}, basic("CP001", "guess"), basic("CP002", PASSWORD)):
        assert await handshake_status(app, "CP001", headers) == 401
    assert app.ocpp.links["CP001"][0] == number
    assert app.ocpp.links["CP001"][2].open
    assert not real.closed.is_set()
    assert isinstance(await real.call(HeartbeatRequest()), HeartbeatResponse)
    assert app.core.chargers["CP001"].connected
    await real.close()
