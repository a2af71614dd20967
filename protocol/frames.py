"""OCPP-J 1.6 RPC frames: the JSON array wrapper around every message (OCPP-J 1.6 section 4).

``parse_frame`` checks only the wrapper; payloads stay plain dicts here and are typed by
:mod:`protocol.registry`. It returns a frame, ``None`` for a message type it must ignore, or
raises an :class:`~protocol.errors.OcppError` that carries whatever it could read of the frame
(unique id, message type) so that the caller can still answer a broken CALL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from protocol import json_limits
from protocol.errors import FormationViolation, OcppError, ProtocolError
from protocol.json_limits import JsonLimitError

__all__ = [
    "MAX_UNIQUE_ID_LENGTH",
    "Call",
    "CallError",
    "CallResult",
    "Frame",
    "MessageTypeId",
    "encode_frame",
    "parse_frame",
]

# OCPP-J 1.6 section 4.1.4, table 3: "Maximum of 36 characters, to allow for GUIDs".
MAX_UNIQUE_ID_LENGTH: Final = 36


class MessageTypeId(IntEnum):
    """OCPP-J 1.6 section 4.1.3, table 2."""

    CALL = 2
    CALL_RESULT = 3
    CALL_ERROR = 4


@dataclass(frozen=True, slots=True)
class Call:
    """``[2, uniqueId, action, payload]`` (OCPP-J 1.6 section 4.2.1)."""

    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    """``[3, uniqueId, payload]`` (OCPP-J 1.6 section 4.2.2)."""

    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    """``[4, uniqueId, errorCode, errorDescription, errorDetails]`` (OCPP-J 1.6 section 4.2.3).

    ``error_code`` stays a plain string: a peer may send a code outside table 7, and we report
    what it said rather than guess.
    """

    unique_id: str
    error_code: str
    error_description: str = ""
    error_details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_error(cls, unique_id: str, error: OcppError) -> CallError:
        return cls(unique_id, error.code, error.description, dict(error.details))


Frame = Call | CallResult | CallError

_ARITY: Final = {
    MessageTypeId.CALL: 4,
    MessageTypeId.CALL_RESULT: 3,
    MessageTypeId.CALL_ERROR: 5,
}
# The wire number -> the enum member, without calling the enum (a lookup, not a search).
_MESSAGE_TYPES: Final = {int(t): t for t in MessageTypeId}
# Plain ints for the encoder: no enum attribute access per frame.
_CALL: Final = int(MessageTypeId.CALL)
_CALL_RESULT: Final = int(MessageTypeId.CALL_RESULT)
_CALL_ERROR: Final = int(MessageTypeId.CALL_ERROR)


# Built once: ``json.dumps`` with any option builds a new encoder per call, which costs as much as
# encoding a small frame. It holds configuration only, no state.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# The head of a frame (message type and id), read from the text alone when the frame is over a
# JSON limit, so that a CALL is still answered (OCPP-J 1.6 section 4.2.3) and an answer still
# ends our call. Bounded: an over-long id is answered too, but not one of any length.
_HEAD: Final = re.compile(
    r'[ \t\n\r]*\[[ \t\n\r]*([234])[ \t\n\r]*,[ \t\n\r]*("(?:[^"\\]|\\.){0,200}")'
)
_HEAD_SPAN: Final = 512


def _decode(text: str | bytes) -> Any:
    # OCPP-J 1.6 section 4.1.2: the whole message must be valid JSON in UTF-8. Nesting and
    # integers are bounded (protocol.json_limits).
    try:
        return json_limits.loads(text)
    except UnicodeDecodeError:
        raise FormationViolation("frame is not valid UTF-8") from None
    except JsonLimitError as error:
        raise _over_limit(text, error) from None
    # ValueError covers JSONDecodeError (a leading BOM included), NaN, Infinity and numbers that
    # overflow.
    except ValueError:
        raise FormationViolation("frame is not valid JSON") from None


def _over_limit(text: str | bytes, error: JsonLimitError) -> FormationViolation:
    description = f"frame is over a JSON limit: {error}"
    if isinstance(text, bytes | bytearray):
        text = bytes(text[:_HEAD_SPAN]).decode("utf-8", "replace")
    head = _HEAD.match(text, 0, _HEAD_SPAN)
    if head is not None:
        try:
            unique_id = json.loads(head.group(2))
        except ValueError:  # e.g. a control character in the id
            pass
        else:
            kind = _MESSAGE_TYPES[int(head.group(1))]
            return FormationViolation(description, unique_id=unique_id, message_type_id=kind)
    return FormationViolation(description)


def _object_or_empty(value: Any) -> dict[str, Any] | None:
    # OCPP-J 1.6 sections 4.2.1/4.2.2: an absent payload may be written null or {}.
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return None


def parse_frame(text: str | bytes) -> Frame | None:
    """Parse one WebSocket text message into a frame.

    Returns ``None`` for a well-formed array whose message type number is unknown: OCPP-J 1.6
    section 4.1.3 says such a message SHALL be ignored. Raises only ``OcppError`` subclasses.
    Too few elements is a ``ProtocolError`` ("incomplete"); anything else structurally wrong is
    a ``FormationViolation``. The error's ``unique_id`` is set whenever the id was a string,
    even an over-long one, because section 4.2.3 wants such a CALL answered with a CALLERROR.
    """
    data = _decode(text)
    if not isinstance(data, list):
        raise FormationViolation("frame is not a JSON array")
    size = len(data)
    if not size:
        raise FormationViolation("frame is an empty array")

    raw_type = data[0]
    unique_id = data[1] if size > 1 and isinstance(data[1], str) else None
    # bool is an int subclass in Python but not a JSON number.
    if not isinstance(raw_type, int) or isinstance(raw_type, bool):
        raise FormationViolation("message type id is not an integer", unique_id=unique_id)
    message_type = _MESSAGE_TYPES.get(raw_type)
    if message_type is None:
        return None

    if size < 2:
        raise _fail(
            ProtocolError, f"{message_type.name} frame has no unique id", unique_id, message_type
        )
    if unique_id is None:
        raise _fail(FormationViolation, "unique id is not a string", unique_id, message_type)
    if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        raise _fail(
            FormationViolation,
            f"unique id exceeds {MAX_UNIQUE_ID_LENGTH} characters",
            unique_id,
            message_type,
        )
    expected = _ARITY[message_type]
    if size != expected:
        arity = f"{message_type.name} frame has {size} elements, expected {expected}"
        cls = ProtocolError if size < expected else FormationViolation
        raise _fail(cls, arity, unique_id, message_type)

    if message_type is MessageTypeId.CALL:
        action, payload = data[2], _object_or_empty(data[3])
        if not isinstance(action, str):
            raise _fail(FormationViolation, "action is not a string", unique_id, message_type)
        if payload is None:
            raise _fail(FormationViolation, "payload is not a JSON object", unique_id, message_type)
        return Call(unique_id, action, payload)

    if message_type is MessageTypeId.CALL_RESULT:
        payload = _object_or_empty(data[2])
        if payload is None:
            raise _fail(FormationViolation, "payload is not a JSON object", unique_id, message_type)
        return CallResult(unique_id, payload)

    code, description, details = data[2], data[3], _object_or_empty(data[4])
    if not isinstance(code, str):
        raise _fail(FormationViolation, "errorCode is not a string", unique_id, message_type)
    if not isinstance(description, str):
        raise _fail(FormationViolation, "errorDescription is not a string", unique_id, message_type)
    if details is None:
        raise _fail(
            FormationViolation, "errorDetails is not a JSON object", unique_id, message_type
        )
    return CallError(unique_id, code, description, details)


def _fail(
    cls: type[OcppError], description: str, unique_id: str | None, message_type: MessageTypeId
) -> OcppError:
    return cls(description, unique_id=unique_id, message_type_id=message_type)


def encode_frame(frame: Frame) -> str:
    """Compact JSON text for one frame.

    ASCII-only output: any JSON string survives, even one holding a lone surrogate echoed from
    a peer, and ASCII is valid UTF-8 (OCPP-J 1.6 section 4.1.2). NaN/Infinity are refused.
    """
    body: list[Any]
    match frame:
        case CallResult(unique_id, payload):
            body = [_CALL_RESULT, unique_id, payload]
        case Call(unique_id, action, payload):
            body = [_CALL, unique_id, action, payload]
        case CallError(unique_id, code, description, details):
            body = [_CALL_ERROR, unique_id, code, description, details]
    return _ENCODER.encode(body)
