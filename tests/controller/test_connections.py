"""What a client cannot exhaust on either port (docs/security-connections.md): connections that
never complete their request or upgrade are closed after ``server.handshakeTimeout``, open
connections are capped by ``server.maxConnections``, REST requests in progress are capped."""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import aiohttp
import pytest

from controller.app import ControllerApp
from controller.config import ConfigError, StationConfig, config_from_dict
from controller.listener import check_open_files, max_connections
from tests.controller.conftest import example_config, ocpp_url
from tests.controller.ocpp_client import FakeCharger
from tests.controller.raw_client import WAIT, read_until_closed

TIMEOUT = 0.3
HALF_UPGRADE = (
    b"GET /ocpp/CP002 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
)


def server_config(**server: Any) -> StationConfig:
    data = example_config().model_dump(by_alias=True, mode="json", exclude_none=True)
    data["server"] = {**data["server"], **server}
    return config_from_dict(data)


async def open_raw(
    port: int, sent: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if sent:
        writer.write(sent)
        await writer.drain()
    return reader, writer


async def get(app: ControllerApp, path: str = "/station/status") -> aiohttp.ClientResponse:
    """One request on its own connection (a kept-alive one may be closed meanwhile)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"http://127.0.0.1:{app.rest_port}{path}") as response,
    ):
        await response.read()
        return response


def test_connection_settings_are_bounded() -> None:
    for server, words in (
        ({"handshakeTimeout": 0}, "server.handshakeTimeout: must be at least 0.1"),
        ({"handshakeTimeout": 301}, "server.handshakeTimeout: must be at most 300"),
        ({"maxConnections": 0}, "server.maxConnections: must be at least 1"),
        ({"maxConnections": 10**7}, "server.maxConnections: must be at most 1000000"),
        ({"tls": {"cert": "a.crt"}}, "server.tls.key: is required"),
        ({"restTls": {"cert": "", "key": "k"}}, "server.restTls.cert: must have at least 1"),
    ):
        with pytest.raises(ConfigError) as caught:
            server_config(**server)
        assert any(p.startswith(words) for p in caught.value.problems), caught.value.problems
    assert server_config().server.handshake_timeout == 10.0
    assert max_connections(server_config()) == 4 * 3 + 256
    assert max_connections(server_config(maxConnections=7)) == 7


def test_a_cap_above_the_open_files_limit_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    caplog.set_level(logging.WARNING)
    check_open_files(1)
    assert not caplog.records
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no limit on open files here")
    check_open_files(soft)
    assert "ulimit -n" in caplog.records[0].getMessage()


async def test_half_open_connections_are_closed_after_the_handshake_timeout(
    start_controller: Any,
) -> None:
    """Connections that send nothing, or half a request or upgrade, are closed after the
    timeout on both ports, while a charger connects and boots and the REST API answers."""
    app: ControllerApp = await start_controller(server_config(handshakeTimeout=TIMEOUT))
    loop = asyncio.get_running_loop()
    opened = loop.time()
    stalled = [
        *[await open_raw(app.ocpp_port) for _ in range(3)],
        *[await open_raw(app.rest_port) for _ in range(3)],
        await open_raw(app.ocpp_port, HALF_UPGRADE),
        await open_raw(app.rest_port, b"GET /station/status HTTP/1.1\r\nHost: x\r\n"),
        # Complete headers, but the body never ends.
        await open_raw(
            app.rest_port,
            b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{",
        ),
    ]
    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    assert (await charger.boot()).status == "Accepted"
    assert (await get(app)).status == 200

    for reader, writer in stalled:
        assert await read_until_closed(reader) == b""
        writer.close()
    assert loop.time() - opened >= TIMEOUT

    # The charger's own timer has run out too by the time this one is closed: an upgraded
    # connection is not touched.
    reader, writer = await open_raw(app.ocpp_port)
    await read_until_closed(reader)
    writer.close()
    assert (await charger.boot()).status == "Accepted"
    await charger.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(
    start_controller: Any,
) -> None:
    app: ControllerApp = await start_controller(server_config(handshakeTimeout=TIMEOUT))
    reader, writer = await open_raw(
        app.rest_port, b"GET /station/status HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    answered = await read_until_closed(reader)
    assert answered.startswith(b"HTTP/1.1 200 OK"), answered[:100]
    writer.close()


async def test_past_the_connection_cap_new_connections_are_refused_at_once(
    start_controller: Any,
) -> None:
    # A long timeout: a connection closed here is closed by the cap.
    app: ControllerApp = await start_controller(
        server_config(maxConnections=2, handshakeTimeout=60)
    )
    loop = asyncio.get_running_loop()

    charger = await FakeCharger(ocpp_url(app), "CP001").connect()
    assert (await charger.boot()).status == "Accepted"
    idle_ocpp = await open_raw(app.ocpp_port)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    status = f"http://127.0.0.1:{app.rest_port}/station/status"
    async with http.get(status) as response:
        assert response.status == 200
    idle_rest = await open_raw(app.rest_port)

    for port in (app.ocpp_port, app.rest_port):
        started = loop.time()
        reader, writer = await open_raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await read_until_closed(reader) == b""  # no answer, not even an HTTP error
        assert loop.time() - started < WAIT
        writer.close()

    # Those that were open keep working.
    assert (await charger.boot()).status == "Accepted"
    async with http.get(status) as response:
        assert response.status == 200
    await http.close()

    # A charger that leaves makes room for another.
    await charger.close()
    await app.wait_until(lambda: not app.status()["chargers"][0]["connected"])
    other = await FakeCharger(ocpp_url(app), "CP002").connect()
    assert (await other.boot()).status == "Accepted"
    await other.close()
    for _, writer in (idle_ocpp, idle_rest):
        writer.close()


async def test_past_the_in_flight_cap_requests_get_503_with_retry_after(
    start_controller: Any,
) -> None:
    app: ControllerApp = await start_controller(server_config(), rest_max_in_flight=1)
    # One request in progress: its handler waits for a body that has not come yet. The
    # 100-continue is written right before the handler runs, in the same step.
    body = b'{"chargerId": "NOPE", "connectorId": 1}'
    reader, writer = await open_raw(
        app.rest_port,
        b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body),
    )
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).startswith(b"HTTP/1.1 100")

    refused = await get(app)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.content_type == "application/json"
    error = await refused.json()
    assert error["error"] == "overloaded" and error["details"] == []

    writer.write(body)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert answer.startswith(b"HTTP/1.1 4"), answer
    writer.close()
    assert (await get(app)).status == 200


async def test_a_charger_that_never_answers_the_close_does_not_hold_up_the_shutdown(
    start_controller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """At shutdown every charger is sent a close; one that never reads never answers it and
    is cut off after a short wait, inside the shutdown's own step timeout."""
    app: ControllerApp = await start_controller(example_config())
    upgrade = HALF_UPGRADE + (
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
    )
    reader, writer = await open_raw(app.ocpp_port, upgrade)
    await reader.readuntil(b"\r\n\r\n")  # upgraded; from now on it reads nothing
    await app.driver.wait_until(lambda: app.core.chargers["CP002"].connected)
    with caplog.at_level(logging.ERROR, logger="controller.app"):
        await app.stop()
    assert "did not close in time" not in caplog.text
    writer.close()
