"""The OCPP-J 1.6 WebSocket endpoint (docs/ocpp.md, "Connecting a charger").

Handshake rules, checked before the upgrade: the charger id is the last path
segment under the configured prefix, percent-decoded; an id that is not in the
config gets HTTP 404; a charger with a configured password (or its SHA-256) must
present HTTP Basic credentials (username = its id, security profile 1/2) or gets
401, and an address with too many failures gets 401 unchecked for a while
(docs/security-chargers.md). The subprotocol is ``ocpp1.6``: a client that offers
none we accept still completes the handshake, without the header, and is then
closed (OCPP-J 3.2). A second connection for the same id replaces the first.

What one charger may cost is bounded here too: its message rate
(:mod:`controller.ocpp.rate`) and the log lines it causes (one, then a count a
minute, per peer).

With client certificates (``server.tls.clientCa``, security profile 3) the
certificate's subject CN must be the charger id, or the upgrade gets 403. TLS,
the handshake timeout and the connection cap are the port's
(:mod:`controller.listener`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import hmac
import itertools
import logging
from http import HTTPStatus
from urllib.parse import unquote

from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from controller.config import ChargerConfig, StationConfig
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
from controller.ocpp.rate import DISCONNECT_AFTER, MessageRate
from controller.ocpp.transport import WebSocketChannel
from controller.throttle import FailureThrottle, PeerLog
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
# At shutdown, how long chargers have to answer our close before they are cut off: shorter
# than the application's own step timeout, so that a charger that does not read (and so never
# answers) cannot hold the shutdown up to it.
SHUTDOWN_CLOSE_WAIT = 2.0
# Close code 1002 "protocol error": no acceptable subprotocol was offered.
CLOSE_NO_SUBPROTOCOL = 1002
# Close code 1008 "policy violation": a charger kept above its message rate.
CLOSE_OVER_RATE = 1008
# The unauthenticated chargers named in the start-up line at most.
LISTED_AT_MOST = 50


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


def password_digest(charger: ChargerConfig) -> bytes | None:
    """The SHA-256 of the charger's password, however the config gives it."""
    if charger.password_sha256 is not None:
        return bytes.fromhex(charger.password_sha256)
    if charger.password is not None:
        return hashlib.sha256(charger.password.encode()).digest()
    return None


def credentials_match(charger_id: str, digest: bytes, header: str | None) -> bool:
    """HTTP Basic credentials for this charger with that password. The digests are
    compared in constant time, and a digest has the same length whatever was sent."""
    credentials = basic_credentials(header)
    if credentials is None:
        return False
    sent = hashlib.sha256(credentials[1].encode()).digest()
    password_ok = hmac.compare_digest(sent, digest)
    return password_ok and credentials[0] == charger_id


def _log_authentication(config: StationConfig) -> None:
    open_ids = [c.id for c in config.chargers if c.password is None and c.password_sha256 is None]
    if not open_ids:
        log.info("every charger authenticates with a password")
        return
    listed = ", ".join(open_ids[:LISTED_AT_MOST])
    more = len(open_ids) - LISTED_AT_MOST
    log.warning(
        "%d charger(s) connect without a password (ocpp.requireAuth refuses that): %s%s",
        len(open_ids),
        listed,
        f" and {more} more" if more > 0 else "",
    )


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
        self._digests = {c.id: d for c in config.chargers if (d := password_digest(c)) is not None}
        self._login_failures = FailureThrottle(log, "charger logins")
        self._rates: dict[str, MessageRate] = {}
        # Lines a peer causes, each kind rate-limited on its own: a flood of one kind does
        # not hide the first line of another.
        self._connect_log = PeerLog(log)
        self._event_log = PeerLog(log)
        self._rate_log = PeerLog(log)
        _log_authentication(config)

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
            await asyncio.wait([c.closed for c in channels], timeout=SHUTDOWN_CLOSE_WAIT)
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
            max_buffered=self.config.ocpp.max_buffered_bytes,
        )
        self._channels.add(channel)
        channel.closed.add_done_callback(lambda _: self._channels.discard(channel))
        return channel

    # -- handshake -------------------------------------------------------

    def _check_request(self, channel: WebSocketChannel, request: Request) -> Response | None:
        now = self.driver.now()
        charger_id = charger_id_from_path(request.path, self.config.server.ocpp_path)
        charger = None if charger_id is None else self.config.charger(charger_id)
        if charger is None:
            self._connect_log.log(
                channel.remote_address,
                now,
                logging.INFO,
                "unknown charge point refused: %r",
                request.path[:100],
            )
            return channel.protocol.reject(HTTPStatus.NOT_FOUND, "unknown charge point\n")
        if self._client_certificates:
            problem = certificate_problem(channel.transport_info("ssl_object"), charger.id)
            if problem is not None:
                self._login_failures.record_failure(channel.remote_address, now)
                self._connect_log.log(
                    channel.remote_address,
                    now,
                    logging.WARNING,
                    "%s refused: %s",
                    charger.id,
                    problem,
                )
                return channel.protocol.reject(
                    HTTPStatus.FORBIDDEN, "client certificate is not this charge point's\n"
                )
        digest = self._digests.get(charger.id)
        if digest is None:
            return None
        address = channel.remote_address
        if self._login_failures.is_blocked(address, now):
            # Too many failures from there: refused without looking (logged when blocked).
            return self._unauthorized(channel)
        if not credentials_match(charger.id, digest, request.headers.get("Authorization")):
            self._login_failures.record_failure(address, now)
            return self._unauthorized(channel)
        return None

    @staticmethod
    def _unauthorized(channel: WebSocketChannel) -> Response:
        response = channel.protocol.reject(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    # -- a charger's connection ------------------------------------------

    def _open(self, channel: WebSocketChannel) -> OcppLink | None:
        if channel.subprotocol is None:
            channel.close(CLOSE_NO_SUBPROTOCOL, "subprotocol ocpp1.6 required")
            return None
        charger_id = charger_id_from_path(channel.path, self.config.server.ocpp_path)
        assert charger_id is not None  # checked before the upgrade
        number = next(self._numbers)
        if charger_id not in self._rates:
            self._rates[charger_id] = MessageRate(self.config.ocpp.max_messages_per_second)
        link = OcppLink(
            Connection(Role.CENTRAL_SYSTEM, call_timeout=self.config.ocpp.call_timeout),
            send=channel.send_text,
            clock=self.driver.clock,
            handler=functools.partial(self.central.handle, charger_id, number),
            name=charger_id,
            on_event=functools.partial(self._log_event, charger_id),
            on_closed=functools.partial(self._closed, charger_id, number),
            admit=functools.partial(self._admit, charger_id, channel),
            on_error_sent=self.driver.metrics.ocpp_error_sent,
        )
        previous = self.links.get(charger_id)
        self.links[charger_id] = (number, link, channel)
        self.driver.attach(charger_id, number, link)
        if previous is not None:
            self._connect_log.log(
                charger_id,
                self.driver.now(),
                logging.INFO,
                "new connection replaces the previous one",
            )
            previous[2].close(1000, "replaced by a new connection")
        self.driver.submit(ChargerConnected(self.driver.now(), charger_id, number))
        return link

    def _closed(self, charger_id: str, number: int, link: OcppLink) -> None:
        current = self.links.get(charger_id)
        if current is not None and current[0] == number:
            del self.links[charger_id]
        self.driver.detach(charger_id, number)
        self.driver.submit(ChargerDisconnected(self.driver.now(), charger_id, number))

    def _admit(self, charger_id: str, channel: WebSocketChannel, now: float) -> bool:
        """Whether the charger's next message is within its rate (the link refuses the
        CALLs of one that is not); one that keeps above it is disconnected."""
        rate = self._rates[charger_id]
        if rate.admit(now):
            return True
        self._rate_log.log(
            charger_id,
            now,
            logging.WARNING,
            "more than %g messages/s: calls refused",
            rate.per_second,
        )
        over = rate.over_for(now)
        if over >= DISCONNECT_AFTER and channel.open:
            # Once per connection: a line per abusive connection, not per message.
            log.warning(
                "%s: above its message rate for %.0f s: disconnected",
                charger_id,
                over,
                extra={"charger_id": charger_id},
            )
            channel.close(CLOSE_OVER_RATE, "message rate exceeded")
        return False

    def _log_event(self, charger_id: str, event: Event) -> None:
        self.driver.metrics.ocpp_event(event)
        if type(event) is CallReceived:
            return  # the common case, handled by the link
        match event:
            case UnmatchedAnswer(unique_id=unique_id):
                self._event_log.log(
                    charger_id,
                    self.driver.now(),
                    logging.WARNING,
                    "answer to unknown call %r ignored",
                    unique_id,
                )
            case CallRejected(unique_id=unique_id, error=error):
                self._event_log.log(
                    charger_id,
                    self.driver.now(),
                    logging.INFO,
                    "call %r rejected: %s %s",
                    unique_id,
                    error.code,
                    error.description,
                )
            case FrameRejected(error=error):
                self._event_log.log(
                    charger_id,
                    self.driver.now(),
                    logging.INFO,
                    "unreadable frame ignored: %s",
                    error.description,
                )
            case _:
                pass


def _upgrade_pending(connection: PortConnection[WebSocketChannel]) -> bool:
    return connection.app is None or connection.app.protocol.state is State.CONNECTING
