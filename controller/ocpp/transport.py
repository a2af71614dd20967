"""One charger's TCP connection as a WebSocket, on websockets' sans-I/O protocol.

Why not the ``websockets`` asyncio server: per message it costs a frame
assembler, futures and a reader task, about as much server time as all of
the OCPP work (see ``bench/central_system.py``). Here ``data_received`` feeds the bytes
to ``websockets.server.ServerProtocol`` (which parses the HTTP handshake and
the frames, answers pings and runs the closing handshake, RFC 6455) and hands
every complete text message to the charger's handler synchronously; writing
is one ``transport.write``. Everything the asyncio server did that matters
here is kept: handshake checks before the upgrade, subprotocol negotiation,
fragmented messages, a 1 MiB message limit, keep-alive pings, a bounded
closing handshake, and a write buffer that cannot grow without bound: every write
checks it, and a peer whose unsent bytes would pass ``ocpp.maxBufferedBytes`` is cut
off before they do (docs/security-chargers.md). The lines a peer causes here are
rate-limited per peer (:class:`controller.throttle.PeerLog`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, Protocol

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from controller.throttle import PeerLog

log = logging.getLogger(__name__)
# What a peer does wrong is logged once, then counted (per charger path, a minute apart).
peer_log = PeerLog(log)
# websockets' own messages (one per connection opened or closed): at INFO only when asked.
wire_log = logging.getLogger("controller.ocpp.wire")

MAX_MESSAGE = 1024 * 1024
# A charger that sends nothing for this long is pinged; if it still says
# nothing for as long again, the connection is dead and is closed.
PING_INTERVAL = 30.0
# How long the closing handshake may take before the socket is simply closed.
CLOSE_TIMEOUT = 5.0
# A peer that does not read what we write cannot make us buffer forever: the default of
# ``ocpp.maxBufferedBytes``.
MAX_WRITE_BUFFER = 4 * 1024 * 1024
# Kept free under that bound for the close frame that tells a slow peer why it is cut off
# (2 header bytes, a 2-byte code, a reason of at most 123 bytes: unmasked from a server).
CLOSE_FRAME_ROOM = 127
# Close code 1008 "policy violation", with this reason, for a peer that does not read.
CLOSE_NOT_READING = 1008


class MessageHandler(Protocol):
    def on_text(self, text: str) -> None: ...

    def on_closed(self) -> None: ...


# Given the handshake request: an HTTP response to refuse it, or None to go on.
RequestCheck = Callable[["WebSocketChannel", Request], Response | None]
# Given the open channel: the handler of its messages.
OpenHandler = Callable[["WebSocketChannel"], MessageHandler | None]


def _first_offered(protocol: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """Ours in our order of preference. None when none is offered: the handshake then
    completes without one and the owner closes the connection (OCPP-J 3.2)."""
    for subprotocol in protocol.available_subprotocols or ():
        if subprotocol in offered:
            return subprotocol
    return None


class WebSocketChannel(asyncio.Protocol):
    def __init__(
        self,
        *,
        subprotocols: Sequence[Subprotocol],
        check_request: RequestCheck,
        on_open: OpenHandler,
        ping_interval: float = PING_INTERVAL,
        max_buffered: int = MAX_WRITE_BUFFER,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._subprotocols = list(subprotocols)
        self.protocol = ServerProtocol(
            subprotocols=self._subprotocols,
            select_subprotocol=_first_offered,
            max_size=MAX_MESSAGE,
            logger=wire_log,
        )
        self._check_request = check_request
        self._on_open = on_open
        self._ping_interval = ping_interval
        self._max_buffered = max_buffered
        # The most bytes ever left waiting in the write buffer (never above max_buffered).
        self.peak_buffered = 0
        self._transport: asyncio.Transport | None = None
        self._handler: MessageHandler | None = None
        self._fragments: list[bytes] = []
        self._in_binary = False
        self._last_heard = self._loop.time()
        self._ping_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.request: Request | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # -- what the owner uses ---------------------------------------------

    @property
    def subprotocol(self) -> Subprotocol | None:
        return self.protocol.subprotocol

    @property
    def path(self) -> str:
        return "" if self.request is None else self.request.path

    @property
    def open(self) -> bool:
        return self.protocol.state is State.OPEN

    @property
    def remote_address(self) -> str:
        """The peer's IP address (what failed logins are counted by)."""
        peer = self.transport_info("peername")
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"

    def transport_info(self, name: str) -> Any:
        """The connection's ``get_extra_info`` (``peername``, ``ssl_object``, ...)."""
        return None if self._transport is None else self._transport.get_extra_info(name)

    def send_text(self, text: str) -> bool:
        """Write one text message; False when the connection is no longer open."""
        if self.protocol.state is not State.OPEN:
            return False
        self.protocol.send_text(text.encode())
        self._write()
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the socket closes when it ends or times out."""
        try:
            self.protocol.send_close(code, reason)
        except InvalidState:
            return  # closing already
        self._write()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._last_heard = self._loop.time()
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        self._write()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._write()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._ping_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._release_handler()
        if not self.closed.done():
            self.closed.set_result(None)

    def _release_handler(self) -> None:
        """The charger is gone for OCPP as soon as the WebSocket stops being open,
        which may be seconds before the TCP connection is finally closed."""
        handler, self._handler = self._handler, None
        if handler is not None:
            try:
                handler.on_closed()
            except Exception:
                log.exception("closing the handler of %s failed", self.path)

    # -- internals -------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        self.request = request
        try:
            response = self._check_request(self, request)
        except Exception:
            log.exception("checking the handshake of %s failed", request.path)
            response = self.protocol.reject(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        if response is None:
            response = self.protocol.accept(request)
        self.protocol.send_response(response)
        if self.protocol.state is not State.OPEN:
            return
        self._handler = self._on_open(self)
        self._schedule_ping()

    def _frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.BINARY or (frame.opcode is Opcode.CONT and self._in_binary):
            # OCPP-J is text only: a binary message is dropped, frame by frame, so
            # that a peer cannot make us hold it.
            self._in_binary = not frame.fin
        elif frame.opcode is Opcode.TEXT or frame.opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if not frame.fin:
                return
            data = b"".join(self._fragments)
            self._fragments.clear()
            if self._handler is None:
                return
            try:
                text = data.decode()
            except UnicodeDecodeError:
                # RFC 6455 8.1: a text frame that is not UTF-8 fails the connection.
                self._peer_log(logging.INFO, "sent a text message that is not UTF-8: closing")
                self.protocol.fail(1007, "invalid UTF-8")
                return
            self._handler.on_text(text)

    def _write(self) -> None:
        if self._handler is not None and self.protocol.state is not State.OPEN:
            self._release_handler()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for chunk in self.protocol.data_to_send():
            if chunk:
                # Checked on every write: asyncio only reports a full buffer once, when it
                # pauses us, and keeps taking whatever is written afterwards.
                unsent = transport.get_write_buffer_size()
                if unsent + len(chunk) > self._max_buffered - CLOSE_FRAME_ROOM:
                    self._cut_off(transport, unsent)
                    return
                transport.write(chunk)
                # At most what was unsent plus this chunk (the socket may have taken some).
                if unsent + len(chunk) > self.peak_buffered:
                    self.peak_buffered = unsent + len(chunk)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                # TLS cannot half-close: the end of our side is the end of the connection
                # (else the peer waits for it until the close timeout).
                transport.close()
        if self.protocol.close_expected() and self._close_timer is None:
            # A peer that has not closed by then may not read either: its unsent bytes
            # are dropped rather than kept waiting for it (a graceful close would wait).
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, transport.abort)
        if self.protocol.state is State.CLOSED:
            transport.close()

    def _cut_off(self, transport: asyncio.Transport, unsent: int) -> None:
        """The peer does not read what it is sent: nothing more is queued for it. The close
        frame fits in the room kept for it; then the connection is dropped, since a peer that
        does not read would never take the closing handshake either."""
        self._peer_log(
            logging.WARNING,
            "does not read what it is sent (%d bytes unsent): disconnected",
            unsent,
        )
        try:
            self.protocol.send_close(CLOSE_NOT_READING, "does not read")
        except InvalidState:
            pass  # closing already
        else:
            for chunk in self.protocol.data_to_send():
                if chunk:
                    transport.write(chunk)
        self.peak_buffered = max(self.peak_buffered, transport.get_write_buffer_size())
        transport.abort()
        self._release_handler()

    def _peer_log(self, level: int, message: str, *args: object) -> None:
        # Keyed by the charger's path without the query, which a peer could vary at will.
        peer_log.log(self.path.partition("?")[0], self._loop.time(), level, message, *args)

    def _schedule_ping(self) -> None:
        self._ping_timer = self._loop.call_later(self._ping_interval, self._keepalive)

    def _keepalive(self) -> None:
        if self.protocol.state is not State.OPEN:
            return
        silent = self._loop.time() - self._last_heard
        if silent >= 2 * self._ping_interval:
            self._peer_log(logging.INFO, "has been silent for %.0f s: closing", silent)
            self.abort()
            return
        if silent >= self._ping_interval:
            self.protocol.send_ping(b"")
            self._write()
        self._schedule_ping()
