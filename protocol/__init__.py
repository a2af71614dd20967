"""OCPP-J 1.6 without I/O: frames, typed messages, CALLERRORs and per-connection call state.

Theory of operation
-------------------
Everything here is pure: no sockets, no asyncio, no clock, no module-level mutable state. Time
enters as ``now`` (monotonic seconds) and leaves as deadlines; the I/O shell owns the clock.

Data flow for one connection (either end, chosen by :class:`Role`)::

    text in --> Connection.receive(text, now) --> [Event, ...] --> owner dispatches
                  parse_frame  (frames.py: the JSON array wrapper)
                  parse_request / parse_response  (registry.py: action -> pydantic models)
    owner --> send_call / send_result / send_error --> Connection.data_to_send() --> text out
    owner --> Connection.expire(now) at Connection.next_deadline()

Parsing has one failure family: whatever arrives, the result is a frame, a model, or an
:class:`OcppError` subclass whose ``code`` is the 1.6 CALLERROR errorCode. Pydantic validation
errors are translated in one place, :mod:`protocol.validation`.

Implemented from OCPP-J 1.6: section 4.1.1 (one outstanding CALL per direction, timeouts),
4.1.2 (UTF-8 JSON), 4.1.3 (unknown message types ignored), 4.1.4 (ids of at most 36
characters), 4.2.1-4.2.3 (CALL, CALLRESULT, CALLERROR and the error codes of table 7). From
OCPP 1.6 edition 2: every message of sections 4 and 5 with the types of sections 6 and 7, as
the official JSON schemas constrain them; timestamps per section 3.15, and section 3.7 (the
transaction messages are always answerable, so their timestamps are parsed leniently).
"""

from __future__ import annotations

from protocol.connection import Connection
from protocol.errors import (
    ERROR_CLASSES,
    FormationViolation,
    GenericError,
    InternalError,
    NotImplementedCall,
    NotSupported,
    OccurenceConstraintViolation,
    OcppError,
    PropertyConstraintViolation,
    ProtocolError,
    SecurityError,
    TypeConstraintViolation,
    error_class,
    error_from_code,
)
from protocol.events import (
    CallAnswered,
    CallCancelled,
    CallErrored,
    CallReceived,
    CallRejected,
    CallTimedOut,
    Event,
    FrameRejected,
    UnmatchedAnswer,
)
from protocol.frames import (
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    Frame,
    MessageTypeId,
    encode_frame,
    parse_frame,
)
from protocol.messages import OcppModel, UnparsedTimestamp, parsed_datetime, to_payload
from protocol.registry import (
    ACTIONS,
    ActionSpec,
    Role,
    action_of,
    action_spec,
    parse_request,
    parse_response,
)
from protocol.validation import validate_payload

__all__ = [
    "ACTIONS",
    "ERROR_CLASSES",
    "MAX_UNIQUE_ID_LENGTH",
    "ActionSpec",
    "Call",
    "CallAnswered",
    "CallCancelled",
    "CallError",
    "CallErrored",
    "CallReceived",
    "CallRejected",
    "CallResult",
    "CallTimedOut",
    "Connection",
    "Event",
    "FormationViolation",
    "Frame",
    "FrameRejected",
    "GenericError",
    "InternalError",
    "MessageTypeId",
    "NotImplementedCall",
    "NotSupported",
    "OccurenceConstraintViolation",
    "OcppError",
    "OcppModel",
    "PropertyConstraintViolation",
    "ProtocolError",
    "Role",
    "SecurityError",
    "TypeConstraintViolation",
    "UnmatchedAnswer",
    "UnparsedTimestamp",
    "action_of",
    "action_spec",
    "encode_frame",
    "error_class",
    "error_from_code",
    "parse_frame",
    "parse_request",
    "parse_response",
    "parsed_datetime",
    "to_payload",
    "validate_payload",
]
