"""The charger's own messages, delivered in order, one answered message at a time.

A charger keeps its transaction messages (StartTransaction, StopTransaction, MeterValues of a
transaction) until the central system answers them, across reconnections and with identical
content on resend (OCPP 1.6 sections 3.6 and 4.8: they must be delivered, in order). A
CALLERROR is retried TransactionMessageAttempts times, TransactionMessageRetryInterval apart
(9.1.36-37); a timeout is retried without counting as an attempt. Other messages are sent while
online and dropped otherwise.

Everything here runs inside the link's dispatch: the outcome of a message is acted on (its
``on_outcome``, then the next message goes out) while the answer is being dispatched, before
the link handles any frame the central system wrote after it. A charger that learns its
transactionId from StartTransaction.conf therefore knows it when the SetChargingProfile
written right behind that answer is handled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from protocol import CallCancelled, CallErrored, CallTimedOut, OcppModel, action_of
from shell.clock import Clock, Timer
from shell.link import CallOutcome, OcppLink

__all__ = ["Message", "Outbox"]


@dataclass(slots=True)
class Message:
    """One of the charger's messages. ``build`` runs once, when the message first leaves (a
    MeterValues of a transaction then knows its transactionId), so a resend is identical.
    ``on_outcome`` runs once with the final outcome: answered, given up, or cancelled (dropped
    while offline, or the connection ended before the answer)."""

    build: Callable[[], OcppModel]
    transactional: bool = False
    on_outcome: Callable[[CallOutcome], None] | None = None
    request: OcppModel | None = None
    errors: int = 0  # CALLERRORs so far

    def built(self) -> OcppModel:
        if self.request is None:
            self.request = self.build()
        return self.request


class Outbox:
    def __init__(
        self, clock: Clock, setting: Callable[[str], int], on_change: Callable[[], None]
    ) -> None:
        """``setting`` reads a configuration key (the retry keys may change at any time);
        ``on_change`` runs whenever a message leaves the outbox."""
        self._clock = clock
        self._setting = setting
        self._on_change = on_change
        self._queue: deque[Message] = deque()
        self._link: OcppLink | None = None
        self._in_flight: Message | None = None
        self._retry: Timer | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, message: Message) -> None:
        if not message.transactional and self._link is None:
            self._cancel(message)
            return
        self._queue.append(message)
        self._send_next()

    def attach(self, link: OcppLink) -> None:
        """Online on ``link``: deliver from the head of the queue."""
        self._link = link
        self._send_next()

    def detach(self) -> None:
        """The connection ended: transaction messages wait for the next one (resent at once
        then), the others are dropped."""
        self._link = None
        self._in_flight = None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        kept: deque[Message] = deque()
        for message in self._queue:
            if message.transactional:
                kept.append(message)
            else:
                self._cancel(message)
        dropped = len(kept) != len(self._queue)
        self._queue = kept
        if dropped:
            self._on_change()

    def _send_next(self) -> None:
        link = self._link
        if link is None or link.closed or self._in_flight is not None or self._retry is not None:
            return
        if not self._queue:
            return
        message = self._in_flight = self._queue[0]
        sent_at = self._clock.now()
        link.send_call(message.built(), lambda outcome: self._settle(message, sent_at, outcome))

    def _settle(self, message: Message, sent_at: float, outcome: CallOutcome) -> None:
        if self._in_flight is not message:
            return
        self._in_flight = None
        match outcome:
            case CallCancelled() if message.transactional:
                return  # it stays at the head, for the next connection
            case CallErrored() | CallTimedOut() if message.transactional:
                retry_at = self._retry_at(message, outcome, sent_at)
                if retry_at is not None:
                    if retry_at <= self._clock.now():
                        self._send_next()
                    else:
                        self._retry = self._clock.call_at(retry_at, self._retry_due)
                    return
        self._queue.popleft()
        if message.on_outcome is not None:
            message.on_outcome(outcome)
        self._on_change()
        self._send_next()

    def _retry_at(
        self, message: Message, outcome: CallErrored | CallTimedOut, sent_at: float
    ) -> float | None:
        """When to send a transaction message again, None to give up; the wait counts from
        the failed attempt."""
        if isinstance(outcome, CallErrored):
            message.errors += 1
            if message.errors >= self._setting("TransactionMessageAttempts"):
                return None
        interval = self._setting("TransactionMessageRetryInterval")
        return sent_at + interval * max(1, message.errors)

    def _retry_due(self) -> None:
        self._retry = None
        self._send_next()

    @staticmethod
    def _cancel(message: Message) -> None:
        if message.on_outcome is not None:
            request = message.built()
            action = action_of(request).action
            message.on_outcome(CallCancelled("", action, request, sent=False))
