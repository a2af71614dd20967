"""The server under test, alone in its own process, plus /proc readings about that process.

``server_main`` runs in a child process: it raises its descriptor limit, sets logging to
WARNING, starts either the controller (``ControllerApp`` on the generated config, ports 0) or
the baseline, sends ``("ready", ocpp_port)`` over its pipe and serves until SIGTERM. With a
profile path, SIGUSR1 starts cProfile in the server's event loop thread and SIGUSR2 stops it and
writes the stats, so that only a measurement window is profiled.
"""

from __future__ import annotations

import asyncio
import cProfile
import logging
import os
import resource
import signal
import ssl
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path

CONTROLLER = "controller"
BASELINE = "baseline"


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft if soft != resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def server_main(
    kind: str,
    config_path: str | None,
    conn: Connection,
    profile_path: str | None,
    tls: tuple[str, str] | None = None,
) -> None:
    raise_fd_limit()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(kind, config_path, conn, profile_path, tls))


def server_tls(tls: tuple[str, str] | None) -> ssl.SSLContext | None:
    """For the servers other than the controller (whose config says it): certificate and
    key files, or None for no TLS."""
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls)
    return context


async def _serve(
    kind: str,
    config_path: str | None,
    conn: Connection,
    profile_path: str | None,
    tls: tuple[str, str] | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if profile_path is not None:
        profiler = cProfile.Profile()

        def dump() -> None:
            profiler.disable()
            profiler.dump_stats(profile_path)

        loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
        loop.add_signal_handler(signal.SIGUSR2, dump)

    stopper: Callable[[], Awaitable[None]]
    if kind == CONTROLLER:
        from controller.app import ControllerApp, tune_gc
        from controller.config import load_config

        assert config_path is not None
        app = ControllerApp(
            load_config(Path(config_path)), host="127.0.0.1", rest_port=0, ocpp_port=0
        )
        await app.start()
        tune_gc()  # as ``ev-controller`` does once it is serving
        port, stopper = app.ocpp_port, app.stop
    elif kind == ECHO:
        port, stopper = await start_echo("127.0.0.1", 0, server_tls(tls))
    else:
        from bench._ocpp_baseline import start_baseline

        port, stopper = await start_baseline("127.0.0.1", 0, server_tls(tls))
    conn.send(("ready", port))
    await stop.wait()
    await stopper()


ECHO = "echo"


async def start_echo(
    host: str, port: int, tls: ssl.SSLContext | None = None
) -> tuple[int, Callable[[], Awaitable[None]]]:
    """The transport floor: a ``websockets`` server in this same loop that answers every CALL
    from a charger with a canned CALLRESULT, reading only the unique id and the action from the
    text. What is left of the per-message cost once OCPP itself costs nothing."""
    import itertools

    import websockets
    from websockets.asyncio.server import ServerConnection

    transaction_ids = itertools.count(1)

    async def on_connect(websocket: ServerConnection) -> None:
        async for message in websocket:
            text = message if isinstance(message, str) else message.decode()
            start = text.index('"') + 1
            end = text.index('"', start)
            unique_id = text[start:end]
            action = text[end + 3 : text.index('"', end + 3)]
            if action == "MeterValues":
                body = "{}"
            elif action == "BootNotification":
                body = '{"status":"Accepted","currentTime":"2026-01-01T00:00:00Z","interval":300}'
            elif action == "StartTransaction":
                body = (
                    f'{{"transactionId":{next(transaction_ids)},'
                    '"idTagInfo":{"status":"Accepted"}}'
                )
            else:
                body = "{}"
            await websocket.send(f'[3,"{unique_id}",{body}]')

    server = await websockets.serve(
        on_connect,
        host,
        port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        compression=None,
        ssl=tls,
    )
    bound = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return bound, stop
