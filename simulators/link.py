"""One WebSocket driven through one :class:`protocol.Connection`: the charger's I/O shell.

Per received message: feed the connection, write what it produced, dispatch its events. Our
CALLs become awaitables (:meth:`OcppLink.call`) resolved by the connection's events; the
connection's call deadline is enforced on the charger's clock. The peer's CALLs run as tasks
(so that a held answer blocks nothing else) and the connection keeps their answers in arrival
order. Every outgoing frame passes through the fault layer (:func:`simulators.faults.mangle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from protocol import (
    CallAnswered,
    CallCancelled,
    CallError,
    CallErrored,
    CallReceived,
    CallResult,
    CallTimedOut,
    Connection,
    Event,
    InternalError,
    OcppError,
    OcppModel,
    parse_frame,
)
from simulators.clock import Clock
from simulators.faults import Faults, mangle

__all__ = ["CallFailed", "CallTimeout", "LinkClosed", "OcppLink", "Reply", "Transport"]

log = logging.getLogger(__name__)


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
    """The WebSocket is gone (or there is none): the call may or may not have arrived."""


class Transport(Protocol):
    """What the link needs of a WebSocket (websockets' ClientConnection has it)."""

    async def send(self, message: str) -> None: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer to the peer's CALL, and what to do once it is on its way (e.g. send
    the message a TriggerMessage asked for, which must follow its answer)."""

    response: OcppModel | OcppError
    then: Callable[[], Awaitable[None]] | None = None


# Called with the CALL and the charger-clock time at which it arrived.
Handler = Callable[[CallReceived, float], Awaitable[Reply]]


class OcppLink:
    def __init__(
        self,
        transport: Transport,
        connection: Connection,
        clock: Clock,
        faults: Faults,
        rng: random.Random,
        handler: Handler,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``on_change`` is called whenever frames or events went through (for waiters)."""
        self._transport = transport
        self._conn = connection
        self._clock = clock
        self._faults = faults
        self._rng = rng
        self._handler = handler
        self._on_change = on_change
        self._waiting: dict[str, asyncio.Future[OcppModel]] = {}
        self._outgoing: asyncio.Queue[str] = asyncio.Queue()
        self._deadline_moved = asyncio.Event()
        self._deadline_sleep: asyncio.Future[None] | None = None
        self._silenced: set[str] = set()  # the peer's CALLs whose answer must not leave
        self._group: asyncio.TaskGroup | None = None
        self._children: set[asyncio.Task[None]] = set()
        self.stats: Counter[str] = Counter()

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def run(self, session: Callable[[OcppLink], Awaitable[None]]) -> None:
        """Serve the socket until it closes, running ``session`` (boot, heartbeats, the
        charger's own messages) alongside."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._spawn(self._write_loop())
                self._spawn(self._timer_loop())
                self._spawn(self._run_session(session))
                await self._read_loop()
                # Cancel the helpers by hand rather than by raising out of the group: on
                # Python 3.11 a group that is already aborting swallows our own cancellation.
                self._group = None
                for task in list(self._children):
                    task.cancel()
        finally:
            self._group = None
            self._dispatch(self._conn.close())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._group is None:
            work.close()
            return
        task = self._group.create_task(work)
        self._children.add(task)
        task.add_done_callback(self._children.discard)

    async def call(self, request: OcppModel) -> OcppModel:
        """Send a CALL and return the peer's answer; CallFailed, CallTimeout or LinkClosed."""
        if self._conn.closed:
            raise LinkClosed("not connected")
        unique_id = self._conn.send_call(request, self._clock.now())
        future: asyncio.Future[OcppModel] = asyncio.get_running_loop().create_future()
        self._waiting[unique_id] = future
        self._flush()
        self._move_deadline()
        return await future

    async def close(self) -> None:
        await self._transport.close()

    # -- loops ----------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in self._transport:
                self.stats["received"] += 1
                events = self._conn.receive(message, self._clock.now())
                self._flush()
                self._move_deadline()
                self._dispatch(events)

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await self._outgoing.get()
                try:
                    await self._transport.send(frame)
                    self.stats["sent"] += 1
                finally:
                    self._outgoing.task_done()

    async def _timer_loop(self) -> None:
        while True:
            self._deadline_moved.clear()
            deadline = self._conn.next_deadline()
            if deadline is None:
                await self._deadline_moved.wait()
                continue
            delay = deadline - self._clock.now()
            if delay > 0:
                sleep = asyncio.ensure_future(self._clock.sleep(delay))
                self._deadline_sleep = sleep
                try:
                    await self._first_of(sleep, self._deadline_moved.wait())
                finally:
                    self._deadline_sleep = None
                continue
            events = self._conn.expire(self._clock.now())
            self._flush()
            self._dispatch(events)

    def _move_deadline(self) -> None:
        self._deadline_moved.set()
        # Cancelled here and now rather than when the timer loop next runs: on a virtual
        # clock a forgotten deadline would otherwise still show as the clock's next wakeup.
        if self._deadline_sleep is not None:
            self._deadline_sleep.cancel()

    async def _run_session(self, session: Callable[[OcppLink], Awaitable[None]]) -> None:
        with contextlib.suppress(LinkClosed):
            await session(self)

    @staticmethod
    async def _first_of(*waits: Awaitable[object]) -> None:
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    # -- events ---------------------------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            self.stats[type(event).__name__] += 1
            match event:
                case CallReceived():
                    self._spawn(self._answer(event, self._clock.now()))
                case CallAnswered(unique_id=uid, response=response):
                    self._settle(uid, response)
                case CallErrored(unique_id=uid, action=action, error_code=code, description=text):
                    self._settle(uid, CallFailed(action, code, text))
                case CallTimedOut(unique_id=uid, action=action):
                    self._settle(uid, CallTimeout(action))
                case CallCancelled(unique_id=uid, action=action):
                    self._settle(uid, LinkClosed(action))
                case _:  # CallRejected, FrameRejected, UnmatchedAnswer: counted, nothing to do
                    log.debug("link event %s", event)
        if events and self._on_change is not None:
            self._on_change()

    def _settle(self, unique_id: str, outcome: OcppModel | Exception) -> None:
        future = self._waiting.pop(unique_id, None)
        if future is None or future.done():
            return
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def _answer(self, event: CallReceived, received_at: float) -> None:
        try:
            reply = await self._handler(event, received_at)
        except OcppError as error:
            reply = Reply(error)
        except Exception:
            log.exception("handler for %s failed", event.action)
            reply = Reply(InternalError())
        if self._conn.closed:
            return
        if event.action in self._faults.unanswered:
            self._silenced.add(event.unique_id)
        if isinstance(reply.response, OcppError):
            self._conn.send_error(event.unique_id, reply.response)
        else:
            self._conn.send_result(event.unique_id, reply.response)
        self._flush()
        if reply.then is not None:
            # What follows an answer (a reset, a triggered message) waits until it is written.
            await self._outgoing.join()
            with contextlib.suppress(LinkClosed, CallFailed, CallTimeout):
                await reply.then()

    def _flush(self) -> None:
        for frame in self._conn.data_to_send():
            if self._silenced and self._is_silenced(frame):
                self.stats["silenced"] += 1
                continue
            wire = mangle(frame, self._faults, self._rng)
            self.stats["dropped"] += len(wire) == 0
            for text in wire:
                self._outgoing.put_nowait(text)
        if self._on_change is not None:
            self._on_change()

    def _is_silenced(self, frame: str) -> bool:
        try:
            parsed = parse_frame(frame)
        except OcppError:
            return False
        if isinstance(parsed, CallResult | CallError) and parsed.unique_id in self._silenced:
            self._silenced.discard(parsed.unique_id)
            return True
        return False
