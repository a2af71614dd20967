"""``GET /station/stream``: the station as Server-Sent Events, for the dashboard
(docs/dashboard.md, "The stream").

On connect: a ``history`` event (the chart's last hour, ``controller.history``) and a
``status`` event (the JSON of ``GET /station/status``). Then a ``status`` event each time the
station changed, at most one per ``min_interval`` (the latest state: changes in between are
coalesced, and a snapshot equal to the last one sent is not sent again), and a keep-alive
comment after ``keepalive`` seconds without anything sent, so that proxies and the page see
the connection is alive.

The intervals are the event loop's own time: they pace a network connection, not the
station. A stream is one long request: the REST port's handshake timer does not run while a
request is being answered (controller.listener), so it does not cut it. Shutdown ends every
stream at once (aiohttp's shutdown waits for requests in progress).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from controller.driver import Driver
from controller.history import History
from controller.rest_schemas import ApiError
from controller.views import StatusView, finite_dumps, status_view

KEEPALIVE_INTERVAL = 15.0
# At most 5 events a second.
MIN_EVENT_INTERVAL = 0.2
# Every open stream is a request in progress: well under the port's limit of requests in
# progress (controller.listener.MAX_REST_IN_FLIGHT), so dashboards never crowd out the API.
MAX_STREAMS = 64
RETRY_AFTER = 5

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    # A reverse proxy must pass events on as they come.
    "X-Accel-Buffering": "no",
}


class StreamHub:
    """What the open streams share: the station, its history, the pace, and shutdown."""

    def __init__(
        self,
        driver: Driver,
        history: History,
        *,
        keepalive: float = KEEPALIVE_INTERVAL,
        min_interval: float = MIN_EVENT_INTERVAL,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.driver = driver
        self.history = history
        self.keepalive = keepalive
        self.min_interval = min_interval
        self.max_streams = max_streams
        self.closing = False
        # The wake-up of each open stream.
        self._open: set[asyncio.Event] = set()
        self._closed = asyncio.Event()
        # One status snapshot per change of the station, shared by every open stream: with
        # many dashboards open, the view is built once, not once per stream.
        self._version = 0
        self._snapshot: tuple[int, StatusView] | None = None
        driver.subscribe(self._changed)

    def _changed(self) -> None:
        self._version += 1
        for wake in self._open:
            wake.set()

    def snapshot(self) -> StatusView:
        """The station now, as ``GET /station/status`` shows it."""
        cached = self._snapshot
        if cached is None or cached[0] != self._version:
            cached = self._snapshot = (self._version, status_view(self.driver.core))
        return cached[1]

    @property
    def open_streams(self) -> int:
        return len(self._open)

    async def close(self, app: web.Application | None = None) -> None:
        """End every stream (the app's ``on_shutdown``)."""
        self.closing = True
        self._closed.set()
        for wake in self._open:
            wake.set()

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when shutdown begins."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), seconds)

    def opened(self) -> asyncio.Event:
        """A new stream: its wake-up, set when the station may have changed or at shutdown."""
        wake = asyncio.Event()
        self._open.add(wake)
        return wake

    def ended(self, wake: asyncio.Event) -> None:
        self._open.discard(wake)


STREAMS = web.AppKey("streams", StreamHub)


def install(app: web.Application, hub: StreamHub) -> None:
    app[STREAMS] = hub
    app.on_shutdown.append(hub.close)


def sse(event: str, data: Any) -> bytes:
    """One event; ``finite_dumps`` writes no line break (JSON escapes those in strings)."""
    return f"event: {event}\ndata: {finite_dumps(data)}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


async def station_stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[STREAMS]
    if request.method == "HEAD":
        return web.Response(headers=HEADERS)
    if hub.closing:
        raise ApiError(503, "shutting_down", "the controller is stopping")
    if hub.open_streams >= hub.max_streams:
        raise ApiError(
            503,
            "too_many_streams",
            f"{hub.max_streams} streams are open, the most allowed; retry later",
        )
    wake = hub.opened()
    response = web.StreamResponse(headers=HEADERS)
    try:
        await response.prepare(request)
        await _serve(request, response, hub, wake)
    except ConnectionError:
        pass  # the client went away
    finally:
        hub.ended(wake)
    return response


async def _serve(
    request: web.Request, response: web.StreamResponse, hub: StreamHub, wake: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    driver = hub.driver
    driver.tick()  # the battery as of now, like GET /station/status
    wake.clear()
    last = hub.snapshot()
    await response.write(sse("history", hub.history.view()) + sse("status", last))
    sent_at = written_at = loop.time()
    while not hub.closing:
        quiet = hub.keepalive - (loop.time() - written_at)
        try:
            await asyncio.wait_for(wake.wait(), max(quiet, 0.0))
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await response.write(KEEPALIVE)
            written_at = loop.time()
            continue
        # Coalesce: what changes meanwhile goes out with this one.
        await hub.pause(sent_at + hub.min_interval - loop.time())
        if hub.closing:
            return
        wake.clear()
        snapshot = hub.snapshot()
        if snapshot == last:
            continue
        last = snapshot
        await response.write(sse("status", snapshot))
        sent_at = written_at = loop.time()
