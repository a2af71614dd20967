"""The controller process: one event loop running the REST app and the timers.

``ControllerApp`` owns every task it starts and can bind to port 0, so tests
run the real thing in-process and read the ports it got.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import io
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from controller.clock import Clock, SystemClock
from controller.config import StationConfig
from controller.ocpp.central import CentralSystem
from controller.ocpp.push import LimitPusher
from controller.ocpp.server import OcppServer
from controller.persistence import Recorder, load_start_keys, recover
from controller.rest import create_app
from controller.service import StationService
from controller.station import Station, default_session_id
from controller.store import Store

log = logging.getLogger(__name__)


# No shutdown step may hold the process up longer than this (SIGTERM must stop it).
SHUTDOWN_STEP_TIMEOUT = 5.0
# Nor the whole shutdown.
STOP_DEADLINE = 20.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    host: str
    rest_port: int
    ocpp_port: int


def _log_running_tasks() -> None:
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            stack = io.StringIO()
            task.print_stack(file=stack)
            log.error("still running: %s\n%s", task.get_name(), stack.getvalue())


def tune_gc() -> None:
    """Garbage collection for a long-running server, called once it has started.

    Collection pauses are the tail of the time from a StartTransaction to the
    last profile sent. What exists at start (code, config, recovered state)
    lives as long as the process: frozen, it is never scanned again. Fewer,
    larger young-generation collections than the defaults (700, 10, 10), which
    collect every few hundred messages and promote the allocator's per-run
    tables into the old generation, making full collections long. Cyclic
    garbage is still collected.
    """
    gc.set_threshold(20_000, 20, 20)
    gc.freeze()


class ControllerApp:
    def __init__(
        self,
        config: StationConfig,
        *,
        clock: Clock | None = None,
        host: str | None = None,
        rest_port: int | None = None,
        ocpp_port: int | None = None,
        db_path: str | Path | None = None,
        session_id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.host = host if host is not None else config.server.host
        self._rest_port = rest_port if rest_port is not None else config.server.rest_port
        self._ocpp_port = ocpp_port if ocpp_port is not None else config.server.ocpp_port
        self.station = Station(
            config,
            now=self.clock.now(),
            session_id_factory=session_id_factory or default_session_id,
        )
        self.service = StationService(self.station, self.clock)
        self.pusher = LimitPusher(
            self.station,
            request_reallocation=self.service.request_reallocation,
            failsafe_kw=self._failsafe_kw,
        )
        self.service.before_status.append(self.pusher.refresh_confirmations)
        self.store = Store(
            db_path if db_path is not None else config.database.path,
            synchronous=config.database.synchronous,
        )
        self.recorder = Recorder(self.store, self.station, self.pusher)
        self.service.recorder = self.recorder
        self.pusher.on_book_change = self.recorder.limit
        self.pusher.on_event = self.recorder.event
        self.pusher.clock = self.clock.now
        self.pusher.commit = self.recorder.commit
        self.pusher.reallocation_pending = lambda: self.service.reallocation_pending
        self.central = CentralSystem(self.service, self.pusher, self.recorder)
        self.ocpp = OcppServer(config, self.central, self.pusher)
        self.recovered = self._recover()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.rest_port = 0
        self.ocpp_port = 0
        self._stopped = False

    def _recover(self) -> dict[str, int]:
        now = self.clock.now()
        counts = recover(self.store, self.station, self.pusher, now)
        self.central.start_keys = load_start_keys(self.store, now)
        self.station.reallocate(now)
        self.recorder.battery()
        self.recorder.event(now, "controller.started", **counts)
        if counts["sessions"]:
            log.info("recovered %(sessions)d active sessions, %(limits)d charger limits", counts)
        return counts

    def _failsafe_kw(self, charger_id: str) -> float:
        charger = self.config.charger(charger_id)
        assert charger is not None
        return self.config.failsafe_power_per_connector(charger)

    async def start(self) -> None:
        self._runner = web.AppRunner(create_app(self.service), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._rest_port)
        await site.start()
        server = site._server  # the bound socket tells the real port when 0 was asked
        sockets = getattr(server, "sockets", None) or []
        self.rest_port = sockets[0].getsockname()[1] if sockets else self._rest_port
        await self.ocpp.start(self.host, self._ocpp_port)
        self.ocpp_port = self.ocpp.port
        self._tasks.append(asyncio.create_task(self.service.run_battery_timer(), name="battery"))
        self._tasks.append(asyncio.create_task(self.service.run_flusher(), name="flusher"))
        await self.service.flush()
        log.info("REST API on http://%s:%d", self.host, self.rest_port)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.debug("closing charger connections")
        try:
            async with asyncio.timeout(SHUTDOWN_STEP_TIMEOUT):
                await self.ocpp.stop()
        except TimeoutError:
            log.error("charger connections did not close in time")
            _log_running_tasks()
        log.debug("charger connections closed")
        self.service.cancel_pending()
        for task in self._tasks:
            task.cancel()
        # gather, not "suppress(CancelledError): await task": that would also swallow
        # a cancellation of stop() itself.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.debug("REST closed")
        await self.service.flush()
        await self.store.close()

    async def wait_settled(self) -> None:
        """Wait until no reallocation is pending and every connected charger holds the
        limits it should (for simulations on a virtual clock, and tests)."""
        await self.pusher.wait_for(
            lambda: not self.service.reallocation_pending and self.pusher.idle()
        )

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        tune_gc()
        try:
            await stop.wait()
            log.info("stopping")
        finally:
            # Every acknowledged change is already committed, so a stop that hangs
            # can lose nothing that matters: after STOP_DEADLINE it is cut short,
            # with the stacks of every thread and task in the log to say why.
            loop.call_later(STOP_DEADLINE - 1, _log_running_tasks)
            faulthandler.dump_traceback_later(STOP_DEADLINE, exit=True)
            await self.stop()
            faulthandler.cancel_dump_traceback_later()
