"""The OCPP-J 1.6 WebSocket endpoint (docs/ocpp.md, "Connecting a charger").

Handshake rules, checked before the upgrade: the charger id is the last path
segment under the configured prefix, percent-decoded; an id that is not in the
config gets HTTP 404; a charger with a configured password must present HTTP
Basic credentials (username = its id, security profile 1/2) or gets 401. The
subprotocol is ``ocpp1.6``: a client that offers none we accept still
completes the handshake, without the header, and is then closed (OCPP-J 3.2).
A second connection for the same id replaces the first. With client certificates
(``server.tls.clientCa``, security profile 3) the certificate's subject CN must be the charger
id, or the upgrade gets 403. TLS, the handshake timeout and the connection cap are the port's
(controller.listener).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import itertools
import logging
from http import HTTPStatus
from urllib.parse import unquote

from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from controller.config import StationConfig
from controller.core.events import ChargerConnected, ChargerDisconnected
from controller.driver import Driver
from controller.listener import (
    Listener,
    PortConnection,
    PortTls,
    certificate_problem,
    max_connections,
)
from controller.ocpp.handlers import CentralSystem
from controller.ocpp.transport import CLOSE_TIMEOUT, WebSocketChannel
from protocol import (
    CallReceived,
    CallRejected,
    Connection,
    Event,
    FrameRejected,
    Role,
    UnmatchedAnswer,
)
from shell.link import OcppLink

log = logging.getLogger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")
# Close code 1002 "protocol error": no acceptable subprotocol was offered.
CLOSE_NO_SUBPROTOCOL = 1002


def charger_id_from_path(path: str, prefix: str) -> str | None:
    """``/ocpp/CP%20001?x=1`` -> ``CP 001``; None when the path is not ours."""
    path = path.split("?", 1)[0]
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    if not path.startswith(prefix + "/"):
        return None
    rest = path[len(prefix) + 1 :]
    if not rest or "/" in rest:
        return None
    return unquote(rest)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class OcppServer:
    def __init__(self, config: StationConfig, central: CentralSystem, driver: Driver) -> None:
        self.config = config
        self.central = central
        self.driver = driver
        self.links: dict[str, tuple[int, OcppLink, WebSocketChannel]] = {}
        self._numbers = itertools.count(1)
        self._channels: set[WebSocketChannel] = set()
        self._listener: Listener[WebSocketChannel] | None = None
        self._client_certificates = False
        self.port = 0

    async def start(self, host: str, port: int, tls: PortTls | None = None) -> None:
        listener = self._listener = Listener(
            "OCPP",
            self._new_channel,
            tls=tls,
            handshake_timeout=self.config.server.handshake_timeout,
            max_connections=max_connections(self.config),
            handshake="WebSocket upgrade",
            handshake_pending=_upgrade_pending,
        )
        self._client_certificates = tls is not None and tls.client_certificates
        await listener.start(host, port)
        self.port = listener.port
        log.info(
            "OCPP 1.6J on %s://%s:%d%s/{chargePointId} (%s)",
            "ws" if tls is None else "wss",
            host,
            self.port,
            self.config.server.ocpp_path,
            listener.describe(),
        )

    async def stop(self) -> None:
        """Refuse new connections, close every charger's (1001 going away), wait for them."""
        listener = self._listener
        if listener is None:
            return
        listener.close()
        channels = list(self._channels)
        for channel in channels:
            channel.close(1001, "controller shutting down")
        if channels:
            await asyncio.wait([c.closed for c in channels], timeout=CLOSE_TIMEOUT)
            for channel in channels:
                if not channel.closed.done():
                    channel.abort()
        await listener.wait_closed()
        self._listener = None

    def _new_channel(self) -> WebSocketChannel:
        channel = WebSocketChannel(
            subprotocols=[SUBPROTOCOL],
            check_request=self._check_request,
            on_open=self._open,
        )
        self._channels.add(channel)
        channel.closed.add_done_callback(lambda _: self._channels.discard(channel))
        return channel

    # -- handshake -------------------------------------------------------

    def _check_request(self, channel: WebSocketChannel, request: Request) -> Response | None:
        charger_id = charger_id_from_path(request.path, self.config.server.ocpp_path)
        charger = None if charger_id is None else self.config.charger(charger_id)
        if charger is None:
            return channel.protocol.reject(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        if self._client_certificates:
            problem = certificate_problem(channel.transport_info("ssl_object"), charger.id)
            if problem is not None:
                assert self._listener is not None
                peer = channel.transport_info("peername")
                self._listener.log_peer(
                    str(peer[0]) if peer else "unknown peer",
                    logging.WARNING,
                    "%s refused: %s",
                    charger.id,
                    problem,
                )
                return channel.protocol.reject(
                    HTTPStatus.FORBIDDEN, "client certificate is not this charge point's\n"
                )
        if charger.password is not None:
            credentials = basic_credentials(request.headers.get("Authorization"))
            if (
                credentials is None
                or credentials[0] != charger.id
                or not hmac.compare_digest(credentials[1].encode(), charger.password.encode())
            ):
                response = channel.protocol.reject(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
                response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
                return response
        return None

    # -- a charger's connection ------------------------------------------

    def _open(self, channel: WebSocketChannel) -> OcppLink | None:
        if channel.subprotocol is None:
            channel.close(CLOSE_NO_SUBPROTOCOL, "subprotocol ocpp1.6 required")
            return None
        charger_id = charger_id_from_path(channel.path, self.config.server.ocpp_path)
        assert charger_id is not None  # checked before the upgrade
        number = next(self._numbers)
        link = OcppLink(
            Connection(Role.CENTRAL_SYSTEM, call_timeout=self.config.ocpp.call_timeout),
            send=channel.send_text,
            clock=self.driver.clock,
            handler=functools.partial(self.central.handle, charger_id, number),
            name=charger_id,
            on_event=functools.partial(_log_event, charger_id),
            on_closed=functools.partial(self._closed, charger_id, number),
        )
        previous = self.links.get(charger_id)
        self.links[charger_id] = (number, link, channel)
        self.driver.attach(charger_id, number, link)
        if previous is not None:
            log.info("%s: new connection replaces the previous one", charger_id)
            previous[2].close(1000, "replaced by a new connection")
        self.driver.submit(ChargerConnected(self.driver.now(), charger_id, number))
        return link

    def _closed(self, charger_id: str, number: int, link: OcppLink) -> None:
        current = self.links.get(charger_id)
        if current is not None and current[0] == number:
            del self.links[charger_id]
        self.driver.detach(charger_id, number)
        self.driver.submit(ChargerDisconnected(self.driver.now(), charger_id, number))


def _upgrade_pending(connection: PortConnection[WebSocketChannel]) -> bool:
    return connection.app is None or connection.app.protocol.state is State.CONNECTING


def _log_event(charger_id: str, event: Event) -> None:
    if type(event) is CallReceived:
        return  # the common case, handled by the link
    match event:
        case UnmatchedAnswer(unique_id=unique_id):
            log.warning("%s: answer to unknown call %r ignored", charger_id, unique_id)
        case CallRejected(unique_id=unique_id, error=error):
            log.info(
                "%s: call %r rejected: %s %s", charger_id, unique_id, error.code, error.description
            )
        case FrameRejected(error=error):
            log.info("%s: unreadable frame ignored: %s", charger_id, error.description)
        case _:
            pass
