"""A leap second (``...T23:59:60Z``) is a valid date-time and is read, not refused.

The JSON schemas type timestamps as ``date-time`` (RFC 3339), whose seconds go up to 60. Python
has no such datetime; docs/ocpp.md ("Timestamps") says how it is read: the last microsecond of
its minute.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol import CallReceived, Connection, Role
from protocol.messages import UnparsedTimestamp
from protocol.messages.timestamps import format_datetime, parse_datetime

LEAP = "2026-12-31T23:59:60Z"
LAST_MICROSECOND_OF_2026 = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        LEAP,
        "2026-12-31T23:59:60.5Z",  # a fraction of the leap second: the same instant here
        "2026-12-31t23:59:60z",
        "2026-12-31T23:59:60+00:00",
        "2027-01-01T00:59:60+01:00",  # the same leap second written in a +01:00 zone
        "2026-12-31T23:59:60",  # no offset: UTC, as every other timestamp
    ],
)
def test_a_leap_second_is_the_last_microsecond_of_its_minute(text: str) -> None:
    assert parse_datetime(text) == LAST_MICROSECOND_OF_2026


def test_a_leap_second_keeps_its_order_and_its_year() -> None:
    before = parse_datetime("2026-12-31T23:59:59.5Z")
    after = parse_datetime("2027-01-01T00:00:00Z")
    leap = parse_datetime(LEAP)
    assert before < leap < after
    assert leap.year == 2026
    # At the end of the calendar, "the next second" would not exist; this still does.
    assert parse_datetime("9999-12-31T23:59:60Z") == datetime(
        9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC
    )
    assert format_datetime(leap) == "2026-12-31T23:59:59.999999Z"


@pytest.mark.parametrize("text", ["2026-12-31T23:59:61Z", "2026-12-31T23:59:99Z"])
def test_seconds_beyond_60_are_still_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_datetime(text)


def central_system() -> Connection:
    return Connection(Role.CENTRAL_SYSTEM)


def test_a_strict_timestamp_takes_a_leap_second() -> None:
    # StatusNotification's timestamp is strict: before, a leap second was a
    # PropertyConstraintViolation.
    status = f'"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"{LEAP}"'
    [event] = central_system().receive(f'[2,"1","StatusNotification",{{{status}}}]', 0.0)
    assert isinstance(event, CallReceived)
    assert event.request.timestamp == LAST_MICROSECOND_OF_2026  # type: ignore[attr-defined]


def test_transaction_messages_read_a_leap_second_as_a_time() -> None:
    # Before, they kept it as an unparsed string (answered, but its time was lost).
    conn = central_system()
    start = f'"connectorId":1,"idTag":"TAG1","meterStart":0,"timestamp":"{LEAP}"'
    stop = f'"meterStop":5,"transactionId":1,"timestamp":"{LEAP}"'
    meter = (
        f'"connectorId":1,"meterValue":[{{"timestamp":"{LEAP}","sampledValue":[{{"value":"1"}}]}}]'
    )
    frames = [("StartTransaction", start), ("StopTransaction", stop), ("MeterValues", meter)]
    requests = []
    for n, (action, body) in enumerate(frames):
        [event] = conn.receive(f'[2,"{n}","{action}",{{{body}}}]', 0.0)
        assert isinstance(event, CallReceived)
        requests.append(event.request)
    start_request, stop_request, meter_request = requests
    for timestamp in (
        start_request.timestamp,  # type: ignore[attr-defined]
        stop_request.timestamp,  # type: ignore[attr-defined]
        meter_request.meter_value[0].timestamp,  # type: ignore[attr-defined]
    ):
        assert not isinstance(timestamp, UnparsedTimestamp)
        assert timestamp == LAST_MICROSECOND_OF_2026
