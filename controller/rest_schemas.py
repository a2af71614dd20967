"""REST request bodies and the error format (docs/api.md, "Bodies" and "Errors").

Bodies are validated strictly from the JSON text: ``"150"`` is not a number,
``true`` is not a number, an unknown key is an error (a typo must not fall back
silently to a default). Every problem names its field.

Every number has a range (docs/security-input.md): powers and energies are finite,
non-negative and at most 1,000,000 kW / kWh, so that every sum of them in the status
stays finite; a body nested deeper than 64 levels or holding an integer of more than
100 digits is refused before it is decoded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from controller.config import (
    MAX_KW,
    STRICT_JSON,
    NonEmptyId,
    NonNegativeKw,
    PositiveKw,
    describe_error,
    field_path,
)
from protocol import json_limits
from protocol.json_limits import JsonLimitError

# Connector numbers are int32 as in OCPP; which exist on a charger is the core's answer.
MAX_CONNECTOR_ID = 2**31 - 1


def _whole_number(value: Any) -> Any:
    """JSON has one kind of number: ``1.0`` is the integer 1 (as JSON Schema says, and so the
    API's document), while ``1.5``, ``"1"`` and ``true`` stay errors."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Phases = Literal[1, 2, 3]


class _Body(BaseModel):
    model_config = STRICT_JSON


class StartSessionBody(_Body):
    """Start a session on a connector (docs/api.md, "POST /sessions")."""

    charger_id: NonEmptyId
    connector_id: Annotated[int, Field(ge=0, le=MAX_CONNECTOR_ID), BeforeValidator(_whole_number)]
    # Optional: without it the vehicle is assumed to take what the charger gives.
    vehicle_max_power: PositiveKw | None = None
    # How many phases the vehicle charges on (docs/electrical.md); default its charger's.
    phases: Phases | None = None


class StopSessionBody(_Body):
    """Stop a session; an empty body keeps the energy known so far."""

    consumed_energy: NonNegativeKw | None = None


class PowerUpdateBody(_Body):
    """A session's power now, its vehicle's new maximum, its phases: at least one."""

    # The document says what the validator below checks, so that a generated client knows.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["consumedPower"]},
                {"required": ["vehicleMaxPower"]},
                {"required": ["phases"]},
            ]
        }
    )

    consumed_power: NonNegativeKw | None = None
    vehicle_max_power: PositiveKw | None = None
    phases: Phases | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> PowerUpdateBody:
        if self.consumed_power is None and self.vehicle_max_power is None and self.phases is None:
            raise ValueError("give consumedPower, vehicleMaxPower, phases or any of them")
        return self


class ExternalLimitBody(_Body):
    """Cap the station's root limit (docs/site.md, "External limit")."""

    max_power: NonNegativeKw
    # Until when, with its time zone; without it (or null) until DELETE /station/limit.
    until: AwareDatetime | None = None
    reason: Annotated[str, Field(max_length=200)] = ""


Amps = Annotated[float, Field(ge=-100_000, le=100_000, allow_inf_nan=False)]


class SiteMeterBody(_Body):
    """A reading of the site's grid meter, pushed by an integration (docs/site.md)."""

    # kW at the connection point, the whole site: import positive, export negative.
    power: Annotated[float, Field(ge=-MAX_KW, le=MAX_KW, allow_inf_nan=False)]
    currents: tuple[Amps, Amps, Amps] | None = None
    # When it was measured, with its time zone; without it, now.
    timestamp: AwareDatetime | None = None


class _Query(BaseModel):
    """Query parameters: text converted to numbers; an unknown parameter is an error, like
    an unknown body field (``?stauts=active`` must not answer every session)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SessionsQuery(_Query):
    status: Annotated[
        Literal["active", "stopped"] | None,
        Field(description="only active or only stopped sessions; without it, both"),
    ] = None
    limit: Annotated[
        int, Field(ge=1, le=100_000, description="how many stopped sessions at most")
    ] = 1000


class EventsQuery(_Query):
    since: Annotated[int, Field(ge=0, le=2**62, description="only events with a seq above it")] = 0
    limit: Annotated[int, Field(ge=1, le=10_000, description="how many events at most")] = 1000


BodyT = TypeVar("BodyT", bound=_Body)
QueryT = TypeVar("QueryT", bound=_Query)


class ApiError(Exception):
    """An error answer: HTTP status, stable code, a sentence, and per-field details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": self.details}


def parse_body(model: type[BodyT], raw: bytes, *, empty_ok: bool = False) -> BodyT:
    """JSON text -> model, or ApiError(400) naming every bad field."""
    if not raw.strip():
        if empty_ok:
            raw = b"{}"
        else:
            raise ApiError(400, "malformed_json", "the request body is empty; send a JSON object")
    try:
        # NaN and infinities are let through here so that validation names their field.
        data = json_limits.loads(raw, finite=False)
    except JsonLimitError as error:
        raise ApiError(400, "malformed_json", f"the request body is refused: {error}") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        where = (
            f" (line {error.lineno}, column {error.colno}: {error.msg})"
            if isinstance(error, json.JSONDecodeError)
            else ""
        )
        raise ApiError(
            400, "malformed_json", f"the request body is not valid JSON{where}"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the request body must be a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        raise invalid_fields(error, "(body)") from None


def parse_query(model: type[QueryT], query: Mapping[str, str]) -> QueryT:
    """A request's query string -> model, or ApiError(400) naming every bad parameter."""
    try:
        return model.model_validate(dict(query))
    except ValidationError as error:
        raise invalid_fields(error, "(query)") from None


def invalid_fields(error: ValidationError, whole: str) -> ApiError:
    """The 400 answer for a validation error: one detail per bad field (``whole`` names a
    problem of the body or query as a whole)."""
    details = []
    for item in error.errors():
        loc = item["loc"]
        field = field_path(loc) if loc else whole
        message = describe_error(item)
        if item["type"] == "value_error":
            message = str(item.get("ctx", {}).get("error", message))
        details.append({"field": field, "message": message})
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return ApiError(400, "invalid_field", summary, details)
