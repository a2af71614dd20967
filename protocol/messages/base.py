"""Base model and field types shared by all OCPP 1.6 messages (OCPP 1.6 ed. 2, section 7).

Fields mirror the official JSON schemas: JSON types are strict (``"1"`` is not an integer, ``1``
is not a string, ``true`` is not a number) because the schemas say so and a mismatch must come
out as a TypeConstraintViolation, not be silently coerced. An optional field sent as ``null`` is
read as absent: the schemas do not allow it, but it carries no information and refusing it would
only make chargers retry.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from annotated_types import Ge, Le, MaxLen
from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, Strict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "METER_MAX",
    "Boolean",
    "CiString20",
    "CiString25",
    "CiString50",
    "CiString255",
    "CiString500",
    "ConnectorId",
    "Decimal1",
    "Integer",
    "MeterInteger",
    "NonNegativeInteger",
    "OcppModel",
    "Text",
    "Uri",
    "to_payload",
]


class OcppModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields refused, since every 1.6
    schema says ``additionalProperties: false``. Instances are immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


def to_payload(model: BaseModel) -> dict[str, Any]:
    """The JSON payload of a message: camelCase keys, absent optionals omitted, UTC ``Z`` times."""
    # ``model.model_dump(mode="json", by_alias=True, exclude_none=True)`` without its Python
    # wrapper, which costs twice the serialisation itself; this runs for every message sent.
    payload: dict[str, Any] = model.__pydantic_serializer__.to_python(
        model, mode="json", by_alias=True, exclude_none=True
    )
    return payload


# The 1.6 schemas say "integer" without a size; OCPP's own data types are 32-bit signed integers
# (the "integer" of OCPP 2.0.1 part 2, section 2.1: "32 bit (31 bit resolution, 1 sign bit)"),
# and so are chargers' firmware fields. A value outside is a PropertyConstraintViolation.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# Energy registers in Wh (meterStart, meterStop) are schema integers too, but a busy charger's
# lifetime register may pass 2**31 Wh (2,147 MWh): they may go up to what a double holds
# exactly, which is what the controller computes with.
METER_MAX = 2**53 - 1

Integer = Annotated[int, Strict(), Ge(INT32_MIN), Le(INT32_MAX)]
MeterInteger = Annotated[int, Strict(), Ge(-METER_MAX), Le(METER_MAX)]
Boolean = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]

# OCPP 1.6 section 7: CiStringNType is a case-insensitive string of at most N characters. Case
# matters only when comparing (e.g. idTags), which is the controller's business.
CiString20 = Annotated[str, Strict(), MaxLen(20)]
CiString25 = Annotated[str, Strict(), MaxLen(25)]
CiString50 = Annotated[str, Strict(), MaxLen(50)]
CiString255 = Annotated[str, Strict(), MaxLen(255)]
CiString500 = Annotated[str, Strict(), MaxLen(500)]

# Connector 0 means the whole charge point; the field descriptions in section 6 say ">= 0".
# Only used outside the transaction messages, which section 3.7 wants answered regardless.
ConnectorId = Annotated[int, Strict(), Ge(0), Le(INT32_MAX)]
NonNegativeInteger = Annotated[int, Strict(), Ge(0), Le(INT32_MAX)]


def _check_uri(value: str) -> str:
    # Schema "format: uri" (xs:anyURI in section 6): an absolute URI with a scheme.
    scheme, sep, rest = value.partition(":")
    if not (
        sep
        and rest
        and scheme[:1].isascii()
        and scheme[:1].isalpha()
        and all(c.isascii() and (c.isalnum() or c in "+-.") for c in scheme)
        and not any(c.isspace() or ord(c) < 0x20 for c in value)
    ):
        raise PydanticCustomError("uri_format", "Input should be an absolute URI")
    return value


Uri = Annotated[str, Strict(), AfterValidator(_check_uri)]


def _check_one_decimal(value: float) -> float:
    # Schema "multipleOf: 0.1" (section 7.13: "decimal, one digit fraction allowed"). A float
    # passes when it is the double nearest to a one-decimal number, i.e. its shortest repr has
    # at most one fraction digit, so it is written back exactly as such.
    if not math.isfinite(value) or round(value, 1) != value:
        raise PydanticCustomError(
            "multiple_of", "Input should be a finite number with at most one decimal"
        )
    return value


def _write_number(value: float) -> float | int:
    # A whole number goes out as 7000, not 7000.0: the same value, as a charger expects to read it.
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


Decimal1 = Annotated[
    float,
    Strict(),
    AfterValidator(_check_one_decimal),
    PlainSerializer(_write_number, when_used="json"),
]
