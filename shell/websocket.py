"""Run an :class:`shell.link.OcppLink` over a ``websockets`` asyncio connection.

For the simulated chargers (websockets' client) and the test peers (client or server). The
link writes synchronously; frames go through a queue to one writer task, so they leave in
order and a slow socket never blocks the link. ``outgoing`` may rewrite each frame into what
actually goes on the wire (the simulators' fault layer drops, duplicates or garbles frames).
"""

from __future__ import annotations

import asyncio
import contextlib
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
        on_sent: Callable[[str], None] | None = None,
    ) -> None:
        self.ws = ws
        self._outgoing_frames: asyncio.Queue[str] = asyncio.Queue()
        self._rewrite = outgoing
        self._on_sent = on_sent
        self.link = OcppLink(
            connection,
            send=self._queue,
            clock=clock,
            handler=handler,
            name=name,
            on_event=on_event,
        )

    def _queue(self, frame: str) -> None:
        frames = [frame] if self._rewrite is None else self._rewrite(frame)
        for text in frames:
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
                    self.link.receive(message)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self.link.connection_lost()

    async def close(self) -> None:
        await self.ws.close()

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await self._outgoing_frames.get()
                try:
                    await self.ws.send(frame)
                    if self._on_sent is not None:
                        self._on_sent(frame)
                finally:
                    self._outgoing_frames.task_done()
