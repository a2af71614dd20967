"""Run an :class:`shell.link.OcppLink` over a ``websockets`` asyncio connection.

For the simulated chargers (websockets' client) and the test peers (client or server). The
link writes synchronously; frames go through a queue to one writer task, so they leave in
order and a slow socket never blocks the link. ``outgoing`` may rewrite each frame into what
actually goes on the wire (the simulators' fault layer drops, duplicates or garbles frames).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from websockets.exceptions import ConnectionClosed

from protocol import Connection, Event
from shell.clock import Clock
from shell.link import CallHandler, OcppLink

__all__ = ["WebSocketLink"]


class WebSocket(Protocol):
    """What is needed of a websockets asyncio connection (client or server side)."""

    async def send(self, message: str) -> None: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class WebSocketLink:
    def __init__(
        self,
        ws: WebSocket,
        connection: Connection,
        *,
        clock: Clock,
        handler: CallHandler,
        name: str = "",
        outgoing: Callable[[str], list[str]] | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_received: Callable[[str | bytes], None] | None = None,
    ) -> None:
        """``on_received`` sees every message as it was read, before the link handles it."""
        self.ws = ws
        # Messages "received" and frames "sent" on the wire, and the link's events by type.
        self.stats: Counter[str] = Counter()
        self._outgoing_frames: asyncio.Queue[str] = asyncio.Queue()
        self._rewrite = outgoing
        self._on_event = on_event
        self._on_received = on_received
        self.link = OcppLink(
            connection,
            send=self._queue,
            clock=clock,
            handler=handler,
            name=name,
            on_event=self._event,
        )

    def send_raw(self, text: str) -> None:
        """Write ``text`` as it is, in order with the link's frames: for a test peer that
        speaks outside the protocol (a retransmission, a broken frame)."""
        self._outgoing_frames.put_nowait(text)

    async def drained(self) -> None:
        """Until every frame queued so far has been handed to the socket."""
        await self._outgoing_frames.join()

    async def run(self) -> None:
        """Serve the socket until it closes; then every pending call of ours is cancelled."""
        writer = asyncio.create_task(self._write_loop())
        try:
            with contextlib.suppress(ConnectionClosed):
                async for message in self.ws:
                    self.stats["received"] += 1
                    if self._on_received is not None:
                        self._on_received(message)
                    self.link.receive(message)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self.link.connection_lost()

    async def close(self) -> None:
        await self.ws.close()

    def _queue(self, frame: str) -> None:
        frames = [frame] if self._rewrite is None else self._rewrite(frame)
        for text in frames:
            self._outgoing_frames.put_nowait(text)

    def _event(self, event: Event) -> None:
        self.stats[type(event).__name__] += 1
        if self._on_event is not None:
            self._on_event(event)

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await self._outgoing_frames.get()
                try:
                    await self.ws.send(frame)
                    self.stats["sent"] += 1
                finally:
                    self._outgoing_frames.task_done()
