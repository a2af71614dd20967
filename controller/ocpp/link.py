"""One charger's OCPP session: the thin shell around ``protocol.Connection``.

Per message: the channel hands over the text, the sans-I/O connection turns
it into events, the events are dispatched, and whatever the connection
produced is written at once. Handlers that need no I/O answer synchronously;
the transaction messages, which must be committed before they are answered,
return an awaitable that runs in a task owned by this link. The connection
keeps replies in arrival order whatever order they are ready in.

Our own CALLs (``call``) are queued by the connection (one outstanding per
OCPP-J 4.1.1) and awaited by whoever made them, never by a handler, so a slow
outgoing call cannot block answering the charger. Deadlines are enforced with
the event loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from controller.ocpp.transport import WebSocketChannel
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
# A handler answers at once, or with an awaitable when it must wait (for a commit).
RequestHandler = Callable[["ChargerLink", OcppModel], OcppModel | Awaitable[OcppModel]]


class ChargerLink:
    def __init__(
        self,
        charger_id: str,
        channel: WebSocketChannel,
        handler: RequestHandler,
        *,
        call_timeout: float,
        on_closed: Callable[[ChargerLink], None] = lambda link: None,
    ) -> None:
        self.charger_id = charger_id
        self.channel = channel
        self._handler = handler
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._connection = Connection(Role.CENTRAL_SYSTEM, call_timeout=call_timeout)
        self._pending: dict[str, asyncio.Future[CallOutcome]] = {}
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
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
        self._flush()
        return await future

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run work tied to this connection; it is cancelled when the connection ends."""
        task = asyncio.create_task(coroutine, name=f"{self.charger_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def close(self, reason: str = "") -> None:
        self.channel.close(1000, reason)

    # -- the channel's callbacks -----------------------------------------

    def on_text(self, text: str) -> None:
        for event in self._connection.receive(text, self._loop.time()):
            self._on_event(event)
        self._flush()

    def on_closed(self) -> None:
        for event in self._connection.close():
            self._resolve(event)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        self.closed.set()
        self._on_closed(self)

    # -- internals -------------------------------------------------------

    def _flush(self) -> None:
        for frame in self._connection.data_to_send():
            if not self.channel.send_text(frame):
                break
        self._watch_deadline()

    def _watch_deadline(self) -> None:
        deadline = self._connection.next_deadline()
        if deadline == self._deadline:
            return
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._deadline = deadline
        if deadline is not None:
            self._deadline_timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._deadline_timer = None
        self._deadline = None
        for event in self._connection.expire(self._loop.time()):
            self._resolve(event)
        self._flush()

    def _on_event(self, event: Event) -> None:
        match event:
            case CallReceived(unique_id=unique_id, action=action, request=request):
                self._answer(unique_id, action, request)
            case CallAnswered() | CallErrored() | CallTimedOut() | CallCancelled():
                self._resolve(event)
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

    def _answer(self, unique_id: str, action: str, request: OcppModel) -> None:
        try:
            result = self._handler(self, request)
        except OcppError as error:
            self._connection.send_error(unique_id, error)
            return
        except Exception:
            # The charger learns only that something failed on our side.
            log.exception("%s: handling %s failed", self.charger_id, action)
            self._connection.send_error(unique_id, InternalError())
            return
        if inspect.isawaitable(result):
            self.spawn(self._answer_later(unique_id, action, result), action)
        else:
            self._connection.send_result(unique_id, result)

    async def _answer_later(
        self, unique_id: str, action: str, result: Awaitable[OcppModel]
    ) -> None:
        try:
            response = await result
        except OcppError as error:
            self._connection.send_error(unique_id, error)
        except Exception:
            log.exception("%s: handling %s failed", self.charger_id, action)
            self._connection.send_error(unique_id, InternalError())
        else:
            self._connection.send_result(unique_id, response)
        self._flush()

    def _resolve(self, event: Event) -> None:
        unique_id = getattr(event, "unique_id", None)
        future = self._pending.pop(unique_id, None) if isinstance(unique_id, str) else None
        if future is not None and not future.done():
            future.set_result(event)  # type: ignore[arg-type]
