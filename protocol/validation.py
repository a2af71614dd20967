"""The one place where pydantic validation errors become OCPP errors (OCPP-J 1.6 s. 4.2.3).

Mapping, by the table 7 definitions: an unexpected field, or a payload or nested object of the
wrong shape at the top, is a FormationViolation; a missing required field or an empty 1..* list
an OccurenceConstraintViolation; a JSON value of the wrong type a TypeConstraintViolation; a value
of the right type that is not allowed (enum, length, range, timestamp, URI) a
PropertyConstraintViolation. When several apply, the first in that order wins. The description
names field paths and pydantic's message, never the input or internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from protocol.errors import (
    FormationViolation,
    OccurenceConstraintViolation,
    OcppError,
    PropertyConstraintViolation,
    TypeConstraintViolation,
)

__all__ = ["error_from_validation", "validate_payload"]

M = TypeVar("M", bound=BaseModel)

_SEVERITY: Final[tuple[type[OcppError], ...]] = (
    FormationViolation,
    OccurenceConstraintViolation,
    TypeConstraintViolation,
    PropertyConstraintViolation,
)
_OBJECT_TYPES: Final = frozenset({"model_type", "model_attributes_type", "dict_type"})
_MAX_LISTED: Final = 3
_MAX_KEY: Final = 40
# pydantic lists every allowed value of an enum: Measurand's alone are 500 characters.
_MAX_MESSAGE: Final = 160


def _classify(error: ErrorDetails) -> type[OcppError]:
    kind = error["type"]
    if kind == "extra_forbidden" or (kind in _OBJECT_TYPES and not error["loc"]):
        return FormationViolation
    if kind in ("missing", "too_short"):  # too_short: a list under its minItems
        return OccurenceConstraintViolation
    if kind.endswith("_type") or kind == "is_instance_of":
        return TypeConstraintViolation
    if kind in ("enum", "literal_error") and not isinstance(error.get("input"), str):
        return TypeConstraintViolation  # e.g. "status": 3, the schema type is string
    return PropertyConstraintViolation


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # Keys may be peer input (an unexpected field): keep them short and printable.
            key = "".join(c if c.isprintable() else "?" for c in part[:_MAX_KEY])
            key += "..." if len(part) > _MAX_KEY else ""
            out += f".{key}" if out else key
    return out or "payload"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _OBJECT_TYPES:
        return "Input should be a JSON object"
    if kind == "list_type":
        return "Input should be a JSON array"
    message = error["msg"]
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


def error_from_validation(exc: ValidationError) -> OcppError:
    """The OCPP error for a failed payload validation."""
    errors = exc.errors(include_url=False, include_context=False)
    ranked = sorted(errors, key=lambda e: _SEVERITY.index(_classify(e)))  # stable
    listed = [f"{_path(e['loc'])}: {_message(e)}" for e in ranked[:_MAX_LISTED]]
    if len(ranked) > _MAX_LISTED:
        listed.append(f"and {len(ranked) - _MAX_LISTED} more")
    cls = _classify(ranked[0]) if ranked else PropertyConstraintViolation
    return cls("; ".join(listed))


def validate_payload(model: type[M], payload: Any) -> M:
    """Validate a decoded JSON payload against a message model, raising only OcppError.

    Only the camelCase wire names are accepted here (``by_name=False``); snake_case names are
    for Python callers building models.
    """
    if not isinstance(payload, dict):
        raise FormationViolation("payload is not a JSON object")
    try:
        # What ``model.model_validate(payload, by_alias=True, by_name=False)`` does, without its
        # Python wrapper: this runs for every message received.
        validated: M = model.__pydantic_validator__.validate_python(
            payload, by_alias=True, by_name=False
        )
    except ValidationError as exc:
        raise error_from_validation(exc) from None
    return validated
