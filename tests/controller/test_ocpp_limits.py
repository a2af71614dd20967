"""What one charger may cost (docs/security-chargers.md): its unsent bytes, its message rate,
the log lines it causes. Real sockets on 127.0.0.1, the real controller, a manual clock."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from controller.app import ControllerApp
from controller.config import StationConfig
from controller.ocpp.rate import DISCONNECT_AFTER, MESSAGE_BURST
from protocol import CallReceived, OcppModel
from protocol.messages import (
    GetConfigurationRequest,
    GetConfigurationResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    KeyValue,
)
from shell.clock import ManualClock
from tests.controller.conftest import example_config, ocpp_url
from tests.controller.ocpp_client import WAIT, FakeCharger, accept_everything


def config_with(**ocpp: Any) -> StationConfig:
    return example_config(ocpp=ocpp)


async def connect(app: ControllerApp, charger_id: str, **kwargs: Any) -> ClientConnection:
    return await websockets.connect(
        f"{ocpp_url(app)}/{charger_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        max_queue=None,
        **kwargs,
    )


def heartbeat(unique_id: str) -> str:
    return json.dumps([2, unique_id, "Heartbeat", {}])


async def answers(ws: ClientConnection, count: int) -> list[list[Any]]:
    """The next ``count`` frames the controller sends, decoded."""
    frames = []
    for _ in range(count):
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    return frames


async def answer_to(ws: ClientConnection, unique_id: str) -> list[Any]:
    """Read until the answer to our CALL ``unique_id``; that answer."""
    while True:
        frame: list[Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if frame[0] in (3, 4) and frame[1] == unique_id:
            return frame


def is_rate_limited(frame: list[Any]) -> bool:
    return frame[0] == 4 and frame[2:4] == ["GenericError", "rate limited"]


# -- the write buffer ---------------------------------------------------------------------------


async def test_a_charger_that_does_not_read_is_cut_off_before_its_buffer_passes_the_bound(
    start_controller: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bound = 16 * 1024
    app: ControllerApp = await start_controller(config_with(maxBufferedBytes=bound))
    loop = asyncio.get_running_loop()
    # A peer that reads nothing: a small receive window, and reading paused once connected.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", app.ocpp_port))
    ws = await connect(app, "CP001", sock=sock)
    ws.transport.pause_reading()
    _, _, channel = app.ocpp.links["CP001"]
    # The kernel's send buffer on the controller's side would otherwise take megabytes
    # before the controller's own buffer starts to fill (it grows by itself on loopback).
    assert channel._transport is not None
    server_socket = channel._transport.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sent = 0
    with caplog.at_level(logging.INFO, logger="controller"):
        # Every CALL is answered (past the burst with "rate limited"): answers it never reads.
        while not channel.closed.done():
            assert sent < 20_000, "never disconnected"
            for _ in range(100):
                await ws.send(heartbeat(f"h{sent}"))
                sent += 1
            await asyncio.sleep(0)  # the controller reads what was sent
        await asyncio.wait_for(channel.closed, WAIT)
    # It filled the buffer up to the bound, never past it, and was told why (1008).
    assert bound - 2 * 1024 < channel.peak_buffered <= bound
    assert channel.protocol.close_sent is not None
    assert channel.protocol.close_sent.code == 1008
    assert channel.protocol.close_sent.reason == "does not read"
    await app.wait_until(lambda: not app.core.chargers["CP001"].connected)
    assert "CP001" not in app.ocpp.links
    lines = [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("/ocpp/CP001: does not read"), lines
    ws.transport.abort()


# -- the message rate ---------------------------------------------------------------------------


async def test_a_burst_above_the_rate_is_refused_unread_and_the_charger_next_to_it_is_served(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    noisy = await connect(app, "CP001")
    calm = await FakeCharger(ocpp_url(app), "CP002").connect()
    await calm.boot()
    # One burst: the first 200 are handled; the rest, a StatusNotification among them,
    # are refused without being looked at.
    for n in range(MESSAGE_BURST):
        await noisy.send(heartbeat(f"h{n}"))
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Faulted"}
    await noisy.send(json.dumps([2, "status", "StatusNotification", status]))
    for n in range(MESSAGE_BURST, MESSAGE_BURST + 49):
        await noisy.send(heartbeat(f"h{n}"))
    frames = await answers(noisy, MESSAGE_BURST + 50)
    assert [f[0] for f in frames[:MESSAGE_BURST]] == [3] * MESSAGE_BURST
    refused = frames[MESSAGE_BURST:]
    assert all(is_rate_limited(f) for f in refused), refused[:3]
    assert refused[0][1] == "status"
    assert ("CP001", 1) not in app.core.connectors
    # The charger next to it is served as always.
    assert isinstance(await calm.call(HeartbeatRequest()), HeartbeatResponse)
    # A second later its rate has refilled for 50 more; its burst did not cost it the line.
    clock.advance(1.0)
    await noisy.send(json.dumps([2, "again", "StatusNotification", status]))
    assert (await answer_to(noisy, "again"))[0] == 3
    await app.wait_until(lambda: app.core.connectors[("CP001", 1)].status == "Faulted")
    clock.advance(DISCONNECT_AFTER + 1)
    await noisy.send(heartbeat("later"))
    assert (await answer_to(noisy, "later"))[0] == 3
    await noisy.close()
    await calm.close()


def hold_configuration(call: CallReceived) -> OcppModel | None:
    if isinstance(call.request, GetConfigurationRequest):
        return None
    return accept_everything(call)


async def test_answers_to_our_calls_are_taken_while_its_calls_are_refused(
    start_controller: Any,
) -> None:
    app: ControllerApp = await start_controller()
    charger = await FakeCharger(ocpp_url(app), "CP001", policy=hold_configuration).connect()
    await charger.boot()
    await charger.wait_until(lambda: len(charger.pending("GetConfiguration")) == 1)
    for n in range(MESSAGE_BURST + 10):
        await charger.send_raw(heartbeat(f"h{n}"))
    frames: list[list[Any]] = []
    while len(frames) < MESSAGE_BURST + 10:
        frame = json.loads(await charger.next_raw())
        if frame[0] != 2:  # the controller's own CALLs arrive among the answers
            frames.append(frame)
    assert is_rate_limited(frames[-1])
    # Over its rate, yet its answer to GetConfiguration is taken: it has no smart charging.
    core_only = KeyValue(key="SupportedFeatureProfiles", readonly=True, value="Core")
    await charger.answer(
        charger.pending("GetConfiguration")[0],
        GetConfigurationResponse(configuration_key=[core_only]),
    )
    await app.wait_until(lambda: not app.core.chargers["CP001"].smart_charging)
    await charger.close()


async def test_a_charger_that_keeps_above_the_rate_for_30_s_is_disconnected(
    start_controller: Any, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app: ControllerApp = await start_controller()
    ws = await connect(app, "CP001")
    # 40 messages every half second: 80/s against 50/s.
    first_refused: float | None = None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="controller"):
        for step in range(200):
            ids = [f"s{step}m{n}" for n in range(40)]
            for unique_id in ids:
                await ws.send(heartbeat(unique_id))
            try:
                frames = await answers(ws, len(ids))
            except websockets.ConnectionClosed:
                break
            if first_refused is None and any(is_rate_limited(f) for f in frames):
                first_refused = clock.now()
            clock.advance(0.5)
        else:
            raise AssertionError("never disconnected")
    assert first_refused is not None
    assert DISCONNECT_AFTER <= clock.now() - first_refused <= DISCONNECT_AFTER + 0.5
    assert ws.close_code == 1008
    assert ws.close_reason == "message rate exceeded"
    await app.wait_until(lambda: not app.core.chargers["CP001"].connected)
    messages = [r.getMessage() for r in caplog.records]
    # One line when it went over, one when it was disconnected: not one per message.
    assert messages == [
        "CP001: more than 50 messages/s: calls refused",
        "CP001: above its message rate for 30 s: disconnected",
    ]


# -- log lines ----------------------------------------------------------------------------------

JUNK = [
    "not json at all",
    "[3, 'single quotes']",
    json.dumps([3, "nobody asked", {}]),
    json.dumps([4, "nobody asked", "GenericError", "", {}]),
    json.dumps([2, "bad-action", "FooBar", {}]),
    json.dumps([2, "bad-payload", "StatusNotification", {"connectorId": "one"}]),
]


async def test_a_flood_of_junk_frames_logs_a_bounded_number_of_lines(
    start_controller: Any, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app: ControllerApp = await start_controller()
    ws = await connect(app, "CP001")
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="controller"):
        for batch in range(2):
            for n in range(5_000):
                await ws.send(JUNK[n % len(JUNK)])
            await ws.send(heartbeat(f"end{batch}"))
            await answer_to(ws, f"end{batch}")
            clock.advance(61.0)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("controller")]
    # Per kind of line: the first in full, a minute later a count of those left out and
    # the next in full. Not one per frame.
    assert len(lines) <= 8, lines
    assert any("unreadable frame ignored" in line for line in lines)
    left_out = [line for line in lines if "similar lines left out" in line]
    assert left_out and left_out[0].startswith("CP001: ")
    # Bad input costs the charger nothing else: it is still connected.
    assert app.ocpp.links["CP001"][2].open
    await ws.close()


async def test_refused_handshakes_log_one_line_per_address_and_minute(
    start_controller: Any, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    app: ControllerApp = await start_controller()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="controller.ocpp.server"):
        for n in range(20):
            with pytest.raises(websockets.InvalidStatus):
                await connect(app, f"NOPE{n}%0Aforged")
        clock.advance(60.0)
        with pytest.raises(websockets.InvalidStatus):
            await connect(app, "NOPE")
    assert [r.getMessage() for r in caplog.records] == [
        "127.0.0.1: unknown charge point refused: '/ocpp/NOPE0%0Aforged'",
        "127.0.0.1: 19 similar lines left out in the last 60 s",
        "127.0.0.1: unknown charge point refused: '/ocpp/NOPE'",
    ]
