"""Firmware management profile (OCPP 1.6 edition 2, section 6: diagnostics and firmware)."""

from __future__ import annotations

from protocol.messages.base import CiString255, Integer, OcppModel, Uri
from protocol.messages.enums import DiagnosticsStatus, FirmwareStatus
from protocol.messages.timestamps import DateTime

__all__ = [
    "DiagnosticsStatusNotificationRequest",
    "DiagnosticsStatusNotificationResponse",
    "FirmwareStatusNotificationRequest",
    "FirmwareStatusNotificationResponse",
    "GetDiagnosticsRequest",
    "GetDiagnosticsResponse",
    "UpdateFirmwareRequest",
    "UpdateFirmwareResponse",
]


class GetDiagnosticsRequest(OcppModel):
    location: Uri
    retries: Integer | None = None
    retry_interval: Integer | None = None
    start_time: DateTime | None = None
    stop_time: DateTime | None = None


class GetDiagnosticsResponse(OcppModel):
    file_name: CiString255 | None = None


class DiagnosticsStatusNotificationRequest(OcppModel):
    status: DiagnosticsStatus


class DiagnosticsStatusNotificationResponse(OcppModel):
    pass


class FirmwareStatusNotificationRequest(OcppModel):
    status: FirmwareStatus


class FirmwareStatusNotificationResponse(OcppModel):
    pass


class UpdateFirmwareRequest(OcppModel):
    location: Uri
    retries: Integer | None = None
    retrieve_date: DateTime
    retry_interval: Integer | None = None


class UpdateFirmwareResponse(OcppModel):
    pass
