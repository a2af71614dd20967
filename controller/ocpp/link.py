"""One charger's WebSocket: the thin shell around ``protocol.Connection``.

Per connection: receive a frame, feed the sans-I/O connection, send what it
produced, dispatch its events. The charger's CALLs are handled one at a time
in arrival order by the reader; our own CALLs (``call``) are queued by the
connection (one outstanding per OCPP-J 4.1.1) and awaited by whoever made
them, never by the reader, so a slow outgoing call cannot block answering
the charger. Deadlines are enforced with the event loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from protocol import (
    CallAnswered,
    CallCancelled,
    CallErrored,
    CallReceived,
    CallRejected,
    CallTimedOut,
    Connection,
    Event,
    FrameRejected,
    InternalError,
    OcppError,
    Role,
    UnmatchedAnswer,
)
from protocol.messages.base import OcppModel

log = logging.getLogger(__name__)

CallOutcome = CallAnswered | CallErrored | CallTimedOut | CallCancelled
RequestHandler = Callable[["ChargerLink", OcppModel], Awaitable[OcppModel]]


class ChargerLink:
    def __init__(
        self,
        charger_id: str,
        websocket: ServerConnection,
        handler: RequestHandler,
        *,
        call_timeout: float,
    ) -> None:
        self.charger_id = charger_id
        self.websocket = websocket
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._connection = Connection(Role.CENTRAL_SYSTEM, call_timeout=call_timeout)
        self._pending: dict[str, asyncio.Future[CallOutcome]] = {}
        self._write_lock = asyncio.Lock()
        self._deadline_moved = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = asyncio.Event()

    # -- our calls -------------------------------------------------------

    async def call(self, request: OcppModel) -> CallOutcome:
        """Send a CALL to the charger and wait for its answer, error, timeout or our close."""
        if self._connection.closed:
            return CallCancelled("", "", request, sent=False)
        unique_id = self._connection.send_call(request, self._loop.time())
        future: asyncio.Future[CallOutcome] = self._loop.create_future()
        self._pending[unique_id] = future
        self._deadline_moved.set()
        await self._flush()
        return await future

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        """Run work tied to this connection; it is cancelled when the connection ends."""
        task = asyncio.create_task(coroutine, name=f"{self.charger_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # -- the connection's life -------------------------------------------

    async def run(self) -> None:
        """Read until the charger goes away; then cancel everything tied to it."""
        self.spawn(self._expire_calls(), "deadlines")
        try:
            async for message in self.websocket:
                events = self._connection.receive(message, self._loop.time())
                for event in events:
                    await self._on_event(event)
                await self._flush()
        except ConnectionClosed:
            pass
        finally:
            await self._shutdown()

    async def close(self, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(1000, reason)

    async def _shutdown(self) -> None:
        for event in self._connection.close():
            self._resolve(event)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.closed.set()

    async def _flush(self) -> None:
        async with self._write_lock:
            for frame in self._connection.data_to_send():
                try:
                    await self.websocket.send(frame)
                except ConnectionClosed:
                    return

    async def _expire_calls(self) -> None:
        while True:
            self._deadline_moved.clear()
            deadline = self._connection.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._deadline_moved.wait(), timeout)
            for event in self._connection.expire(self._loop.time()):
                self._resolve(event)
            await self._flush()

    # -- events ----------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        match event:
            case CallReceived(unique_id=unique_id, action=action, request=request):
                await self._answer(unique_id, action, request)
            case CallAnswered() | CallErrored() | CallTimedOut() | CallCancelled():
                self._resolve(event)
                self._deadline_moved.set()
            case UnmatchedAnswer(unique_id=unique_id):
                log.warning("%s: answer to unknown call %r ignored", self.charger_id, unique_id)
            case CallRejected(unique_id=unique_id, error=error):
                log.info(
                    "%s: call %r rejected: %s %s",
                    self.charger_id,
                    unique_id,
                    error.code,
                    error.description,
                )
            case FrameRejected(error=error):
                log.info("%s: unreadable frame ignored: %s", self.charger_id, error.description)

    async def _answer(self, unique_id: str, action: str, request: OcppModel) -> None:
        try:
            response = await self._handler(self, request)
        except OcppError as error:
            self._connection.send_error(unique_id, error)
        except Exception:
            # The charger learns only that something failed on our side.
            log.exception("%s: handling %s failed", self.charger_id, action)
            self._connection.send_error(unique_id, InternalError())
        else:
            self._connection.send_result(unique_id, response)

    def _resolve(self, event: Event) -> None:
        unique_id = getattr(event, "unique_id", None)
        future = self._pending.pop(unique_id, None) if isinstance(unique_id, str) else None
        if future is not None and not future.done():
            future.set_result(event)  # type: ignore[arg-type]
