"""A small OCPP 1.6 central system for the simulator's socket tests: a real websockets server
on port 0, each connection served by the shared shell (:class:`shell.websocket.WebSocketLink`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from protocol import CallErrored, CallReceived, Connection, OcppModel, Role
from protocol import messages as m
from shell.clock import SystemClock
from shell.link import CallOutcome, OcppLink, response_of
from shell.websocket import WebSocketLink

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Given the charger and the response the central system is about to give: a CALL to write
# right behind that answer, or None.
FollowUp = Callable[[str, OcppModel], OcppModel | None]


class CentralSystem:
    def __init__(
        self,
        *,
        boot_answers: list[tuple[m.RegistrationStatus, int]] | None = None,
        passwords: dict[str, str] | None = None,
    ) -> None:
        self.boot_answers = list(boot_answers or [])
        self.passwords = passwords or {}
        self.unanswered: set[str] = set()  # actions the central system never answers
        self.received: list[tuple[str, str, OcppModel]] = []  # (charger, action, request)
        self.frames: list[tuple[str, str]] = []  # every message received, per charger
        self.follow_up: FollowUp | None = None
        self.follow_up_answers: list[Any] = []  # what follow-up CALLs got, as call() returns it
        self.peers: dict[str, WebSocketLink] = {}
        self.connections = 0
        self.next_transaction = 100
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> CentralSystem:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            subprotocols=[Subprotocol("ocpp1.6")],
            process_request=self._check_auth,
            compression=None,
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ocpp"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # -- what the tests use -----------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            changed = self._changed
            await changed.wait()

    def of(self, action: str, charger: str | None = None) -> list[Any]:
        return [r for c, a, r in self.received if a == action and charger in (None, c)]

    def raw(self, charger: str) -> list[str]:
        return [text for c, text in self.frames if c == charger]

    async def call(self, charger: str, request: OcppModel) -> Any:
        """Send a CALL to a charger; returns the response model or the CallErrored event."""
        return _result(await self.peers[charger].link.call(request))

    async def send_raw(self, charger: str, text: str) -> None:
        peer = self.peers[charger]
        peer.send_raw(text)
        await peer.drained()

    def _notify(self, *_: object) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the server -------------------------------------------------------------------------

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        charger = request.path.rsplit("/", 1)[-1]
        expected = self.passwords.get(charger)
        if expected is None:
            return None
        token = base64.b64encode(f"{charger}:{expected}".encode()).decode()
        if request.headers.get("Authorization") == f"Basic {token}":
            return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "wrong credentials\n")

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        charger = ws.request.path.rsplit("/", 1)[-1]
        peer = WebSocketLink(
            ws,
            Connection(Role.CENTRAL_SYSTEM, call_timeout=3600),
            clock=SystemClock(),
            handler=functools.partial(self._handle, charger),
            name=charger,
            on_event=self._notify,
            on_received=functools.partial(self._record, charger),
        )
        self.peers[charger] = peer
        self.connections += 1
        self._notify()
        await peer.run()
        self._notify()

    def _record(self, charger: str, message: str | bytes) -> None:
        self.frames.append((charger, message if isinstance(message, str) else message.decode()))
        self._notify()

    def _handle(self, charger: str, link: OcppLink, call: CallReceived) -> OcppModel | None:
        self.received.append((charger, call.action, call.request))
        if call.action in self.unanswered:
            return None
        response = self._response(call.request)
        follow_up = None if self.follow_up is None else self.follow_up(charger, response)
        if follow_up is None:
            return response
        # Both frames are written in this one step: the charger gets them back to back.
        link.answer(call.unique_id, response)
        link.send_call(follow_up, self._followed)
        return None

    def _followed(self, outcome: CallOutcome) -> None:
        self.follow_up_answers.append(_result(outcome))
        self._notify()

    def _response(self, request: OcppModel) -> OcppModel:
        accepted = m.IdTagInfo(status=m.AuthorizationStatus.ACCEPTED)
        match request:
            case m.BootNotificationRequest():
                status, interval = (
                    self.boot_answers.pop(0)
                    if self.boot_answers
                    else (m.RegistrationStatus.ACCEPTED, 300)
                )
                return m.BootNotificationResponse(
                    status=status, current_time=NOW, interval=interval
                )
            case m.HeartbeatRequest():
                return m.HeartbeatResponse(current_time=NOW)
            case m.AuthorizeRequest():
                return m.AuthorizeResponse(id_tag_info=accepted)
            case m.StartTransactionRequest():
                self.next_transaction += 1
                return m.StartTransactionResponse(
                    id_tag_info=accepted, transaction_id=self.next_transaction
                )
            case m.StopTransactionRequest():
                return m.StopTransactionResponse(id_tag_info=accepted)
            case m.DataTransferRequest():
                return m.DataTransferResponse(status=m.DataTransferStatus.UNKNOWN_VENDOR_ID)
            case m.StatusNotificationRequest():
                return m.StatusNotificationResponse()
            case m.MeterValuesRequest():
                return m.MeterValuesResponse()
            case m.DiagnosticsStatusNotificationRequest():
                return m.DiagnosticsStatusNotificationResponse()
            case m.FirmwareStatusNotificationRequest():
                return m.FirmwareStatusNotificationResponse()
        raise AssertionError(f"unexpected {type(request).__name__}")


def _result(outcome: CallOutcome) -> Any:
    """The response model, or the CallErrored event itself; a timeout or a closed connection
    raises."""
    return outcome if isinstance(outcome, CallErrored) else response_of(outcome)
