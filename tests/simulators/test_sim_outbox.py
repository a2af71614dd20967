"""The outbox over a real link whose frames the test reads and answers by hand, on a manual
clock: order, retries of transaction messages, what survives the end of a connection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from protocol import CallAnswered, CallCancelled, CallErrored, Connection, Role
from protocol import messages as m
from shell.clock import ManualClock
from shell.link import CallOutcome, OcppLink
from simulators.outbox import Message, Outbox

START = m.StartTransactionRequest(
    connector_id=1, id_tag="TAG1", meter_start=0, timestamp=datetime(2026, 1, 1, tzinfo=UTC)
)
SETTINGS = {"TransactionMessageAttempts": 2, "TransactionMessageRetryInterval": 30}


class Charger:
    """An outbox on a link whose written frames are kept for the test."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.changes = 0
        self.outbox = Outbox(clock, SETTINGS.__getitem__, self._changed)
        self.frames: list[list[Any]] = []
        self.link = self.connect()

    def connect(self) -> OcppLink:
        self.link = OcppLink(
            Connection(Role.CHARGE_POINT, call_timeout=10),
            send=lambda frame: self.frames.append(json.loads(frame)),
            clock=self.clock,
            handler=lambda link, call: None,
        )
        return self.link

    def answer(self, payload: dict[str, Any]) -> None:
        self.link.receive(json.dumps([3, self.frames[-1][1], payload]))

    def refuse(self) -> None:
        self.link.receive(json.dumps([4, self.frames[-1][1], "InternalError", "", {}]))

    def _changed(self) -> None:
        self.changes += 1


def actions(frames: list[list[Any]]) -> list[str]:
    return [frame[2] for frame in frames]


def test_one_message_at_a_time_in_order() -> None:
    charger = Charger(ManualClock())
    charger.outbox.attach(charger.link)
    charger.outbox.put(Message(m.HeartbeatRequest))
    charger.outbox.put(Message(lambda: START, transactional=True))
    assert actions(charger.frames) == ["Heartbeat"] and len(charger.outbox) == 2
    charger.answer({"currentTime": "2026-01-01T00:00:00Z"})
    assert actions(charger.frames) == ["Heartbeat", "StartTransaction"]
    assert len(charger.outbox) == 1 and charger.changes == 1


def test_a_refused_transaction_message_is_retried_then_given_up() -> None:
    clock = ManualClock()
    charger = Charger(clock)
    charger.outbox.attach(charger.link)
    outcomes: list[CallOutcome] = []
    charger.outbox.put(Message(lambda: START, transactional=True, on_outcome=outcomes.append))
    charger.outbox.put(Message(m.HeartbeatRequest))
    charger.refuse()
    clock.advance(29)
    assert actions(charger.frames) == ["StartTransaction"]  # the heartbeat waits behind it
    clock.advance(1)  # TransactionMessageRetryInterval after the refused attempt
    first, again = charger.frames
    assert first[3] == again[3] and first[1] != again[1]  # the same message, a new call
    charger.refuse()  # the second of TransactionMessageAttempts: given up
    [given_up] = outcomes
    assert isinstance(given_up, CallErrored) and given_up.error_code == "InternalError"
    assert actions(charger.frames) == ["StartTransaction", "StartTransaction", "Heartbeat"]


def test_a_timeout_is_retried_without_counting_as_an_attempt() -> None:
    clock = ManualClock()
    charger = Charger(clock)
    charger.outbox.attach(charger.link)
    outcomes: list[CallOutcome] = []
    charger.outbox.put(Message(lambda: START, transactional=True, on_outcome=outcomes.append))
    for _ in range(3):
        clock.advance(10)  # the call timeout...
        clock.advance(20)  # ...and the rest of the retry interval, counted from the attempt
    assert actions(charger.frames) == ["StartTransaction"] * 4
    charger.answer({"idTagInfo": {"status": "Accepted"}, "transactionId": 7})
    [answered] = outcomes
    assert isinstance(answered, CallAnswered) and not charger.outbox


def test_transaction_messages_outlive_the_connection_and_the_rest_is_dropped() -> None:
    charger = Charger(ManualClock())
    charger.outbox.attach(charger.link)
    outcomes: list[CallOutcome] = []
    charger.outbox.put(Message(lambda: START, transactional=True, on_outcome=outcomes.append))
    charger.outbox.put(Message(m.HeartbeatRequest, on_outcome=outcomes.append))
    charger.link.connection_lost()
    charger.outbox.detach()
    [dropped] = outcomes
    assert isinstance(dropped, CallCancelled) and dropped.action == "Heartbeat"
    assert len(charger.outbox) == 1
    charger.outbox.put(Message(m.HeartbeatRequest, on_outcome=outcomes.append))  # offline
    assert isinstance(outcomes[-1], CallCancelled) and len(charger.outbox) == 1
    sent_before = charger.frames[0]
    charger.outbox.attach(charger.connect())
    resent = charger.frames[-1]
    assert resent[2:] == sent_before[2:]  # identical content on the new connection
