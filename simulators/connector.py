"""A connector's status lifecycle as a transition table (OCPP 1.6 edition 2, section 4.9).

The table keeps the transitions of the section 4.9 status table that a simulated charger goes
through; the codes in the comments (A2, B3, ...) are the ones that table uses. An event with no
entry for the current status raises :class:`IllegalTransition` and changes nothing, so a
simulator bug surfaces at once instead of sending the controller an impossible sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from protocol.messages import ChargePointStatus

__all__ = ["TRANSITIONS", "ConnectorEvent", "ConnectorStateMachine", "IllegalTransition"]

S = ChargePointStatus


class ConnectorEvent(StrEnum):
    PLUG_IN = "PlugIn"  # cable connected to a vehicle
    START = "Start"  # transaction started, energy may flow
    EV_SUSPEND = "EVSuspend"  # the vehicle stops drawing (full, or its own choice)
    EV_RESUME = "EVResume"
    EVSE_SUSPEND = "EVSESuspend"  # the charger offers nothing (limit 0)
    EVSE_RESUME = "EVSEResume"
    STOP = "Stop"  # transaction stopped, cable still in
    UNPLUG = "Unplug"
    FAULT = "Fault"
    CLEAR_FAULT = "ClearFault"
    DISABLE = "Disable"  # ChangeAvailability Inoperative
    ENABLE = "Enable"


E = ConnectorEvent

_ACTIVE: Final = (S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE)

_TABLE: dict[tuple[S, E], S] = {
    (S.AVAILABLE, E.PLUG_IN): S.PREPARING,  # A2
    (S.AVAILABLE, E.START): S.CHARGING,  # A3: cable already in, idTag presented
    (S.AVAILABLE, E.DISABLE): S.UNAVAILABLE,  # A8
    (S.PREPARING, E.START): S.CHARGING,  # B3
    (S.PREPARING, E.UNPLUG): S.AVAILABLE,  # B1
    (S.PREPARING, E.DISABLE): S.UNAVAILABLE,  # B8
    (S.CHARGING, E.EV_SUSPEND): S.SUSPENDED_EV,  # C5
    (S.CHARGING, E.EVSE_SUSPEND): S.SUSPENDED_EVSE,  # C4
    (S.SUSPENDED_EV, E.EV_RESUME): S.CHARGING,  # D3
    (S.SUSPENDED_EV, E.EVSE_SUSPEND): S.SUSPENDED_EVSE,  # D4
    (S.SUSPENDED_EVSE, E.EVSE_RESUME): S.CHARGING,  # E3
    (S.SUSPENDED_EVSE, E.EV_SUSPEND): S.SUSPENDED_EV,  # E5
    (S.FINISHING, E.UNPLUG): S.AVAILABLE,  # F1
    (S.FINISHING, E.PLUG_IN): S.PREPARING,  # F2: the user starts again
    (S.UNAVAILABLE, E.ENABLE): S.AVAILABLE,  # H1
    (S.FAULTED, E.CLEAR_FAULT): S.AVAILABLE,  # I1
}
for _status in _ACTIVE:
    _TABLE[(_status, E.STOP)] = S.FINISHING  # C6, D6, E6
    _TABLE[(_status, E.UNPLUG)] = S.AVAILABLE  # C1, D1, E1: the cable was pulled
for _status in S:
    if _status is not S.FAULTED:
        _TABLE[(_status, E.FAULT)] = S.FAULTED  # x9

TRANSITIONS: Final[Mapping[tuple[S, E], S]] = MappingProxyType(_TABLE)


class IllegalTransition(Exception):
    def __init__(self, status: S, event: E) -> None:
        super().__init__(f"{event.value} is not allowed in status {status.value}")
        self.status = status
        self.event = event


class ConnectorStateMachine:
    def __init__(self, status: S = S.AVAILABLE) -> None:
        self._status = status

    @property
    def status(self) -> S:
        return self._status

    @property
    def in_transaction(self) -> bool:
        return self._status in _ACTIVE

    def can(self, event: E) -> bool:
        return (self._status, event) in TRANSITIONS

    def fire(self, event: E) -> S:
        """Apply ``event``; IllegalTransition (and no change) when the table has no entry."""
        target = TRANSITIONS.get((self._status, event))
        if target is None:
            raise IllegalTransition(self._status, event)
        self._status = target
        return target
