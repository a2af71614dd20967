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
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from controller.config import StationConfig
from controller.core.events import SiteMeterRead
from controller.core.rules import START_KEY_MEMORY
from controller.core.station import StationCore
from controller.driver import Driver
from controller.history import HISTORY_INTERVAL, History
from controller.listener import (
    MAX_REST_IN_FLIGHT,
    Listener,
    check_open_files,
    max_connections,
    port_tls,
    rest_middleware,
    rest_request_pending,
)
from controller.meter.modbus import ModbusMeterReader
from controller.ocpp.handlers import CentralSystem
from controller.ocpp.server import OcppServer
from controller.repository import Pruned, Repository, StoreError
from controller.rest import create_app
from controller.stream import KEEPALIVE_INTERVAL, StreamHub, install
from controller.views import StatusView, status_view
from shell.clock import Clock, SystemClock

log = logging.getLogger(__name__)


# What is written behind (meter readings, the battery, charger books) reaches the disk at
# least this often.
FLUSH_INTERVAL = 1.0
# No shutdown step may hold the process up longer than this (SIGTERM must stop it).
SHUTDOWN_STEP_TIMEOUT = 5.0
# Nor the whole shutdown.
STOP_DEADLINE = 20.0
# The history is pruned at start-up and then once a day (docs/persistence.md, "Retention").
PRUNE_INTERVAL = 86_400.0


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


def new_session_id() -> str:
    return str(uuid.uuid4())


class ControllerApp:
    """Wires the pieces: repository -> station core (recovered) -> driver -> servers."""

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
        flush_interval: float | None = FLUSH_INTERVAL,
        rest_max_in_flight: int = MAX_REST_IN_FLIGHT,
        commit_executor: Executor | None = None,
        history_interval: float = HISTORY_INTERVAL,
        stream_keepalive: float = KEEPALIVE_INTERVAL,
        poll_site_meter: bool = True,
    ) -> None:
        """``flush_interval`` None: no periodic write-behind, the owner calls
        ``driver.flush()`` (and every commit of a proposal writes what is behind too).
        ``commit_executor``: where the database writes run instead of the repository's own
        thread. A simulated day passes both to keep real time out of its virtual one
        (simulators/README.md). ``poll_site_meter`` False: the Modbus site meter's reader is
        made but does not poll on its own; the owner calls ``site_meter.poll()`` (a simulated
        day polls at a point of its step where nothing else is in flight)."""
        self.config = config
        self._poll_site_meter = poll_site_meter
        self.clock = clock or SystemClock()
        self.host = host if host is not None else config.server.host
        self._rest_port = rest_port if rest_port is not None else config.server.rest_port
        self._ocpp_port = ocpp_port if ocpp_port is not None else config.server.ocpp_port
        self._flush_interval = flush_interval
        self._commit_executor = commit_executor
        self._new_session_id = session_id_factory or new_session_id
        self._rest_max_in_flight = rest_max_in_flight
        self._history_interval = history_interval
        self._stream_keepalive = stream_keepalive
        # Built now, so that an unusable certificate is a start-up error (TlsError, a
        # ValueError naming the field and the file) before anything is opened.
        self._ocpp_tls, self._rest_tls = port_tls(config.server)
        self.repository = Repository(
            db_path if db_path is not None else config.database.path,
            synchronous=config.database.synchronous,
        )
        now = self.clock.now()
        self.core = StationCore(config, now=now, stored=self.repository.load())
        self.recovered = self.core.recovered
        if self.recovered.get("sessions"):
            log.info(
                "recovered %(sessions)d active sessions, %(limits)d charger limits",
                self.recovered,
            )
        self._driver: Driver | None = None
        self._history: History | None = None
        self._streams: StreamHub | None = None
        self._ocpp: OcppServer | None = None
        self._runner: web.AppRunner | None = None
        self._rest: Listener[RequestHandler] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._meter: ModbusMeterReader | None = None
        self.rest_port = 0
        self.ocpp_port = 0
        self._stopped = False
        # When the history was last pruned (clock time), None before the first time.
        self.pruned_at: float | None = None

    @property
    def driver(self) -> Driver:
        assert self._driver is not None, "start() first"
        return self._driver

    @property
    def history(self) -> History:
        """The dashboard chart's last hour."""
        assert self._history is not None, "start() first"
        return self._history

    @property
    def streams(self) -> StreamHub:
        """The open streams of GET /station/stream."""
        assert self._streams is not None, "start() first"
        return self._streams

    @property
    def ocpp(self) -> OcppServer:
        assert self._ocpp is not None, "start() first"
        return self._ocpp

    async def start(self) -> None:
        driver = self._driver = Driver(
            self.core, self.clock, self.repository, commit_executor=self._commit_executor
        )
        driver.execute(self.core.initial_commands)
        history = self._history = History(self.core, self.clock, interval=self._history_interval)
        driver.subscribe(history.observe)
        central = CentralSystem(self.config, driver, self._new_session_id)
        self._ocpp = OcppServer(self.config, central, driver)
        # aiohttp's own server (its request handler per connection) behind our listener,
        # which does TLS, the handshake timeout and the connection cap.
        cap = max_connections(self.config)
        check_open_files(cap)
        rest = self._rest = Listener(
            "REST",
            self._new_request_handler,
            tls=self._rest_tls,
            handshake_timeout=self.config.server.handshake_timeout,
            max_connections=cap,
            handshake="HTTP request",
            handshake_pending=rest_request_pending,
        )
        app = create_app(driver, self._new_session_id)
        streams = self._streams = StreamHub(driver, history, keepalive=self._stream_keepalive)
        install(app, streams)
        app.middlewares.insert(0, rest_middleware(rest, self._rest_max_in_flight))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await rest.start(self.host, self._rest_port)
        self.rest_port = rest.port
        await self._ocpp.start(self.host, self._ocpp_port, self._ocpp_tls)
        self.ocpp_port = self._ocpp.port
        driver.tick()
        await driver.flush()
        if self._flush_interval is not None:
            flusher = self._flush_periodically(self._flush_interval)
            self._tasks.append(asyncio.create_task(flusher, name="flusher"))
        self._tasks.append(asyncio.create_task(self._prune_daily(), name="pruner"))
        await self._start_site_meter(driver)
        log.info(
            "REST API on %s://%s:%d (%s)",
            "http" if self._rest_tls is None else "https",
            self.host,
            self.rest_port,
            rest.describe(),
        )

    async def _start_site_meter(self, driver: Driver) -> None:
        """Read the site's grid meter if it is on Modbus TCP (docs/site.md); a pushed one
        comes through POST /station/site-meter."""
        meter = self.config.site.meter
        if meter is None:
            return
        if meter.type == "push":
            log.info("site meter: readings pushed to POST /station/site-meter")
            return
        clock = self.clock

        def reading(power: float, currents: tuple[float, float, float] | None) -> None:
            driver.submit(SiteMeterRead(clock.now(), power, currents))

        self._meter = ModbusMeterReader(meter, clock, reading)
        log.info("%s", self._meter.description)
        if self._poll_site_meter:
            await self._meter.start()

    @property
    def site_meter(self) -> ModbusMeterReader | None:
        """The Modbus reader of the site's meter, while one runs."""
        return self._meter

    def _new_request_handler(self) -> RequestHandler:
        assert self._runner is not None and self._runner.server is not None
        return self._runner.server()

    def reload_certificates(self) -> None:
        """SIGHUP: read the TLS files again. New handshakes use them, open connections keep
        theirs; files that cannot be used leave the previous ones in force."""
        for tls in {id(t): t for t in (self._ocpp_tls, self._rest_tls) if t is not None}.values():
            tls.reload()

    async def _flush_periodically(self, interval: float) -> None:
        """Write behind what needs no acknowledgement, at least every flush interval."""
        while True:
            await asyncio.sleep(interval)
            await self.driver.flush()

    async def _prune_daily(self) -> None:
        while True:
            try:
                await self.prune_history()
                self.pruned_at = self.clock.now()
            except StoreError as error:
                log.error("pruning the history failed (tried again tomorrow): %s", error)
            await self.clock.sleep(PRUNE_INTERVAL)

    async def prune_history(self) -> Pruned:
        """Delete what is older than the retention period, a batch at a time so that commits
        in between are not held up; returns how much went in all."""
        now = self.clock.now()
        history_before = now - self.config.database.retention_days * 86_400.0
        start_keys_before = now - START_KEY_MEMORY
        writer, repository = self.driver.writer, self.repository
        total = Pruned(0, 0, 0)
        while pruned := await writer.read(
            lambda: repository.prune(history_before, start_keys_before)
        ):
            total += pruned
        if total:
            log.info(
                "history pruned: %d stopped sessions, %d journal lines and %d StartTransaction "
                "keys older than the retention period",
                total.sessions,
                total.events,
                total.start_keys,
            )
        return total

    # -- for tests and simulations -----------------------------------------------------------

    def status(self) -> StatusView:
        """``GET /station/status`` without HTTP."""
        self.driver.tick()
        return status_view(self.core)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate`` holds, checked after every event the core handles."""
        await self.driver.wait_until(predicate)

    async def wait_settled(self) -> None:
        """Until nothing is pending and every connected charger holds what it should."""
        await self.driver.wait_until(self.core.settled)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._ocpp is not None:
            log.debug("closing charger connections")
            try:
                async with asyncio.timeout(SHUTDOWN_STEP_TIMEOUT):
                    await self._ocpp.stop()
            except TimeoutError:
                log.error("charger connections did not close in time")
                _log_running_tasks()
        if self._meter is not None:
            await self._meter.close()
            self._meter = None
        for task in self._tasks:
            task.cancel()
        # gather, not "suppress(CancelledError): await task": that would also swallow
        # a cancellation of stop() itself.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._rest is not None:
            self._rest.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._rest is not None:
            await self._rest.wait_closed()
            self._rest = None
        if self._driver is not None:
            await self._driver.close()
        else:
            self.repository.close()

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        if self._ocpp_tls is not None or self._rest_tls is not None:
            loop.add_signal_handler(signal.SIGHUP, self.reload_certificates)
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
