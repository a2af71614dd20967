"""One OCPP-J connection driven by asyncio: the thin shell around :class:`protocol.Connection`.

Per received message: feed the connection, dispatch the events it reports, write whatever
it produced. The owner supplies three things: ``send`` (write one text frame; the transport
decides how), the clock (call deadlines are absolute times on it) and a handler for the
peer's CALLs.

The handler answers a CALL in one of three ways: by returning the response (or an
:class:`protocol.OcppError`, sent as a CALLERROR), by returning an awaitable of it (run in a
task this link owns and cancels when the connection ends), or by returning None and calling
:meth:`OcppLink.answer` later (the controller answers a StartTransaction once it is
committed). The connection keeps answers in the order the CALLs arrived, whatever order they
are ready in. Whatever else escapes a handler reaches the peer as ``InternalError``, without
internals.

Our own CALLs (:meth:`OcppLink.call`, or :meth:`OcppLink.send_call` with a callback) are
queued by the connection, one outstanding per OCPP-J 1.6 section 4.1.1. Every call ends in
exactly one :data:`CallOutcome`: answered, errored, timed out, or cancelled because the
connection ended (``sent`` tells whether it was on the wire). That is the one way a call's
result is reported; :func:`response_of` turns it into the response or an exception for code
that prefers to raise.

The owner may also limit what the peer sends (``admit``, asked once per message): a CALL in
a message it refuses is answered ``GenericError`` "rate limited" without reaching the handler,
while answers to our own calls are still taken, since they confirm what we sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

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
    GenericError,
    InternalError,
    OcppError,
    OcppModel,
    UnmatchedAnswer,
    action_of,
)
from shell.clock import Clock, Timer

__all__ = [
    "RATE_LIMITED",
    "Admission",
    "Answer",
    "CallFailed",
    "CallHandler",
    "CallOutcome",
    "CallTimeout",
    "LinkClosed",
    "OcppLink",
    "response_of",
]

log = logging.getLogger(__name__)

CallOutcome = CallAnswered | CallErrored | CallTimedOut | CallCancelled
Answer = OcppModel | OcppError
# Given the link and the peer's CALL: the answer, an awaitable of it, or None (answer later).
CallHandler = Callable[["OcppLink", CallReceived], Answer | Awaitable[Answer] | None]
OutcomeCallback = Callable[[CallOutcome], None]
# Given the clock's time: whether the peer's next message may be handled.
Admission = Callable[[float], bool]

RATE_LIMITED = "rate limited"


class CallFailed(Exception):
    """The peer answered our CALL with a CALLERROR (or with something unusable)."""

    def __init__(self, action: str, error_code: str, description: str = "") -> None:
        super().__init__(f"{action}: {error_code} {description}".rstrip())
        self.action = action
        self.error_code = error_code
        self.description = description


class CallTimeout(Exception):
    """No answer before the call timeout (OCPP-J 1.6 section 4.1.1)."""


class LinkClosed(Exception):
    """The connection is gone (or there is none): the call may or may not have arrived."""


def response_of(outcome: CallOutcome) -> OcppModel:
    """The peer's response, or CallFailed / CallTimeout / LinkClosed."""
    match outcome:
        case CallAnswered(response=response):
            return response
        case CallErrored(action=action, error_code=code, description=text):
            raise CallFailed(action, code, text)
        case CallTimedOut(action=action):
            raise CallTimeout(action)
        case CallCancelled(action=action):
            raise LinkClosed(action)


class OcppLink:
    def __init__(
        self,
        connection: Connection,
        *,
        send: Callable[[str], object],
        clock: Clock,
        handler: CallHandler,
        name: str = "",
        on_event: Callable[[Event], None] | None = None,
        on_closed: Callable[[OcppLink], None] | None = None,
        admit: Admission | None = None,
        on_error_sent: Callable[[OcppError], None] | None = None,
    ) -> None:
        """``send`` writes one frame (its result is ignored). ``on_event`` sees every event
        the connection reports, after the link has dealt with it (for counting and
        logging), except the CALLs ``admit`` refused; ``on_closed`` runs once when the
        connection ends; ``on_error_sent`` sees every CALLERROR the link answers with (those
        the connection makes itself are reported to ``on_event`` as ``CallRejected``)."""
        self.connection = connection
        self.name = name
        self._send = send
        self._clock = clock
        self._handler = handler
        self._on_event = on_event
        self._on_closed = on_closed
        self._admit = admit
        self._on_error_sent = on_error_sent
        self._waiting: dict[str, OutcomeCallback] = {}
        self._deadline: float | None = None
        self._deadline_timer: Timer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def closed(self) -> bool:
        return self.connection.closed

    # -- our calls ---------------------------------------------------------------------------

    def send_call(self, request: OcppModel, on_outcome: OutcomeCallback) -> None:
        """Queue a CALL; ``on_outcome`` runs once with its outcome (at once, with an unsent
        CallCancelled, when the connection has already ended)."""
        if self.connection.closed:
            on_outcome(CallCancelled("", action_of(request).action, request, sent=False))
            return
        unique_id = self.connection.send_call(request, self._clock.now())
        self._waiting[unique_id] = on_outcome
        self._flush()

    def call(self, request: OcppModel) -> asyncio.Future[CallOutcome]:
        """Queue a CALL and return a future of its outcome."""
        future: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()

        def settle(outcome: CallOutcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self.send_call(request, settle)
        return future

    # -- the peer's calls --------------------------------------------------------------------

    def answer(self, unique_id: str, answer: Answer) -> None:
        """Answer the peer's CALL ``unique_id`` (a no-op once the connection ended)."""
        self._queue_answer(unique_id, answer)
        self._flush()

    def _queue_answer(self, unique_id: str, answer: Answer) -> None:
        if isinstance(answer, OcppError):
            if self._on_error_sent is not None:
                self._on_error_sent(answer)
            self.connection.send_error(unique_id, answer)
        else:
            self.connection.send_result(unique_id, answer)

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run work tied to this connection; it is cancelled when the connection ends."""
        task = asyncio.create_task(coroutine, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    # -- the transport's side ----------------------------------------------------------------

    def receive(self, text: str | bytes) -> None:
        """One message from the peer."""
        now = self._clock.now()
        admitted = self._admit is None or self._admit(now)
        connection = self.connection
        for event in connection.receive(text, now):
            if connection.closed:
                break  # the transport gave up on the peer while this message was handled
            if admitted or type(event) is not CallReceived:
                self._dispatch(event)
            else:
                # Over the peer's rate: answered at once, not handled.
                self._queue_answer(event.unique_id, GenericError(RATE_LIMITED))
        self._flush()

    def connection_lost(self) -> None:
        """The transport is gone: every call of ours ends (cancelled), owned tasks stop."""
        if self.connection.closed:
            return
        for event in self.connection.close():
            self._dispatch(event)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._on_closed is not None:
            self._on_closed(self)

    # The controller's transport calls its handler's on_text / on_closed.
    on_text = receive
    on_closed = connection_lost

    # -- internals ---------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        match event:
            case CallReceived():
                self._handle_call(event)
            case CallAnswered() | CallErrored() | CallTimedOut() | CallCancelled():
                callback = self._waiting.pop(event.unique_id, None)
                if callback is not None:
                    callback(event)
            case UnmatchedAnswer() | CallRejected() | FrameRejected():
                pass  # nothing to do here; on_event may count or log them
        if self._on_event is not None:
            self._on_event(event)

    def _handle_call(self, event: CallReceived) -> None:
        try:
            result = self._handler(self, event)
        except OcppError as error:
            result = error
        except Exception:
            # The peer learns only that something failed on our side.
            log.exception("%s: handling %s failed", self.name, event.action)
            result = InternalError()
        if result is None:
            return
        if isinstance(result, OcppModel | OcppError):
            # Answered at once: it leaves with whatever else this message produced.
            self._queue_answer(event.unique_id, result)
        else:
            self.spawn(self._answer_later(event, result), event.action)

    async def _answer_later(self, event: CallReceived, result: Awaitable[Answer]) -> None:
        try:
            answer = await result
        except OcppError as error:
            answer = error
        except Exception:
            log.exception("%s: handling %s failed", self.name, event.action)
            answer = InternalError()
        self.answer(event.unique_id, answer)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def _flush(self) -> None:
        for frame in self.connection.data_to_send():
            self._send(frame)
        self._watch_deadline()

    def _watch_deadline(self) -> None:
        deadline = self.connection.next_deadline()
        if deadline == self._deadline:
            return
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._deadline = deadline
        if deadline is not None:
            self._deadline_timer = self._clock.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._deadline_timer = None
        self._deadline = None
        for event in self.connection.expire(self._clock.now()):
            self._dispatch(event)
        self._flush()
