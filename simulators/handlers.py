"""A simulated charger's answers to the central system's CALLs (OCPP 1.6 section 5).

:meth:`CentralSystemCalls.handle` is the :data:`shell.link.CallHandler` of every connection
of a :class:`simulators.chargepoint.ChargePoint`: it decides on the charger's model and
answers. Calls are handled in the order they arrive, as the link dispatches them, like a
charger's firmware reading its socket; only a SetChargingProfile that a fault knob delays or
holds (:mod:`simulators.faults`) is answered later, and the ones behind it wait their turn.

When an answer announces something (a transaction started remotely, a triggered message, a
reset), the answer is written first and the charger acts right after, so that its own
messages follow the answer on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from protocol import CallReceived, NotSupported, OcppModel
from protocol.messages import (
    ChangeConfigurationRequest,
    ChangeConfigurationResponse,
    ChargePointStatus,
    ChargingProfile,
    ChargingProfilePurposeType,
    ChargingProfileStatus,
    ClearChargingProfileRequest,
    ClearChargingProfileResponse,
    DataTransferRequest,
    DataTransferResponse,
    DataTransferStatus,
    DiagnosticsStatus,
    DiagnosticsStatusNotificationRequest,
    FirmwareStatus,
    FirmwareStatusNotificationRequest,
    GetCompositeScheduleRequest,
    GetCompositeScheduleResponse,
    GetCompositeScheduleStatus,
    GetConfigurationRequest,
    GetConfigurationResponse,
    HeartbeatRequest,
    MessageTrigger,
    ReadingContext,
    Reason,
    RemoteStartStopStatus,
    RemoteStartTransactionRequest,
    RemoteStartTransactionResponse,
    RemoteStopTransactionRequest,
    RemoteStopTransactionResponse,
    ResetRequest,
    ResetResponse,
    ResetStatus,
    ResetType,
    SetChargingProfileRequest,
    SetChargingProfileResponse,
    TriggerMessageRequest,
    TriggerMessageResponse,
    TriggerMessageStatus,
)
from shell.clock import Clock, sleep_until, to_datetime
from shell.link import Answer, OcppLink
from simulators.charger import ChargerModel, ChargerSpec, LocalTransaction
from simulators.faults import Faults

__all__ = ["CentralSystemCalls", "Charger", "ProfileRecord"]


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    """One SetChargingProfile as the charger saw it. From ``received_at`` the charger may be
    applying the profile; ``answered_at`` is when it answered (and, if accepted, applied it)."""

    received_at: float
    answered_at: float
    connector_id: int
    profile: ChargingProfile
    status: ChargingProfileStatus

    @property
    def accepted(self) -> bool:
        return self.status is ChargingProfileStatus.ACCEPTED


class Charger(Protocol):
    """What the handlers need of the charge point they answer for."""

    spec: ChargerSpec
    model: ChargerModel
    clock: Clock
    faults: Faults
    profile_log: list[ProfileRecord]

    def limits_changed(self) -> None:
        """The limits in force may have moved: report the status and draw changes."""
        ...

    def begin_transaction(
        self, connector_id: int, id_tag: str, profile: ChargingProfile | None = None
    ) -> LocalTransaction: ...

    def end_transaction(self, connector_id: int, reason: Reason) -> LocalTransaction: ...

    def send(self, request: OcppModel) -> None:
        """Send a message that is not a transaction message (dropped when offline)."""
        ...

    def report_status(self, connector_id: int) -> None: ...

    def report_meters(self, context: ReadingContext, connector_id: int | None = None) -> None: ...

    async def boot(self, link: OcppLink) -> None: ...

    async def reboot(self) -> None: ...


class CentralSystemCalls:
    def __init__(self, charger: Charger) -> None:
        self._charger = charger
        # The last SetChargingProfile answered later: the next one is handled after it.
        self._held_profile: asyncio.Task[None] | None = None

    def handle(self, link: OcppLink, call: CallReceived) -> Answer | None:
        charger, model = self._charger, self._charger.model
        request = call.request
        match request:
            case SetChargingProfileRequest():
                self._set_charging_profile(link, call, request)
                return None
            case ClearChargingProfileRequest():
                self._require_smart_charging(call.action)
                cleared = model.clear_charging_profile(request, charger.clock.now())
                answer = ClearChargingProfileResponse(status=cleared)
                _answer_then(link, call, answer, charger.limits_changed)
                return None
            case GetCompositeScheduleRequest():
                return self._composite_schedule(call.action, request)
            case GetConfigurationRequest():
                known, unknown = model.get_configuration(request.key)
                return GetConfigurationResponse(
                    configuration_key=known or None, unknown_key=unknown or None
                )
            case ChangeConfigurationRequest():
                changed = model.change_configuration(request.key, request.value)
                return ChangeConfigurationResponse(status=changed)
            case RemoteStartTransactionRequest():
                return self._remote_start(link, call, request)
            case RemoteStopTransactionRequest():
                return self._remote_stop(link, call, request)
            case ResetRequest():
                self._reset(link, call, request)
                return None
            case TriggerMessageRequest():
                return self._trigger(link, call, request)
            case DataTransferRequest():
                return DataTransferResponse(status=DataTransferStatus.UNKNOWN_VENDOR_ID)
            case _:
                raise NotSupported(f"{call.action} is not supported by this charge point")

    def _require_smart_charging(self, action: str) -> None:
        if not self._charger.spec.smart_charging:
            raise NotSupported(f"{action}: the SmartCharging feature profile is not supported")

    # -- SetChargingProfile (5.16) ---------------------------------------------------------------

    def _set_charging_profile(
        self, link: OcppLink, call: CallReceived, request: SetChargingProfileRequest
    ) -> None:
        received = self._charger.clock.now()
        faults = self._charger.faults
        earlier = self._held_profile
        if (earlier is None or earlier.done()) and not faults.profiles_wait():
            self._apply_profile(link, call, request, received)
            return
        self._held_profile = link.spawn(
            self._apply_profile_later(link, call, request, received, earlier), call.action
        )

    async def _apply_profile_later(
        self,
        link: OcppLink,
        call: CallReceived,
        request: SetChargingProfileRequest,
        received: float,
        earlier: asyncio.Task[None] | None,
    ) -> None:
        # One at a time, in arrival order, like a charger's firmware.
        if earlier is not None:
            await asyncio.wait([earlier])
        faults = self._charger.faults
        hold = faults.profile_hold
        if hold is not None:
            await hold.wait()
        if faults.profile_delay > 0:
            await sleep_until(self._charger.clock, received + faults.profile_delay)
        self._apply_profile(link, call, request, received)

    def _apply_profile(
        self,
        link: OcppLink,
        call: CallReceived,
        request: SetChargingProfileRequest,
        received: float,
    ) -> None:
        charger = self._charger
        now = charger.clock.now()
        if not charger.spec.smart_charging:
            status = ChargingProfileStatus.NOT_SUPPORTED
        elif charger.faults.take_profile_rejection():
            status = ChargingProfileStatus.REJECTED
        else:
            status = charger.model.set_charging_profile(
                request.connector_id, request.cs_charging_profiles, now
            )
        charger.profile_log.append(
            ProfileRecord(received, now, request.connector_id, request.cs_charging_profiles, status)
        )
        _answer_then(link, call, SetChargingProfileResponse(status=status), charger.limits_changed)

    # -- the other calls -------------------------------------------------------------------------

    def _composite_schedule(
        self, action: str, request: GetCompositeScheduleRequest
    ) -> GetCompositeScheduleResponse:
        self._require_smart_charging(action)
        spec = self._charger.spec
        unit = request.charging_rate_unit
        if request.connector_id > spec.connectors or (
            unit is not None and unit not in spec.rate_units
        ):
            return GetCompositeScheduleResponse(status=GetCompositeScheduleStatus.REJECTED)
        now = self._charger.clock.now()
        schedule = self._charger.model.composite_schedule(
            request.connector_id, request.duration, unit, now
        )
        return GetCompositeScheduleResponse(
            status=GetCompositeScheduleStatus.ACCEPTED,
            connector_id=request.connector_id,
            schedule_start=to_datetime(now),
            charging_schedule=schedule,
        )

    def _remote_start(
        self, link: OcppLink, call: CallReceived, request: RemoteStartTransactionRequest
    ) -> Answer | None:
        model = self._charger.model
        free = (ChargePointStatus.AVAILABLE, ChargePointStatus.PREPARING)
        candidates = (
            [request.connector_id] if request.connector_id is not None else list(model.connectors)
        )
        chosen = next(
            (n for n in candidates if n in model.connectors and model.connector(n).status in free),
            None,
        )
        profile = request.charging_profile
        if chosen is None or (
            profile is not None
            and profile.charging_profile_purpose is not ChargingProfilePurposeType.TX_PROFILE
        ):
            # 5.11: a charging profile given here SHALL have purpose TxProfile.
            return RemoteStartTransactionResponse(status=RemoteStartStopStatus.REJECTED)
        connector_id = chosen

        def start() -> None:
            self._charger.begin_transaction(connector_id, request.id_tag, profile)

        answer = RemoteStartTransactionResponse(status=RemoteStartStopStatus.ACCEPTED)
        _answer_then(link, call, answer, start)
        return None

    def _remote_stop(
        self, link: OcppLink, call: CallReceived, request: RemoteStopTransactionRequest
    ) -> Answer | None:
        tx = self._charger.model.transaction_by_id(request.transaction_id)
        if tx is None:
            return RemoteStopTransactionResponse(status=RemoteStartStopStatus.REJECTED)

        def stop() -> None:
            self._charger.end_transaction(tx.connector_id, Reason.REMOTE)

        answer = RemoteStopTransactionResponse(status=RemoteStartStopStatus.ACCEPTED)
        _answer_then(link, call, answer, stop)
        return None

    def _reset(self, link: OcppLink, call: CallReceived, request: ResetRequest) -> None:
        # 5.14: stop the transactions, then reboot (a new connection and BootNotification).
        reason = Reason.HARD_RESET if request.type is ResetType.HARD else Reason.SOFT_RESET

        def reset() -> None:
            for connector_id, connector in self._charger.model.connectors.items():
                if connector.transaction is not None:
                    self._charger.end_transaction(connector_id, reason)
            link.spawn(self._charger.reboot(), "reset")

        _answer_then(link, call, ResetResponse(status=ResetStatus.ACCEPTED), reset)

    def _trigger(
        self, link: OcppLink, call: CallReceived, request: TriggerMessageRequest
    ) -> Answer | None:
        charger = self._charger
        connector_id = request.connector_id
        if connector_id is not None and connector_id > charger.spec.connectors:
            return TriggerMessageResponse(status=TriggerMessageStatus.REJECTED)

        def send() -> None:
            # 5.17: the requested message follows the TriggerMessage.conf.
            match request.requested_message:
                case MessageTrigger.BOOT_NOTIFICATION:
                    link.spawn(charger.boot(link), "BootNotification")
                case MessageTrigger.HEARTBEAT:
                    charger.send(HeartbeatRequest())
                case MessageTrigger.STATUS_NOTIFICATION:
                    everyone = range(charger.spec.connectors + 1)
                    for n in everyone if connector_id is None else [connector_id]:
                        charger.report_status(n)
                case MessageTrigger.METER_VALUES:
                    charger.report_meters(ReadingContext.TRIGGER, connector_id)
                case MessageTrigger.DIAGNOSTICS_STATUS_NOTIFICATION:
                    charger.send(
                        DiagnosticsStatusNotificationRequest(status=DiagnosticsStatus.IDLE)
                    )
                case MessageTrigger.FIRMWARE_STATUS_NOTIFICATION:
                    charger.send(FirmwareStatusNotificationRequest(status=FirmwareStatus.IDLE))

        answer = TriggerMessageResponse(status=TriggerMessageStatus.ACCEPTED)
        _answer_then(link, call, answer, send)
        return None


def _answer_then(
    link: OcppLink, call: CallReceived, answer: Answer, then: Callable[[], object]
) -> None:
    """Answer now, then act: what the charger does next goes on the wire after the answer."""
    link.answer(call.unique_id, answer)
    then()
