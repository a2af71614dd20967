"""Every action's request and response: literal frame -> typed model -> the same payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from protocol import (
    ACTIONS,
    Call,
    CallResult,
    Role,
    encode_frame,
    parse_frame,
    parse_request,
    parse_response,
    to_payload,
)
from protocol.messages import (
    ChargingProfile,
    ChargingProfileKindType,
    ChargingProfilePurposeType,
    ChargingRateUnitType,
    ChargingSchedule,
    ChargingSchedulePeriod,
    Measurand,
    MeterValuesRequest,
    SampledValue,
    SetChargingProfileRequest,
    StartTransactionRequest,
    UnitOfMeasure,
    UnparsedTimestamp,
    parsed_datetime,
)
from tests.protocol.ocpp_corpus import CALLS, RESULTS


def receiver_of(action: str) -> Role:
    # DataTransfer goes both ways; any other action has exactly one sender.
    return next(iter(ACTIONS[action].senders)).peer


def compact(text: str) -> str:
    return json.dumps(json.loads(text), separators=(",", ":"))


def test_corpus_covers_every_action() -> None:
    assert set(CALLS) == set(ACTIONS) == set(RESULTS)
    assert len(ACTIONS) == 28


@pytest.mark.parametrize("action", sorted(CALLS))
def test_request_round_trips(action: str) -> None:
    frame = parse_frame(CALLS[action])
    assert isinstance(frame, Call)
    assert frame.action == action
    model = parse_request(action, frame.payload, receiver_role=receiver_of(action))
    assert type(model) is ACTIONS[action].request
    assert to_payload(model) == frame.payload
    assert encode_frame(Call(frame.unique_id, action, to_payload(model))) == compact(CALLS[action])


@pytest.mark.parametrize("action", sorted(RESULTS))
def test_response_round_trips(action: str) -> None:
    frame = parse_frame(RESULTS[action])
    assert isinstance(frame, CallResult)
    model = parse_response(action, frame.payload)
    assert type(model) is ACTIONS[action].response
    assert to_payload(model) == frame.payload
    assert encode_frame(CallResult(frame.unique_id, to_payload(model))) == compact(RESULTS[action])


def test_models_are_typed_and_snake_case() -> None:
    frame = parse_frame(CALLS["MeterValues"])
    assert isinstance(frame, Call)
    request = parse_request("MeterValues", frame.payload, receiver_role=Role.CENTRAL_SYSTEM)
    assert isinstance(request, MeterValuesRequest)
    reading = request.meter_value[0]
    assert parsed_datetime(reading.timestamp) == datetime(2024, 5, 1, 12, 0, 0, 250000, UTC)
    power = reading.sampled_value[1]
    assert power.measurand is Measurand.POWER_ACTIVE_IMPORT
    assert power.unit is UnitOfMeasure.KW


def test_sampled_value_defaults_of_section_7_43() -> None:
    bare = SampledValue(value="1")
    assert bare.effective_measurand is Measurand.ENERGY_ACTIVE_IMPORT_REGISTER
    assert bare.effective_unit is UnitOfMeasure.WH
    assert to_payload(bare) == {"value": "1"}


def test_times_are_normalised_to_utc_z() -> None:
    payload = {
        "connectorId": 1,
        "idTag": "T",
        "meterStart": 0,
        "timestamp": "2024-05-01T14:00:00.5+02:00",
    }
    request = parse_request("StartTransaction", payload, receiver_role=Role.CENTRAL_SYSTEM)
    assert to_payload(request)["timestamp"] == "2024-05-01T12:00:00.500Z"
    naive = {**payload, "timestamp": "2024-05-01T12:00:00"}
    request = parse_request("StartTransaction", naive, receiver_role=Role.CENTRAL_SYSTEM)
    assert to_payload(request)["timestamp"] == "2024-05-01T12:00:00Z"


def test_unparseable_start_transaction_time_is_kept_verbatim() -> None:
    payload = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "yesterday"}
    request = parse_request("StartTransaction", payload, receiver_role=Role.CENTRAL_SYSTEM)
    assert isinstance(request, StartTransactionRequest)
    assert request.timestamp == UnparsedTimestamp("yesterday")
    assert parsed_datetime(request.timestamp) is None
    assert to_payload(request) == payload


def test_building_a_tx_profile_in_python() -> None:
    request = SetChargingProfileRequest(
        connector_id=1,
        cs_charging_profiles=ChargingProfile(
            charging_profile_id=101,
            transaction_id=42,
            stack_level=1,
            charging_profile_purpose=ChargingProfilePurposeType.TX_PROFILE,
            charging_profile_kind=ChargingProfileKindType.RELATIVE,
            charging_schedule=ChargingSchedule(
                charging_rate_unit=ChargingRateUnitType.W,
                charging_schedule_period=[ChargingSchedulePeriod(start_period=0, limit=22000)],
            ),
        ),
    )
    assert to_payload(request) == {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 101,
            "transactionId": 42,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 22000}],
            },
        },
    }
