"""Local auth list management profile (OCPP 1.6 edition 2, sections 3.5 and 5.10, 5.15)."""

from __future__ import annotations

from protocol.messages.base import Integer, OcppModel
from protocol.messages.datatypes import AuthorizationData
from protocol.messages.enums import UpdateStatus, UpdateType

__all__ = [
    "GetLocalListVersionRequest",
    "GetLocalListVersionResponse",
    "SendLocalListRequest",
    "SendLocalListResponse",
]


class GetLocalListVersionRequest(OcppModel):
    pass


class GetLocalListVersionResponse(OcppModel):
    list_version: Integer


class SendLocalListRequest(OcppModel):
    list_version: Integer
    local_authorization_list: list[AuthorizationData] | None = None
    update_type: UpdateType


class SendLocalListResponse(OcppModel):
    status: UpdateStatus
