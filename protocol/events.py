"""What :class:`protocol.connection.Connection` reports back to its owner.

Every event is a frozen dataclass; the owner dispatches on the type (``match event: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.errors import OcppError
from protocol.frames import CallError, CallResult
from protocol.messages.base import OcppModel

__all__ = [
    "CallAnswered",
    "CallCancelled",
    "CallErrored",
    "CallReceived",
    "CallRejected",
    "CallTimedOut",
    "Event",
    "FrameRejected",
    "UnmatchedAnswer",
]


@dataclass(frozen=True, slots=True)
class CallReceived:
    """A valid CALL from the peer; answer it with ``send_result`` or ``send_error``."""

    unique_id: str
    action: str
    request: OcppModel


@dataclass(frozen=True, slots=True)
class CallRejected:
    """An invalid CALL from the peer; the CALLERROR is already queued. For logging."""

    unique_id: str
    error: OcppError
    # The CALL's action as the peer wrote it (None when the frame was too broken to read
    # it): not necessarily one that exists.
    action: str | None = None


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A broken frame that cannot be answered (no readable id, or not a CALL). Nothing is
    sent and the connection stays usable. For logging."""

    error: OcppError


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Our outstanding CALL got a valid CALLRESULT."""

    unique_id: str
    action: str
    request: OcppModel
    response: OcppModel


@dataclass(frozen=True, slots=True)
class CallErrored:
    """Our outstanding CALL failed: the peer sent a CALLERROR (``local=False``), or its answer
    was unusable (``local=True``: a CALLRESULT that fails validation, or a broken frame carrying
    the call's id); then the code is the one we would have sent for such a payload."""

    unique_id: str
    action: str
    request: OcppModel
    error_code: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    local: bool = False


@dataclass(frozen=True, slots=True)
class UnmatchedAnswer:
    """A CALLRESULT/CALLERROR whose id is not our outstanding call (e.g. late, after a timeout)."""

    unique_id: str
    frame: CallResult | CallError


@dataclass(frozen=True, slots=True)
class CallTimedOut:
    """Our outstanding CALL got no answer before its deadline (OCPP-J 1.6 section 4.1.1)."""

    unique_id: str
    action: str
    request: OcppModel


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """A call that never got an answer because the connection closed. ``sent`` tells whether
    it was on the wire: the peer may have acted on it (e.g. applied a charging profile)."""

    unique_id: str
    action: str
    request: OcppModel
    sent: bool


Event = (
    CallReceived
    | CallRejected
    | FrameRejected
    | CallAnswered
    | CallErrored
    | UnmatchedAnswer
    | CallTimedOut
    | CallCancelled
)
