"""What the REST and the OCPP port share: TLS, the handshake timeout and the connection cap
(docs/security-connections.md).

Every accepted TCP connection first gets a :class:`PortConnection`. It counts against the port's
cap (past it the socket is closed at once, before a single byte is read), starts the handshake
timer, runs the TLS handshake when the port has TLS, and only then creates the port's own
protocol (aiohttp's request handler, or a charger's WebSocket channel), which from then on gets
every byte directly. Doing TLS here rather than in ``loop.create_server(ssl=...)`` is what lets
the TLS handshake count against the handshake timeout, lets a refused connection cost no
handshake, and lets a reload of the certificates apply to the next handshake: each one takes
the context current at that moment, while open connections keep theirs.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from asyncio import sslproto
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aiohttp import web

from controller.config import ConfigError, ServerConfig, StationConfig, TlsConfig
from controller.rest_schemas import ApiError
from controller.throttle import PeerLog

log = logging.getLogger(__name__)

# Requests the REST port works on at once; past it a request gets 503 at once.
MAX_REST_IN_FLIGHT = 256
# Seconds a client refused with 503 is asked to wait.
RETRY_AFTER = 1
# The default of server.maxConnections: room for a few reconnections per charger, and for
# operators and dashboards.
CONNECTIONS_PER_CHARGER = 4
EXTRA_CONNECTIONS = 256
BACKLOG = 1024
# Open files besides the connections of the two ports: the database, listening sockets, logs.
OTHER_FILES = 64


def max_connections(config: StationConfig) -> int:
    """``server.maxConnections``, or its default for this station."""
    if config.server.max_connections is not None:
        return config.server.max_connections
    return CONNECTIONS_PER_CHARGER * len(config.chargers) + EXTRA_CONNECTIONS


def check_open_files(connections_per_port: int) -> None:
    """Warn when the process may not open as many files as the cap lets connections in:
    past that limit connections fail in accept() rather than being refused cleanly."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * connections_per_port + OTHER_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "server.maxConnections lets %d connections in per port, %d open files in all, but"
            " this process may open %d (ulimit -n): raise that limit or lower the cap",
            connections_per_port,
            needed,
            soft,
        )


# -- TLS -------------------------------------------------------------------------------------


class TlsError(ConfigError, ValueError):
    """A TLS file that cannot be used: one line naming its config field and path."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def _no_password() -> bytes:
    # Without a password callback OpenSSL would prompt on the terminal for an encrypted key
    # (and block a SIGHUP reload); an encrypted key is refused instead.
    return b""


def tls_context(tls: TlsConfig, where: str) -> ssl.SSLContext:
    """A server context from the PEM files of ``tls`` (``where``: its config path)."""
    for field, path in (("cert", tls.cert), ("key", tls.key), ("clientCa", tls.client_ca)):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise TlsError(f"{where}.{field}: cannot read {path} ({error.strerror})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert, tls.key, password=_no_password)
    except ssl.SSLError as error:
        raise TlsError(_chain_problem(tls, where, error)) from None
    if tls.client_ca is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca)
        except ssl.SSLError:
            raise TlsError(f"{where}.clientCa: {tls.client_ca} holds no PEM certificate") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _chain_problem(tls: TlsConfig, where: str, error: ssl.SSLError) -> str:
    if error.reason == "KEY_VALUES_MISMATCH":
        return f"{where}.key: {tls.key} does not match the certificate in {tls.cert}"
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=tls.cert)
    except ssl.SSLError:
        return f"{where}.cert: {tls.cert} holds no PEM certificate"
    return f"{where}.key: {tls.key} holds no unencrypted PEM private key"


class PortTls:
    """A port's TLS files and the context its next handshakes use."""

    def __init__(self, config: TlsConfig, where: str) -> None:
        self.config = config
        self.where = where
        self.context = tls_context(config, where)  # TlsError when the files cannot be used

    @property
    def client_certificates(self) -> bool:
        return self.config.client_ca is not None

    def reload(self) -> bool:
        """Read the files again; on any problem keep the current context (one log line)."""
        try:
            context = tls_context(self.config, self.where)
        except TlsError as error:
            log.error("TLS certificates not reloaded, the previous ones stay in use: %s", error)
            return False
        self.context = context
        log.info("%s: TLS certificates reloaded from %s", self.where, self.config.cert)
        return True


def port_tls(server: ServerConfig) -> tuple[PortTls | None, PortTls | None]:
    """The TLS of the OCPP and of the REST port (the same object when they share it)."""
    ocpp = None if server.tls is None else PortTls(server.tls, "server.tls")
    rest = ocpp if server.rest_tls is None else PortTls(server.rest_tls, "server.restTls")
    return ocpp, rest


def certificate_problem(ssl_object: Any, charge_point_id: str) -> str | None:
    """Why the client certificate of a TLS connection does not name this charge point
    (OCPP security profile 3: its subject CN is the charge point id), or None."""
    cert = None if ssl_object is None else ssl_object.getpeercert()
    if not cert:
        return "no client certificate"
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    if names != [charge_point_id]:
        shown = ", ".join(repr(name) for name in names) or "none"
        return f"certificate CN {shown} is not the charge point id"
    return None


# -- connections -----------------------------------------------------------------------------

P = TypeVar("P", bound=asyncio.Protocol)


class PortConnection(asyncio.Protocol, Generic[P]):
    """One accepted TCP connection: counted, timed, TLS, then handed to the port's protocol."""

    def __init__(self, listener: Listener[P]) -> None:
        self._listener = listener
        self._raw: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tls: _TlsLayer | None = None
        self._counted = False
        self._lost = False
        self._early: list[bytes] = []
        # The port's protocol, once the TLS handshake (if any) is done, and the transport it
        # writes to (the TLS one on a TLS port).
        self.app: P | None = None
        self.transport: asyncio.Transport | None = None
        # REST: the request being worked on (set by rest_middleware).
        self.request: web.BaseRequest | None = None

    @property
    def peer(self) -> str:
        peername = None if self._raw is None else self._raw.get_extra_info("peername")
        return str(peername[0]) if peername else "unknown peer"

    def arm(self) -> None:
        """(Re)start the handshake timer: the next request or upgrade must be complete
        within the port's handshake timeout."""
        if self._timer is not None:
            self._timer.cancel()
        if not self._lost:
            self._timer = asyncio.get_running_loop().call_later(
                self._listener.handshake_timeout, self._expired
            )

    def abort(self) -> None:
        if self._raw is not None:
            self._raw.abort()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        listener = self._listener
        if len(listener.connections) >= listener.max_connections:
            listener.refused()
            transport.abort()
            return
        self._counted = True
        listener.connections.add(self)
        self.arm()
        if listener.tls is None:
            self._attach(transport)
            return
        # What loop.start_tls() does, with our TLS layer. The transport starts reading
        # only once this method has returned, so no byte can miss the layer.
        loop = asyncio.get_running_loop()
        handshake: asyncio.Future[None] = loop.create_future()
        self._tls = _TlsLayer(
            loop,
            self,
            listener.tls.context,
            handshake,
            server_side=True,
            call_connection_made=False,
            # Our own timer closes it first; this only backs it up.
            ssl_handshake_timeout=int(listener.handshake_timeout) + 1,
        )
        transport.set_protocol(self._tls)
        self._tls.connection_made(transport)
        handshake.add_done_callback(self._tls_done)

    def data_received(self, data: bytes) -> None:
        """Only before a protocol is attached (replaced by its own method then): what came
        with the end of the TLS handshake, before ``_tls_done`` ran. Kept for it."""
        self._early.append(data)

    def eof_received(self) -> bool | None:
        return None if self.app is None else self.app.eof_received()

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counted:
            self._counted = False
            self._listener.connections.discard(self)
        if self.transport is not None:
            self._listener.by_transport.pop(self.transport, None)
        if self.app is not None:
            self.app.connection_lost(exc)

    # -- internals -------------------------------------------------------------------------

    def _tls_done(self, handshake: asyncio.Future[None]) -> None:
        error = None if handshake.cancelled() else handshake.exception()
        transport = None if self._tls is None else self._tls._app_transport
        if error is None and transport is not None and not self._lost:
            self._attach(transport)
            return
        if error is not None:
            self._listener.log_peer(
                self.peer, logging.INFO, "TLS handshake failed: %s", _reason(error)
            )
        # A connection lost before its handshake completed is not reported to us by the
        # TLS layer (and its handshake ends without an error when it was closed): here it
        # ends for us.
        self.abort()
        self.connection_lost(None)

    def _attach(self, transport: asyncio.Transport) -> None:
        listener = self._listener
        self.transport = transport
        listener.by_transport[transport] = self
        app = self.app = listener.factory()
        # The hot path: the transport calls the protocol's own method, not one that forwards.
        self.data_received = app.data_received  # type: ignore[method-assign]
        app.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            app.data_received(data)

    def _expired(self) -> None:
        self._timer = None
        if self._lost:
            return
        listener = self._listener
        if self.app is None or listener.handshake_pending(self):
            listener.log_peer(
                self.peer,
                logging.INFO,
                "no complete %s within %g s: closed",
                listener.handshake,
                listener.handshake_timeout,
            )
            self.abort()


class _TlsLayer(sslproto.SSLProtocol):
    """asyncio's own TLS layer (what ``loop.start_tls`` and ``create_server(ssl=...)`` use)
    with a smaller read buffer. asyncio allocates and zeroes ``max_size`` bytes per
    connection: its 256 KiB default made an idle charger over TLS cost about 290 KiB instead
    of about 50 (``bench/central_system.py --tls``, the memory part). One read still takes a
    whole TLS record (at most 16 KiB of data). ``asyncio.sslproto`` is not public API: its
    constructor and ``_app_transport`` are what ``loop.start_tls`` itself uses (Python 3.11
    to 3.13), and every TLS test goes through them."""

    max_size = 16 * 1024


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return str(error.reason).lower().replace("_", " ")
    return str(error) or type(error).__name__


class Listener(Generic[P]):
    """One port: its server socket, its open connections and their limits."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], P],
        *,
        tls: PortTls | None,
        handshake_timeout: float,
        max_connections: int,
        handshake: str,
        handshake_pending: Callable[[PortConnection[P]], bool],
    ) -> None:
        self.name = name
        self.factory = factory
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        # What must be complete in time ("HTTP request", "WebSocket upgrade"), and whether a
        # connection with a protocol attached is still waiting for it.
        self.handshake = handshake
        self.handshake_pending = handshake_pending
        self.connections: set[PortConnection[P]] = set()
        self.by_transport: dict[asyncio.BaseTransport, PortConnection[P]] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._peer_log = PeerLog(log)

    def describe(self) -> str:
        """For the start-up log: TLS or not, client certificates, the limits."""
        if self.tls is None:
            security = "no TLS"
        elif self.tls.client_certificates:
            security = "TLS, client certificates required"
        else:
            security = "TLS, no client certificates"
        return (
            f"{security}; at most {self.max_connections} connections,"
            f" {self.handshake_timeout:g} s to complete the {self.handshake}"
        )

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: PortConnection(self), host, port, backlog=BACKLOG
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else port

    def close(self) -> None:
        """Accept no more; cut the connections whose protocol never started (the port's
        owner closes the others its own way)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.app is None:
                connection.abort()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def connection_for(self, transport: asyncio.BaseTransport | None) -> PortConnection[P] | None:
        return None if transport is None else self.by_transport.get(transport)

    def log_peer(self, peer: str, level: int, message: str, *args: object) -> None:
        """A line caused by a peer, rate-limited per peer address (controller.throttle)."""
        now = asyncio.get_running_loop().time()
        self._peer_log.log(peer, now, level, f"{self.name} port: {message}", *args)

    def refused(self) -> None:
        self.log_peer(
            f"{self.name} port",
            logging.WARNING,
            "%d connections open, the most allowed (server.maxConnections): new ones refused",
            self.max_connections,
        )


# -- the REST port ---------------------------------------------------------------------------


def rest_request_pending(connection: PortConnection[Any]) -> bool:
    """A REST connection is in its handshake until a request has fully arrived: no request
    yet (or none since the last answer: idle keep-alive counts too), or its body still
    coming."""
    request = connection.request
    return request is None or not request.content.is_eof()


Handler = Callable[[web.Request], Any]


def rest_middleware(listener: Listener[Any], max_in_flight: int = MAX_REST_IN_FLIGHT) -> Any:
    """The outermost middleware of the REST app: tells each connection when a request is in
    progress and when it was answered (the handshake timer starts again then), and answers
    503 at once past ``max_in_flight`` requests in progress."""
    in_flight = 0

    @web.middleware
    async def connections(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        connection = listener.connection_for(request.transport)
        try:
            if in_flight >= max_in_flight:
                error = ApiError(
                    503, "overloaded", "too many requests in progress; retry in a moment"
                )
                return web.json_response(
                    error.body(), status=503, headers={"Retry-After": str(RETRY_AFTER)}
                )
            in_flight += 1
            if connection is not None:
                connection.request = request
            try:
                response: web.StreamResponse = await handler(request)
                return response
            finally:
                in_flight -= 1
        finally:
            if connection is not None:
                connection.request = None
                connection.arm()

    return connections
