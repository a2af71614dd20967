"""What the controller does with each message from a charger (docs/ocpp.md, the message
table): the request becomes an event for the station core, and the answer is either known
at once or is the core's ``Reply`` (the transaction messages, answered once committed).

Transaction messages are always answered, even when a sanity check fails (OCPP 1.6
section 3.7), so that a charger does not retry them forever; a commit that fails is
answered with ``InternalError`` and nothing recorded, so the charger's retry behaves like
a first attempt.

Numbers out of range (docs/security-input.md): a connectorId above the charger's
configured connectors, or a sampled value of 2**53 or more, is answered with
``PropertyConstraintViolation`` before anything is submitted; StartTransaction has a status
of its own and answers such a connector ``Invalid`` (the core decides). A power reading
above the charger's maximum is counted as that maximum.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.config import ChargerConfig, StationConfig
from controller.core.commands import Answer, StopAnswer, TransactionAnswer
from controller.core.events import (
    ChargerBooted,
    ChargerHeard,
    ConnectorStatusReported,
    MeterReading,
    TransactionStartRequested,
    TransactionStopRequested,
)
from controller.core.rules import id_tag_status
from controller.driver import Driver
from controller.ocpp.metering import read_meter_values
from controller.throttle import PeerLog
from protocol import (
    CallReceived,
    InternalError,
    NotImplementedCall,
    OcppModel,
    PropertyConstraintViolation,
)
from protocol.messages import (
    AuthorizationStatus,
    AuthorizeRequest,
    AuthorizeResponse,
    BootNotificationRequest,
    BootNotificationResponse,
    DataTransferRequest,
    DataTransferResponse,
    DataTransferStatus,
    DiagnosticsStatusNotificationRequest,
    DiagnosticsStatusNotificationResponse,
    FirmwareStatusNotificationRequest,
    FirmwareStatusNotificationResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    IdTagInfo,
    MeterValuesRequest,
    MeterValuesResponse,
    RegistrationStatus,
    StartTransactionRequest,
    StartTransactionResponse,
    StatusNotificationRequest,
    StatusNotificationResponse,
    StopTransactionRequest,
    StopTransactionResponse,
)
from protocol.messages.timestamps import UnparsedTimestamp
from shell.link import OcppLink

log = logging.getLogger(__name__)

# Empty answers are immutable: built once, not validated again on every message.
NO_METER_VALUES_ANSWER = MeterValuesResponse()
NO_STATUS_ANSWER = StatusNotificationResponse()
NO_DIAGNOSTICS_ANSWER = DiagnosticsStatusNotificationResponse()
NO_FIRMWARE_ANSWER = FirmwareStatusNotificationResponse()


def _timestamp_text(value: datetime | UnparsedTimestamp) -> str:
    return value.raw if isinstance(value, UnparsedTimestamp) else value.isoformat()


@dataclass(frozen=True, slots=True)
class OcppReply:
    """A charger's CALL waiting for the core's answer."""

    link: OcppLink
    unique_id: str

    def deliver(self, answer: Answer) -> None:
        response: OcppModel | InternalError
        match answer:
            case TransactionAnswer(transaction_id=transaction_id, status=status):
                response = StartTransactionResponse(
                    transaction_id=transaction_id,
                    id_tag_info=IdTagInfo(status=AuthorizationStatus(status)),
                )
            case StopAnswer(id_tag_status=status):
                info = None if status is None else IdTagInfo(status=AuthorizationStatus(status))
                response = StopTransactionResponse(id_tag_info=info)
            case _:
                # Not durable (or a bug): the charger learns only that it failed here, and
                # its retry will be handled as a first attempt.
                response = InternalError("the change could not be stored; retry")
        self.link.answer(self.unique_id, response)

    def fail(self) -> None:
        self.link.answer(self.unique_id, InternalError())


class CentralSystem:
    """The message table. One instance serves every charger; ``handle`` is bound to a
    charger and its connection number by the server."""

    def __init__(
        self,
        config: StationConfig,
        driver: Driver,
        new_session_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.config = config
        self.driver = driver
        self._new_session_id = new_session_id
        # A charger decides how often these are said: one line, then a count a minute.
        self._status_log = PeerLog(log)
        # Chargers whose power readings were clamped: logged once each, not per message.
        self._clamp_logged: set[str] = set()
        # Looked up per MeterValues: a plain dict (the config's own lookup goes through
        # pydantic's attribute machinery, several µs a call).
        self._chargers = {charger.id: charger for charger in config.chargers}

    def handle(
        self, charger_id: str, number: int, link: OcppLink, call: CallReceived
    ) -> OcppModel | None:
        driver = self.driver
        now = driver.now()
        request = call.request
        match request:
            case MeterValuesRequest():
                charger = self._chargers[charger_id]
                self._check_connector(charger, request.connector_id)
                # The charger's phase-to-neutral voltage turns phase currents into power.
                reading = read_meter_values(request.meter_value, charger.meter_voltage)
                power = reading.power_kw
                if power is not None and power > charger.max_power:
                    power = self._clamped(charger, power)
                driver.submit(
                    MeterReading(
                        now,
                        charger_id,
                        request.connector_id,
                        request.transaction_id,
                        power,
                        reading.energy_register_kwh,
                        reading.soc_percent,
                        reading.phase_currents,
                    )
                )
                return NO_METER_VALUES_ANSWER
            case HeartbeatRequest():
                driver.submit(ChargerHeard(now, charger_id))
                return HeartbeatResponse(current_time=datetime.fromtimestamp(now, tz=UTC))
            case StatusNotificationRequest():
                self._check_connector(self._chargers[charger_id], request.connector_id)
                driver.submit(
                    ConnectorStatusReported(
                        now,
                        charger_id,
                        request.connector_id,
                        request.status.value,
                        request.error_code.value,
                        request.info,
                    )
                )
                return NO_STATUS_ANSWER
            case StartTransactionRequest():
                driver.submit(
                    TransactionStartRequested(
                        now,
                        charger_id,
                        number,
                        OcppReply(link, call.unique_id),
                        request.connector_id,
                        request.id_tag,
                        _timestamp_text(request.timestamp),
                        request.meter_start,
                        self._new_session_id(),
                    )
                )
                return None  # answered by the core, once committed
            case StopTransactionRequest():
                driver.submit(
                    TransactionStopRequested(
                        now,
                        charger_id,
                        OcppReply(link, call.unique_id),
                        request.transaction_id,
                        request.meter_stop,
                        request.id_tag,
                        None if request.reason is None else request.reason.value,
                    )
                )
                return None
            case BootNotificationRequest():
                # The answer leaves before the calls the boot sets off (GetConfiguration,
                # the failsafe): a charger learns it is accepted first.
                link.answer(
                    call.unique_id,
                    BootNotificationResponse(
                        status=RegistrationStatus.ACCEPTED,
                        current_time=datetime.fromtimestamp(now, tz=UTC),
                        interval=self.config.ocpp.heartbeat_interval,
                    ),
                )
                driver.submit(
                    ChargerBooted(
                        now,
                        charger_id,
                        number,
                        request.charge_point_vendor,
                        request.charge_point_model,
                        request.firmware_version,
                        request.charge_point_serial_number,
                    )
                )
                return None
            case AuthorizeRequest():
                driver.submit(ChargerHeard(now, charger_id))
                status = id_tag_status(self.config, request.id_tag)
                return AuthorizeResponse(id_tag_info=IdTagInfo(status=status))
            case DataTransferRequest():
                driver.submit(ChargerHeard(now, charger_id))
                return DataTransferResponse(status=DataTransferStatus.UNKNOWN_VENDOR_ID)
            case DiagnosticsStatusNotificationRequest():
                driver.submit(ChargerHeard(now, charger_id))
                self._status_log.log(
                    charger_id, now, logging.INFO, "diagnostics %s", request.status.value
                )
                return NO_DIAGNOSTICS_ANSWER
            case FirmwareStatusNotificationRequest():
                driver.submit(ChargerHeard(now, charger_id))
                self._status_log.log(
                    charger_id, now, logging.INFO, "firmware %s", request.status.value
                )
                return NO_FIRMWARE_ANSWER
        raise NotImplementedCall(f"{type(request).__name__} is not handled")

    @staticmethod
    def _check_connector(charger: ChargerConfig, connector_id: int) -> None:
        """0 (the whole charger) to its configured connectors; else nothing of it counts."""
        if not 0 <= connector_id <= charger.connectors:
            raise PropertyConstraintViolation(
                f"connectorId: must be from 0 to {charger.connectors} (the charger's connectors)"
            )

    def _clamped(self, charger: ChargerConfig, power_kw: float) -> float:
        """A reading above what the charger can deliver is counted as its maximum: one broken
        meter must not make the station's load (and the battery's answer) absurd."""
        if charger.id not in self._clamp_logged:
            self._clamp_logged.add(charger.id)
            log.warning(
                "%s: MeterValues power %.6g kW is above the charger's maximum of %g kW; "
                "counted as %g kW (logged once per charger)",
                charger.id,
                power_kw,
                charger.max_power,
                charger.max_power,
            )
        return charger.max_power
