"""Each CALLERROR code for the input OCPP-J 1.6 (section 4.2.3, table 7) assigns it to.

Frames arrive at a central system; the table gives what the connection reports and, when the
CALL had a readable id, the CALLERROR it wrote back by itself.
"""

from __future__ import annotations

import json

import pytest

from protocol import (
    ERROR_CLASSES,
    CallReceived,
    CallRejected,
    Connection,
    FormationViolation,
    FrameRejected,
    GenericError,
    OccurenceConstraintViolation,
    OcppError,
    PropertyConstraintViolation,
    Role,
    TypeConstraintViolation,
    error_class,
    error_from_code,
    parse_frame,
)
from protocol.messages import UnparsedTimestamp

STATUS = '"connectorId":1,"errorCode":"NoError","status":"Available"'
START = '"connectorId":1,"idTag":"TAG1","meterStart":0'

# (frame text, expected errorCode, unique id answered or None when nothing can be sent)
CASES: list[tuple[str, str, str | None]] = [
    # Frame level.
    ("this is not json", "FormationViolation", None),
    ('{"not": "an array"}', "FormationViolation", None),
    ("[]", "FormationViolation", None),
    ('["2","1","Heartbeat",{}]', "FormationViolation", None),
    ('[2.0,"1","Heartbeat",{}]', "FormationViolation", None),
    ('[2,17,"Heartbeat",{}]', "FormationViolation", None),
    ("[2]", "ProtocolError", None),
    ('[2,"1","Heartbeat",NaN]', "FormationViolation", None),
    ('[2,"1","Heartbeat"]', "ProtocolError", "1"),
    ('[2,"1","Heartbeat",{},{}]', "FormationViolation", "1"),
    ('[2,"1",7,{}]', "FormationViolation", "1"),
    ('[2,"1","Heartbeat",[]]', "FormationViolation", "1"),
    (f'[2,"{"x" * 37}","Heartbeat",{{}}]', "FormationViolation", "x" * 37),
    # Action level.
    ('[2,"1","Teleport",{}]', "NotImplemented", "1"),
    ('[2,"1","Reset",{"type":"Hard"}]', "NotSupported", "1"),
    ('[2,"1","SetChargingProfile",{}]', "NotSupported", "1"),
    # Payload level.
    ('[2,"1","BootNotification",{"chargePointVendor":"V"}]', "OccurenceConstraintViolation", "1"),
    (
        '[2,"1","MeterValues",{"connectorId":1,"meterValue":[]}]',
        "OccurenceConstraintViolation",
        "1",
    ),
    (
        '[2,"1","StatusNotification",{"connectorId":"1","errorCode":"NoError","status":"Available"}]',
        "TypeConstraintViolation",
        "1",
    ),
    ('[2,"1","Authorize",{"idTag":12}]', "TypeConstraintViolation", "1"),
    ('[2,"1","Authorize",{"idTag":null}]', "TypeConstraintViolation", "1"),
    (
        '[2,"1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":3}]',
        "TypeConstraintViolation",
        "1",
    ),
    (
        '[2,"1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Sleeping"}]',
        "PropertyConstraintViolation",
        "1",
    ),
    (
        '[2,"1","StatusNotification",{"connectorId":-1,"errorCode":"NoError","status":"Available"}]',
        "PropertyConstraintViolation",
        "1",
    ),
    (f'[2,"1","Authorize",{{"idTag":"{"T" * 21}"}}]', "PropertyConstraintViolation", "1"),
    (
        f'[2,"1","StatusNotification",{{{STATUS},"timestamp":"2024-13-01T00:00:00Z"}}]',
        "PropertyConstraintViolation",
        "1",
    ),
    (
        f'[2,"1","StatusNotification",{{{STATUS},"timestamp":"yesterday"}}]',
        "PropertyConstraintViolation",
        "1",
    ),
    ('[2,"1","Authorize",{"idTag":"T","colour":"red"}]', "FormationViolation", "1"),
    ('[2,"1","Authorize",{"id_tag":"T"}]', "FormationViolation", "1"),
]


def central_system() -> Connection:
    return Connection(Role.CENTRAL_SYSTEM, id_factory=lambda: "cs-1")


@pytest.mark.parametrize(("text", "code", "answered_id"), CASES)
def test_invalid_frame_gets_its_error_code(text: str, code: str, answered_id: str | None) -> None:
    conn = central_system()
    events = conn.receive(text, now=0.0)
    assert len(events) == 1
    event = events[0]
    if answered_id is None:
        assert isinstance(event, FrameRejected)
        assert event.error.code == code
        assert conn.data_to_send() == []
    else:
        assert isinstance(event, CallRejected)
        assert event.error.code == code
        [reply] = conn.data_to_send()
        kind, unique_id, wire_code, description, details = json.loads(reply)
        assert (kind, unique_id, wire_code, details) == (4, answered_id, code, {})
        assert isinstance(description, str)


def test_callerror_frame_is_exact() -> None:
    conn = central_system()
    conn.receive('[2,"42","Teleport",{}]', now=0.0)
    assert conn.data_to_send() == ['[4,"42","NotImplemented","unknown action \'Teleport\'",{}]']


def test_description_names_the_field_path() -> None:
    payload = (
        '{"connectorId":1,"csChargingProfiles":{"chargingProfileId":1,"stackLevel":0,'
        '"chargingProfilePurpose":"TxProfile","chargingProfileKind":"Relative",'
        '"chargingSchedule":{"chargingRateUnit":"W",'
        '"chargingSchedulePeriod":[{"startPeriod":0,"limit":"lots"}]}}}'
    )
    conn = Connection(Role.CHARGE_POINT)
    [event] = conn.receive(f'[2,"9","SetChargingProfile",{payload}]', now=0.0)
    assert isinstance(event, CallRejected)
    assert isinstance(event.error, TypeConstraintViolation)
    assert event.error.description == (
        "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit: "
        "Input should be a valid number"
    )


def test_missing_field_outranks_a_bad_value() -> None:
    conn = central_system()
    [event] = conn.receive('[2,"1","StatusNotification",{"connectorId":-1,"status":"X"}]', 0.0)
    assert isinstance(event, CallRejected)
    assert isinstance(event.error, OccurenceConstraintViolation)
    assert event.error.description.startswith("errorCode: Field required")


def test_unknown_message_type_is_ignored() -> None:
    # OCPP-J 1.6 section 4.1.3.
    assert parse_frame('[7,"1","Heartbeat",{}]') is None
    assert parse_frame("[5]") is None
    conn = central_system()
    assert conn.receive('[6,"1",{}]', now=0.0) == []
    assert conn.data_to_send() == []


def test_null_payload_is_an_empty_object() -> None:
    # OCPP-J 1.6 section 4.2.1 allows null for "no payload".
    [event] = central_system().receive('[2,"1","Heartbeat",null]', now=0.0)
    assert isinstance(event, CallReceived)


def test_bad_timestamp_tolerated_in_transaction_messages() -> None:
    # OCPP 1.6 section 3.7: transaction messages must always be answerable.
    conn = central_system()
    [event] = conn.receive(f'[2,"1","StartTransaction",{{{START},"timestamp":"soon"}}]', 0.0)
    assert isinstance(event, CallReceived)
    assert event.request.timestamp == UnparsedTimestamp("soon")  # type: ignore[attr-defined]
    stop = '{"meterStop":5,"transactionId":1,"timestamp":"?"}'
    [event] = conn.receive(f'[2,"2","StopTransaction",{stop}]', 0.0)
    assert isinstance(event, CallReceived)
    meter = '{"connectorId":1,"meterValue":[{"timestamp":"","sampledValue":[{"value":"1"}]}]}'
    [event] = conn.receive(f'[2,"3","MeterValues",{meter}]', 0.0)
    assert isinstance(event, CallReceived)


def test_timestamp_of_wrong_type_is_still_a_type_error_in_transactions() -> None:
    conn = central_system()
    [event] = conn.receive(f'[2,"1","StartTransaction",{{{START},"timestamp":5}}]', 0.0)
    assert isinstance(event, CallRejected)
    assert isinstance(event.error, TypeConstraintViolation)


def test_duplicate_id_of_a_call_being_handled() -> None:
    # OCPP-J 1.6 section 4.2.3 names this case; the real answer still goes first.
    conn = central_system()
    [first] = conn.receive('[2,"1","Heartbeat",{}]', 0.0)
    [second] = conn.receive('[2,"1","Heartbeat",{}]', 0.0)
    assert isinstance(first, CallReceived)
    assert isinstance(second, CallRejected)
    assert isinstance(second.error, GenericError)
    assert conn.data_to_send() == []
    conn.send_error("1", GenericError("busy"))
    assert conn.data_to_send() == [
        '[4,"1","GenericError","busy",{}]',
        '[4,"1","GenericError","unique id is already being handled",{}]',
    ]


def test_error_classes_match_table_7() -> None:
    assert set(ERROR_CLASSES) == {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
    for code, cls in ERROR_CLASSES.items():
        assert issubclass(cls, OcppError)
        assert cls.code == code
        assert error_class(code) is cls
    assert error_class("MadeUp") is GenericError


def test_error_from_code_rebuilds_a_received_error() -> None:
    error = error_from_code("PropertyConstraintViolation", "bad", {"field": "x"})
    assert isinstance(error, PropertyConstraintViolation)
    assert (error.description, error.details) == ("bad", {"field": "x"})
    assert str(error) == "PropertyConstraintViolation: bad"
    assert FormationViolation().details == {}
