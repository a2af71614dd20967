"""The connector lifecycle is a transition table (OCPP 1.6 section 4.9)."""

from __future__ import annotations

import pytest

from protocol.messages import ChargePointStatus as S
from simulators.connector import (
    TRANSITIONS,
    ConnectorStateMachine,
    IllegalTransition,
)
from simulators.connector import (
    ConnectorEvent as E,
)


@pytest.mark.parametrize(
    ("events", "final"),
    [
        ([E.PLUG_IN, E.START, E.STOP, E.UNPLUG], S.AVAILABLE),
        ([E.PLUG_IN, E.START, E.EV_SUSPEND], S.SUSPENDED_EV),
        ([E.PLUG_IN, E.START, E.EV_SUSPEND, E.EV_RESUME], S.CHARGING),
        ([E.PLUG_IN, E.START, E.EVSE_SUSPEND, E.EVSE_RESUME, E.STOP], S.FINISHING),
        ([E.PLUG_IN, E.START, E.UNPLUG], S.AVAILABLE),
        ([E.PLUG_IN, E.UNPLUG], S.AVAILABLE),
        ([E.START], S.CHARGING),
        ([E.PLUG_IN, E.FAULT, E.CLEAR_FAULT], S.AVAILABLE),
        ([E.DISABLE, E.ENABLE], S.AVAILABLE),
        ([E.PLUG_IN, E.START, E.STOP, E.PLUG_IN], S.PREPARING),
    ],
)
def test_legal_sequences(events: list[E], final: S) -> None:
    machine = ConnectorStateMachine()
    for event in events:
        machine.fire(event)
    assert machine.status is final


@pytest.mark.parametrize(
    ("status", "event"),
    [(s, e) for s in S for e in E if (s, e) not in TRANSITIONS],
)
def test_illegal_transitions_raise_and_change_nothing(status: S, event: E) -> None:
    machine = ConnectorStateMachine(status)
    assert not machine.can(event)
    with pytest.raises(IllegalTransition) as info:
        machine.fire(event)
    assert machine.status is status
    assert info.value.status is status and info.value.event is event


def test_in_transaction_covers_the_three_energy_states() -> None:
    active = {s for s in S if ConnectorStateMachine(s).in_transaction}
    assert active == {S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE}


def test_every_status_except_faulted_can_fault() -> None:
    assert {s for s in S if (s, E.FAULT) in TRANSITIONS} == set(S) - {S.FAULTED}
