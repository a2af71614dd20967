"""Our models against the official OCPP 1.6 JSON schemas shipped in the ``ocpp`` package.

1. Structure: every model has exactly the schema's properties, required fields, enum values,
   string limits and number types, recursively.
2. Output: any model hypothesis can build serialises (``to_payload``) to JSON that the schema
   accepts, with date-time and uri formats checked. JSON numbers are read as ``Decimal`` so that
   ``multipleOf: 0.1`` is checked exactly, as the schema means it, not in binary floating point.
"""

from __future__ import annotations

import json
import re
import types
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from importlib import resources
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from annotated_types import MaxLen, MinLen
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.validators import validator_for
from pydantic import BaseModel

from protocol import ACTIONS, encode_frame, parse_frame, parse_request, parse_response, to_payload
from protocol.frames import Call, CallResult
from protocol.messages.base import Decimal1, Uri
from protocol.messages.enums import UnitOfMeasure
from protocol.messages.timestamps import DateTime, LenientDateTime
from tests.protocol.ocpp_corpus import CALLS, RESULTS
from tests.protocol.ocpp_strategies import for_model

DRAFT_04 = "http://json-schema.org/draft-04/schema#"

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _is_date_time(instance: object) -> bool:
    # RFC 3339 section 5.6 "date-time", which JSON Schema's format refers to.
    if not isinstance(instance, str):
        return True
    if not _RFC3339.fullmatch(instance):
        return False
    datetime.fromisoformat(instance.upper().replace("Z", "+00:00"))  # ValueError: bad fields
    return True


def _is_uri(instance: object) -> bool:
    # RFC 3986 absolute URI: a scheme, then no whitespace.
    return not isinstance(instance, str) or bool(
        re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", instance)
    )


FORMATS = FormatChecker(formats=())
FORMATS.checks("date-time", raises=ValueError)(_is_date_time)
FORMATS.checks("uri")(_is_uri)


@cache
def schema_of(name: str) -> dict[str, Any]:
    text = (resources.files("ocpp") / "v16" / "schemas" / f"{name}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return schema


@cache
def validator_of(name: str) -> Draft4Validator:
    schema = schema_of(name)
    assert schema["$schema"] == DRAFT_04
    assert validator_for(schema) is Draft4Validator
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=FORMATS)


def as_json(payload: dict[str, Any]) -> Any:
    # Through the real wire text, numbers read exactly.
    text = encode_frame(CallResult("x", payload))
    return json.loads(text, parse_float=Decimal)[2]


def schema_names(action: str) -> tuple[str, str]:
    return action, f"{action}Response"


MODELS = [
    pytest.param(schema, model, id=schema)
    for action, spec in sorted(ACTIONS.items())
    for schema, model in zip(schema_names(action), (spec.request, spec.response), strict=True)
]


def test_format_checker_is_active() -> None:
    validator = validator_of("Heartbeat" + "Response")
    assert validator.is_valid({"currentTime": "2024-05-01T12:00:00Z"})
    assert not validator.is_valid({"currentTime": "2024-05-01 noon"})
    assert not validator.is_valid({"currentTime": "2024-13-01T12:00:00Z"})
    assert not validator_of("GetDiagnostics").is_valid({"location": "no scheme here"})
    period = {"startPeriod": 0, "limit": Decimal("0.35")}
    schedule = {"chargingRateUnit": "W", "chargingSchedulePeriod": [period]}
    assert not validator_of("GetCompositeScheduleResponse").is_valid(
        {"status": "Accepted", "chargingSchedule": schedule}
    )


# -- 1. structure --------------------------------------------------------------------------------


def _strip(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """Drop Optional and Annotated, keeping the metadata; our scalar aliases stay whole."""
    meta: tuple[Any, ...] = ()
    while True:
        if any(tp == alias for alias in (DateTime, LenientDateTime, Uri, Decimal1)):
            return tp, meta
        origin = get_origin(tp)
        if origin is Annotated:
            base, *extra = get_args(tp)
            if any(
                Annotated[base, *extra] == a for a in (DateTime, LenientDateTime, Uri, Decimal1)
            ):
                return Annotated[base, *extra], meta
            tp, meta = base, (*meta, *extra)
        elif origin in (Union, types.UnionType) and type(None) in get_args(tp):
            (tp,) = [a for a in get_args(tp) if a is not type(None)]
        else:
            return tp, meta


def _compare_value(tp: Any, sub: dict[str, Any], where: str) -> None:
    tp, meta = _strip(tp)
    assert ("multipleOf" in sub) == (tp == Decimal1), where
    if tp in (DateTime, LenientDateTime):
        assert sub == {"type": "string", "format": "date-time"}, where
    elif tp == Uri:
        assert sub == {"type": "string", "format": "uri"}, where
    elif tp == Decimal1:
        assert sub == {"type": "number", "multipleOf": Decimal("0.1")}, where
    elif get_origin(tp) is list:
        assert sub["type"] == "array", where
        model_min = max((m.min_length for m in meta if isinstance(m, MinLen)), default=0)
        # The model may be stricter where the section 7 table says 1..* and a schema forgot.
        assert model_min >= sub.get("minItems", 0), where
        _compare_value(get_args(tp)[0], sub["items"], f"{where}[]")
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        assert sub["type"] == "object", where
        _compare_model(tp, sub, where)
    elif isinstance(tp, type) and issubclass(tp, Enum):
        assert sub["type"] == "string", where
        ours = {member.value for member in tp}
        if tp is UnitOfMeasure and "Hertz" not in sub["enum"]:
            ours.discard("Hertz")  # only the MeterValues schema lists it
        assert ours == set(sub["enum"]), where
    elif tp is str:
        assert sub["type"] == "string", where
        max_len = next((m.max_length for m in meta if isinstance(m, MaxLen)), None)
        assert max_len == sub.get("maxLength"), where
    else:
        expected = {int: "integer", bool: "boolean"}[tp]
        assert sub == {"type": expected}, where


def _compare_model(model: type[BaseModel], schema: dict[str, Any], where: str) -> None:
    fields = {field.alias: field for field in model.model_fields.values()}
    assert set(fields) == set(schema.get("properties", {})), where
    required = {alias for alias, field in fields.items() if field.is_required()}
    assert required == set(schema.get("required", [])), where
    assert schema["additionalProperties"] is False, where
    for alias, field in fields.items():
        _compare_value(field.rebuild_annotation(), schema["properties"][alias], f"{where}.{alias}")


@pytest.mark.parametrize(("schema", "model"), MODELS)
def test_model_matches_schema_structure(schema: str, model: type[BaseModel]) -> None:
    _compare_model(model, schema_of(schema), schema)


# -- 2. output ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "model"), MODELS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_serialised_model_validates_against_official_schema(
    schema: str, model: type[BaseModel], data: st.DataObject
) -> None:
    instance = data.draw(for_model(model), label=schema)
    payload = to_payload(instance)
    if schema == "StopTransaction":
        units = {
            v.get("unit") for mv in payload.get("transactionData", []) for v in mv["sampledValue"]
        }
        assume("Hertz" not in units)  # not in that schema's unit list, see UnitOfMeasure
    errors = [e.message for e in validator_of(schema).iter_errors(as_json(payload))]
    assert errors == []
    # And what we write, we read back as the same message.
    again = type(instance).model_validate(payload, by_name=False)
    assert again == instance


def test_literal_corpus_validates_against_official_schema() -> None:
    for action, text in CALLS.items():
        call = parse_frame(text)
        assert isinstance(call, Call)
        assert validator_of(action).is_valid(json.loads(text, parse_float=Decimal)[3]), action
        receiver = next(iter(ACTIONS[action].senders)).peer
        assert parse_request(action, call.payload, receiver_role=receiver)
    for action, text in RESULTS.items():
        result = parse_frame(text)
        assert isinstance(result, CallResult)
        schema = f"{action}Response"
        assert validator_of(schema).is_valid(json.loads(text, parse_float=Decimal)[2]), action
        assert parse_response(action, result.payload)
