"""A small OCPP 1.6 central system for the simulator's socket tests, built on
``protocol.Connection(Role.CENTRAL_SYSTEM)`` over a real websockets server on port 0."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from protocol import (
    CallAnswered,
    CallErrored,
    CallReceived,
    Connection,
    OcppModel,
    Role,
)
from protocol import messages as m

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Peer:
    """One connected charger as the central system sees it."""

    ws: ServerConnection
    conn: Connection
    waiting: dict[str, asyncio.Future[Any]] = field(default_factory=dict)


class CentralSystem:
    def __init__(
        self,
        *,
        boot_answers: list[tuple[m.RegistrationStatus, int]] | None = None,
        passwords: dict[str, str] | None = None,
    ) -> None:
        self.boot_answers = list(boot_answers or [])
        self.passwords = passwords or {}
        self.unanswered: set[str] = set()  # actions the central system sits on
        self.held: list[tuple[str, str, OcppModel]] = []  # (charger, unique id, request)
        self.received: list[tuple[str, str, OcppModel]] = []  # (charger, action, request)
        self.frames: list[tuple[str, str]] = []  # every raw text received, per charger
        self.peers: dict[str, Peer] = {}
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
        peer = self.peers[charger]
        loop = asyncio.get_running_loop()
        unique_id = peer.conn.send_call(request, loop.time())
        future: asyncio.Future[Any] = loop.create_future()
        peer.waiting[unique_id] = future
        await self._flush(peer)
        return await future

    async def send_raw(self, charger: str, text: str) -> None:
        await self.peers[charger].ws.send(text)

    async def answer_held(self) -> None:
        """Answer every CALL the central system sat on."""
        held, self.held = self.held, []
        for charger, unique_id, request in held:
            peer = self.peers.get(charger)
            if peer is not None:
                with contextlib.suppress(ValueError):  # asked on a connection since closed
                    peer.conn.send_result(unique_id, self._response(request))
                    await self._flush(peer)

    def _notify(self) -> None:
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
        peer = Peer(ws, Connection(Role.CENTRAL_SYSTEM, call_timeout=3600))
        self.peers[charger] = peer
        self.connections += 1
        self._notify()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                assert isinstance(text, str)
                self.frames.append((charger, text))
                for event in peer.conn.receive(text, loop.time()):
                    match event:
                        case CallReceived(unique_id=uid, action=action, request=req):
                            self.received.append((charger, action, req))
                            if action in self.unanswered:
                                self.held.append((charger, uid, req))
                            else:
                                peer.conn.send_result(uid, self._response(req))
                        case CallAnswered(unique_id=uid, response=response):
                            self._resolve(peer, uid, response)
                        case CallErrored(unique_id=uid):
                            self._resolve(peer, uid, event)
                        case _:
                            pass
                await self._flush(peer)
                self._notify()
        for future in peer.waiting.values():
            future.cancel()
        self._notify()

    @staticmethod
    def _resolve(peer: Peer, unique_id: str, outcome: Any) -> None:
        future = peer.waiting.pop(unique_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    @staticmethod
    async def _flush(peer: Peer) -> None:
        for frame in peer.conn.data_to_send():
            with contextlib.suppress(ConnectionClosed):
                await peer.ws.send(frame)

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
