"""The chargers of the OCPP benchmark and the three client-side scenarios.

Each ``*_clients`` function is the body of a load-generator process: it opens its chargers
(:class:`BenchCharger`, on the raw WebSocket client of :mod:`bench._rawws`), plays its scenario
and reports to the parent over a pipe. Chargers answer every CALL from the server at once, in
``data_received``: ``SetChargingProfile`` Accepted, ``GetConfiguration`` with SmartCharging in
W, anything else ``NotImplemented``.

Frames are built once where it matters: a MeterValues CALL is a pre-encoded JSON text with a
slot for its unique id (several variants of values and timestamps per charger), so a message
costs a bytes join, a mask and a write.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import time
import traceback
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from bench._ocpp_servers import cpu_seconds, raise_fd_limit
from bench._rawws import WsClient, client_frame, open_client

CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4
CALL_TIMEOUT = 60.0
CONNECT_CONCURRENCY = 100
_ID_SLOT = "@ID@"
_EPOCH = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _message_type(payload: bytes) -> int:
    if len(payload) > 2 and payload[0] == 0x5B and payload[2] == 0x2C:  # b"[n,"
        return payload[1] - 0x30
    try:
        message = json.loads(payload)
        return int(message[0])
    except (ValueError, TypeError, IndexError, KeyError):
        return 0


@dataclass
class ProfileLog:
    """Every SetChargingProfile the chargers of this process received, as counters."""

    last_call_at: float = 0.0  # any CALL from the server
    last_changed_at: float = 0.0  # a TxProfile whose limit differs from what the connector held
    tx_profiles: int = 0
    changed: int = 0
    defaults: int = 0
    watch: tuple[int, int] | None = None  # (charger index, connector) just started
    watch_seen_at: float | None = None
    chargers_hit: set[int] = field(default_factory=set)

    def reset(self, watch: tuple[int, int] | None = None) -> None:
        self.tx_profiles = self.changed = self.defaults = 0
        self.watch, self.watch_seen_at = watch, None
        self.chargers_hit.clear()


class BenchCharger(WsClient):
    def __init__(self, index: int, charger_id: str, log: ProfileLog) -> None:
        super().__init__()
        self.index = index
        self.charger_id = charger_id
        self.log = log
        self._seq = 0
        self._waiter: asyncio.Future[tuple[int, bytes, float]] | None = None
        # Set while a hot loop owns the answers (see MeterPump): called instead of the waiter.
        self.on_answer: Callable[[int, bytes], None] | None = None
        self.limits: dict[int, float] = {}  # TxProfile limit accepted, per connector
        self.default_installed = False

    async def call(
        self, action: str, payload: dict[str, Any], timeout: float = CALL_TIMEOUT
    ) -> tuple[Any, float]:
        """One CALL (the caller keeps to one outstanding); its payload and arrival time."""
        self._seq += 1
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.send_text(_json([CALL, f"c{self._seq}", action, payload]))
        kind, raw, at = await asyncio.wait_for(waiter, timeout)
        message = json.loads(raw)
        if kind != CALL_RESULT:
            raise RuntimeError(f"{self.charger_id}: {action} answered {message}")
        return message[2], at

    def on_text(self, payload: bytes, now: float) -> None:
        kind = _message_type(payload)
        if kind == CALL:
            self._on_server_call(payload, now)
        elif kind in (CALL_RESULT, CALL_ERROR):
            hook = self.on_answer
            if hook is not None:
                hook(kind, payload)
                return
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((kind, payload, now))

    def _on_server_call(self, payload: bytes, now: float) -> None:
        log = self.log
        log.last_call_at = now
        _, unique_id, action, body = json.loads(payload)
        answer: Any
        if action == "SetChargingProfile":
            profile = body["csChargingProfiles"]
            connector = body["connectorId"]
            purpose = profile["chargingProfilePurpose"]
            limit = profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            if purpose == "TxProfile":
                log.tx_profiles += 1
                log.chargers_hit.add(self.index)
                if self.limits.get(connector) != limit:
                    log.changed += 1
                    log.last_changed_at = now
                self.limits[connector] = limit
                if log.watch == (self.index, connector) and log.watch_seen_at is None:
                    log.watch_seen_at = now
            else:
                log.defaults += 1
                self.default_installed = True
            answer = [CALL_RESULT, unique_id, {"status": "Accepted"}]
        elif action == "GetConfiguration":
            answer = [
                CALL_RESULT,
                unique_id,
                {
                    "configurationKey": [
                        {
                            "key": "SupportedFeatureProfiles",
                            "readonly": True,
                            "value": "Core,FirmwareManagement,SmartCharging",
                        },
                        {
                            "key": "ChargingScheduleAllowedChargingRateUnit",
                            "readonly": True,
                            "value": "Power",
                        },
                    ]
                },
            ]
        else:
            answer = [CALL_ERROR, unique_id, "NotImplemented", "", {}]
        self.send_text(_json(answer))

    # -- charger messages ------------------------------------------------------------------------

    async def boot(self) -> None:
        answer, _ = await self.call(
            "BootNotification",
            {
                "chargePointVendor": "Bench",
                "chargePointModel": "Load-1",
                "chargePointSerialNumber": self.charger_id,
                "firmwareVersion": "1.0.0",
            },
        )
        if answer.get("status") != "Accepted":
            raise RuntimeError(f"{self.charger_id}: boot {answer}")

    async def start_transaction(self, connector: int) -> tuple[int, float]:
        answer, at = await self.call(
            "StartTransaction",
            {
                "connectorId": connector,
                "idTag": f"TAG{self.index:05d}{connector}",
                "meterStart": 1000,
                "timestamp": _iso(datetime.now(UTC)),
            },
        )
        return int(answer["transactionId"]), at


class MeterPump:
    """Sends MeterValues as fast as they are answered, one outstanding CALL at a time."""

    VARIANTS = 8

    def __init__(self, charger: BenchCharger, transaction_id: int, connector: int = 1) -> None:
        self.charger = charger
        self.prefix = f"m{charger.index}-".encode()
        self.tails: list[bytes] = []
        for n in range(self.VARIANTS):
            frame = _json(
                [
                    CALL,
                    _ID_SLOT,
                    "MeterValues",
                    {
                        "connectorId": connector,
                        "transactionId": transaction_id,
                        "meterValue": [
                            {
                                "timestamp": _iso(_EPOCH + timedelta(seconds=60 * n)),
                                "sampledValue": [
                                    {
                                        "value": f"{7360 - 40 * n}",
                                        "context": "Sample.Periodic",
                                        "measurand": "Power.Active.Import",
                                        "location": "Outlet",
                                        "unit": "W",
                                    },
                                    {
                                        "value": f"{1000 + 123 * n}",
                                        "context": "Sample.Periodic",
                                        "measurand": "Energy.Active.Import.Register",
                                        "location": "Outlet",
                                        "unit": "Wh",
                                    },
                                ],
                            }
                        ],
                    },
                ]
            )
            head, tail = frame.split(_ID_SLOT.encode())
            assert head == b'[2,"'
            self.tails.append(tail)
        self.seq = 0
        self.answered = 0
        self.errors = 0
        self.running = False
        self.outstanding = False
        self._expect = b""

    def start(self) -> None:
        self.running = True
        self.charger.on_answer = self._on_answer
        self._send()

    def _send(self) -> None:
        self.seq += 1
        unique_id = self.prefix + str(self.seq).encode()
        self._expect = b'[3,"' + unique_id + b'"'
        self.outstanding = True
        self.charger.send_frame(
            client_frame(b'[2,"' + unique_id + self.tails[self.seq % self.VARIANTS])
        )

    def _on_answer(self, kind: int, payload: bytes) -> None:
        self.outstanding = False
        if payload.startswith(self._expect):
            self.answered += 1
        else:
            self.errors += 1
        if self.running:
            self._send()


# -- helpers -----------------------------------------------------------------------------------


async def _bounded(jobs: Iterable[Coroutine[Any, Any, None]], limit: int) -> None:
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Coroutine[Any, Any, None]) -> None:
        async with semaphore:
            await job

    await asyncio.gather(*(one(job) for job in jobs))


def client_tls(ca: str | None) -> ssl.SSLContext | None:
    """Chargers connect over TLS trusting the CA in file ``ca``; None: no TLS."""
    return None if ca is None else ssl.create_default_context(cafile=ca)


async def _connect_and_boot(
    chargers: Sequence[BenchCharger], host: str, port: int, path: str, ca: str | None
) -> None:
    tls = client_tls(ca)

    async def one(charger: BenchCharger) -> None:
        await open_client(charger, host, port, f"{path}/{charger.charger_id}", tls=tls)
        await charger.boot()

    await _bounded((one(c) for c in chargers), CONNECT_CONCURRENCY)


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _quiet(log: ProfileLog, quiet: float, timeout: float) -> None:
    """Until the server has sent no CALL for ``quiet`` seconds."""
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        left = log.last_call_at + quiet - now
        if left <= 0:
            return
        if now > deadline:
            raise TimeoutError("the server never went quiet")
        await asyncio.sleep(min(left, 0.05))


async def _idle(log: ProfileLog, charger: BenchCharger, quiet: float) -> None:
    """Until the server is quiet and idle: no CALL for ``quiet`` seconds, and then a Heartbeat
    answered with no CALL in between (a long computation that sends nothing is over)."""
    while True:
        await _quiet(log, quiet, 120)
        mark = log.last_call_at
        await charger.call("Heartbeat", {})
        if log.last_call_at == mark:
            return


async def _close_all(chargers: Sequence[BenchCharger]) -> None:
    for charger in chargers:
        charger.close()
    waiting = [c.closed for c in chargers if not c.closed.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=10)
    for charger in chargers:
        if charger.transport is not None:
            charger.transport.abort()


def _client_process(
    body: Callable[[Connection], Coroutine[Any, Any, None]], conn: Connection
) -> None:
    raise_fd_limit()
    try:
        asyncio.run(body(conn))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


# -- (1) throughput ----------------------------------------------------------------------------


def throughput_clients(
    conn: Connection,
    host: str,
    port: int,
    path: str,
    ids: list[str],
    warmup: float,
    window: float,
    server_pid: int,
    profile: bool,
    ca: str | None = None,
) -> None:
    async def body(conn: Connection) -> None:
        log = ProfileLog()
        chargers = [BenchCharger(i, cid, log) for i, cid in enumerate(ids)]
        await _connect_and_boot(chargers, host, port, path, ca)

        async def start(charger: BenchCharger) -> int:
            transaction_id, _ = await charger.start_transaction(1)
            return transaction_id

        transactions = await asyncio.gather(*(start(c) for c in chargers))
        await _quiet(log, 0.5, 60)  # the controller's follow-up profiles are all answered
        pumps = [MeterPump(c, t) for c, t in zip(chargers, transactions, strict=True)]
        for pump in pumps:
            pump.start()
        await asyncio.sleep(warmup)

        def snapshot() -> tuple[float, int, int, float, float]:
            return (
                time.perf_counter(),
                sum(p.answered for p in pumps),
                sum(p.errors for p in pumps),
                cpu_seconds(server_pid),
                time.process_time(),
            )

        if profile:
            os.kill(server_pid, signal.SIGUSR1)
        t0, n0, e0, s0, c0 = snapshot()
        await asyncio.sleep(window)
        t1, n1, e1, s1, c1 = snapshot()
        if profile:
            os.kill(server_pid, signal.SIGUSR2)
        for pump in pumps:
            pump.running = False
        await _until(lambda: not any(p.outstanding for p in pumps), 30, "the last answers")
        await _close_all(chargers)
        elapsed = t1 - t0
        conn.send(
            (
                "result",
                {
                    "rate": (n1 - n0) / elapsed,
                    "answered": n1 - n0,
                    "errors": e1 - e0,
                    "seconds": elapsed,
                    "server_cpu": (s1 - s0) / elapsed,
                    "client_cpu": (c1 - c0) / elapsed,
                    "sent_total": sum(p.seq for p in pumps),
                },
            )
        )

    _client_process(body, conn)


# -- (2) latency -------------------------------------------------------------------------------


def latency_clients(
    conn: Connection,
    host: str,
    port: int,
    path: str,
    ids: list[str],
    initial: list[tuple[int, int]],
    measured: list[tuple[int, int]],
    quiet: float,
    budget: float,
    server_pid: int,
    profile: bool,
    ca: str | None = None,
) -> None:
    async def body(conn: Connection) -> None:
        log = ProfileLog()
        chargers = [BenchCharger(i, cid, log) for i, cid in enumerate(ids)]
        t = time.perf_counter()
        await _connect_and_boot(chargers, host, port, path, ca)
        await _until(lambda: all(c.default_installed for c in chargers), 120, "failsafe profiles")
        await _quiet(log, quiet, 60)
        setup = {"connect_s": time.perf_counter() - t}

        t = time.perf_counter()
        per_charger: dict[int, list[int]] = {}
        for index, connector in initial:
            per_charger.setdefault(index, []).append(connector)

        async def start_sessions(index: int, connectors: list[int]) -> None:
            for connector in connectors:
                await chargers[index].start_transaction(connector)

        await asyncio.gather(*(start_sessions(i, c) for i, c in per_charger.items()))
        setup["sessions_s"] = time.perf_counter() - t
        await _idle(log, chargers[0], max(quiet, 1.0))

        if profile:
            os.kill(server_pid, signal.SIGUSR1)
        samples: list[dict[str, float]] = []
        failures = 0
        began = time.perf_counter()
        for index, connector in measured:
            if time.perf_counter() - began > budget:
                break
            await _idle(log, chargers[index], quiet)
            log.reset(watch=(index, connector))
            t0 = time.perf_counter()
            _, answered_at = await chargers[index].start_transaction(connector)
            deadline = t0 + 30
            while True:
                now = time.perf_counter()
                if log.watch_seen_at is not None and now - log.last_call_at >= quiet:
                    break
                if now > deadline:
                    break
                await asyncio.sleep(quiet / 10)
            if log.watch_seen_at is None:
                failures += 1
                continue
            last = log.last_changed_at if log.last_changed_at > t0 else log.watch_seen_at
            samples.append(
                {
                    "latency": last - t0,
                    "own": log.watch_seen_at - t0,
                    "answer": answered_at - t0,
                    "profiles": log.tx_profiles,
                    "changed": log.changed,
                    "chargers": len(log.chargers_hit),
                    "defaults": log.defaults,
                }
            )
        if profile:
            os.kill(server_pid, signal.SIGUSR2)
        measuring = time.perf_counter() - began
        await _close_all(chargers)
        conn.send(
            (
                "result",
                {"samples": samples, "failures": failures, "measuring_s": measuring, **setup},
            )
        )

    _client_process(body, conn)


# -- (3) memory --------------------------------------------------------------------------------


def idle_clients(
    conn: Connection,
    host: str,
    port: int,
    path: str,
    ids: list[str],
    first_index: int,
    ca: str | None = None,
) -> None:
    async def body(conn: Connection) -> None:
        log = ProfileLog()
        chargers = [BenchCharger(first_index + i, cid, log) for i, cid in enumerate(ids)]
        t = time.perf_counter()
        await _connect_and_boot(chargers, host, port, path, ca)
        await _until(lambda: all(c.default_installed for c in chargers), 300, "failsafe profiles")
        await _quiet(log, 1.0, 60)
        conn.send(("ready", {"chargers": len(chargers), "connect_s": time.perf_counter() - t}))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # the parent has read the memory
        await _close_all(chargers)
        conn.send(("result", {}))

    _client_process(body, conn)


# -- (4) handshakes ----------------------------------------------------------------------------


def handshake_clients(
    conn: Connection,
    host: str,
    port: int,
    path: str,
    ids: list[str],
    server_pid: int,
    ca: str | None = None,
) -> None:
    """Every charger connects (TCP, TLS with ``ca``, WebSocket upgrade) and boots, at most
    CONNECT_CONCURRENCY at a time, as fast as the server lets them; then all close."""

    async def body(conn: Connection) -> None:
        log = ProfileLog()
        chargers = [BenchCharger(i, cid, log) for i, cid in enumerate(ids)]
        t0, s0, c0 = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
        await _connect_and_boot(chargers, host, port, path, ca)
        t1, s1, c1 = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
        await _close_all(chargers)
        elapsed = t1 - t0
        conn.send(
            (
                "result",
                {
                    "rate": len(chargers) / elapsed,
                    "seconds": elapsed,
                    "server_cpu_s": s1 - s0,
                    "client_cpu": (c1 - c0) / elapsed,
                },
            )
        )

    _client_process(body, conn)
