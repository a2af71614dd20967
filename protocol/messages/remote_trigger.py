"""Remote trigger profile (OCPP 1.6 edition 2, section 5.17)."""

from __future__ import annotations

from protocol.messages.base import ConnectorId, OcppModel
from protocol.messages.enums import MessageTrigger, TriggerMessageStatus

__all__ = ["TriggerMessageRequest", "TriggerMessageResponse"]


class TriggerMessageRequest(OcppModel):
    requested_message: MessageTrigger
    connector_id: ConnectorId | None = None


class TriggerMessageResponse(OcppModel):
    status: TriggerMessageStatus
