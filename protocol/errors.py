"""OCPP-J 1.6 CALLERROR codes as one exception family (OCPP-J 1.6 section 4.2.3, table 7).

Everything in :mod:`protocol` that rejects input raises a subclass of :class:`OcppError`, so a
caller needs exactly one ``except`` clause, and the class alone decides the wire ``errorCode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = [
    "ERROR_CLASSES",
    "FormationViolation",
    "GenericError",
    "InternalError",
    "NotImplementedCall",
    "NotSupported",
    "OccurenceConstraintViolation",
    "OcppError",
    "PropertyConstraintViolation",
    "ProtocolError",
    "SecurityError",
    "TypeConstraintViolation",
    "error_class",
    "error_from_code",
]


class OcppError(Exception):
    """Base of all OCPP errors; ``code`` is the 1.6 wire spelling of the CALLERROR errorCode.

    ``unique_id`` and ``message_type_id`` are filled in by the frame parser when it could read
    them from a broken frame, so that the connection can still answer a CALL (OCPP-J 4.2.3 lists
    "unique identifier too long" and missing fields as reasons to answer with a CALLERROR).
    """

    code: ClassVar[str] = "GenericError"

    def __init__(
        self,
        description: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        unique_id: str | None = None,
        message_type_id: int | None = None,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.details: dict[str, Any] = dict(details) if details else {}
        self.unique_id = unique_id
        self.message_type_id = message_type_id

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.description else self.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, unique_id={self.unique_id!r})"


class NotImplementedCall(OcppError):
    """Requested Action is not known by the receiver."""

    code = "NotImplemented"


class NotSupported(OcppError):
    """Requested Action is recognised but not supported by the receiver."""

    code = "NotSupported"


class InternalError(OcppError):
    """The receiver failed internally; the description never carries internals."""

    code = "InternalError"


class ProtocolError(OcppError):
    """Payload (or frame) is incomplete."""

    code = "ProtocolError"


class SecurityError(OcppError):
    """A security issue prevented the receiver from completing the Action."""

    code = "SecurityError"


class FormationViolation(OcppError):
    """Syntactically incorrect, or not conforming to the PDU structure."""

    code = "FormationViolation"


class PropertyConstraintViolation(OcppError):
    """Syntactically correct, but a field holds an invalid value (enum, length, range, time)."""

    code = "PropertyConstraintViolation"


class OccurenceConstraintViolation(OcppError):
    """A field violates its occurrence constraint (required field missing, empty 1..* list).

    The class name keeps the 1.6 spelling ("Occurence") so that it reads like the wire code.
    """

    code = "OccurenceConstraintViolation"


class TypeConstraintViolation(OcppError):
    """A field has the wrong JSON type (e.g. ``"somestring": 12``)."""

    code = "TypeConstraintViolation"


class GenericError(OcppError):
    """Any other error."""

    code = "GenericError"


ERROR_CLASSES: Mapping[str, type[OcppError]] = MappingProxyType(
    {
        cls.code: cls
        for cls in (
            NotImplementedCall,
            NotSupported,
            InternalError,
            ProtocolError,
            SecurityError,
            FormationViolation,
            PropertyConstraintViolation,
            OccurenceConstraintViolation,
            TypeConstraintViolation,
            GenericError,
        )
    }
)


def error_class(code: str) -> type[OcppError]:
    """The class for a wire errorCode; an unknown code maps to :class:`GenericError`."""
    return ERROR_CLASSES.get(code, GenericError)


def error_from_code(
    code: str, description: str = "", details: Mapping[str, Any] | None = None
) -> OcppError:
    """Rebuild an error received in a CALLERROR, e.g. to raise it in a simulator."""
    return error_class(code)(description, details)
