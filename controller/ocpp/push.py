"""The push loop: after every reallocation, send each charger the limits that changed.

Books (behaviour spec section 6, ocpp.md "Limits to the charger"):

* per OCPP session: the limit its charger last accepted (``confirmed``) and
  the one on the wire (``in_flight``). The most the charger may be applying is
  the larger of the two; that is what ``Station.held`` carries into the next
  allocation (see ``allocator.holding``), so power freed by a lowering is only
  handed out once the charger has accepted it.
* per charger: whether its failsafe default is installed.

One worker task per connected charger sends that charger's jobs one after
the other (OCPP allows one outstanding CALL anyway): the failsafe default
first, then lowerings, then raises. The value of a job is read from the
latest plan at the moment it is sent, never from an older one, so every limit
on the wire comes from a plan that counted every earlier send. Chargers are
served in parallel, so one that never answers only delays itself.

A lowering that is rejected, answered with a CALLERROR or unanswered keeps the
old limit in the books and is retried with exponential back-off. A call that
timed out may still have been applied: its value counts as held too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from controller.ocpp.link import CallOutcome, ChargerLink
from controller.ocpp.profiles import RateUnit, failsafe_profile, tx_profile
from controller.station import Station
from controller.store import StoreError
from protocol import CallAnswered, CallCancelled, CallErrored
from protocol.messages import ChargingProfileStatus, SetChargingProfileRequest

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
# After this many refusals (rejected, CALLERROR or no answer) with none ever
# accepted, a charger is taken for one that cannot be limited (ocpp.md, last rule).
REJECTIONS_BEFORE_UNLIMITABLE = 3


@dataclass(slots=True)
class ProfileBook:
    """What one OCPP session's charger holds."""

    session_id: str
    charger_id: str
    connector_id: int  # OCPP, 1-based
    transaction_id: int
    confirmed: int | None = None
    in_flight: int | None = None
    failures: int = 0
    retry_at: float = 0.0
    resend: bool = False
    # The charger has been told the transaction id (StartTransaction.conf sent): a
    # TxProfile naming it before then would be rejected (OCPP 1.6 section 5.16).
    announced: bool = True

    @property
    def held(self) -> int | None:
        values = [v for v in (self.confirmed, self.in_flight) if v is not None]
        return max(values) if values else None


@dataclass(slots=True)
class ChargerBook:
    charger_id: str
    rate: RateUnit
    default_installed: bool = False
    default_failures: int = 0
    default_retry_at: float = 0.0
    rejections: int = 0
    ever_accepted: bool = False
    sessions: dict[str, ProfileBook] = field(default_factory=dict)


def backoff(failures: int) -> float:
    return min(MAX_BACKOFF, 2.0 ** max(0, failures - 1))


class LimitPusher:
    def __init__(
        self,
        station: Station,
        *,
        request_reallocation: Callable[[], None],
        failsafe_kw: Callable[[str], float],
    ) -> None:
        self.station = station
        self._request_reallocation = request_reallocation
        self._failsafe_kw = failsafe_kw
        self.chargers: dict[str, ChargerBook] = {}
        self.sessions: dict[str, ProfileBook] = {}
        self._links: dict[str, ChargerLink] = {}
        self._work: dict[str, asyncio.Event] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.profiles_sent = 0
        self._progress = asyncio.Event()
        # Persistence hooks (set by the app): a book changed, something to journal.
        self.on_book_change: Callable[[ProfileBook], None] = lambda book: None
        self.on_event: Callable[..., None] = lambda *args, **kwargs: None
        self.clock: Callable[[], float] = lambda: 0.0
        self.commit: Callable[[], Awaitable[None]] = _nothing_to_commit
        # True while a reallocation is scheduled: its plan will supersede the current one.
        self.reallocation_pending: Callable[[], bool] = lambda: False
        for charger in station.chargers.values():
            config = charger.config
            self.chargers[config.id] = ChargerBook(
                charger_id=config.id,
                rate=RateUnit(
                    amps=config.rate_unit == "A", voltage=config.voltage, phases=config.phases
                ),
            )
        station.add_listener(self._on_reallocated)

    # -- books -----------------------------------------------------------

    def track(
        self,
        session_id: str,
        charger_id: str,
        connector_id: int,
        transaction_id: int,
        confirmed: int | None = None,
        *,
        announced: bool = True,
    ) -> None:
        book = ProfileBook(
            session_id, charger_id, connector_id, transaction_id, confirmed, announced=announced
        )
        self.sessions[session_id] = book
        self.chargers[charger_id].sessions[session_id] = book
        self._sync_held(book)
        self.on_book_change(book)
        self.wake(charger_id)

    def announce(self, session_id: str) -> None:
        """The StartTransaction.conf has gone out: the transaction's limits may follow."""
        book = self.sessions.get(session_id)
        if book is not None and not book.announced:
            book.announced = True
            self.wake(book.charger_id)

    def forget(self, session_id: str) -> None:
        book = self.sessions.pop(session_id, None)
        if book is not None:
            self.chargers[book.charger_id].sessions.pop(session_id, None)
            self.on_book_change(book)
        self.station.held.pop(session_id, None)

    def set_rate_unit(self, charger_id: str, amps: bool) -> None:
        book = self.chargers[charger_id]
        book.rate = RateUnit(amps=amps, voltage=book.rate.voltage, phases=book.rate.phases)

    def limits_confirmed(self, charger_id: str) -> bool:
        plan = self.station.plan
        for book in self.chargers[charger_id].sessions.values():
            if book.in_flight is not None or book.resend or book.failures:
                return False
            if (
                plan is not None
                and book.session_id in plan.effective
                and (plan.to_send(book.session_id, book.held) != book.confirmed)
            ):
                return False
        return True

    def _sync_held(self, book: ProfileBook) -> None:
        held = book.held
        if held is None:
            self.station.held.pop(book.session_id, None)
        else:
            self.station.held[book.session_id] = held

    # -- connections -----------------------------------------------------

    def attach(self, link: ChargerLink) -> None:
        """A charger (re)connected or (re)booted: reinstall its failsafe default and resend
        its limits. One worker per connection, however often this is called."""
        charger_id = link.charger_id
        book = self.chargers[charger_id]
        start_worker = self._links.get(charger_id) is not link
        if start_worker:
            self._links[charger_id] = link
            self._work[charger_id] = asyncio.Event()
        book.default_installed = False
        book.default_failures = 0
        book.default_retry_at = 0.0
        for session in book.sessions.values():
            session.resend = True
            session.failures = 0
            session.retry_at = 0.0
        if start_worker:
            link.spawn(self._worker(link), "push")
        self.wake(charger_id)

    def refresh_confirmations(self) -> None:
        """Update each charger's ``limits_confirmed`` for the status."""
        for charger_id, charger in self.station.chargers.items():
            charger.limits_confirmed = self.limits_confirmed(charger_id)

    def detach(self, link: ChargerLink) -> None:
        if self._links.get(link.charger_id) is link:
            del self._links[link.charger_id]
            self._work.pop(link.charger_id, None)
            timer = self._timers.pop(link.charger_id, None)
            if timer is not None:
                timer.cancel()

    def wake(self, charger_id: str) -> None:
        event = self._work.get(charger_id)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        for event in self._work.values():
            event.set()
        self._note_progress()

    def _on_reallocated(self) -> None:
        """Wake only the workers of chargers whose limits changed: with a thousand
        chargers connected, waking every one after each reallocation costs more
        than the reallocation itself."""
        plan = self.station.plan
        if plan is not None:
            to_wake = {
                book.charger_id
                for book in self.sessions.values()
                if book.in_flight is None
                and book.announced
                and book.session_id in plan.effective
                and (book.resend or plan.to_send(book.session_id, book.held) != book.confirmed)
            }
            for charger_id in to_wake:
                self.wake(charger_id)
        self._note_progress()

    def idle(self) -> bool:
        """Nothing on the wire and nothing due now for any connected charger. A limit
        waiting for its retry after a refusal does not count: see limits_confirmed."""
        now = asyncio.get_running_loop().time()
        for charger_id in self._links:
            book = self.chargers[charger_id]
            if not self.station.chargers[charger_id].smart_charging:
                continue
            if not book.default_installed and book.default_retry_at <= now:
                return False
            if any(s.in_flight is not None for s in book.sessions.values()):
                return False
            if self._next_job(book, now) is not None:
                return False
        return True

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate`` holds, checking it after each answered profile
        and each reallocation (for tests and the simulator's virtual clock)."""
        while not predicate():
            event = self._progress
            await event.wait()

    def _note_progress(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    # -- the worker ------------------------------------------------------

    async def _worker(self, link: ChargerLink) -> None:
        loop = asyncio.get_running_loop()
        work = self._work[link.charger_id]
        while True:
            work.clear()
            sent = await self._send_next(link, loop.time())
            if not sent:
                await work.wait()

    async def _send_next(self, link: ChargerLink, now: float) -> bool:
        """Send one job if one is due; False when there is nothing to do right now."""
        charger_id = link.charger_id
        charger = self.station.chargers[charger_id]
        book = self.chargers[charger_id]
        if not charger.smart_charging:
            return False
        if not book.default_installed:
            if book.default_retry_at <= now:
                await self._install_default(link, book)
                return True
            self._wake_at(charger_id, book.default_retry_at)
        job = self._next_job(book, now, lowerings_only=self.reallocation_pending())
        if job is None:
            return False
        session, kw = job
        await self._send_limit(link, book, session, kw)
        return True

    def _next_job(
        self, book: ChargerBook, now: float, *, lowerings_only: bool = False
    ) -> tuple[ProfileBook, int] | None:
        """The next limit to send on this charger: lowerings first. With a newer plan on
        its way, raises wait for it (they would be sent again a moment later)."""
        plan = self.station.plan
        if plan is None:
            return None
        lowerings: list[tuple[ProfileBook, int]] = []
        raises: list[tuple[ProfileBook, int]] = []
        earliest_retry: float | None = None
        for session in book.sessions.values():
            if (
                session.session_id not in plan.effective
                or session.in_flight is not None
                or not session.announced
            ):
                continue
            kw = plan.to_send(session.session_id, session.held)
            if kw == session.confirmed and not session.resend:
                continue
            if session.retry_at > now:
                earliest_retry = min(earliest_retry or session.retry_at, session.retry_at)
                continue
            held = session.held
            (lowerings if held is not None and kw < held else raises).append((session, kw))
        if earliest_retry is not None:
            self._wake_at(book.charger_id, earliest_retry)
        for queue in (lowerings, [] if lowerings_only else raises):
            if queue:
                return queue[0]
        return None

    def _wake_at(self, charger_id: str, when: float) -> None:
        """Wake the charger's worker at ``when``: one timer per charger, the earliest."""
        timer = self._timers.get(charger_id)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[charger_id] = asyncio.get_running_loop().call_at(
            when, self._timer_fired, charger_id
        )

    def _timer_fired(self, charger_id: str) -> None:
        self._timers.pop(charger_id, None)
        self.wake(charger_id)

    async def _install_default(self, link: ChargerLink, book: ChargerBook) -> None:
        request = failsafe_profile(self._failsafe_kw(link.charger_id), book.rate)
        outcome = await self._call(link, request)
        if _accepted(outcome):
            book.default_installed = True
            book.default_failures = 0
            book.ever_accepted = True
            book.rejections = 0
        else:
            book.default_failures += 1
            book.default_retry_at = asyncio.get_running_loop().time() + backoff(
                book.default_failures
            )
            self._wake_at(link.charger_id, book.default_retry_at)
            self._note_rejection(link.charger_id, book, outcome)
        self._note_progress()

    async def _send_limit(
        self, link: ChargerLink, book: ChargerBook, session: ProfileBook, kw: int
    ) -> None:
        raising = kw > (session.held or 0)
        session.in_flight = kw
        session.resend = False
        self._sync_held(session)
        self.on_book_change(session)
        if raising and not await self._made_durable(link, session):
            return
        request = tx_profile(session.connector_id, session.transaction_id, kw, book.rate)
        self.on_event(
            self.clock(),
            "limit.sent",
            charger_id=link.charger_id,
            session_id=session.session_id,
            kw=kw,
        )
        outcome = await self._call(link, request)
        self.on_event(
            self.clock(),
            f"limit.{_outcome_name(outcome)}",
            charger_id=link.charger_id,
            session_id=session.session_id,
            kw=kw,
        )
        before = session.held
        session.in_flight = None
        if _accepted(outcome):
            session.confirmed = kw
            session.failures = 0
            book.ever_accepted = True
            book.rejections = 0
        else:
            if not isinstance(outcome, CallAnswered) and not (
                isinstance(outcome, CallCancelled) and not outcome.sent
            ):
                # No answer: the charger may have applied it. Count it as held
                # (the larger of the two) and send again to know for sure.
                session.confirmed = max(session.confirmed or 0, kw)
            session.failures += 1
            session.resend = True
            session.retry_at = asyncio.get_running_loop().time() + backoff(session.failures)
            self._wake_at(link.charger_id, session.retry_at)
            self._note_rejection(link.charger_id, book, outcome)
        if session.session_id in self.sessions:
            self._sync_held(session)
            self.on_book_change(session)
            if session.held != before:
                self._request_reallocation()
        self._note_progress()

    async def _made_durable(self, link: ChargerLink, session: ProfileBook) -> bool:
        """Before a charger may apply a higher limit, the store must know it: after a
        crash the books must not count the charger at less than it may be drawing."""
        try:
            await self.commit()
        except StoreError:
            log.exception("cannot store a raise for %s; retrying later", link.charger_id)
            session.in_flight = None
            session.resend = True
            session.failures += 1
            session.retry_at = asyncio.get_running_loop().time() + backoff(session.failures)
            self._wake_at(link.charger_id, session.retry_at)
            self._sync_held(session)
            return False
        return True

    async def _call(self, link: ChargerLink, request: SetChargingProfileRequest) -> CallOutcome:
        self.profiles_sent += 1
        return await link.call(request)

    def _note_rejection(self, charger_id: str, book: ChargerBook, outcome: CallOutcome) -> None:
        """A charger that has never accepted a profile and keeps refusing (or never
        answers) may be drawing anything its hardware allows: budget it so."""
        if isinstance(outcome, CallCancelled):
            return  # the connection went away; that says nothing about the charger
        book.rejections += 1
        if not book.ever_accepted and book.rejections >= REJECTIONS_BEFORE_UNLIMITABLE:
            log.warning("%s accepts no charging profile: budgeting it at its maximum", charger_id)
            self.station.chargers[charger_id].smart_charging = False
            self.on_event(self.clock(), "charger.unlimitable", charger_id=charger_id)
            self._request_reallocation()


async def _nothing_to_commit() -> None:
    return None


def _outcome_name(outcome: CallOutcome) -> str:
    if isinstance(outcome, CallAnswered):
        status = getattr(outcome.response, "status", None)
        return "accepted" if status == ChargingProfileStatus.ACCEPTED else "rejected"
    if isinstance(outcome, CallCancelled):
        return "cancelled"
    if isinstance(outcome, CallErrored):
        return "error"
    return "timeout"


def _accepted(outcome: CallOutcome) -> bool:
    return (
        isinstance(outcome, CallAnswered)
        and getattr(outcome.response, "status", None) == ChargingProfileStatus.ACCEPTED
    )
