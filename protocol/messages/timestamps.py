"""ISO 8601 timestamps on the wire (OCPP 1.6 edition 2, section 3.15 "Time notations").

Incoming: ``YYYY-MM-DDThh:mm[:ss[.fraction]][Z|+hh:mm]``. The spec requires receivers to handle
fractional seconds and offsets; a timestamp without an offset is read as UTC, because the spec
says time SHOULD be UTC and real chargers omit the ``Z``. Values are normalised to aware UTC.
A leap second (second ``60``, e.g. ``2026-12-31T23:59:60Z``) is a valid JSON-schema date-time
(RFC 3339) but has no Python ``datetime``: it is read as the last microsecond of its minute,
``23:59:59.999999`` (any fraction dropped), which keeps its date and its order between the
seconds around it, and cannot overflow at year 9999 as "the next second" could.
Outgoing: always UTC with ``Z``, milliseconds only when needed, e.g. ``2024-05-01T12:00:00Z``.

Two field types use this:

* ``DateTime``: a bad timestamp is a PropertyConstraintViolation.
* ``LenientDateTime``: for StartTransaction, StopTransaction and MeterValues only. Section 3.7
  requires the Central System to answer transaction messages whatever their content, so an
  unparseable timestamp string is kept verbatim as :class:`UnparsedTimestamp` instead of failing
  the whole message; the controller decides what to do with it (``parsed_datetime`` gives
  ``None``). A non-string value is still a TypeConstraintViolation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Final

from pydantic import PlainSerializer, PlainValidator
from pydantic_core import PydanticCustomError

__all__ = [
    "DateTime",
    "LenientDateTime",
    "UnparsedTimestamp",
    "format_datetime",
    "parse_datetime",
    "parsed_datetime",
]

_ISO_8601: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)


_CANONICAL_LENGTH: Final = len("2024-05-01T12:00:00Z")
_LEAP_SECOND: Final = "60"
_LAST_MICROSECOND: Final = 999_999


def parse_datetime(text: str) -> datetime:
    """Parse an ISO 8601 date-time into an aware UTC datetime; ValueError when it is not one."""
    match = _ISO_8601.fullmatch(text)
    if match is None:
        raise ValueError("not an ISO 8601 date-time")
    if len(text) == _CANONICAL_LENGTH and text[10] == "T" and text[19] == "Z" and text[17] != "6":
        # The form nearly every charger sends, 2024-05-01T12:00:00Z (the match above proves the
        # digits): the C parser gives the same aware UTC datetime, or the same ValueError for a
        # day or hour out of range, at a fraction of the cost. Seconds 6x go the general way:
        # the C parser refuses the leap second 60.
        return datetime.fromisoformat(text)
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if second == _LEAP_SECOND:
        second, micro = "59", _LAST_MICROSECOND  # see the module docstring
    tz = UTC
    if sign is not None:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        tz = timezone(-offset if sign == "-" else offset)  # ValueError when >= 24 h
    local = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
    )
    try:
        return local.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time out of range") from None


def format_datetime(value: datetime) -> str:
    """UTC with ``Z``; a naive datetime is taken as UTC."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    micro = utc.microsecond
    spec = "seconds" if micro == 0 else "milliseconds" if micro % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("datetime_range", "Date-time is out of range") from None


def _validate_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return _as_utc(value)
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 date-time string")
    try:
        return parse_datetime(value)
    except ValueError:
        raise PydanticCustomError(
            "datetime_format", "Input should be an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z"
        ) from None


@dataclass(frozen=True, slots=True)
class UnparsedTimestamp:
    """A transaction-message timestamp that is not ISO 8601, kept verbatim (OCPP 1.6 s. 3.7)."""

    raw: str


def _validate_lenient(value: object) -> datetime | UnparsedTimestamp:
    if isinstance(value, UnparsedTimestamp):
        return value
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except ValueError:
            return UnparsedTimestamp(value)
    return _validate_datetime(value)


def _serialise_lenient(value: datetime | UnparsedTimestamp) -> str:
    return value.raw if isinstance(value, UnparsedTimestamp) else format_datetime(value)


def parsed_datetime(value: datetime | UnparsedTimestamp) -> datetime | None:
    """The datetime of a lenient timestamp, or None when the charger sent garbage."""
    return None if isinstance(value, UnparsedTimestamp) else value


DateTime = Annotated[
    datetime,
    PlainValidator(_validate_datetime),
    PlainSerializer(format_datetime, return_type=str, when_used="json"),
]

LenientDateTime = Annotated[
    datetime | UnparsedTimestamp,
    PlainValidator(_validate_lenient),
    PlainSerializer(_serialise_lenient, return_type=str, when_used="json"),
]
