"""A minimal RFC 6455 WebSocket client on ``asyncio.Protocol``: the benchmark's load generator.

Why not the ``websockets`` client: at ~10,000 messages/s its per-message cost (frame objects,
futures, an assembler, a reader task) is of the same order as the server's, and on a 2-core
machine the load generator must stay well below the server under test. Here sending is one
``transport.write`` of bytes masked by the C ``apply_mask`` that ships with ``websockets``, and
receiving is a header parse in ``data_received`` that hands the payload to :meth:`on_text`
synchronously, so a charger can answer or send its next CALL without a task switch.

Only what a charger needs: the opening handshake with a subprotocol, text frames both ways
(continuations reassembled), ping -> pong, and the closing handshake. Frames from the client are
masked with a fresh random key each (RFC 6455 section 5.3).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import struct
import time
from collections.abc import Callable
from typing import Final

_c_apply_mask: Callable[[bytes, bytes], bytes] | None
try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pragma: no cover - the C extension ships with websockets wheels
    _c_apply_mask = None

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def apply_mask(data: bytes, mask: bytes) -> bytes:
    if _c_apply_mask is not None:
        return bytes(_c_apply_mask(data, mask))
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, masked frame as a client must send it."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = os.urandom(4)
    return header + mask + apply_mask(payload, mask)


class HandshakeError(Exception):
    pass


class WsClient(asyncio.Protocol):
    """One WebSocket connection. Subclasses override :meth:`on_text`."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._buffer = bytearray()
        self._handshaking = True
        self._key = ""
        self._request = b""
        self._fragments: list[bytes] = []

    # -- opening ---------------------------------------------------------------------------------

    def prepare(self, host: str, port: int, path: str, subprotocol: str) -> None:
        self._key = base64.b64encode(os.urandom(16)).decode()
        self._request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
            "\r\n"
        ).encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed()

    def _finish_handshake(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self._key.encode() + _GUID).digest()).decode()
        if not status.startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != expected:
            if not self.opened.done():
                self.opened.set_exception(HandshakeError(status))
            assert self.transport is not None
            self.transport.close()
            return
        self._handshaking = False
        self.opened.set_result(None)

    # -- frames ----------------------------------------------------------------------------------

    def send_text(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(payload))

    def send_frame(self, frame: bytes) -> None:
        """Write an already built frame (see :func:`client_frame`)."""
        assert self.transport is not None
        self.transport.write(frame)

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", code), OP_CLOSE))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._buffer
        buffer += data
        if self._handshaking:
            self._finish_handshake()
            if self._handshaking:
                return
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length, header = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                header = 10
            mask = b""
            if second & 0x80:  # servers do not mask, but be lenient
                mask = bytes(buffer[pos + header : pos + header + 4])
                header += 4
            end = pos + header + length
            if end > size:
                break
            payload = bytes(buffer[pos + header : end])
            if mask:
                payload = apply_mask(payload, mask)
            pos = end
            self._on_frame(first & 0x80, first & 0x0F, payload, now)
        del buffer[:pos]

    def _on_frame(self, fin: int, opcode: int, payload: bytes, now: float) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if not fin or self._fragments:
                self._fragments.append(payload)
                if not fin:
                    return
                payload = b"".join(self._fragments)
                self._fragments.clear()
            self.on_text(payload, now)
        elif opcode == OP_PING:
            assert self.transport is not None
            self.transport.write(client_frame(payload, OP_PONG))
        elif opcode == OP_CLOSE:
            assert self.transport is not None
            if not self.transport.is_closing():
                self.transport.write(client_frame(payload[:2], OP_CLOSE))
                self.transport.close()

    # -- for subclasses --------------------------------------------------------------------------

    def on_text(self, payload: bytes, now: float) -> None:
        """A complete text message arrived at ``now`` (``time.perf_counter``)."""

    def on_closed(self) -> None:
        """The TCP connection is gone."""


async def open_client(
    client: WsClient,
    host: str,
    port: int,
    path: str,
    subprotocol: str = "ocpp1.6",
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Connect ``client`` (over TLS with ``tls``) and complete the opening handshake."""
    loop = asyncio.get_running_loop()
    client.prepare(host, port, path, subprotocol)
    await loop.create_connection(lambda: client, host, port, ssl=tls)
    await asyncio.wait_for(asyncio.shield(client.opened), timeout)
