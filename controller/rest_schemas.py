"""REST request bodies and the error format (docs/api.md, "Bodies" and "Errors").

Bodies are validated strictly from the JSON text: ``"150"`` is not a number,
``true`` is not a number, an unknown key is an error (a typo must not fall back
silently to a default). Every problem names its field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from controller.config import describe_error, field_path

PositiveKw = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeKw = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=True
    )


class StartSessionBody(_Body):
    charger_id: Annotated[str, Field(min_length=1)]
    connector_id: Annotated[int, Field(ge=0)]
    # Optional: without it the vehicle is assumed to take what the charger gives.
    vehicle_max_power: PositiveKw | None = None


class StopSessionBody(_Body):
    consumed_energy: NonNegativeKw | None = None


class PowerUpdateBody(_Body):
    consumed_power: NonNegativeKw | None = None
    vehicle_max_power: PositiveKw | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> PowerUpdateBody:
        if self.consumed_power is None and self.vehicle_max_power is None:
            raise ValueError("give consumedPower, vehicleMaxPower or both")
        return self


BodyT = TypeVar("BodyT", bound=_Body)


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
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
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
        details = []
        for item in error.errors():
            loc = item["loc"]
            field = field_path(loc) if loc else "(body)"
            message = describe_error(item)
            if item["type"] == "value_error":
                message = str(item.get("ctx", {}).get("error", message))
            details.append({"field": field, "message": message})
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ApiError(400, "invalid_field", summary, details) from None
