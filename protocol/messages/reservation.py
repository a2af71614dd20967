"""Reservation profile (OCPP 1.6 edition 2, sections 5.2 and 5.13)."""

from __future__ import annotations

from protocol.messages.base import CiString20, ConnectorId, Integer, OcppModel
from protocol.messages.enums import CancelReservationStatus, ReservationStatus
from protocol.messages.timestamps import DateTime

__all__ = [
    "CancelReservationRequest",
    "CancelReservationResponse",
    "ReserveNowRequest",
    "ReserveNowResponse",
]


class ReserveNowRequest(OcppModel):
    connector_id: ConnectorId
    expiry_date: DateTime
    id_tag: CiString20
    parent_id_tag: CiString20 | None = None
    reservation_id: Integer


class ReserveNowResponse(OcppModel):
    status: ReservationStatus


class CancelReservationRequest(OcppModel):
    reservation_id: Integer


class CancelReservationResponse(OcppModel):
    status: CancelReservationStatus
