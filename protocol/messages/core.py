"""Core profile messages (OCPP 1.6 edition 2, sections 4 and 5; fields in section 6)."""

from __future__ import annotations

from typing import Annotated

from annotated_types import MinLen

from protocol.messages.base import (
    CiString20,
    CiString25,
    CiString50,
    CiString255,
    CiString500,
    ConnectorId,
    Integer,
    MeterInteger,
    OcppModel,
    Text,
)
from protocol.messages.datatypes import ChargingProfile, IdTagInfo, KeyValue, MeterValue
from protocol.messages.enums import (
    AvailabilityStatus,
    AvailabilityType,
    ChargePointErrorCode,
    ChargePointStatus,
    ClearCacheStatus,
    ConfigurationStatus,
    DataTransferStatus,
    Reason,
    RegistrationStatus,
    RemoteStartStopStatus,
    ResetStatus,
    ResetType,
    UnlockStatus,
)
from protocol.messages.timestamps import DateTime, LenientDateTime

__all__ = [
    "AuthorizeRequest",
    "AuthorizeResponse",
    "BootNotificationRequest",
    "BootNotificationResponse",
    "ChangeAvailabilityRequest",
    "ChangeAvailabilityResponse",
    "ChangeConfigurationRequest",
    "ChangeConfigurationResponse",
    "ClearCacheRequest",
    "ClearCacheResponse",
    "DataTransferRequest",
    "DataTransferResponse",
    "GetConfigurationRequest",
    "GetConfigurationResponse",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "MeterValuesRequest",
    "MeterValuesResponse",
    "RemoteStartTransactionRequest",
    "RemoteStartTransactionResponse",
    "RemoteStopTransactionRequest",
    "RemoteStopTransactionResponse",
    "ResetRequest",
    "ResetResponse",
    "StartTransactionRequest",
    "StartTransactionResponse",
    "StatusNotificationRequest",
    "StatusNotificationResponse",
    "StopTransactionRequest",
    "StopTransactionResponse",
    "UnlockConnectorRequest",
    "UnlockConnectorResponse",
]


class AuthorizeRequest(OcppModel):
    id_tag: CiString20


class AuthorizeResponse(OcppModel):
    id_tag_info: IdTagInfo


class BootNotificationRequest(OcppModel):
    charge_point_vendor: CiString20
    charge_point_model: CiString20
    charge_point_serial_number: CiString25 | None = None
    charge_box_serial_number: CiString25 | None = None
    firmware_version: CiString50 | None = None
    iccid: CiString20 | None = None
    imsi: CiString20 | None = None
    meter_type: CiString25 | None = None
    meter_serial_number: CiString25 | None = None


class BootNotificationResponse(OcppModel):
    status: RegistrationStatus
    current_time: DateTime
    interval: Integer


class ChangeAvailabilityRequest(OcppModel):
    connector_id: ConnectorId
    type: AvailabilityType


class ChangeAvailabilityResponse(OcppModel):
    status: AvailabilityStatus


class ChangeConfigurationRequest(OcppModel):
    key: CiString50
    value: CiString500


class ChangeConfigurationResponse(OcppModel):
    status: ConfigurationStatus


class ClearCacheRequest(OcppModel):
    pass


class ClearCacheResponse(OcppModel):
    status: ClearCacheStatus


class DataTransferRequest(OcppModel):
    vendor_id: CiString255
    message_id: CiString50 | None = None
    data: Text | None = None


class DataTransferResponse(OcppModel):
    status: DataTransferStatus
    data: Text | None = None


class GetConfigurationRequest(OcppModel):
    key: list[CiString50] | None = None


class GetConfigurationResponse(OcppModel):
    configuration_key: list[KeyValue] | None = None
    unknown_key: list[CiString50] | None = None


class HeartbeatRequest(OcppModel):
    pass


class HeartbeatResponse(OcppModel):
    current_time: DateTime


class MeterValuesRequest(OcppModel):
    """A transaction message (section 3.7): no range checks beyond the schema, lenient times."""

    connector_id: Integer
    transaction_id: Integer | None = None
    meter_value: Annotated[list[MeterValue], MinLen(1)]


class MeterValuesResponse(OcppModel):
    pass


class RemoteStartTransactionRequest(OcppModel):
    connector_id: ConnectorId | None = None
    id_tag: CiString20
    charging_profile: ChargingProfile | None = None


class RemoteStartTransactionResponse(OcppModel):
    status: RemoteStartStopStatus


class RemoteStopTransactionRequest(OcppModel):
    transaction_id: Integer


class RemoteStopTransactionResponse(OcppModel):
    status: RemoteStartStopStatus


class ResetRequest(OcppModel):
    type: ResetType


class ResetResponse(OcppModel):
    status: ResetStatus


class StartTransactionRequest(OcppModel):
    """A transaction message (section 3.7): no range checks beyond the schema, lenient time."""

    connector_id: Integer
    id_tag: CiString20
    meter_start: MeterInteger
    reservation_id: Integer | None = None
    timestamp: LenientDateTime


class StartTransactionResponse(OcppModel):
    id_tag_info: IdTagInfo
    transaction_id: Integer


class StatusNotificationRequest(OcppModel):
    connector_id: ConnectorId
    error_code: ChargePointErrorCode
    info: CiString50 | None = None
    status: ChargePointStatus
    timestamp: DateTime | None = None
    vendor_id: CiString255 | None = None
    vendor_error_code: CiString50 | None = None


class StatusNotificationResponse(OcppModel):
    pass


class StopTransactionRequest(OcppModel):
    """A transaction message (section 3.7): no range checks beyond the schema, lenient times.
    ``transaction_id`` may be -1 or unknown; the controller answers it anyway."""

    id_tag: CiString20 | None = None
    meter_stop: MeterInteger
    timestamp: LenientDateTime
    transaction_id: Integer
    reason: Reason | None = None
    transaction_data: list[MeterValue] | None = None


class StopTransactionResponse(OcppModel):
    id_tag_info: IdTagInfo | None = None


class UnlockConnectorRequest(OcppModel):
    connector_id: ConnectorId


class UnlockConnectorResponse(OcppModel):
    status: UnlockStatus
