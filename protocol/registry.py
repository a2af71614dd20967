"""Action name -> request model, response model, and who may send the CALL.

Directions follow the "Operations initiated by ..." split of OCPP 1.6 edition 2 (sections 4
and 5); DataTransfer (4.3 and 5.6) goes both ways. An action the receiver does not know is
``NotImplemented``; a known action arriving from the side that may not send it is
``NotSupported`` ("recognised but not supported by the receiver", OCPP-J 1.6 table 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from protocol import messages as m
from protocol.errors import NotImplementedCall, NotSupported
from protocol.messages.base import OcppModel
from protocol.validation import validate_payload

__all__ = [
    "ACTIONS",
    "ActionSpec",
    "Role",
    "action_of",
    "action_spec",
    "parse_request",
    "parse_response",
]


class Role(StrEnum):
    """The two ends of an OCPP 1.6 connection."""

    CHARGE_POINT = "ChargePoint"
    CENTRAL_SYSTEM = "CentralSystem"

    @property
    def peer(self) -> Role:
        return Role.CENTRAL_SYSTEM if self is Role.CHARGE_POINT else Role.CHARGE_POINT


@dataclass(frozen=True, slots=True)
class ActionSpec:
    action: str
    request: type[OcppModel]
    response: type[OcppModel]
    senders: frozenset[Role]  # who may send the CALL


_CP: Final = frozenset({Role.CHARGE_POINT})
_CS: Final = frozenset({Role.CENTRAL_SYSTEM})
_BOTH: Final = _CP | _CS


def _spec(action: str, senders: frozenset[Role]) -> tuple[str, ActionSpec]:
    request = getattr(m, f"{action}Request")
    response = getattr(m, f"{action}Response")
    return action, ActionSpec(action, request, response, senders)


ACTIONS: Final[Mapping[str, ActionSpec]] = MappingProxyType(
    dict(
        [
            # Initiated by the charge point (section 4).
            _spec("Authorize", _CP),
            _spec("BootNotification", _CP),
            _spec("DiagnosticsStatusNotification", _CP),
            _spec("FirmwareStatusNotification", _CP),
            _spec("Heartbeat", _CP),
            _spec("MeterValues", _CP),
            _spec("StartTransaction", _CP),
            _spec("StatusNotification", _CP),
            _spec("StopTransaction", _CP),
            # Both ways (sections 4.3 and 5.6).
            _spec("DataTransfer", _BOTH),
            # Initiated by the central system (section 5).
            _spec("CancelReservation", _CS),
            _spec("ChangeAvailability", _CS),
            _spec("ChangeConfiguration", _CS),
            _spec("ClearCache", _CS),
            _spec("ClearChargingProfile", _CS),
            _spec("GetCompositeSchedule", _CS),
            _spec("GetConfiguration", _CS),
            _spec("GetDiagnostics", _CS),
            _spec("GetLocalListVersion", _CS),
            _spec("RemoteStartTransaction", _CS),
            _spec("RemoteStopTransaction", _CS),
            _spec("ReserveNow", _CS),
            _spec("Reset", _CS),
            _spec("SendLocalList", _CS),
            _spec("SetChargingProfile", _CS),
            _spec("TriggerMessage", _CS),
            _spec("UnlockConnector", _CS),
            _spec("UpdateFirmware", _CS),
        ]
    )
)

_BY_REQUEST: Final[Mapping[type[OcppModel], ActionSpec]] = MappingProxyType(
    {spec.request: spec for spec in ACTIONS.values()}
)

# What each end may receive, worked out once: receiver role -> action -> request model, so that
# parsing a CALL costs one lookup. Anything missing here goes the slow way to find its error.
_ACCEPTED: Final[Mapping[Role, Mapping[str, type[OcppModel]]]] = MappingProxyType(
    {
        role: MappingProxyType(
            {name: spec.request for name, spec in ACTIONS.items() if role.peer in spec.senders}
        )
        for role in Role
    }
)


def action_spec(action: str) -> ActionSpec:
    """The spec of an action; NotImplementedCall when the name is not an OCPP 1.6 action."""
    spec = ACTIONS.get(action)
    if spec is None:
        shown = action if len(action) <= 40 and action.isprintable() else "(unprintable)"
        raise NotImplementedCall(f"unknown action {shown!r}")
    return spec


def action_of(request: OcppModel) -> ActionSpec:
    """The spec whose request model ``request`` is; TypeError for anything else (a bug)."""
    spec = _BY_REQUEST.get(type(request))
    if spec is None:
        raise TypeError(f"{type(request).__name__} is not an OCPP 1.6 request model")
    return spec


def parse_request(action: str, payload: Any, *, receiver_role: Role) -> OcppModel:
    """Type a CALL payload received by ``receiver_role``; raises only OcppError."""
    model = _ACCEPTED[receiver_role].get(action)
    if model is None:
        action_spec(action)  # NotImplementedCall for a name that is no OCPP 1.6 action
        raise NotSupported(f"{action} is not accepted from the {receiver_role.peer.value}")
    return validate_payload(model, payload)


def parse_response(action: str, payload: Any) -> OcppModel:
    """Type a CALLRESULT payload for a CALL of ``action``; raises only OcppError."""
    return validate_payload(action_spec(action).response, payload)
