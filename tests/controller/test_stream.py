"""``GET /station/stream`` (docs/dashboard.md): Server-Sent Events over a real connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from controller.app import ControllerApp
from controller.stream import MIN_EVENT_INTERVAL
from shell.clock import ManualClock
from tests.controller.conftest import example_config

WAIT = 5.0  # bound of every wait; never reached when things work


class EventStream:
    """A client of the stream: events as (name, data), comments as (":", text)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self._lines = self._read_lines()

    async def _read_lines(self) -> AsyncIterator[str]:
        while line := await self.response.content.readline():
            yield line.decode().rstrip("\n")

    async def next(self, timeout: float = WAIT) -> tuple[str, Any]:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> tuple[str, Any]:
        name, data = "message", None
        async for line in self._lines:
            if line == "":
                if data is not None:
                    return name, json.loads(data)
            elif line.startswith(":"):
                return ":", line[1:].strip()
            elif line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        raise EOFError("the stream ended")

    async def next_event(self, timeout: float = WAIT) -> tuple[str, Any]:
        """The next event, past keep-alive comments."""
        while True:
            name, data = await self.next(timeout)
            if name != ":":
                return name, data

    async def status_where(self, predicate: Callable[[Any], bool]) -> Any:
        while True:
            name, data = await self.next_event()
            if name == "status" and predicate(data):
                return data


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def open_stream(http: aiohttp.ClientSession, app: ControllerApp) -> EventStream:
    response = await http.get(f"http://127.0.0.1:{app.rest_port}/station/stream")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    return EventStream(response)


def base(app: ControllerApp) -> str:
    return f"http://127.0.0.1:{app.rest_port}"


async def start_session(
    http: aiohttp.ClientSession, app: ControllerApp, charger: str = "CP001"
) -> str:
    body = {"chargerId": charger, "connectorId": 0, "vehicleMaxPower": 50}
    async with http.post(f"{base(app)}/sessions", json=body) as response:
        assert response.status == 201
        session_id: str = (await response.json())["sessionId"]
        return session_id


async def test_a_stream_starts_with_the_history_and_the_status_then_follows_changes(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    app: ControllerApp = await start_controller()
    stream = await open_stream(http, app)
    name, history = await stream.next_event()
    assert name == "history"
    assert history["interval"] == 5
    assert history["span"] == 3600
    assert [set(p) for p in history["points"]] == [
        {"at", "gridPower", "gridCapacity", "allocatedPower", "batteryEnergy", "sitePower"}
    ]
    name, status = await stream.next_event()
    assert name == "status"
    async with http.get(f"{base(app)}/station/status") as response:
        assert status == await response.json()
    session_id = await start_session(http, app)
    status = await stream.status_where(lambda s: s["allocatedPower"] == 50)
    assert [s["sessionId"] for s in status["sessions"]] == [session_id]
    async with http.post(f"{base(app)}/sessions/{session_id}/stop") as response:
        assert response.status == 200
    await stream.status_where(lambda s: s["sessions"] == [])


async def test_events_come_at_most_five_a_second_with_the_latest_state(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    app: ControllerApp = await start_controller()
    stream = await open_stream(http, app)
    await stream.next_event()  # history
    await stream.next_event()  # status
    loop = asyncio.get_running_loop()
    began = loop.time()
    session_id = await start_session(http, app)
    url = f"{base(app)}/sessions/{session_id}/power-update"
    for kw in range(1, 21):
        async with http.post(url, json={"consumedPower": kw}) as response:
            assert response.status == 200
    events = 0
    while True:
        status = await stream.status_where(lambda s: True)
        events += 1
        if status["sessions"] and status["sessions"][0]["consumedPower"] == 20:
            break
    # n events sent at least MIN_EVENT_INTERVAL apart span (n - 1) intervals, all of them
    # between `began` and now (measured here, so a late read on a busy machine cannot make
    # events look closer together than they were sent).
    elapsed = loop.time() - began
    assert events <= elapsed / MIN_EVENT_INTERVAL + 1, (events, elapsed)
    assert events < 21  # coalesced


async def test_an_unchanged_station_sends_nothing(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    app: ControllerApp = await start_controller()
    stream = await open_stream(http, app)
    await stream.next_event()
    await stream.next_event()
    app.driver.tick()  # handled, nothing changed (the manual clock stands still)
    await app.driver.flush()
    session_id = await start_session(http, app)
    status = await stream.status_where(lambda s: True)  # the first one sent is the change
    assert [s["sessionId"] for s in status["sessions"]] == [session_id]


async def test_keep_alive_comments_and_a_stream_outlives_the_handshake_timeout(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    config = example_config(server={"handshakeTimeout": 0.2})
    app: ControllerApp = await start_controller(config, stream_keepalive=0.1)
    stream = await open_stream(http, app)
    await stream.next_event()
    await stream.next_event()
    loop = asyncio.get_running_loop()
    opened = loop.time()
    comments = 0
    while loop.time() - opened < 0.6:  # three handshake timeouts
        name, text = await stream.next(timeout=1.0)
        assert (name, text) == (":", "keep-alive")
        comments += 1
    assert comments >= 3
    session_id = await start_session(http, app)
    status = await stream.status_where(lambda s: bool(s["sessions"]))
    assert [s["sessionId"] for s in status["sessions"]] == [session_id]


async def test_the_history_samples_the_station_on_the_clock(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    assert len(app.history.samples()) == 1
    await start_session(http, app)
    clock.advance(4)
    app.driver.tick()
    assert len(app.history.samples()) == 1  # not yet 5 s
    clock.advance(1)
    app.driver.tick()
    samples = app.history.samples()
    assert [s.at for s in samples] == [clock.now() - 5, clock.now()]
    assert (samples[0].allocated_power, samples[1].allocated_power) == (0, 50)
    # An hour later the first has left the chart.
    clock.advance(3596)
    app.driver.tick()
    assert [s.at for s in app.history.samples()] == [clock.now() - 3596, clock.now()]
    stream = await open_stream(http, app)
    name, history = await stream.next_event()
    assert name == "history"
    assert [p["allocatedPower"] for p in history["points"]] == [50, 50]


async def test_the_history_keeps_the_site_meter_while_it_reads(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """docs/site.md: the chart shows the whole site at the connection point."""
    config = example_config(site={"meter": {"type": "push"}, "meterTimeout": 10})
    app: ControllerApp = await start_controller(config)
    url = f"http://127.0.0.1:{app.rest_port}/station/site-meter"
    async with http.post(url, json={"power": 75.5}) as response:
        assert response.status == 200
    clock.advance(5)
    app.driver.tick()
    clock.advance(10)  # silent for 10 s: no longer shown
    app.driver.tick()
    assert [s.site_power for s in app.history.samples()] == [None, 75.5, None]


async def test_shutdown_ends_open_streams_at_once(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    app: ControllerApp = await start_controller()
    streams = [await open_stream(http, app) for _ in range(3)]
    for stream in streams:
        await stream.next_event()
        await stream.next_event()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(app.stop(), WAIT)
    assert loop.time() - began < 2.0
    for stream in streams:
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            await stream.next_event()


async def test_the_number_of_streams_is_bounded(
    start_controller: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    app: ControllerApp = await start_controller()
    app.streams.max_streams = 2
    for _ in range(2):
        await open_stream(http, app)
    async with http.get(f"{base(app)}/station/stream") as response:
        assert response.status == 503
        body = await response.json()
        assert body["error"] == "too_many_streams"
