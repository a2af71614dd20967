"""The asyncio shell around the station core: feed it events, carry out its commands.

Everything that changes the station goes through :meth:`Driver.submit` (REST handlers,
OCPP handlers, timers, commit outcomes): the core handles the event and returns commands,
which are carried out here, in order:

* ``Reply`` goes to its ``reply_to``: a :class:`ReplyTarget` (a REST request waiting on a
  future, an OCPP CALL waiting for its CALLRESULT).
* ``Persist`` goes to the :class:`controller.writer.CommitWriter`, whose outcome comes
  back as ``CommitDone`` / ``CommitFailed``.
* ``SendProfile`` / ``ReadConfiguration`` go to the charger's current link; the outcome
  comes back as ``ProfileAnswered`` / ``ConfigurationRead``.
* ``WakeAt`` sets the one wake-up timer on the clock; ``ScheduleReallocation`` asks for a
  ``Reallocate`` a few milliseconds later, so that the events arriving meanwhile (a burst
  of starts, the answers of a round of profiles) share one allocation.

Events submitted while commands are being carried out (an outcome reported at once) wait
their turn, so the core never sees an event in the middle of another.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol

from controller.core.commands import (
    Answer,
    Command,
    Notice,
    Persist,
    ReadConfiguration,
    Reply,
    ScheduleReallocation,
    SendProfile,
    WakeAt,
)
from controller.core.events import (
    CommitDone,
    CommitFailed,
    ConfigurationRead,
    Event,
    Flush,
    ProfileAnswered,
    ProfileResult,
    Reallocate,
    Tick,
)
from controller.core.station import StationCore
from controller.metrics import Metrics
from controller.repository import Repository
from controller.writer import CommitWriter
from protocol import CallAnswered, CallCancelled, CallErrored, CallTimedOut
from protocol.messages import ChargingProfileStatus, GetConfigurationResponse
from shell.clock import Clock, Timer
from shell.link import CallOutcome, OcppLink

log = logging.getLogger(__name__)

# Events within this many seconds share one reallocation, yet limits follow within
# milliseconds. A pause for the processor, not a deadline of the station: the event
# loop's own time, whatever the station's clock says.
COALESCE_WINDOW = 0.005


class ReplyTarget(Protocol):
    """Whoever waits for the answer to a request."""

    def deliver(self, answer: Answer) -> None: ...

    def fail(self) -> None:
        """The request could not be handled (a bug: the log has the traceback)."""
        ...


class PendingAnswer:
    """A REST request's wait for its answer."""

    def __init__(self) -> None:
        self.future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    def deliver(self, answer: Answer) -> None:
        if not self.future.done():
            self.future.set_result(answer)

    def fail(self) -> None:
        if not self.future.done():
            self.future.set_exception(RuntimeError("the request could not be handled"))


def profile_result(outcome: CallOutcome) -> ProfileResult:
    match outcome:
        case CallAnswered(response=response):
            status = getattr(response, "status", None)
            if status == ChargingProfileStatus.ACCEPTED:
                return ProfileResult.ACCEPTED
            return ProfileResult.REJECTED
        case CallErrored():
            return ProfileResult.ERROR
        case CallTimedOut():
            return ProfileResult.TIMEOUT
        case CallCancelled(sent=sent):
            return ProfileResult.LOST if sent else ProfileResult.NOT_SENT


def configuration_keys(outcome: CallOutcome) -> dict[str, str] | None:
    if isinstance(outcome, CallAnswered) and isinstance(outcome.response, GetConfigurationResponse):
        return {kv.key: kv.value or "" for kv in outcome.response.configuration_key or []}
    return None


class Driver:
    def __init__(
        self,
        core: StationCore,
        clock: Clock,
        repository: Repository,
        *,
        commit_executor: Executor | None = None,
    ) -> None:
        self.core = core
        self.clock = clock
        self.metrics = Metrics(core)
        self.writer = CommitWriter(
            repository,
            on_outcome=self._commit_outcome,
            before_batch=self._before_batch,
            commit_timer=self.metrics.commit_seconds.time,
            executor=commit_executor,
        )
        self._links: dict[str, tuple[int, OcppLink]] = {}
        # None: a reallocation the core asks for runs COALESCE_WINDOW later. Otherwise
        # reallocations are held (True: one is due) until run_held_reallocation().
        self._reallocation_held: bool | None = None
        self._queue: deque[Event] = deque()
        self._running = False
        self._wakeup: Timer | None = None
        self._progress = asyncio.Event()
        self._waiters = 0
        # Called each time the core has handled a burst of events (the dashboard's stream
        # and history): it may have changed.
        self._subscribers: list[Callable[[], None]] = []
        self._closed = False

    # -- events in ---------------------------------------------------------------------------

    def submit(self, event: Event) -> None:
        """Hand the core an event and carry out what it asks (nothing once closed: the
        database is then closed too)."""
        if self._closed:
            return
        self._queue.append(event)
        if self._running:
            return
        self._running = True
        try:
            while self._queue:
                self._handle(self._queue.popleft())
        finally:
            self._running = False
        if self._waiters:
            progress, self._progress = self._progress, asyncio.Event()
            progress.set()
        for callback in tuple(self._subscribers):
            callback()

    def _handle(self, event: Event) -> None:
        try:
            if type(event) is Reallocate:
                with self.metrics.allocation_seconds.time():
                    commands = self.core.handle(event)
            else:
                commands = self.core.handle(event)
        except Exception:
            log.exception("the station core failed on %s", type(event).__name__)
            target = getattr(event, "reply_to", None)
            if target is not None:
                target.fail()
            return
        self.execute(commands)

    async def request(self, build: Callable[[PendingAnswer], Event]) -> Answer:
        """Submit the event ``build`` makes for a new reply target; wait for the answer."""
        pending = PendingAnswer()
        self.submit(build(pending))
        return await pending.future

    def now(self) -> float:
        return self.clock.now()

    def tick(self) -> None:
        """Bring the core up to the clock's present (the battery, expiries, retries)."""
        self.submit(Tick(self.clock.now()))

    # -- commands out ------------------------------------------------------------------------

    def execute(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case Persist():
                    self.writer.add(command)
                case Reply(reply_to=target, answer=answer):
                    if target is not None:
                        target.deliver(answer)  # type: ignore[attr-defined]
                case SendProfile():
                    self._send(command)
                case ReadConfiguration():
                    self._send(command)
                case WakeAt(when=when):
                    self._set_wakeup(when)
                case ScheduleReallocation():
                    if self._reallocation_held is None:
                        loop = asyncio.get_running_loop()
                        loop.call_later(COALESCE_WINDOW, self._reallocate)
                    else:
                        self._reallocation_held = True
                case Notice(message=message, charger_id=charger_id, session_id=session_id):
                    ids = {"charger_id": charger_id, "session_id": session_id}
                    level = logging.WARNING if command.warning else logging.INFO
                    log.log(level, "%s", message, extra=ids)

    def _send(self, command: SendProfile | ReadConfiguration) -> None:
        current = self._links.get(command.charger_id)
        charger_id, ref = command.charger_id, command.ref

        def answered(outcome: CallOutcome) -> None:
            now = self.clock.now()
            if isinstance(command, SendProfile):
                result = profile_result(outcome)
                self.metrics.profile_answered(command.request, result)
                self.submit(ProfileAnswered(now, charger_id, ref, result))
            else:
                self.submit(ConfigurationRead(now, charger_id, ref, configuration_keys(outcome)))

        if current is None or current[0] != command.link or current[1].connection.closed:
            # The connection it was meant for is gone (or going: its calls are being ended
            # now, and the core hears of the close right after): it was never sent. Answered
            # on the next turn of the loop, so that the core, which would send a limit again
            # at once, first learns the charger is gone.
            loop = asyncio.get_running_loop()
            loop.call_soon(answered, CallCancelled("", "", command.request, sent=False))
            return
        current[1].send_call(command.request, answered)

    def _set_wakeup(self, when: float | None) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if when is not None:
            self._wakeup = self.clock.call_at(when, self._wake)

    def _wake(self) -> None:
        self._wakeup = None
        self.tick()

    def _reallocate(self) -> None:
        if not self._closed:
            self.submit(Reallocate(self.clock.now()))

    def hold_reallocations(self) -> None:
        """From now on a reallocation the core asks for waits for run_held_reallocation()
        instead of a window of real time: a simulated day runs it once a step's messages are
        all answered, so that which events share an allocation does not depend on the
        machine's speed."""
        self._reallocation_held = bool(self._reallocation_held)

    @property
    def reallocation_due(self) -> bool:
        """A held reallocation is waiting for run_held_reallocation()."""
        return bool(self._reallocation_held)

    def run_held_reallocation(self) -> None:
        if self._reallocation_held:
            self._reallocation_held = False
            self._reallocate()

    # -- links -------------------------------------------------------------------------------

    def attach(self, charger_id: str, number: int, link: OcppLink) -> None:
        self._links[charger_id] = (number, link)

    def detach(self, charger_id: str, number: int) -> None:
        current = self._links.get(charger_id)
        if current is not None and current[0] == number:
            del self._links[charger_id]

    def link(self, charger_id: str) -> OcppLink | None:
        current = self._links.get(charger_id)
        return None if current is None else current[1]

    # -- persistence -------------------------------------------------------------------------

    def _before_batch(self) -> None:
        self.submit(Flush(self.clock.now()))

    def _commit_outcome(self, proposals: tuple[int, ...], error: Exception | None) -> None:
        if not proposals:
            return
        now = self.clock.now()
        self.submit(CommitDone(now, proposals) if error is None else CommitFailed(now, proposals))

    async def flush(self) -> None:
        """Write everything changed so far (for the periodic write-behind, and before the
        history is read)."""
        await self.writer.flush()

    # -- waiting -----------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate`` holds, checking it after each event the core handled."""
        self._waiters += 1
        try:
            while not predicate():
                progress = self._progress
                await progress.wait()
        finally:
            self._waiters -= 1

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (quick, and submitting nothing) after every burst of
        events the core handled; returns what ends the subscription."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def close(self) -> None:
        """Write what is left, then stop: later events are ignored."""
        self._set_wakeup(None)
        try:
            await self.writer.close()
        finally:
            self._closed = True
            self._set_wakeup(None)
