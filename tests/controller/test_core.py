"""The station core, event by event (docs/persistence.md, "Durable before acknowledged";
docs/ocpp.md, "Lifecycles"): the test plays the shell with ``CoreHarness``."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.commands import (
    Refusal,
    Reply,
    SendProfile,
    SessionAnswer,
    StopAnswer,
    TransactionAnswer,
    Unavailable,
)
from controller.core.events import (
    ChargerConnected,
    ChargerDisconnected,
    CommitDone,
    ProfileAnswered,
    ProfileResult,
    Reallocate,
    SessionStartRequested,
    SessionStopRequested,
    TransactionStartRequested,
    TransactionStopRequested,
)
from controller.core.fields import stored_fields
from controller.core.lifecycle import (
    CHARGER_TRANSITIONS,
    LIMIT_TRANSITIONS,
    ChargerPhase,
    ChargerTrigger,
    IllegalTransition,
    LimitPhase,
    LimitTrigger,
    step,
)
from controller.core.state import ChargerState, LimitBook, TransactionCounter
from controller.views import charger_view
from shell.clock import iso_utc
from tests.controller.conftest import example_config
from tests.controller.core_harness import CoreHarness, Token
from tests.controller.restart import restart_view


def start_event(h: CoreHarness, token: Token, connector: int = 1) -> TransactionStartRequested:
    link = h.links.get("CP001", 0)
    timestamp = "2026-01-01T00:00:00Z"
    return TransactionStartRequested(
        h.now, "CP001", link, token, connector, "TAG", timestamp, 0, f"s-{token.name}"
    )


def test_a_failed_commit_leaves_the_core_as_it_was_and_the_retry_is_a_first_attempt() -> None:
    h = CoreHarness(example_config(), auto_commit=False)
    before = restart_view(h.core.records())
    token = Token("rest")
    h.handle(SessionStartRequested(h.now, token, "CP001", 0, 50, "s1"))
    assert h.core.session("s1") is None  # proposed, not applied
    h.fail_commits()
    assert h.answers.pop(id(token)) == Unavailable()
    assert restart_view(h.core.records()) == before
    h.auto_commit = True
    assert h.start_rest("CP001", 0, 50).allocated_power == 50  # not "connector busy"


def test_a_transaction_id_is_durable_before_it_is_handed_out_and_never_reissued() -> None:
    h = CoreHarness(example_config(), auto_commit=False)
    first, second = Token("a"), Token("b")
    h.handle(start_event(h, first, connector=1))
    (records,) = h.proposals.values()
    assert TransactionCounter(2) in records  # the counter goes to disk with the id
    h.handle(start_event(h, second, connector=2))
    numbers = sorted(h.proposals)
    h.fail_commits(numbers[:1])  # the first fails, the second (id 2) is committed
    h.commit()
    assert h.answers.pop(id(first)) == Unavailable()
    assert h.answers.pop(id(second)) == TransactionAnswer(2, "Accepted")
    h.auto_commit = True
    assert h.start_transaction("CP002", 1) == 3  # never 2 again


def test_a_resend_while_the_first_is_being_committed_gets_the_same_answer() -> None:
    h = CoreHarness(example_config(), auto_commit=False)
    first, resent = Token("first"), Token("resent")
    h.handle(start_event(h, first))
    h.handle(start_event(h, resent))  # waits for the first one's commit
    assert len(h.proposals) == 1
    h.commit()
    assert h.answers.pop(id(first)) == h.answers.pop(id(resent)) == TransactionAnswer(1, "Accepted")
    assert len(list(h.core.active_sessions())) == 1


def test_a_resend_after_a_failed_commit_is_a_first_attempt() -> None:
    h = CoreHarness(example_config(), auto_commit=False)
    first, resent = Token("first"), Token("resent")
    h.handle(start_event(h, first))
    h.handle(start_event(h, resent))
    h.fail_commits()
    assert h.answers.pop(id(first)) == Unavailable()
    assert len(h.proposals) == 1  # the waiting resend was proposed anew
    h.commit()
    assert h.answers.pop(id(resent)) == TransactionAnswer(1, "Accepted")


def test_a_stop_for_a_start_still_being_committed_waits_for_it() -> None:
    h = CoreHarness(example_config(), auto_commit=False)
    start, stop = Token("start"), Token("stop")
    h.handle(start_event(h, start))
    h.handle(TransactionStopRequested(h.now, "CP001", stop, 1, 5000))
    h.commit()  # the start
    assert h.answers.pop(id(start)) == TransactionAnswer(1, "Accepted")
    h.commit()  # the stop, proposed once the start was applied
    assert h.answers.pop(id(stop)) == StopAnswer(None)
    assert h.core.session_by_transaction(1) is None


def test_rest_requests_on_a_session_being_stopped_see_the_stop() -> None:
    h = CoreHarness(example_config())
    session = h.start_rest("CP001", 0)
    h.auto_commit = False
    first, late = Token("stop"), Token("late")
    h.handle(SessionStopRequested(h.now, first, session.session_id, 1.0))
    h.handle(SessionStopRequested(h.now, late, session.session_id, 2.0))  # waits
    h.commit()
    stopped = h.answers.pop(id(first))
    assert isinstance(stopped, SessionAnswer) and stopped.session.consumed_energy == 1.0
    refusal = h.answers.pop(id(late))
    # No longer active: the REST API finds it in the history and answers 409.
    assert isinstance(refusal, Refusal) and refusal.error.code == "unknown_session"


def test_a_raise_is_written_before_it_is_sent() -> None:
    h = CoreHarness(example_config(), auto_commit=False)
    h.connect("CP001")
    token = Token("start")
    h.handle(start_event(h, token))
    h.commit()  # the transaction
    assert not h.tx_limits("CP001")  # its first limit is a raise: not sent yet...
    (records,) = h.proposals.values()
    (book,) = records
    assert isinstance(book, LimitBook) and book.in_flight == 200  # ...but on its way to disk
    h.commit()
    assert h.tx_limits("CP001") == [(1, 200_000)]


def test_a_transaction_whose_answer_was_lost_is_limited_only_after_the_resend() -> None:
    h = CoreHarness(example_config(), auto_commit=False)
    link = h.connect("CP001")
    token = Token("start")
    h.handle(start_event(h, token))
    h.handle(ChargerDisconnected(h.now, "CP001", link))  # before the commit: answer lost
    h.commit()
    h.handle(ChargerConnected(h.now, "CP001", 2))
    h.links["CP001"] = 2
    h.answer_profiles()  # the failsafe again
    h.commit()
    assert h.tx_limits("CP001") == []  # the charger does not know the transaction id yet
    resent = Token("resent")
    h.handle(start_event(h, resent))
    assert h.answers.pop(id(resent)) == TransactionAnswer(1, "Accepted")
    h.commit()  # the raise
    assert h.tx_limits("CP001") == [(1, 200_000)]


def test_a_rejected_lowering_keeps_the_power_and_is_retried_after_a_back_off() -> None:
    h = CoreHarness(example_config(battery=None))
    h.connect("CP001")
    a = h.start_transaction("CP001", 1)
    h.answer_profiles()
    h.now += 1
    h.start_transaction("CP001", 2)
    (lowering,) = [ref for ref, c in h.calls.items() if c.request.connector_id == 1]
    h.calls.pop(lowering)
    h.handle(ProfileAnswered(h.now, "CP001", lowering, ProfileResult.REJECTED))
    assert h.core.limit_book(h.session_of(a).session_id).phase is LimitPhase.RETRYING  # type: ignore[union-attr]
    assert h.core.held[h.session_of(a).session_id] == 200
    assert h.wakeup == h.now + 1
    h.answer_profiles()  # b's limit (0 kW while a may still draw 200)
    h.advance(1)
    assert [c.request.connector_id for c in h.calls.values()] == [1]  # sent again
    h.answer_profiles()
    assert h.core.limits_confirmed("CP001")


@pytest.mark.parametrize(
    ("table", "phase", "trigger"),
    [
        (LIMIT_TRANSITIONS, LimitPhase.CONFIRMED, LimitTrigger.ACCEPTED),
        (LIMIT_TRANSITIONS, LimitPhase.PENDING, LimitTrigger.COMMITTED),
        (LIMIT_TRANSITIONS, LimitPhase.SENDING, LimitTrigger.RAISE),
        (CHARGER_TRANSITIONS, ChargerPhase.OFFLINE, ChargerTrigger.BOOTED),
        (CHARGER_TRANSITIONS, ChargerPhase.READY, ChargerTrigger.DEFAULT_ACCEPTED),
    ],
)
def test_an_illegal_transition_raises_and_changes_nothing(
    table: Any, phase: Any, trigger: Any
) -> None:
    with pytest.raises(IllegalTransition):
        step(table, phase, trigger)
    book = LimitBook("s", "CP001", 1, 1, phase=LimitPhase.CONFIRMED)
    with pytest.raises(IllegalTransition):
        book.step(LimitTrigger.ACCEPTED)
    assert book.phase is LimitPhase.CONFIRMED


def test_every_phase_can_be_left() -> None:
    for table in (LIMIT_TRANSITIONS, CHARGER_TRANSITIONS):
        phases = {phase for phase, _ in table}
        targets = set(table.values())
        assert targets <= phases  # no dead end a connector or charger could get stuck in


def test_a_new_transaction_is_answered_before_any_profile_names_it() -> None:
    # The grid is spoken for: the new transaction's first limit is 0 kW, not a raise, so it
    # needs no commit of its own; it must still follow the StartTransaction.conf.
    h = CoreHarness(example_config(battery=None, gridCapacity=1))
    h.connect("CP001")
    h.connect("CP002")
    h.start_transaction("CP002", 1)
    h.answer_profiles()
    h.auto_commit = False
    h.handle(start_event(h, Token("new")))
    (number,) = h.proposals
    commands = h.core.handle(CommitDone(h.now, (number,)))
    commands += h.core.handle(Reallocate(h.now))  # what the shell sends soon after
    (answer,) = [i for i, c in enumerate(commands) if isinstance(c, Reply)]
    (profile,) = [
        i
        for i, c in enumerate(commands)
        if isinstance(c, SendProfile) and c.request.cs_charging_profiles.transaction_id == 2
    ]
    assert answer < profile


def test_each_charger_reports_its_last_profile_and_how_it_was_answered() -> None:
    h = CoreHarness(example_config())
    assert h.core.chargers["CP001"].last_profile is None
    h.connect("CP001", accept=False)
    view = charger_view(h.core, h.core.chargers["CP001"])["lastProfile"]
    assert view is not None
    assert view == {
        "purpose": "TxDefaultProfile",
        "connectorId": None,  # every connector
        "limit": view["limit"],
        "current": None,  # sent in kW: no electrical model
        "sentAt": iso_utc(h.now),
        "result": None,  # not answered yet
        "answeredAt": None,
    }
    assert view["limit"] > 0
    h.advance(2)
    h.answer_profiles("CP001")
    report = h.core.chargers["CP001"].last_profile
    assert report is not None
    assert (report.result, report.answered_at) == (ProfileResult.ACCEPTED, h.now)
    h.start_transaction("CP001", 1)
    h.advance(1)
    h.answer_profiles("CP001", ProfileResult.REJECTED)
    view = charger_view(h.core, h.core.chargers["CP001"])["lastProfile"]
    assert view is not None
    assert view["purpose"] == "TxProfile"
    assert view["connectorId"] == 0  # numbered like connectorStatus
    assert view["result"] == "rejected"
    assert view["answeredAt"] == iso_utc(h.now)
    assert view["limit"] > 0
    # Another charger's answers leave it as it is; a restart forgets it (not stored).
    h.connect("CP002")
    assert charger_view(h.core, h.core.chargers["CP001"])["lastProfile"] == view
    assert "last_profile" not in stored_fields(ChargerState)
