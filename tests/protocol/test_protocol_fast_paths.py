"""The hot path's shortcuts give exactly what the general path gives.

Canonical UTC timestamps (``2024-05-01T12:00:00Z``) are parsed by the C parser; the same instant
written with ``+00:00`` still goes the general way, so the two must agree on every string, valid
or not. Frames are decoded by one shared JSON decoder, which must keep ``json.loads``' verdicts
on whitespace and a byte-order mark.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import Call, FormationViolation, Role, parse_frame, parse_request
from protocol.messages.timestamps import parse_datetime


def _outcome(text: str) -> object:
    try:
        return parse_datetime(text)
    except ValueError:
        return ValueError


digits = st.integers(min_value=0, max_value=99).map(lambda n: f"{n:02d}")


@given(
    year=st.integers(min_value=0, max_value=9999).map(lambda n: f"{n:04d}"),
    month=digits,
    day=digits,
    hour=digits,
    minute=digits,
    second=digits,
    sep=st.sampled_from("Tt "),
    zulu=st.sampled_from("Zz"),
)
def test_canonical_timestamps_parse_as_the_general_path(
    year: str, month: str, day: str, hour: str, minute: str, second: str, sep: str, zulu: str
) -> None:
    stem = f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}"
    assert _outcome(stem + zulu) == _outcome(stem + "+00:00")


def test_canonical_timestamp_is_aware_utc() -> None:
    moment = parse_datetime("2024-05-01T12:00:00Z")
    assert moment.tzinfo is UTC
    assert moment == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("text", ['  [2,"a","Heartbeat",{}]', '[2,"a","Heartbeat",{}]\n\t '])
def test_whitespace_around_a_frame_is_json(text: str) -> None:
    assert parse_frame(text) == Call("a", "Heartbeat", {})


@pytest.mark.parametrize("text", ['\ufeff[2,"a","Heartbeat",{}]', '[2,"a","Heartbeat",{}] x'])
def test_a_byte_order_mark_or_trailing_data_is_not_json(text: str) -> None:
    with pytest.raises(FormationViolation, match="not valid JSON"):
        parse_frame(text)


def test_each_role_types_only_what_its_peer_may_send() -> None:
    assert parse_request("Heartbeat", {}, receiver_role=Role.CENTRAL_SYSTEM)
    assert parse_request("Reset", {"type": "Soft"}, receiver_role=Role.CHARGE_POINT)
    assert parse_request("DataTransfer", {"vendorId": "x"}, receiver_role=Role.CHARGE_POINT)
    assert parse_request("DataTransfer", {"vendorId": "x"}, receiver_role=Role.CENTRAL_SYSTEM)
