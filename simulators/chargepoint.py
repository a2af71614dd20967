"""A simulated OCPP 1.6J charge point over a real WebSocket (the I/O shell around
:class:`simulators.charger.ChargerModel`).

Lifecycle: :meth:`ChargePoint.start` runs a connection loop (connect to
``{url}/{chargePointId}`` with subprotocol ``ocpp1.6`` and HTTP Basic auth when a password is
set, serve the link, reconnect after a loss) and a meter loop (MeterValues every
MeterValueSampleInterval of the charger's clock). On each connection the charger boots
(BootNotification, retried after ``interval`` while Pending or Rejected, OCPP 1.6 section 4.2),
or, after a reconnection, carries on without booting (OCPP-J 5.4), reports every connector's
status, then delivers its own messages one at a time from an outbox and heartbeats.

The outbox keeps the transaction messages (StartTransaction, StopTransaction, MeterValues of a
transaction) until the central system answers them, across reconnections and with identical
content on resend, as a charger's transaction queue does (OCPP 1.6 section 3.6 / 4.8: they
must be delivered, in order). A CALLERROR is retried TransactionMessageAttempts times,
TransactionMessageRetryInterval apart. Other messages are sent while online and dropped
otherwise.

Tests and runners drive the vehicle side (:meth:`plug_in`, :meth:`start_transaction`,
:meth:`stop_transaction`, :meth:`unplug`), read what the charger applies
(:meth:`applied_limit_w`, :attr:`profile_log`) and break things through :attr:`faults`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from protocol import CallReceived, Connection, NotSupported, OcppModel, Role
from protocol.messages import (
    AuthorizationStatus,
    AuthorizeRequest,
    AuthorizeResponse,
    BootNotificationRequest,
    BootNotificationResponse,
    ChangeConfigurationRequest,
    ChangeConfigurationResponse,
    ChargePointErrorCode,
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
    IdTagInfo,
    Location,
    Measurand,
    MessageTrigger,
    MeterValue,
    MeterValuesRequest,
    ReadingContext,
    Reason,
    RegistrationStatus,
    RemoteStartStopStatus,
    RemoteStartTransactionRequest,
    RemoteStartTransactionResponse,
    RemoteStopTransactionRequest,
    RemoteStopTransactionResponse,
    ResetRequest,
    ResetResponse,
    ResetStatus,
    ResetType,
    SampledValue,
    SetChargingProfileRequest,
    SetChargingProfileResponse,
    StartTransactionRequest,
    StartTransactionResponse,
    StatusNotificationRequest,
    StopTransactionRequest,
    TriggerMessageRequest,
    TriggerMessageResponse,
    TriggerMessageStatus,
    UnitOfMeasure,
)
from simulators.charger import ChargerModel, ChargerSpec, LocalTransaction
from simulators.clock import Clock, RealClock, sleep_until, to_datetime
from simulators.connector import ConnectorEvent
from simulators.faults import Faults
from simulators.link import CallFailed, CallTimeout, LinkClosed, OcppLink, Reply
from simulators.vehicles import Vehicle

__all__ = ["ChargePoint", "ProfileRecord"]

log = logging.getLogger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")
M = TypeVar("M", bound=OcppModel)


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


@dataclass(slots=True)
class _Outgoing:
    build: Callable[[], OcppModel]
    transactional: bool
    on_answer: Callable[[Any], None] | None = None
    future: asyncio.Future[OcppModel] | None = None
    request: OcppModel | None = None  # built once, so that a resend is identical
    errors: int = 0


class ChargePoint:
    def __init__(
        self,
        url: str,
        spec: ChargerSpec,
        *,
        clock: Clock | None = None,
        password: str | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        call_timeout: float = 10.0,
        reconnect_delay: float = 1.0,
        boot_retry: float = 60.0,
        open_timeout: float = 10.0,
        meter_on_change_w: float | None = None,
    ) -> None:
        """``url`` is the central system's OCPP base, e.g. ``ws://127.0.0.1:9000/ocpp``;
        ``reconnect_delay`` is real time between connection attempts (transport back-off, not
        simulated time); ``boot_retry`` is the wait (charger clock) when a BootNotification got
        no usable answer. With ``meter_on_change_w``, a connector whose draw moved by at least
        that much when its limit changed sends a MeterValues sample at once (context Other), as
        chargers that report on change do; otherwise only the periodic samples go out."""
        self.spec = spec
        self.url = f"{url.rstrip('/')}/{quote(spec.charge_point_id, safe='')}"
        self.clock: Clock = clock or RealClock()
        self.faults = faults or Faults()
        self.model = ChargerModel(spec, self.clock.now())
        self.profile_log: list[ProfileRecord] = []
        self.registration: RegistrationStatus | None = None
        self.connections = 0  # WebSocket connections opened
        self.boots = 0  # BootNotifications accepted
        self.last_error: BaseException | None = None
        self._password = password
        self._rng = random.Random(seed)
        self._call_timeout = call_timeout
        self._reconnect_delay = reconnect_delay
        self._boot_retry = boot_retry
        self._open_timeout = open_timeout
        self.meter_on_change_w = meter_on_change_w
        self._link: OcppLink | None = None
        self._ready = False  # booted (or carrying on) on the current link
        self._reboot = False
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_changed = asyncio.Event()
        self._changed = asyncio.Event()
        self._allowed_online = asyncio.Event()
        self._allowed_online.set()
        self._profile_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"cp-{self.spec.charge_point_id}")

    async def stop(self) -> None:
        """Stop at once (like a power cut): nothing more is sent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait() rather than await: our caller's own cancellation must not be swallowed.
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def __aenter__(self) -> ChargePoint:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def online(self) -> bool:
        """Connected and booted (or carrying on after a reconnection)."""
        return self._link is not None and self._ready

    @property
    def link(self) -> OcppLink | None:
        return self._link

    @property
    def pending_messages(self) -> int:
        return len(self._outbox)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the charger's state moves
        (a connection, an answer, a profile, a status change)."""
        while not predicate():
            changed = self._changed
            await changed.wait()

    async def wait_online(self) -> None:
        await self.wait_for(lambda: self.online)

    async def wait_delivered(self) -> None:
        """Until the outbox is empty: every message answered (or given up)."""
        await self.wait_for(lambda: not self._outbox)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- what the charger applies ---------------------------------------------------------------

    def applied_limit_w(self, connector_id: int) -> float:
        """The limit in force on a connector now (profiles, hardware, charge point cap)."""
        return self.model.applied_limit_w(connector_id, self.clock.now())

    def power_w(self, connector_id: int) -> float:
        self.advance()
        return self.model.connector(connector_id).power_w

    def status(self, connector_id: int) -> ChargePointStatus:
        return self.model.connector(connector_id).status

    def transaction(self, connector_id: int) -> LocalTransaction | None:
        return self.model.connector(connector_id).transaction

    def advance(self) -> None:
        """Bring meters and vehicles up to the clock's present."""
        self.model.advance(self.clock.now())
        self._after_model_change()

    def set_demand(self, connector_id: int, watts: float | None) -> None:
        """A load without a vehicle model: draw at most ``watts`` (None: whatever is allowed)."""
        self.advance()
        self.model.connector(connector_id).demand_w = watts
        self.model.advance(self.clock.now())
        self._after_model_change()

    # -- the driver's side ----------------------------------------------------------------------

    async def plug_in(self, connector_id: int, vehicle: Vehicle | None = None) -> None:
        self.advance()
        self.model.fire(connector_id, ConnectorEvent.PLUG_IN)
        self.model.connector(connector_id).vehicle = vehicle
        self._queue_status(connector_id)

    async def authorize(self, id_tag: str) -> IdTagInfo:
        """Authorize.req (4.1); raises LinkClosed when offline."""
        response = await self._request(AuthorizeRequest(id_tag=id_tag), AuthorizeResponse)
        return response.id_tag_info

    async def start_transaction(
        self, connector_id: int, id_tag: str, profile: ChargingProfile | None = None
    ) -> LocalTransaction:
        """Start charging at once and queue StartTransaction.req (4.8); the transactionId comes
        with the answer (see :meth:`wait_transaction_id`). Energy flows under the
        TxDefaultProfile until a TxProfile for the transaction arrives (3.13.1)."""
        now = self.clock.now()
        tx = self.model.begin_transaction(connector_id, id_tag, now)
        tx.pending_profile = profile
        request = StartTransactionRequest(
            connector_id=connector_id,
            id_tag=id_tag,
            meter_start=tx.meter_start,
            timestamp=to_datetime(now),
        )

        def started(response: StartTransactionResponse) -> None:
            self.model.confirm_transaction(tx, response.transaction_id, self.clock.now())
            if response.id_tag_info.status is not AuthorizationStatus.ACCEPTED:
                # StopTransactionOnInvalidId (9.1.34): a real charger stops such a transaction.
                connector = self.model.connector(connector_id)
                if connector.transaction is tx:
                    self._stop(connector_id, Reason.DE_AUTHORIZED)

        self._queue(_Outgoing(lambda: request, True, started))
        self._after_model_change()
        return tx

    async def wait_transaction_id(self, connector_id: int) -> int:
        """The id of the transaction on a connector, once the central system has given it."""
        tx = self.model.connector(connector_id).transaction
        if tx is None:
            raise ValueError(f"no transaction on connector {connector_id}")
        await self.wait_for(lambda: tx.transaction_id is not None)
        assert tx.transaction_id is not None
        return tx.transaction_id

    async def stop_transaction(
        self, connector_id: int, reason: Reason = Reason.LOCAL
    ) -> LocalTransaction:
        """Stop charging and queue StopTransaction.req with meterStop (4.10)."""
        return self._stop(connector_id, reason)

    async def unplug(self, connector_id: int) -> None:
        """Pull the cable; a running transaction stops with reason EVDisconnected."""
        if self.model.connector(connector_id).transaction is not None:
            self._stop(connector_id, Reason.EV_DISCONNECTED)
        self.model.fire(connector_id, ConnectorEvent.UNPLUG)
        self.model.connector(connector_id).vehicle = None
        self._queue_status(connector_id)

    async def sample_meters(self, context: ReadingContext = ReadingContext.SAMPLE_PERIODIC) -> None:
        """Queue MeterValues.req (4.7) for every connector with a transaction."""
        self.advance()
        for connector_id, connector in self.model.connectors.items():
            if connector.transaction is not None:
                self._queue_meter_values(connector_id, connector.transaction, context)

    # -- faults that act on the connection ------------------------------------------------------

    async def disconnect(self, *, hold: bool = False, reboot: bool = False) -> None:
        """Drop the WebSocket. It reconnects at once unless ``hold`` (then :meth:`reconnect`);
        ``reboot`` (or ``faults.boot_on_reconnect``) makes it send BootNotification again."""
        self._reboot = self._reboot or reboot
        if hold:
            self._allowed_online.clear()
        link = self._link
        if link is not None:
            await link.close()

    def reconnect(self) -> None:
        self._allowed_online.set()

    # -- connection loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        started = self.clock.now()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._connection_loop())
            group.create_task(self._meter_loop(started))

    def _headers(self) -> dict[str, str]:
        if self._password is None:
            return {}
        # Security profile 1 (Improved security for OCPP 1.6-J, 2.1): HTTP Basic, user = id.
        token = f"{self.spec.charge_point_id}:{self._password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode("ascii")}

    async def _connection_loop(self) -> None:
        while True:
            await self._allowed_online.wait()
            try:
                async with connect(
                    self.url,
                    subprotocols=[SUBPROTOCOL],
                    additional_headers=self._headers(),
                    compression=None,
                    open_timeout=self._open_timeout,
                    ping_interval=None,
                ) as ws:
                    if ws.subprotocol != SUBPROTOCOL:
                        # OCPP-J 3.2: a central system without ocpp1.6 cannot be talked to.
                        raise InvalidHandshake("central system did not accept ocpp1.6")
                    connection = Connection(Role.CHARGE_POINT, call_timeout=self._call_timeout)
                    link = OcppLink(
                        ws,
                        connection,
                        self.clock,
                        self.faults,
                        self._rng,
                        self._handle_call,
                        self._notify,
                    )
                    self._link = link
                    self.connections += 1
                    self._notify()
                    await link.run(self._session)
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
                self.last_error = error
                log.info("%s: connection failed: %s", self.spec.charge_point_id, error)
            finally:
                self._link = None
                self._ready = False
                self._drop_untransactional()
                self._notify()
            await asyncio.sleep(self._reconnect_delay)

    async def _session(self, link: OcppLink) -> None:
        first_contact = self.registration is not RegistrationStatus.ACCEPTED
        if first_contact or self._reboot or self.faults.boot_on_reconnect:
            await self._boot(link)
        online_since = self.clock.now()
        self._ready = True
        self._notify()
        for connector_id in range(self.spec.connectors + 1):
            self._queue_status(connector_id)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._deliver(link))
            group.create_task(self._heartbeat_loop(online_since))

    async def _boot(self, link: OcppLink) -> None:
        spec = self.spec
        request = BootNotificationRequest(
            charge_point_vendor=spec.vendor,
            charge_point_model=spec.model,
            charge_point_serial_number=spec.charge_point_id[:25],
            firmware_version=spec.firmware_version,
        )
        while True:
            try:
                response = await link.call(request)
            except (CallFailed, CallTimeout):
                await self.clock.sleep(self._boot_retry)
                continue
            assert isinstance(response, BootNotificationResponse)
            self.registration = response.status
            self._notify()
            if response.status is RegistrationStatus.ACCEPTED:
                if response.interval > 0:
                    self.model.change_configuration("HeartbeatInterval", str(response.interval))
                self.boots += 1
                self._reboot = False
                return
            # Pending / Rejected: nothing but a new BootNotification after `interval` (4.2.1).
            await self.clock.sleep(response.interval if response.interval > 0 else self._boot_retry)

    async def _heartbeat_loop(self, origin: float) -> None:
        beat = origin
        while True:
            beat += max(1, self.model.int_setting("HeartbeatInterval"))
            await sleep_until(self.clock, beat)
            self._queue(_Outgoing(HeartbeatRequest, False))

    async def _meter_loop(self, origin: float) -> None:
        sample = origin
        while True:
            interval = self.model.int_setting("MeterValueSampleInterval")
            sample += interval if interval > 0 else 60
            await sleep_until(self.clock, sample)
            if interval > 0:  # 0 turns sampling off (9.1.18)
                await self.sample_meters()

    # -- the outbox -----------------------------------------------------------------------------

    def _queue(self, item: _Outgoing) -> None:
        if not item.transactional and not self.online:
            if item.future is not None:
                item.future.set_exception(LinkClosed("offline"))
            return
        self._outbox.append(item)
        self._outbox_changed.set()

    async def _request(self, request: OcppModel, expected: type[M]) -> M:
        future: asyncio.Future[OcppModel] = asyncio.get_running_loop().create_future()
        self._queue(_Outgoing(lambda: request, False, future=future))
        response = await future
        assert isinstance(response, expected)
        return response

    def _drop_untransactional(self) -> None:
        kept: deque[_Outgoing] = deque()
        for item in self._outbox:
            if item.transactional:
                kept.append(item)
            elif item.future is not None and not item.future.done():
                item.future.set_exception(LinkClosed("connection lost"))
        self._outbox = kept

    async def _deliver(self, link: OcppLink) -> None:
        """Send the outbox in order, one answered message at a time."""
        while True:
            if not self._outbox:
                self._outbox_changed.clear()
                await self._outbox_changed.wait()
                continue
            item = self._outbox[0]
            if item.request is None:
                item.request = item.build()
            sent_at = self.clock.now()
            try:
                response = await link.call(item.request)
            except LinkClosed:
                return  # transactional messages stay for the next connection
            except (CallFailed, CallTimeout) as error:
                if item.transactional and await self._retry(item, error, sent_at):
                    continue
                self._outbox.popleft()
                if item.future is not None and not item.future.done():
                    item.future.set_exception(error)
                self._notify()
                continue
            self._outbox.popleft()
            if item.on_answer is not None:
                item.on_answer(response)
            if item.future is not None and not item.future.done():
                item.future.set_result(response)
            self._after_model_change()
            self._notify()

    async def _retry(self, item: _Outgoing, error: Exception, sent_at: float) -> bool:
        """Whether to send a transaction message again (4.8 / 9.1.36-37); the wait counts
        from the failed attempt."""
        if isinstance(error, CallFailed):
            item.errors += 1
            if item.errors >= self.model.int_setting("TransactionMessageAttempts"):
                return False
        interval = self.model.int_setting("TransactionMessageRetryInterval")
        await sleep_until(self.clock, sent_at + interval * max(1, item.errors))
        return True

    # -- message builders -----------------------------------------------------------------------

    def _queue_status(self, connector_id: int) -> None:
        status = (
            ChargePointStatus.AVAILABLE
            if connector_id == 0
            else self.model.connector(connector_id).status
        )
        request = StatusNotificationRequest(
            connector_id=connector_id,
            error_code=ChargePointErrorCode.NO_ERROR,
            status=status,
            timestamp=to_datetime(self.clock.now()),
        )
        self._queue(_Outgoing(lambda: request, False))
        self._notify()

    def _queue_meter_values(
        self, connector_id: int, tx: LocalTransaction, context: ReadingContext
    ) -> None:
        connector = self.model.connector(connector_id)
        at = to_datetime(self.clock.now())
        values = [
            SampledValue(
                value=f"{connector.power_w:.1f}",
                context=context,
                measurand=Measurand.POWER_ACTIVE_IMPORT,
                location=Location.OUTLET,
                unit=UnitOfMeasure.W,
            ),
            SampledValue(
                value=f"{connector.meter_wh:.1f}",
                context=context,
                measurand=Measurand.ENERGY_ACTIVE_IMPORT_REGISTER,
                location=Location.OUTLET,
                unit=UnitOfMeasure.WH,
            ),
        ]
        if connector.vehicle is not None:
            values.append(
                SampledValue(
                    value=f"{connector.vehicle.soc * 100:.1f}",
                    context=context,
                    measurand=Measurand.SOC,
                    location=Location.EV,
                    unit=UnitOfMeasure.PERCENT,
                )
            )
        sample = MeterValue(timestamp=at, sampled_value=values)
        tx.reported_w = connector.power_w

        def build() -> MeterValuesRequest:
            # The transactionId is known by the time the message leaves: the outbox is in order.
            return MeterValuesRequest(
                connector_id=connector_id, transaction_id=tx.transaction_id, meter_value=[sample]
            )

        self._queue(_Outgoing(build, True))

    def _report_draw_changes(self) -> None:
        """A sample for each transaction whose draw moved since its last report (see
        ``meter_on_change_w``)."""
        threshold = self.meter_on_change_w
        if threshold is None:
            return
        for connector_id, connector in self.model.connectors.items():
            tx = connector.transaction
            if tx is None:
                continue
            if tx.reported_w is None or abs(connector.power_w - tx.reported_w) >= threshold:
                self._queue_meter_values(connector_id, tx, ReadingContext.OTHER)

    def _stop(self, connector_id: int, reason: Reason) -> LocalTransaction:
        tx = self.model.end_transaction(connector_id, self.clock.now())
        assert tx.meter_stop is not None and tx.stopped_at is not None
        meter_stop, stopped_at = tx.meter_stop, tx.stopped_at

        def build() -> StopTransactionRequest:
            return StopTransactionRequest(
                id_tag=tx.id_tag,
                meter_stop=meter_stop,
                timestamp=to_datetime(stopped_at),
                # -1 only if the central system never gave the transaction an id.
                transaction_id=tx.transaction_id if tx.transaction_id is not None else -1,
                reason=reason,
            )

        self._queue(_Outgoing(build, True))
        self._after_model_change()
        self._queue_status(connector_id)
        return tx

    def _after_model_change(self) -> None:
        for connector_id in self.model.take_status_changes():
            self._queue_status(connector_id)
        self._notify()

    # -- the central system's calls (OCPP 1.6 section 5) ----------------------------------------

    async def _handle_call(self, event: CallReceived, received_at: float) -> Reply:
        request = event.request
        match request:
            case SetChargingProfileRequest():
                return Reply(await self._set_charging_profile(request, received_at))
            case ClearChargingProfileRequest():
                self._require_smart_charging(event.action)
                cleared = self.model.clear_charging_profile(request, self.clock.now())
                self._after_model_change()
                self._report_draw_changes()
                return Reply(ClearChargingProfileResponse(status=cleared))
            case GetCompositeScheduleRequest():
                return Reply(self._composite_schedule(event.action, request))
            case GetConfigurationRequest():
                known, unknown = self.model.get_configuration(request.key)
                return Reply(
                    GetConfigurationResponse(
                        configuration_key=known or None, unknown_key=unknown or None
                    )
                )
            case ChangeConfigurationRequest():
                changed = self.model.change_configuration(request.key, request.value)
                return Reply(ChangeConfigurationResponse(status=changed))
            case RemoteStartTransactionRequest():
                return self._remote_start(request)
            case RemoteStopTransactionRequest():
                return self._remote_stop(request)
            case ResetRequest():
                return Reply(
                    ResetResponse(status=ResetStatus.ACCEPTED), lambda: self._reset(request)
                )
            case TriggerMessageRequest():
                return self._trigger(request)
            case DataTransferRequest():
                return Reply(DataTransferResponse(status=DataTransferStatus.UNKNOWN_VENDOR_ID))
            case _:
                raise NotSupported(f"{event.action} is not supported by this charge point")

    def _require_smart_charging(self, action: str) -> None:
        if not self.spec.smart_charging:
            raise NotSupported(f"{action}: the SmartCharging feature profile is not supported")

    async def _set_charging_profile(
        self, request: SetChargingProfileRequest, received: float
    ) -> SetChargingProfileResponse:
        # One at a time, in arrival order, like a charger's firmware (5.16).
        async with self._profile_lock:
            hold = self.faults.profile_hold
            if hold is not None:
                await hold.wait()
            if self.faults.profile_delay > 0:
                await sleep_until(self.clock, received + self.faults.profile_delay)
            now = self.clock.now()
            if not self.spec.smart_charging:
                status = ChargingProfileStatus.NOT_SUPPORTED
            elif self.faults.take_profile_rejection():
                status = ChargingProfileStatus.REJECTED
            else:
                status = self.model.set_charging_profile(
                    request.connector_id, request.cs_charging_profiles, now
                )
            self.profile_log.append(
                ProfileRecord(
                    received, now, request.connector_id, request.cs_charging_profiles, status
                )
            )
            self._after_model_change()
            self._report_draw_changes()
        return SetChargingProfileResponse(status=status)

    def _composite_schedule(
        self, action: str, request: GetCompositeScheduleRequest
    ) -> GetCompositeScheduleResponse:
        self._require_smart_charging(action)
        unit = request.charging_rate_unit
        if request.connector_id > self.spec.connectors or (
            unit is not None and unit not in self.spec.rate_units
        ):
            return GetCompositeScheduleResponse(status=GetCompositeScheduleStatus.REJECTED)
        now = self.clock.now()
        schedule = self.model.composite_schedule(request.connector_id, request.duration, unit, now)
        return GetCompositeScheduleResponse(
            status=GetCompositeScheduleStatus.ACCEPTED,
            connector_id=request.connector_id,
            schedule_start=to_datetime(now),
            charging_schedule=schedule,
        )

    def _remote_start(self, request: RemoteStartTransactionRequest) -> Reply:
        free = (ChargePointStatus.AVAILABLE, ChargePointStatus.PREPARING)
        candidates = (
            [request.connector_id]
            if request.connector_id is not None
            else list(self.model.connectors)
        )
        chosen = next(
            (
                n
                for n in candidates
                if n in self.model.connectors and self.model.connector(n).status in free
            ),
            None,
        )
        profile = request.charging_profile
        if chosen is None or (
            profile is not None
            and profile.charging_profile_purpose is not ChargingProfilePurposeType.TX_PROFILE
        ):
            # 5.11: a charging profile given here SHALL have purpose TxProfile.
            return Reply(RemoteStartTransactionResponse(status=RemoteStartStopStatus.REJECTED))
        connector_id = chosen

        async def start() -> None:
            await self.start_transaction(connector_id, request.id_tag, profile)

        return Reply(RemoteStartTransactionResponse(status=RemoteStartStopStatus.ACCEPTED), start)

    def _remote_stop(self, request: RemoteStopTransactionRequest) -> Reply:
        tx = self.model.transaction_by_id(request.transaction_id)
        if tx is None:
            return Reply(RemoteStopTransactionResponse(status=RemoteStartStopStatus.REJECTED))
        connector_id = tx.connector_id

        async def stop() -> None:
            if self.model.connector(connector_id).transaction is tx:
                self._stop(connector_id, Reason.REMOTE)

        return Reply(RemoteStopTransactionResponse(status=RemoteStartStopStatus.ACCEPTED), stop)

    async def _reset(self, request: ResetRequest) -> None:
        # 5.14: stop transactions, then reboot (a new connection and BootNotification).
        reason = Reason.HARD_RESET if request.type is ResetType.HARD else Reason.SOFT_RESET
        for connector_id, connector in self.model.connectors.items():
            if connector.transaction is not None:
                self._stop(connector_id, reason)
        await self.disconnect(reboot=True)

    def _trigger(self, request: TriggerMessageRequest) -> Reply:
        connector_id = request.connector_id
        if connector_id is not None and connector_id > self.spec.connectors:
            return Reply(TriggerMessageResponse(status=TriggerMessageStatus.REJECTED))
        what = request.requested_message
        link = self._link

        async def send() -> None:
            # 5.17: the requested message follows the TriggerMessage.conf.
            match what:
                case MessageTrigger.BOOT_NOTIFICATION:
                    if link is not None:
                        await self._boot(link)
                case MessageTrigger.HEARTBEAT:
                    self._queue(_Outgoing(HeartbeatRequest, False))
                case MessageTrigger.STATUS_NOTIFICATION:
                    ids = (
                        [connector_id]
                        if connector_id is not None
                        else range(self.spec.connectors + 1)
                    )
                    for n in ids:
                        self._queue_status(n)
                case MessageTrigger.METER_VALUES:
                    self.advance()
                    for n, connector in self.model.connectors.items():
                        tx = connector.transaction
                        if tx is not None and connector_id in (None, n):
                            self._queue_meter_values(n, tx, ReadingContext.TRIGGER)
                case MessageTrigger.DIAGNOSTICS_STATUS_NOTIFICATION:
                    status = DiagnosticsStatus.IDLE
                    self._queue(
                        _Outgoing(
                            lambda: DiagnosticsStatusNotificationRequest(status=status), False
                        )
                    )
                case MessageTrigger.FIRMWARE_STATUS_NOTIFICATION:
                    firmware = FirmwareStatus.IDLE
                    self._queue(
                        _Outgoing(lambda: FirmwareStatusNotificationRequest(status=firmware), False)
                    )

        return Reply(TriggerMessageResponse(status=TriggerMessageStatus.ACCEPTED), send)
