"""Faults over real processes: nothing acknowledged is ever lost (docs/persistence.md).

The controller runs as a subprocess on a SQLite file in tmp_path; chargers and a REST client
talk to it over real sockets. Each test breaks something (a kill -9 in the middle of a burst,
numbers too large for SQLite, another process holding the database's write lock, an answer
lost with its connection), then kills the controller with SIGKILL and starts it again on the
same file. Every session that got an acknowledgement must be back with the same ids; chargers
that resend their transaction messages get the same answers; nothing is recorded twice, and a
request that was refused left nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from protocol import CallErrored, to_payload
from protocol.messages import StartTransactionRequest, StopTransactionRequest
from tests.controller.ocpp_client import FakeCharger
from tests.controller.process import READY, controller_command

OCPP_CHARGERS = [f"OC{i:02d}" for i in range(10)]
CONFIG = {
    "stationId": "CRASH",
    "gridCapacity": 400,
    "chargers": [
        {"id": "CP001", "maxPower": 200, "connectors": 2},
        {"id": "CP002", "maxPower": 200, "connectors": 2},
        {"id": "CP003", "maxPower": 300, "connectors": 2},
        *({"id": c, "maxPower": 22, "connectors": 2} for c in OCPP_CHARGERS),
    ],
    "battery": {"initialCapacity": 200, "power": 100},
}


class ControllerProcess:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.rest_port = 0
        self.ocpp_port = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *controller_command(self.workdir / "config.json", self.workdir / "controller.db"),
            cwd=self.workdir,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stderr is not None
        ports: dict[str, int] = {}
        while len(ports) < 2:
            line = await asyncio.wait_for(self.process.stderr.readline(), 30)
            assert line, "the controller exited before it was ready"
            match = READY.search(line.decode())
            if match:
                ports[match.group(1)] = int(match.group(2))
        self.rest_port = ports["REST API on http"]
        self.ocpp_port = ports["OCPP 1.6J on ws"]
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        # Kept next to the database: the first place to look when this test fails.
        with open(self.workdir / "controller.log", "ab") as log:
            while line := await self.process.stderr.readline():
                log.write(line)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"

    async def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, f"http://127.0.0.1:{self.rest_port}{path}", json=body) as response,
        ):
            return response.status, await response.json()


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[ControllerProcess]:
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    process = ControllerProcess(tmp_path)
    yield process
    if process.process is not None and process.process.returncode is None:
        process.process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()  # its log is kept next to the database (controller.log)
            raise


def start_request(
    connector: int, tag: str, meter_start: int | None = None
) -> StartTransactionRequest:
    """A StartTransaction as a charger sends it (and resends it, identically)."""
    return StartTransactionRequest(
        connector_id=connector,
        id_tag=tag,
        meter_start=100 * connector if meter_start is None else meter_start,
        timestamp="2026-01-01T07:00:00Z",
    )


async def booted_chargers(controller: ControllerProcess) -> list[FakeCharger]:
    """The OCPP chargers of the station, connected and booted."""
    chargers = [FakeCharger(controller.ocpp_url, c) for c in OCPP_CHARGERS]
    await asyncio.gather(*(c.connect() for c in chargers))
    await asyncio.gather(*(c.boot() for c in chargers))
    return chargers


async def test_sigkill_in_a_burst_loses_no_acknowledged_session(
    controller: ControllerProcess,
) -> None:
    await controller.start()
    chargers = await booted_chargers(controller)

    # Before the burst: one acknowledged stop to resend later, and REST load on the battery.
    first = chargers[0]
    early = await first.call(start_request(1, "EARLY"))
    early_stop = StopTransactionRequest(
        transaction_id=early.transaction_id, meter_stop=5100, timestamp="2026-01-01T07:30:00Z"
    )
    await first.call(early_stop)
    for charger_id in ("CP001", "CP002", "CP003"):
        code, _ = await controller.rest(
            "POST", "/sessions", {"chargerId": charger_id, "connectorId": 0}
        )
        assert code == 201
    loop = asyncio.get_running_loop()
    _, status = await controller.rest("GET", "/station/status")
    energy_at, energy = loop.time(), status["battery"]["storedEnergy"]
    assert status["battery"]["currentPower"] == 100

    # The burst: 2 starts per OCPP charger and 3 REST starts; kill after 8 acknowledgements.
    acked_ocpp: dict[tuple[str, int], int] = {}
    acked_rest: dict[str, tuple[str, int]] = {}
    killed_at: list[float] = []

    def acknowledged() -> None:
        if len(acked_ocpp) + len(acked_rest) == 8 and not killed_at:
            controller.kill()
            killed_at.append(loop.time())

    async def ocpp_start(charger: FakeCharger, connector: int) -> None:
        try:
            answer = await charger.call(start_request(connector, f"T{connector}"))
        except ConnectionError:
            return
        acked_ocpp[(charger.charger_id, connector)] = answer.transaction_id
        acknowledged()

    async def rest_start(charger_id: str) -> None:
        try:
            code, body = await controller.rest(
                "POST", "/sessions", {"chargerId": charger_id, "connectorId": 1}
            )
        except aiohttp.ClientError:
            return
        if code == 201:
            acked_rest[body["sessionId"]] = (charger_id, 1)
            acknowledged()

    await asyncio.gather(
        *(ocpp_start(c, n) for n in (2, 1) for c in chargers),
        *(rest_start(c) for c in ("CP001", "CP002", "CP003")),
        return_exceptions=False,
    )
    assert await controller.wait() == -signal.SIGKILL
    assert killed_at and 8 <= len(acked_ocpp) + len(acked_rest) < 23
    await asyncio.gather(*(c.closed.wait() for c in chargers))

    await controller.start()
    _, active = await controller.rest("GET", "/sessions?status=active")
    by_id = {s["sessionId"]: s for s in active}
    for session_id, (charger_id, connector) in acked_rest.items():
        assert by_id[session_id]["chargerId"] == charger_id
        assert by_id[session_id]["connectorId"] == connector
    by_tx = {s["transactionId"]: s for s in active if s["transactionId"] is not None}
    for (charger_id, connector), transaction_id in acked_ocpp.items():
        assert by_tx[transaction_id]["chargerId"] == charger_id
        assert by_tx[transaction_id]["connectorId"] == connector - 1

    # Chargers reconnect and resend every start (acknowledged or not) and the early stop.
    for charger in chargers:
        charger.url = controller.ocpp_url  # the new process listens on a new free port
    await asyncio.gather(*(c.connect() for c in chargers))
    for charger in chargers:
        for connector in (2, 1):
            answer = await charger.call(start_request(connector, f"T{connector}"))
            known = acked_ocpp.get((charger.charger_id, connector))
            if known is not None:
                assert answer.transaction_id == known
    assert (await first.call(early_stop)).id_tag_info is None
    _, active = await controller.rest("GET", "/sessions?status=active")
    connectors = [(s["chargerId"], s["connectorId"]) for s in active]
    assert len(connectors) == len(set(connectors))  # nothing recorded twice
    assert len([s for s in active if s["chargerId"].startswith("OC")]) == 20
    _, events = await controller.rest("GET", "/station/events?limit=10000")
    early_id = next(
        e["sessionId"]
        for e in events
        if e["kind"] == "session.started" and e["data"].get("transactionId") == early.transaction_id
    )
    assert [
        e["kind"] for e in events if e["sessionId"] == early_id and e["kind"].startswith("session.")
    ] == ["session.started", "session.stopped"]
    _, stopped = await controller.rest("GET", f"/sessions/{early_id}")
    assert stopped["consumedEnergy"] == 5

    # The battery: discharging at 100 kW until the kill; the store lags by at most
    # one flush interval (1 s), and nothing flowed while the process was down.
    _, status = await controller.rest("GET", "/station/status")
    expected = energy - 100 * (killed_at[0] - energy_at) / 3600
    restored = status["battery"]["storedEnergy"]
    one_step = 100 * 1.0 / 3600
    # Discharge has resumed since the restart: allow for the seconds it took to get here.
    since_restart = 100 * (loop.time() - killed_at[0]) / 3600
    assert expected - since_restart - one_step <= restored <= expected + one_step + 0.001
    await asyncio.gather(*(c.close() for c in chargers))


async def restart(controller: ControllerProcess, chargers: list[FakeCharger]) -> None:
    """kill -9 the controller, start it again on the same database, reconnect the chargers
    (without a boot: OCPP-J 5.4)."""
    controller.kill()
    assert await controller.wait() == -signal.SIGKILL
    await asyncio.gather(*(c.closed.wait() for c in chargers))
    await controller.start()
    for charger in chargers:
        charger.url = controller.ocpp_url  # the new process listens on a new free port
    await asyncio.gather(*(c.connect() for c in chargers))


async def active_sessions(controller: ControllerProcess) -> list[dict[str, Any]]:
    code, active = await controller.rest("GET", "/sessions?status=active")
    assert code == 200
    return list(active)


async def test_numbers_too_large_for_sqlite_are_refused_and_commits_go_on(
    controller: ControllerProcess,
) -> None:
    # A meterStart or connectorId of 2**63 does not fit an SQLite integer: once, such a
    # StartTransaction broke every later commit. Now both are out of range (meter registers
    # below 2**53, integers int32: docs/security-input.md) and refused before they reach the
    # station: nothing of them is stored, commits go on, and a crash brings back only the rest.
    await controller.start()
    charger = FakeCharger(controller.ocpp_url, "OC00")
    await charger.connect()
    await charger.boot()
    for unique_id, connector, meter_start in (("big", 1, 2**63), ("odd", 2**63, 0)):
        payload = to_payload(start_request(1, "X", meter_start=0))
        payload |= {"connectorId": connector, "meterStart": meter_start}
        await charger.send_raw(json.dumps([2, unique_id, "StartTransaction", payload]))
        while (answer := json.loads(await charger.next_raw()))[:2] != [4, unique_id]:
            pass  # the controller's own CALLs, and answers to other CALLs
        assert answer[2] == "PropertyConstraintViolation"
    after = await charger.call(start_request(2, "AFTER", meter_start=0))
    assert after.id_tag_info.status == "Accepted"
    assert after.transaction_id == 1  # no id was used up by the refused ones

    await restart(controller, [charger])
    active = await active_sessions(controller)
    assert [s["transactionId"] for s in active] == [after.transaction_id]
    await charger.close()


LOCK_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))  # the fault itself: another process sits on the write lock
db.execute("ROLLBACK")
"""


async def test_a_write_lock_held_by_another_process_refuses_cleanly_and_loses_nothing(
    controller: ControllerProcess,
) -> None:
    await controller.start()
    chargers = await booted_chargers(controller)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCK_HOLDER,
        str(controller.workdir / "controller.db"),
        "8",
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert await holder.stdout.readline() == b"locked\n"

    # A burst while the database is locked: every request is either acknowledged (it waited
    # for the lock within the busy timeout) or refused with nothing done.
    async def ocpp_start(charger: FakeCharger) -> tuple[FakeCharger, Any]:
        return charger, await charger.call(start_request(1, "LOCK", meter_start=0))

    async def rest_start(charger_id: str) -> tuple[str, int, Any]:
        code, body = await controller.rest(
            "POST", "/sessions", {"chargerId": charger_id, "connectorId": 0}
        )
        return charger_id, code, body

    burst = asyncio.gather(
        *(ocpp_start(c) for c in chargers), *(rest_start(c) for c in ("CP001", "CP002", "CP003"))
    )
    # Meanwhile the controller still serves: the lock blocks writes, not the event loop.
    code, status = await controller.rest("GET", "/station/status")
    assert code == 200 and status["stationId"] == "CRASH"
    results = await burst
    assert await holder.wait() == 0

    acked_tx: dict[str, int] = {}
    acked_rest: dict[str, str] = {}
    refused = 0
    for result in results:
        if isinstance(result[0], FakeCharger):
            charger, answer = result
            if isinstance(answer, CallErrored):
                assert answer.error_code == "InternalError"
                refused += 1
                # Nothing happened, so the charger's retry is a first attempt.
                answer = await charger.call(start_request(1, "LOCK", meter_start=0))
            acked_tx[charger.charger_id] = answer.transaction_id
        else:
            charger_id, code, body = result
            if code == 503:
                assert body["error"] == "storage_unavailable"
                refused += 1
                code, body = await controller.rest(
                    "POST", "/sessions", {"chargerId": charger_id, "connectorId": 0}
                )
            assert code == 201, body  # never a 409: the refused start left nothing behind
            acked_rest[body["sessionId"]] = charger_id
    assert refused > 0  # the lock did bite
    assert len(set(acked_tx.values())) == len(chargers)

    await restart(controller, chargers)
    active = await active_sessions(controller)
    by_tx = {s["transactionId"]: s for s in active if s["transactionId"] is not None}
    assert {tx: by_tx[tx]["chargerId"] for tx in acked_tx.values()} == {
        tx: c for c, tx in acked_tx.items()
    }
    assert {s["sessionId"] for s in active if s["transactionId"] is None} == set(acked_rest)
    # The journal has one start per session: the refused attempts left no trace.
    _, events = await controller.rest("GET", "/station/events?limit=10000")
    starts = [e for e in events if e["kind"] == "session.started"]
    assert len(starts) == len(active)
    await asyncio.gather(*(c.close() for c in chargers))


async def test_a_start_whose_answer_was_lost_is_limited_once_resent(
    controller: ControllerProcess,
) -> None:
    await controller.start()
    charger = FakeCharger(controller.ocpp_url, "OC00")
    await charger.connect()
    await charger.boot()
    await charger.wait_until(lambda: len(charger.profiles()) == 1)  # the failsafe default
    await charger.close()
    await charger.closed.wait()
    # The charger sends StartTransaction and loses its connection before the answer.
    request = start_request(1, "LOST", meter_start=100)
    raw = await websockets.connect(f"{controller.ocpp_url}/OC00", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    await raw.send(json.dumps([2, "lost-1", "StartTransaction", to_payload(request)]))
    raw.transport.abort()

    def limited(tx: int) -> bool:
        return any(p.cs_charging_profiles.transaction_id == tx for p in charger.profiles())

    # It reconnects (no boot) and resends, as its transaction queue makes it do.
    await charger.connect()
    tx = (await charger.call(request)).transaction_id
    await charger.wait_until(lambda: limited(tx))
    _, status = await controller.rest("GET", "/station/status")
    (session,) = [s for s in status["sessions"] if s["transactionId"] == tx]
    assert session["allocatedPower"] == 22

    # The same after a crash: the same id, and limits for it.
    charger.received.clear()
    await restart(controller, [charger])
    assert (await charger.call(request)).transaction_id == tx
    await charger.wait_until(lambda: limited(tx))
    assert [s["transactionId"] for s in await active_sessions(controller)] == [tx]
    await charger.close()
