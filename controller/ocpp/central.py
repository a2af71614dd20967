"""What the controller does with each message from a charger (ocpp.md, message table).

Handlers never await a call to the same charger (the reader that runs them
would wait for itself); follow-up calls such as the failsafe default after a
boot run in tasks owned by the charger's link. Transaction messages are always
answered, even when a sanity check fails (OCPP 1.6 section 3.7), so that a
charger does not retry them forever.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from controller.ocpp.link import ChargerLink
from controller.ocpp.metering import read_meter_values
from controller.ocpp.push import LimitPusher
from controller.persistence import Recorder
from controller.service import StationService
from controller.sessions import Origin, Session
from controller.station import ChargerState, ConnectorState
from protocol import CallAnswered, NotImplementedCall
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
    GetConfigurationRequest,
    GetConfigurationResponse,
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
from protocol.messages.base import OcppModel
from protocol.messages.timestamps import UnparsedTimestamp

log = logging.getLogger(__name__)

# Empty answers are immutable: built once, not validated again on every message.
NO_METER_VALUES_ANSWER = MeterValuesResponse()
NO_STATUS_ANSWER = StatusNotificationResponse()
NO_DIAGNOSTICS_ANSWER = DiagnosticsStatusNotificationResponse()
NO_FIRMWARE_ANSWER = FirmwareStatusNotificationResponse()

# GetConfiguration keys (OCPP 1.6 section 9.1) read after boot, best effort.
FEATURE_PROFILES_KEY = "SupportedFeatureProfiles"
RATE_UNIT_KEY = "ChargingScheduleAllowedChargingRateUnit"


# What makes two StartTransaction requests the same one, resent (ocpp.md):
# charger, connector, idTag, timestamp and meterStart.
StartKey = tuple[str, int, str, str, int]


def _timestamp_text(value: datetime | UnparsedTimestamp) -> str:
    return value.raw if isinstance(value, UnparsedTimestamp) else value.isoformat()


class CentralSystem:
    def __init__(self, service: StationService, pusher: LimitPusher, recorder: Recorder) -> None:
        self.service = service
        self.station = service.station
        self.config = service.station.config
        self.pusher = pusher
        self.recorder = recorder
        self.start_keys: dict[StartKey, tuple[int, str]] = {}
        self._handlers: dict[
            type[OcppModel], Callable[[ChargerLink, Any], OcppModel | Awaitable[OcppModel]]
        ] = {
            BootNotificationRequest: self.boot_notification,
            HeartbeatRequest: self.heartbeat,
            StatusNotificationRequest: self.status_notification,
            AuthorizeRequest: self.authorize,
            StartTransactionRequest: self.start_transaction,
            MeterValuesRequest: self.meter_values,
            StopTransactionRequest: self.stop_transaction,
            DataTransferRequest: self.data_transfer,
            DiagnosticsStatusNotificationRequest: self.diagnostics_status,
            FirmwareStatusNotificationRequest: self.firmware_status,
        }

    def handle(self, link: ChargerLink, request: OcppModel) -> OcppModel | Awaitable[OcppModel]:
        """The answer to a charger's request, or an awaitable of it when the answer
        must wait for the store (acknowledged means committed)."""
        charger = self.station.charger(link.charger_id)
        charger.last_seen = self.service.now()
        handler = self._handlers.get(type(request))
        if handler is None:
            raise NotImplementedCall(f"{type(request).__name__} is not handled")
        return handler(link, request)

    async def _after_commit(
        self, response: OcppModel, then: Callable[[], None] | None = None
    ) -> OcppModel:
        await self.recorder.commit()
        if then is not None:
            # Runs once the link has written this answer: it writes it in the same
            # step as this coroutine returns, and call_soon waits for that step.
            asyncio.get_running_loop().call_soon(then)
        return response

    def _now_utc(self) -> datetime:
        return datetime.fromtimestamp(self.service.now(), tz=UTC)

    def _id_tag_status(self, id_tag: str | None) -> AuthorizationStatus:
        allowed = self.config.ocpp.authorized_id_tags
        if allowed is None or id_tag is None:
            return AuthorizationStatus.ACCEPTED
        # idTags are CiString20: compared without regard to case (OCPP 1.6 section 7).
        wanted = id_tag.casefold()
        if any(tag.casefold() == wanted for tag in allowed):
            return AuthorizationStatus.ACCEPTED
        return AuthorizationStatus.INVALID

    # -- connection-level ------------------------------------------------

    def boot_notification(
        self, link: ChargerLink, request: BootNotificationRequest
    ) -> BootNotificationResponse:
        charger = self.station.charger(link.charger_id)
        charger.booted = True
        charger.vendor = request.charge_point_vendor
        charger.model = request.charge_point_model
        charger.firmware_version = request.firmware_version
        charger.serial_number = request.charge_point_serial_number
        self.recorder.charger(link.charger_id)
        self.recorder.event(
            self.service.now(),
            "charger.booted",
            charger_id=link.charger_id,
            vendor=charger.vendor,
            model=charger.model,
        )
        link.spawn(self._after_boot(link), "after-boot")
        return BootNotificationResponse(
            status=RegistrationStatus.ACCEPTED,
            current_time=self._now_utc(),
            interval=self.config.ocpp.heartbeat_interval,
        )

    async def _after_boot(self, link: ChargerLink) -> None:
        """Learn how the charger takes limits, then (re)install the failsafe and limits."""
        outcome = await link.call(
            GetConfigurationRequest(key=[FEATURE_PROFILES_KEY, RATE_UNIT_KEY])
        )
        if isinstance(outcome, CallAnswered) and isinstance(
            outcome.response, GetConfigurationResponse
        ):
            self._apply_configuration(link.charger_id, outcome.response)
        self.pusher.attach(link)

    def _apply_configuration(self, charger_id: str, response: GetConfigurationResponse) -> None:
        charger = self.station.charger(charger_id)
        values = {kv.key: kv.value or "" for kv in response.configuration_key or []}
        if FEATURE_PROFILES_KEY in values:
            profiles = {p.strip() for p in values[FEATURE_PROFILES_KEY].split(",")}
            smart = "SmartCharging" in profiles and charger.config.smart_charging
            if smart != charger.smart_charging:
                charger.smart_charging = smart
                self.service.request_reallocation()
        if charger.config.rate_unit is None and RATE_UNIT_KEY in values:
            units = {u.strip() for u in values[RATE_UNIT_KEY].split(",")}
            # "Current" alone means the charger takes amps only (OCPP 1.6 section 9.4.1).
            self.pusher.set_rate_unit(charger_id, amps="Power" not in units and "Current" in units)
        self.recorder.charger(charger_id)

    def heartbeat(self, link: ChargerLink, request: HeartbeatRequest) -> HeartbeatResponse:
        return HeartbeatResponse(current_time=self._now_utc())

    def status_notification(
        self, link: ChargerLink, request: StatusNotificationRequest
    ) -> StatusNotificationResponse:
        charger = self.station.charger(link.charger_id)
        if request.connector_id <= charger.config.connectors:
            charger.connectors[request.connector_id] = ConnectorState(
                status=request.status.value,
                error_code=request.error_code.value,
                info=request.info,
                updated_at=self.service.now(),
            )
            self.recorder.connector(link.charger_id, request.connector_id)
        else:
            log.info(
                "%s: status for unknown connector %d ignored", link.charger_id, request.connector_id
            )
        return NO_STATUS_ANSWER

    def authorize(self, link: ChargerLink, request: AuthorizeRequest) -> AuthorizeResponse:
        return AuthorizeResponse(id_tag_info=IdTagInfo(status=self._id_tag_status(request.id_tag)))

    def data_transfer(
        self, link: ChargerLink, request: DataTransferRequest
    ) -> DataTransferResponse:
        return DataTransferResponse(status=DataTransferStatus.UNKNOWN_VENDOR_ID)

    def diagnostics_status(
        self, link: ChargerLink, request: DiagnosticsStatusNotificationRequest
    ) -> DiagnosticsStatusNotificationResponse:
        log.info("%s: diagnostics %s", link.charger_id, request.status.value)
        return NO_DIAGNOSTICS_ANSWER

    def firmware_status(
        self, link: ChargerLink, request: FirmwareStatusNotificationRequest
    ) -> FirmwareStatusNotificationResponse:
        log.info("%s: firmware %s", link.charger_id, request.status.value)
        return NO_FIRMWARE_ANSWER

    # -- transactions ----------------------------------------------------

    def start_transaction(
        self, link: ChargerLink, request: StartTransactionRequest
    ) -> Awaitable[OcppModel]:
        charger = self.station.charger(link.charger_id)
        key: StartKey = (
            link.charger_id,
            request.connector_id,
            request.id_tag,
            _timestamp_text(request.timestamp),
            request.meter_start,
        )
        known = self.start_keys.get(key)
        if known is not None:
            # A resend (the charger never saw our answer): same answer, nothing new.
            transaction_id, known_status = known
            # The first answer may still be on its way to disk.
            return self._after_commit(
                StartTransactionResponse(
                    transaction_id=transaction_id,
                    id_tag_info=IdTagInfo(status=AuthorizationStatus(known_status)),
                )
            )
        status = self._id_tag_status(request.id_tag)
        connector = request.connector_id - 1
        if not 0 <= connector < charger.config.connectors:
            status = AuthorizationStatus.INVALID
        announce: Callable[[], None] | None = None
        if status is not AuthorizationStatus.ACCEPTED:
            # Answered with a fresh id so the charger can end the transaction cleanly;
            # no session is created and a later StopTransaction finds nothing.
            transaction_id = self.station.issue_transaction_id()
        else:
            session = self._open_session(link, charger, connector, request)
            assert session.transaction_id is not None
            transaction_id = session.transaction_id
            announce = functools.partial(self.pusher.announce, session.session_id)
        self.start_keys[key] = (transaction_id, status.value)
        self.recorder.start_key(key, transaction_id, status.value, self.service.now())
        # Acknowledged means durable: the answer leaves only after the commit.
        return self._after_commit(
            StartTransactionResponse(
                transaction_id=transaction_id, id_tag_info=IdTagInfo(status=status)
            ),
            then=announce,
        )

    def _open_session(
        self,
        link: ChargerLink,
        charger: ChargerState,
        connector: int,
        request: StartTransactionRequest,
    ) -> Session:
        now = self.service.now()
        stale = self.station.active_on(link.charger_id, connector)
        if stale is not None:
            # One transaction per connector: a new start means the old one ended
            # without a StopTransaction reaching us.
            log.warning(
                "%s: connector %d restarted; closing session %s",
                link.charger_id,
                connector + 1,
                stale.session_id,
            )
            self._close(stale, now, reason="Superseded")

        session = self.station.start_session(
            charger_id=link.charger_id,
            connector_id=connector,
            vehicle_max_power=None,
            now=now,
            origin=Origin.OCPP,
            id_tag=request.id_tag,
            meter_start_wh=float(request.meter_start),
            with_transaction=True,
            reallocate=False,
        )
        assert session.transaction_id is not None
        self.recorder.session(
            session,
            "session.started",
            now,
            transactionId=session.transaction_id,
            idTag=request.id_tag,
            meterStart=request.meter_start,
        )
        self.pusher.track(
            session.session_id,
            link.charger_id,
            request.connector_id,
            session.transaction_id,
            announced=False,
        )
        self.service.request_reallocation()
        return session

    def _close(
        self, session: Session, now: float, *, reason: str, consumed_energy: float | None = None
    ) -> None:
        self.station.stop_session(
            session.session_id,
            now=now,
            consumed_energy=consumed_energy,
            reason=reason,
            reallocate=False,
        )
        self.recorder.session(
            session, "session.stopped", now, reason=reason, consumedEnergy=session.consumed_energy
        )
        self.pusher.forget(session.session_id)
        self.service.request_reallocation()

    def meter_values(self, link: ChargerLink, request: MeterValuesRequest) -> MeterValuesResponse:
        session = self._session_for(link.charger_id, request.connector_id, request.transaction_id)
        if session is None:
            return NO_METER_VALUES_ANSWER  # late, unknown or for the whole charger: nothing to do
        reading = read_meter_values(request.meter_value)
        energy = None
        if reading.energy_register_kwh is not None and session.meter_start_wh is not None:
            energy = max(0.0, reading.energy_register_kwh - session.meter_start_wh / 1000.0)
        self.station.update_session(
            session.session_id,
            now=self.service.now(),
            consumed_power=reading.power_kw,
            consumed_energy=energy,
            state_of_charge=reading.soc_percent,
            reallocate=False,
        )
        if self.station.allocation_outdated:
            self.service.request_reallocation()
        self.recorder.session(session)  # written behind: meter readings need no acknowledgement
        return NO_METER_VALUES_ANSWER

    def _session_for(
        self, charger_id: str, connector_id: int, transaction_id: int | None
    ) -> Session | None:
        if transaction_id is not None:
            session = self.station.by_transaction(transaction_id)
            if session is None or session.charger_id != charger_id:
                return None
        else:
            session = self.station.active_on(charger_id, connector_id - 1)
        return session if session is not None and session.active else None

    def stop_transaction(
        self, link: ChargerLink, request: StopTransactionRequest
    ) -> Awaitable[OcppModel]:
        status = self._id_tag_status(request.id_tag)
        info = None if request.id_tag is None else IdTagInfo(status=status)
        session = self.station.by_transaction(request.transaction_id)
        if session is None or session.charger_id != link.charger_id or not session.active:
            # Unknown, -1, or already stopped (a resend): answered, nothing changes.
            # The first stop may still be on its way to disk.
            return self._after_commit(StopTransactionResponse(id_tag_info=info))
        energy = None
        if session.meter_start_wh is not None:
            energy = max(0.0, (request.meter_stop - session.meter_start_wh) / 1000.0)
        reason = request.reason.value if request.reason is not None else "Local"
        self._close(session, self.service.now(), reason=reason, consumed_energy=energy)
        return self._after_commit(StopTransactionResponse(id_tag_info=info))
