"""A simulated OCPP 1.6J charge point over a real WebSocket: the I/O shell of a simulated
charger.

The pieces: :class:`simulators.charger.ChargerModel` holds the charger's state,
:mod:`simulators.handlers` answers the central system's CALLs, :mod:`simulators.outbox`
delivers the charger's own messages, :mod:`simulators.messages` builds them and
:mod:`simulators.faults` breaks things on request. This module connects them to the network
and to time.

Lifecycle: :meth:`ChargePoint.start` runs a connection loop (connect to
``{url}/{chargePointId}`` with subprotocol ``ocpp1.6`` and HTTP Basic auth when a password is
set, serve the connection through a :class:`shell.websocket.WebSocketLink`, reconnect after a
loss) and a meter loop (MeterValues every MeterValueSampleInterval of the charger's clock). On
each connection the charger boots (BootNotification, retried after ``interval`` while Pending
or Rejected, OCPP 1.6 section 4.2), or, after a reconnection, carries on without booting
(OCPP-J 5.4). Once online it reports every connector's status, delivers its outbox and
heartbeats.

Every effect of an answer to one of the charger's CALLs (registered, online, a transactionId
learnt) happens while the link dispatches that answer, so a CALL the central system wrote
right behind it is handled by a charger that already knows.

Tests and runners drive the vehicle side (:meth:`plug_in`, :meth:`start_transaction`,
:meth:`stop_transaction`, :meth:`unplug`), read what the charger applies
(:meth:`applied_limit_w`, :attr:`profile_log`) and break things through :attr:`faults`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import random
from collections.abc import Callable
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from protocol import (
    CallAnswered,
    CallCancelled,
    CallReceived,
    Connection,
    Event,
    OcppModel,
    Role,
)
from protocol.messages import (
    AuthorizationStatus,
    AuthorizeRequest,
    AuthorizeResponse,
    BootNotificationResponse,
    ChargePointStatus,
    ChargingProfile,
    HeartbeatRequest,
    IdTagInfo,
    ReadingContext,
    Reason,
    RegistrationStatus,
    StartTransactionResponse,
)
from shell.clock import Clock, SystemClock, sleep_until
from shell.link import Answer, CallOutcome, OcppLink, response_of
from shell.websocket import WebSocketLink
from simulators import messages
from simulators.charger import ChargerModel, ChargerSpec, LocalTransaction
from simulators.connector import ConnectorEvent
from simulators.faults import Faults, FaultyWire
from simulators.handlers import CentralSystemCalls, ProfileRecord
from simulators.outbox import Message, Outbox
from simulators.vehicles import Vehicle

__all__ = ["ChargePoint", "ProfileRecord"]

log = logging.getLogger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")


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
        self.clock: Clock = clock or SystemClock()
        self.faults = faults or Faults()
        self.model = ChargerModel(spec, self.clock.now())
        self.profile_log: list[ProfileRecord] = []
        self.registration: RegistrationStatus | None = None
        self.connections = 0  # WebSocket connections opened
        self.boots = 0  # BootNotifications accepted
        self.last_error: BaseException | None = None
        self.meter_on_change_w = meter_on_change_w
        self._password = password
        self._rng = random.Random(seed)
        self._call_timeout = call_timeout
        self._reconnect_delay = reconnect_delay
        self._boot_retry = boot_retry
        self._open_timeout = open_timeout
        self._calls = CentralSystemCalls(self)
        self._outbox = Outbox(self.clock, self.model.int_setting, self._notify)
        self._link: WebSocketLink | None = None
        self._ready = False  # booted (or carrying on) on the current connection
        self._reboot = False
        self._changed = asyncio.Event()
        self._allowed_online = asyncio.Event()
        self._allowed_online.set()
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
    def link(self) -> WebSocketLink | None:
        """The current connection (its ``stats`` count frames and events), if any."""
        return self._link

    @property
    def pending_messages(self) -> int:
        return len(self._outbox)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the charger's state moves
        (a connection, a frame, an answer, a profile, a status change)."""
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
        self.advance()

    # -- the driver's side ----------------------------------------------------------------------

    async def plug_in(self, connector_id: int, vehicle: Vehicle | None = None) -> None:
        self.advance()
        self.model.fire(connector_id, ConnectorEvent.PLUG_IN)
        self.model.connector(connector_id).vehicle = vehicle
        self.report_status(connector_id)

    async def authorize(self, id_tag: str) -> IdTagInfo:
        """Authorize.req (4.1); raises LinkClosed when offline."""
        answered: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()

        def settle(outcome: CallOutcome) -> None:
            if not answered.done():
                answered.set_result(outcome)

        self._outbox.put(Message(lambda: AuthorizeRequest(id_tag=id_tag), on_outcome=settle))
        response = response_of(await answered)
        assert isinstance(response, AuthorizeResponse)
        return response.id_tag_info

    async def start_transaction(
        self, connector_id: int, id_tag: str, profile: ChargingProfile | None = None
    ) -> LocalTransaction:
        """Start charging at once and queue StartTransaction.req (4.8); the transactionId comes
        with the answer (see :meth:`wait_transaction_id`). Energy flows under the
        TxDefaultProfile until a TxProfile for the transaction arrives (3.13.1)."""
        return self.begin_transaction(connector_id, id_tag, profile)

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
        return self.end_transaction(connector_id, reason)

    async def unplug(self, connector_id: int) -> None:
        """Pull the cable; a running transaction stops with reason EVDisconnected."""
        if self.model.connector(connector_id).transaction is not None:
            self.end_transaction(connector_id, Reason.EV_DISCONNECTED)
        self.model.fire(connector_id, ConnectorEvent.UNPLUG)
        self.model.connector(connector_id).vehicle = None
        self.report_status(connector_id)

    async def sample_meters(self, context: ReadingContext = ReadingContext.SAMPLE_PERIODIC) -> None:
        """Queue MeterValues.req (4.7) for every connector with a transaction."""
        self.report_meters(context)

    # -- what the handlers of the central system's calls act through ----------------------------

    def begin_transaction(
        self, connector_id: int, id_tag: str, profile: ChargingProfile | None = None
    ) -> LocalTransaction:
        """Charging starts now; StartTransaction.req is queued, and its answer (the
        transactionId, the TxProfile that came with a remote start) takes effect as it is
        dispatched."""
        tx = self.model.begin_transaction(connector_id, id_tag, self.clock.now())
        tx.pending_profile = profile

        def started(outcome: CallOutcome) -> None:
            if not isinstance(outcome, CallAnswered):
                return  # given up: the transaction never gets an id
            response = outcome.response
            assert isinstance(response, StartTransactionResponse)
            self.model.confirm_transaction(tx, response.transaction_id, self.clock.now())
            refused = response.id_tag_info.status is not AuthorizationStatus.ACCEPTED
            if refused and self.model.connector(connector_id).transaction is tx:
                # StopTransactionOnInvalidId (9.1.34): a real charger stops such a transaction.
                self.end_transaction(connector_id, Reason.DE_AUTHORIZED)
            self._after_model_change()

        self._outbox.put(
            Message(lambda: messages.start_transaction(tx), transactional=True, on_outcome=started)
        )
        self._after_model_change()
        return tx

    def end_transaction(self, connector_id: int, reason: Reason) -> LocalTransaction:
        """Charging stops now; StopTransaction.req and the connector's status are queued."""
        tx = self.model.end_transaction(connector_id, self.clock.now())
        self._outbox.put(Message(lambda: messages.stop_transaction(tx, reason), transactional=True))
        self._after_model_change()
        self.report_status(connector_id)
        return tx

    def limits_changed(self) -> None:
        self._after_model_change()
        self._report_draw_changes()

    def send(self, request: OcppModel) -> None:
        """Queue a message that is not a transaction message (dropped while offline)."""
        self._outbox.put(Message(lambda: request))

    def report_status(self, connector_id: int) -> None:
        status = (
            ChargePointStatus.AVAILABLE
            if connector_id == 0
            else self.model.connector(connector_id).status
        )
        self.send(messages.status_notification(connector_id, status, self.clock.now()))
        self._notify()

    def report_meters(self, context: ReadingContext, connector_id: int | None = None) -> None:
        """Queue MeterValues.req for each transaction (on ``connector_id`` alone if given)."""
        self.advance()
        for n, connector in self.model.connectors.items():
            tx = connector.transaction
            if tx is not None and connector_id in (None, n):
                self._send_meter_values(tx, context)

    async def boot(self, link: OcppLink) -> None:
        """BootNotification until accepted (4.2). The charger is online from the moment the
        accepting answer is dispatched; while Pending or Rejected it sends nothing else and
        boots again after ``interval`` (4.2.1)."""
        request = messages.boot_notification(self.spec)
        while True:
            answered: asyncio.Future[tuple[CallOutcome, float]] = (
                asyncio.get_running_loop().create_future()
            )
            link.send_call(request, functools.partial(self._registered, link, answered))
            outcome, answered_at = await answered
            if isinstance(outcome, CallCancelled):
                return  # the connection is gone
            retry = self._boot_retry
            if isinstance(outcome, CallAnswered):
                response = outcome.response
                assert isinstance(response, BootNotificationResponse)
                if response.status is RegistrationStatus.ACCEPTED:
                    return
                if response.interval > 0:
                    retry = response.interval
            # Counted from the answer: the clock may have moved before this task resumed.
            await sleep_until(self.clock, answered_at + retry)

    async def reboot(self) -> None:
        """Once what has been written so far has left: drop the connection and boot again."""
        link = self._link
        if link is not None:
            await link.drained()
        await self.disconnect(reboot=True)

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

    # -- connections ----------------------------------------------------------------------------

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
                    await self._serve(ws)
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
                self.last_error = error
                log.info("%s: connection failed: %s", self.spec.charge_point_id, error)
            finally:
                self._link = None
                self._ready = False
                self._outbox.detach()
                self._notify()
            await asyncio.sleep(self._reconnect_delay)

    async def _serve(self, ws: ClientConnection) -> None:
        wire = FaultyWire(self.faults, self._rng)
        link = WebSocketLink(
            ws,
            Connection(Role.CHARGE_POINT, call_timeout=self._call_timeout),
            clock=self.clock,
            handler=functools.partial(self._handle_call, wire),
            name=self.spec.charge_point_id,
            outgoing=wire,
            on_event=self._on_event,
        )
        self._link = link
        self.connections += 1
        self._notify()
        link.link.spawn(self._session(link.link), "session")
        await link.run()

    def _handle_call(self, wire: FaultyWire, link: OcppLink, call: CallReceived) -> Answer | None:
        wire.note_call(call)  # before the handler answers: the wire must know what to withhold
        return self._calls.handle(link, call)

    def _on_event(self, _: Event) -> None:
        self._notify()

    async def _session(self, link: OcppLink) -> None:
        first_contact = self.registration is not RegistrationStatus.ACCEPTED
        if first_contact or self._reboot or self.faults.boot_on_reconnect:
            await self.boot(link)
        else:
            self._go_online(link)

    def _registered(
        self,
        link: OcppLink,
        answered: asyncio.Future[tuple[CallOutcome, float]],
        outcome: CallOutcome,
    ) -> None:
        """The effect of an answer to BootNotification, as it is dispatched."""
        if isinstance(outcome, CallAnswered):
            response = outcome.response
            assert isinstance(response, BootNotificationResponse)
            self.registration = response.status
            if response.status is RegistrationStatus.ACCEPTED:
                if response.interval > 0:
                    self.model.change_configuration("HeartbeatInterval", str(response.interval))
                self.boots += 1
                self._reboot = False
                self._go_online(link)
            self._notify()
        if not answered.done():
            answered.set_result((outcome, self.clock.now()))

    def _go_online(self, link: OcppLink) -> None:
        if self._ready:
            return  # a triggered BootNotification changes nothing else
        self._ready = True
        self._outbox.attach(link)
        for connector_id in range(self.spec.connectors + 1):
            self.report_status(connector_id)
        link.spawn(self._heartbeat_loop(self.clock.now()), "heartbeat")

    async def _heartbeat_loop(self, origin: float) -> None:
        beat = origin
        while True:
            beat += max(1, self.model.int_setting("HeartbeatInterval"))
            await sleep_until(self.clock, beat)
            self.send(HeartbeatRequest())

    async def _meter_loop(self, origin: float) -> None:
        sample = origin
        while True:
            interval = self.model.int_setting("MeterValueSampleInterval")
            sample += interval if interval > 0 else 60
            await sleep_until(self.clock, sample)
            if interval > 0:  # 0 turns sampling off (9.1.18)
                self.report_meters(ReadingContext.SAMPLE_PERIODIC)

    # -- the charger's own messages -------------------------------------------------------------

    def _send_meter_values(self, tx: LocalTransaction, context: ReadingContext) -> None:
        connector = self.model.connector(tx.connector_id)
        sample = messages.meter_sample(connector, context, self.clock.now())
        tx.reported_w = connector.power_w
        # Built when it leaves: by then the transactionId is known, the outbox is in order.
        self._outbox.put(Message(lambda: messages.meter_values(tx, sample), transactional=True))

    def _report_draw_changes(self) -> None:
        """A sample for each transaction whose draw moved since its last report (see
        ``meter_on_change_w``)."""
        threshold = self.meter_on_change_w
        if threshold is None:
            return
        for connector in self.model.connectors.values():
            tx = connector.transaction
            if tx is None:
                continue
            if tx.reported_w is None or abs(connector.power_w - tx.reported_w) >= threshold:
                self._send_meter_values(tx, ReadingContext.OTHER)

    def _after_model_change(self) -> None:
        for connector_id in self.model.take_status_changes():
            self.report_status(connector_id)
        self._notify()
