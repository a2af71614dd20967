"""Smart charging profile (OCPP 1.6 edition 2, sections 3.13, 5.5, 5.7 and 5.16)."""

from __future__ import annotations

from protocol.messages.base import ConnectorId, Integer, OcppModel
from protocol.messages.datatypes import ChargingProfile, ChargingSchedule
from protocol.messages.enums import (
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ChargingRateUnitType,
    ClearChargingProfileStatus,
    GetCompositeScheduleStatus,
)
from protocol.messages.timestamps import DateTime

__all__ = [
    "ClearChargingProfileRequest",
    "ClearChargingProfileResponse",
    "GetCompositeScheduleRequest",
    "GetCompositeScheduleResponse",
    "SetChargingProfileRequest",
    "SetChargingProfileResponse",
]


class SetChargingProfileRequest(OcppModel):
    """``cs_charging_profiles`` keeps the wire name (``csChargingProfiles``) of section 6.43."""

    connector_id: ConnectorId
    cs_charging_profiles: ChargingProfile


class SetChargingProfileResponse(OcppModel):
    status: ChargingProfileStatus


class ClearChargingProfileRequest(OcppModel):
    id: Integer | None = None
    connector_id: ConnectorId | None = None
    charging_profile_purpose: ChargingProfilePurposeType | None = None
    stack_level: Integer | None = None


class ClearChargingProfileResponse(OcppModel):
    status: ClearChargingProfileStatus


class GetCompositeScheduleRequest(OcppModel):
    connector_id: ConnectorId
    duration: Integer
    charging_rate_unit: ChargingRateUnitType | None = None


class GetCompositeScheduleResponse(OcppModel):
    status: GetCompositeScheduleStatus
    connector_id: Integer | None = None
    schedule_start: DateTime | None = None
    charging_schedule: ChargingSchedule | None = None
