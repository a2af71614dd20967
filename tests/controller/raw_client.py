"""Raw TCP clients for the connection limits: what a slow or idle peer does, byte by byte."""

from __future__ import annotations

import asyncio

WAIT = 5.0  # upper bound for the server to act; never reached when things work


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it closes the connection (an abort may arrive as
    a reset); fails when it is still open after ``timeout``."""
    chunks = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)
