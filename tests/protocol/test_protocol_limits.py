"""Numbers and JSON out of range (docs/security-input.md): nesting deeper than 64 levels and
integers of more than 100 digits are refused before they cost anything, with the CALL still
answered; integers are int32 as the 1.6 types are, meter registers below 2**53."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol import (
    CallErrored,
    CallReceived,
    CallRejected,
    Connection,
    FormationViolation,
    FrameRejected,
    OcppError,
    PropertyConstraintViolation,
    Role,
    parse_frame,
    parse_request,
)
from protocol.json_limits import MAX_DEPTH, MAX_DIGITS, JsonLimitError, check_depth, loads
from protocol.messages import ResetRequest, ResetType

AT = "2024-05-01T12:00:00Z"


def nested(levels: int, leaf: str = "1") -> str:
    """``levels`` arrays and objects in turn around ``leaf``: [{"k":[{"k":...}]}]."""
    text = leaf
    for level in range(levels):
        text = f"[{text}]" if level % 2 else f'{{"k":{text}}}'
    return text


def frame(payload: str, unique_id: str = "u1", action: str = "DataTransfer") -> str:
    return f'[2,"{unique_id}","{action}",{payload}]'


# -- the JSON limits on their own ---------------------------------------------------------------


def test_depth_up_to_the_limit_is_decoded() -> None:
    text = nested(MAX_DEPTH)
    check_depth(text)
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 100_000])
def test_one_level_more_is_refused_without_recursing(levels: int) -> None:
    with pytest.raises(JsonLimitError, match="nested deeper than 64 levels"):
        loads(nested(levels))


def test_a_deep_branch_among_shallow_ones_counts() -> None:
    wide = "[" + ",".join(["[1]"] * 500 + [nested(MAX_DEPTH)] + ["{}"] * 500) + "]"
    with pytest.raises(JsonLimitError):
        loads(wide)
    assert loads(wide.replace(nested(MAX_DEPTH), nested(MAX_DEPTH - 1)))


@pytest.mark.parametrize("inside", ["[" * 200, "{" * 200, '\\"' + "[" * 200, "\\\\" + "[" * 100])
def test_brackets_in_strings_are_not_nesting(inside: str) -> None:
    text = json.dumps({"data": [inside, {"more": inside}]})
    assert text.count("[") + text.count("{") > MAX_DEPTH  # past the first count
    assert loads(text) == json.loads(text)


def test_an_escaped_backslash_ends_before_the_quote() -> None:
    # "\\" is a whole string: the brackets after it are nesting again.
    text = '["\\\\",' + nested(MAX_DEPTH) + "]"
    with pytest.raises(JsonLimitError):
        loads(text)


@pytest.mark.parametrize("sign", ["", "-"])
def test_integers_of_up_to_100_digits_are_decoded(sign: str) -> None:
    digits = "9" * MAX_DIGITS
    assert loads(f"[{sign}{digits}]") == [int(sign + digits)]


@pytest.mark.parametrize("digits", [MAX_DIGITS + 1, 4300, 100_000])
def test_longer_integers_are_refused_before_they_are_built(digits: int) -> None:
    with pytest.raises(JsonLimitError, match="more than 100 digits"):
        loads(f'{{"n": -{"1" * digits}}}')


def test_long_digit_runs_in_strings_are_text() -> None:
    text = json.dumps({"data": "7" * 10_000})
    assert loads(text) == {"data": "7" * 10_000}


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "[-Infinity]", "[1e400]", "[-1e999]"])
def test_nan_infinity_and_overflowing_numbers_are_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


# -- frames -------------------------------------------------------------------------------------


def test_a_deep_call_is_answered_with_a_formation_violation() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM)
    deep = frame('{"vendorId":"v","data":"x","extra":' + nested(100_000) + "}", "deep-1")
    events = conn.receive(deep, now=0.0)
    assert [type(e) for e in events] == [CallRejected]
    [reply] = conn.data_to_send()
    kind, unique_id, code, description, details = json.loads(reply)
    assert (kind, unique_id, code, details) == (4, "deep-1", "FormationViolation", {})
    assert description == "frame is over a JSON limit: nested deeper than 64 levels"
    # The connection goes on: the next CALL is served.
    [event] = conn.receive('[2,"next","Heartbeat",{}]', now=0.0)
    assert isinstance(event, CallReceived) and event.unique_id == "next"


def test_a_long_integer_is_answered_with_a_formation_violation() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM)
    text = frame('{"connectorId":' + "1" * 100_000 + ',"meterValue":[]}', "big", "MeterValues")
    [event] = conn.receive(text.encode(), now=0.0)
    assert isinstance(event, CallRejected)
    assert event.error.code == "FormationViolation"
    assert "more than 100 digits" in event.error.description
    [reply] = conn.data_to_send()
    assert json.loads(reply)[:3] == [4, "big", "FormationViolation"]


def test_without_a_readable_id_nothing_can_be_answered() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM)
    [event] = conn.receive(nested(100), now=0.0)
    assert isinstance(event, FrameRejected)
    assert event.error.code == "FormationViolation"
    assert conn.data_to_send() == []


def test_an_answer_over_the_limit_still_ends_our_call() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM, id_factory=lambda: "r1")
    conn.send_call(ResetRequest(type=ResetType.SOFT), now=0.0)
    [event] = conn.receive('[3,"r1",' + nested(200) + "]", now=0.0)
    assert isinstance(event, CallErrored)
    assert (event.unique_id, event.error_code, event.local) == ("r1", "FormationViolation", True)
    assert conn.outstanding_call is None


def test_depth_64_frames_are_parsed() -> None:
    # The frame is one level, the payload another: 62 more inside still fit.
    payload = '{"vendorId":"v","extra":' + nested(MAX_DEPTH - 2) + "}"
    parsed = parse_frame(frame(payload))
    assert parsed is not None
    with pytest.raises(FormationViolation, match="nested deeper"):
        parse_frame(frame('{"vendorId":"v","extra":' + nested(MAX_DEPTH - 1) + "}"))


# -- integers in messages -----------------------------------------------------------------------


def start(**fields: Any) -> dict[str, Any]:
    return {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": AT} | fields


def parse(action: str, payload: dict[str, Any]) -> Any:
    return parse_request(action, payload, receiver_role=Role.CENTRAL_SYSTEM)


def meter_values(**fields: Any) -> dict[str, Any]:
    sample = {"timestamp": AT, "sampledValue": [{"value": "1"}]}
    return {"connectorId": 1, "meterValue": [sample]} | fields


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("StartTransaction", start(connectorId=2**31 - 1, reservationId=-(2**31))),
        ("StartTransaction", start(meterStart=2**53 - 1)),
        ("StartTransaction", start(meterStart=-(2**53 - 1))),
        ("StopTransaction", {"meterStop": 2**53 - 1, "timestamp": AT, "transactionId": 2**31 - 1}),
        ("MeterValues", meter_values(transactionId=-(2**31))),
        (
            "StatusNotification",
            {"connectorId": 2**31 - 1, "errorCode": "NoError", "status": "Available"},
        ),
    ],
)
def test_integers_at_their_bounds_are_accepted(action: str, payload: dict[str, Any]) -> None:
    assert parse(action, payload)


@pytest.mark.parametrize(
    ("action", "payload", "field"),
    [
        ("StartTransaction", start(connectorId=2**31), "connectorId"),
        ("StartTransaction", start(reservationId=-(2**31) - 1), "reservationId"),
        ("StartTransaction", start(meterStart=2**53), "meterStart"),
        ("StartTransaction", start(meterStart=-(2**53)), "meterStart"),
        ("StartTransaction", start(meterStart=10**99), "meterStart"),
        ("StopTransaction", {"meterStop": 2**53, "timestamp": AT, "transactionId": 1}, "meterStop"),
        (
            "StopTransaction",
            {"meterStop": 0, "timestamp": AT, "transactionId": 2**31},
            "transactionId",
        ),
        ("MeterValues", meter_values(connectorId=2**40), "connectorId"),
        ("MeterValues", meter_values(transactionId=2**31), "transactionId"),
        (
            "StatusNotification",
            {"connectorId": 2**31, "errorCode": "NoError", "status": "Available"},
            "connectorId",
        ),
    ],
)
def test_integers_out_of_range_are_a_property_constraint_violation(
    action: str, payload: dict[str, Any], field: str
) -> None:
    with pytest.raises(PropertyConstraintViolation, match=field):
        parse(action, payload)


def test_out_of_range_call_is_answered_and_the_connection_goes_on() -> None:
    conn = Connection(Role.CENTRAL_SYSTEM)
    [event] = conn.receive(json.dumps([2, "s1", "StartTransaction", start(meterStart=2**60)]), 0.0)
    assert isinstance(event, CallRejected)
    assert isinstance(event.error, OcppError)
    [reply] = conn.data_to_send()
    assert json.loads(reply)[:3] == [4, "s1", "PropertyConstraintViolation"]
    [event] = conn.receive(json.dumps([2, "s2", "StartTransaction", start()]), 0.0)
    assert isinstance(event, CallReceived)
