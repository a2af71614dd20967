"""What an attacker on the network can do to the controller: each attack, run for real.

Runs the controller as an operator does (``python -m controller`` in a subprocess, on
127.0.0.1) and tries, one after the other: a cross-site form post, requests without a token,
half-open connections on both ports (slowloris), a charger that never reads, a takeover of a
charger's connection, password guessing, numbers out of range over REST and OCPP, junk frames
that would fill the log, and config values out of range. It prints one line per attack: what
was tried and what happened. Run it against another tree with ``PYTHONPATH=that/tree`` (the
"before" of a closing note) -- the attacks use only what every version has.

    python bench/attacks.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import websockets
from websockets.typing import Subprotocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._soak_controller import ControllerProcess

CHARGERS = 10
PASSWORD = "correct horse battery"
BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def station(**extra: Any) -> dict[str, Any]:
    chargers: list[dict[str, Any]] = [
        {"id": f"CP{i:02d}", "maxPower": 300, "connectors": 2} for i in range(1, CHARGERS + 1)
    ]
    chargers[0]["password"] = PASSWORD  # CP01 is protected, the others are not
    return {"stationId": "ATTACKED", "gridCapacity": 1000, "chargers": chargers, **extra}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Attacks:
    def __init__(self, controller: ControllerProcess, quick: bool, token: str | None) -> None:
        self.c = controller
        self.quick = quick
        self.token = token
        self.results: list[tuple[str, str]] = []

    def report(self, attack: str, result: str) -> None:
        self.results.append((attack, result))
        print(f"{attack:<44} {result}", flush=True)

    @property
    def auth(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    async def charger(self, charger_id: str, **kwargs: Any) -> Any:
        return await websockets.connect(
            f"{self.c.ocpp_url}/{charger_id}", subprotocols=[Subprotocol("ocpp1.6")], **kwargs
        )

    async def call(self, ws: Any, action: str, payload: dict[str, Any]) -> Any:
        unique = secrets.token_hex(6)
        await ws.send(json.dumps([2, unique, action, payload]))
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame[1] == unique:
                    return frame

    async def status_ok(self, http: aiohttp.ClientSession) -> tuple[bool, float]:
        began = time.perf_counter()
        try:
            async with asyncio.timeout(5):
                async with http.get(self.c.rest_url + "/station/status") as response:
                    await response.read()
                    return response.status == 200, time.perf_counter() - began
        except (TimeoutError, aiohttp.ClientError):
            return False, time.perf_counter() - began

    # -- REST --------------------------------------------------------------------------------

    async def cross_site_post(self, http: aiohttp.ClientSession) -> None:
        body = json.dumps({"chargerId": "CP05", "connectorId": 0})
        async with http.post(
            self.c.rest_url + "/sessions",
            data=body,
            headers={"Content-Type": "text/plain", "Origin": "http://evil.example", **self.auth},
        ) as response:
            cors = response.headers.get("Access-Control-Allow-Origin")
            self.report(
                "cross-site POST /sessions (text/plain)",
                f"{response.status}; CORS header {cors!r}",
            )

    async def no_token(self, http: aiohttp.ClientSession) -> None:
        async with http.post(self.c.rest_url + "/sessions", json={}) as response:
            self.report("POST /sessions without a token (loopback)", f"{response.status}")

    async def numbers_over_rest(self, http: aiohttp.ClientSession) -> None:
        url = self.c.rest_url
        sessions = []
        for connector in (0, 1):
            async with http.post(
                url + "/sessions",
                json={"chargerId": "CP06", "connectorId": connector},
                headers=self.auth,
            ) as response:
                sessions.append((await response.json())["sessionId"])
        answers = []
        for session, name, raw in (
            (sessions[0], "consumedPower 1e308", b'{"consumedPower": 1e308}'),
            (sessions[1], "again on a second session", b'{"consumedPower": 1e308}'),
            (sessions[0], "100,000 digits", b'{"consumedPower": ' + b"9" * 100_000 + b"}"),
            (sessions[0], "nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
        ):
            async with http.post(
                f"{url}/sessions/{session}/power-update",
                data=raw,
                headers={"Content-Type": "application/json", **self.auth},
            ) as response:
                answers.append(f"{name}: {response.status}")
        async with http.get(url + "/station/status", headers=self.auth) as response:
            text = await response.text()
        bad = [word for word in ("Infinity", "NaN") if word in text]
        answers.append(f"status has {', '.join(bad) if bad else 'no Infinity/NaN'}")
        self.report("REST numbers out of range", "; ".join(answers))

    # -- connections -------------------------------------------------------------------------

    async def slowloris(self, http: aiohttp.ClientSession) -> None:
        ocpp_count, rest_count = (100, 60) if self.quick else (500, 300)
        wait = 12.0
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        lines_before = self.c.log_path.stat().st_size
        for port, count, half in (
            (self.c.ocpp_port, ocpp_count, b"GET /ocpp/CP02 HTTP/1.1\r\nHost: x\r\n"),
            (self.c.rest_port, rest_count, b"GET /station/status HTTP/1.1\r\nHost: x\r\n"),
        ):
            for _ in range(count):
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue
                writer.write(half)
                held.append((reader, writer))
        began = time.perf_counter()
        ok, took = await self.status_ok(http)
        first = f"status during the flood: {'200' if ok else 'failed'} in {took * 1000:.0f} ms"
        # How many of the half-open connections are still open after `wait` seconds?
        await asyncio.sleep(wait)
        still_open = 0
        for reader, _ in held:
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.01)
                if data and not reader.at_eof():
                    still_open += 1
            except TimeoutError:
                still_open += 1
            except OSError:
                pass
        charger_ok = "refused"
        with contextlib.suppress(Exception):
            ws = await asyncio.wait_for(self.charger("CP03"), 5)
            answer = await self.call(ws, "BootNotification", BOOT)
            charger_ok = "booted" if answer[0] == 3 else "error"
            await ws.close()
        for _, writer in held:
            writer.close()
        grown = self.c.log_path.stat().st_size - lines_before
        self.report(
            f"slowloris: {ocpp_count} OCPP + {rest_count} REST half-open",
            f"{first}; after {time.perf_counter() - began:.0f} s {still_open} of {len(held)} "
            f"still open; a real charger then: {charger_ok}; log grew {grown / 1024:.0f} KiB",
        )

    async def never_reads(self) -> None:
        """A charger that sends Heartbeats as fast as it can and never reads an answer."""
        before = rss_kb(self.c.pid)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.c.ocpp_port, limit=1024)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ocpp/CP04 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
            ).encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        frame = _masked_text(json.dumps([2, "x", "Heartbeat", {}]).encode())
        sent = 0
        closed = False
        how = ""
        began = time.perf_counter()
        budget = 10.0 if self.quick else 60.0
        peak = before
        while time.perf_counter() - began < budget:
            try:
                writer.write(frame * 500)
                await asyncio.wait_for(writer.drain(), 1.0)
                sent += 500
            except TimeoutError:
                pass  # the server reads slower than we write: it is pushing back
            except (ConnectionError, OSError) as error:
                closed = True
                how = f"{type(error).__name__}"
                break
            peak = max(peak, rss_kb(self.c.pid))
            if writer.is_closing() or reader.at_eof():
                closed = True
                how = "closing" if writer.is_closing() else "EOF"
                break
        writer.close()
        self.report(
            "charger that never reads (Heartbeat flood)",
            f"{sent:,} CALLs sent; disconnected: {'yes (' + how + ')' if closed else 'no'} after "
            f"{time.perf_counter() - began:.1f} s; server RSS +{(peak - before) / 1024:.0f} MB",
        )

    # -- chargers ----------------------------------------------------------------------------

    async def takeover(self) -> None:
        real = await self.charger("CP02")
        await self.call(real, "BootNotification", BOOT)
        impostor = await self.charger("CP02")
        await asyncio.sleep(0.5)
        kicked = real.state.name != "OPEN"
        await impostor.close()
        await real.close()
        protected = "refused"
        with contextlib.suppress(Exception):
            ws = await self.charger("CP01")
            protected = "accepted"
            await ws.close()
        self.report(
            "takeover of CP02 (no password configured)",
            f"real charger kicked off: {'yes' if kicked else 'no'}; CP01 (password) without "
            f"it: {protected}",
        )

    async def guessing(self) -> None:
        attempts = 300 if self.quick else 2000
        statuses: dict[str, int] = {}
        before = self.c.log_path.stat().st_size
        began = time.perf_counter()
        for n in range(attempts):
            try:
                ws = await self.charger("CP01", additional_headers=basic("CP01", f"guess{n}"))
                statuses["101"] = statuses.get("101", 0) + 1
                await ws.close()
            except websockets.InvalidStatus as error:
                code = str(error.response.status_code)
                statuses[code] = statuses.get(code, 0) + 1
            except (OSError, websockets.WebSocketException):
                statuses["other"] = statuses.get("other", 0) + 1
        took = time.perf_counter() - began
        right = "refused"
        with contextlib.suppress(Exception):
            ws = await self.charger("CP01", additional_headers=basic("CP01", PASSWORD))
            right = "accepted"
            await ws.close()
        grown = self.c.log_path.read_text(errors="replace")[before:].count("\n")
        self.report(
            f"{attempts} wrong passwords for CP01",
            f"{attempts / took:.0f}/s; answers {statuses}; the right one right after: {right}; "
            f"{grown} log lines",
        )

    async def numbers_over_ocpp(self, http: aiohttp.ClientSession) -> None:
        ws = await self.charger("CP07")
        await self.call(ws, "BootNotification", BOOT)
        start = await self.call(
            ws,
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
        )
        tx = start[2]["transactionId"]
        sample = {"value": "1000000000000", "measurand": "Power.Active.Import", "unit": "W"}
        answer = await self.call(
            ws,
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [{"timestamp": "2026-01-01T00:00:01Z", "sampledValue": [sample]}],
            },
        )
        async with http.get(self.c.rest_url + "/station/status", headers=self.auth) as response:
            status = await response.json(loads=lambda text: json.loads(text))
        power = [
            s.get("consumedPower")
            for s in status.get("sessions", [])
            if s.get("chargerId") == "CP07"
        ]
        await ws.close()
        kind = "CALLRESULT" if answer[0] == 3 else f"CALLERROR {answer[2]}"
        self.report(
            "MeterValues 1e12 W on a 300 kW charger",
            f"{kind}; the session's consumedPower reads {power}",
        )

    async def junk_frames(self) -> None:
        count = 2000 if self.quick else 10_000
        before = self.c.log_path.read_text(errors="replace").count("\n")
        ws = await self.charger("CP08")
        for n in range(count):
            await ws.send(f"junk {n}")
        # The answers to junk (CALLERRORs where one is possible) come back; then a real call.
        answer = await self.call(ws, "Heartbeat", {})
        await ws.close()
        await asyncio.sleep(0.5)
        after = self.c.log_path.read_text(errors="replace").count("\n")
        self.report(
            f"{count:,} junk frames from one charger",
            f"log grew by {after - before:,} lines; the next Heartbeat: "
            f"{'answered' if answer[0] == 3 else answer}",
        )


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def config_check(workdir: Path, name: str, changes: dict[str, Any]) -> tuple[str, str]:
    """Start the controller on a config with one value out of range: what happens?"""
    path = workdir / f"{name}.json"
    data = station()
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        data.setdefault(section, {})[key] = value
    path.write_text(json.dumps(data).replace('"__inf__"', "Infinity"))
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "controller",
                "--config",
                str(path),
                "--db",
                str(workdir / f"{name}.db"),
                "--host",
                "127.0.0.1",
                "--rest-port",
                "0",
                "--ocpp-port",
                "0",
            ],
            capture_output=True,
            timeout=6,
            cwd=workdir,
        )
        first = (done.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
        return name, f"exit {done.returncode}: {first[:90]}"
    except subprocess.TimeoutExpired:
        return name, "accepted: the controller started and ran"


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        config_path = workdir / "config.json"
        extra: dict[str, Any] = {}
        if args.token:
            import hashlib

            digest = hashlib.sha256(args.token.encode()).hexdigest()
            extra["api"] = {"tokens": [{"name": "bench", "role": "operate", "sha256": digest}]}
        config_path.write_text(json.dumps(station(**extra)))
        controller = ControllerProcess(workdir, config_path, workdir / "controller.db")
        await controller.start()
        attacks = Attacks(controller, args.quick, args.token)
        steps: list[Callable[[aiohttp.ClientSession], Awaitable[None]]] = [
            attacks.cross_site_post,
            attacks.no_token,
            attacks.numbers_over_rest,
            attacks.numbers_over_ocpp,
            lambda _: attacks.takeover(),
            lambda _: attacks.guessing(),
            lambda _: attacks.junk_frames(),
            lambda _: attacks.never_reads(),
            attacks.slowloris,
        ]
        try:
            async with aiohttp.ClientSession() as http:
                for step in steps:
                    try:
                        await step(http)
                    except Exception as error:  # one attack failing must not hide the others
                        attacks.report(getattr(step, "__name__", "attack"), f"failed: {error!r}")
        finally:
            await controller.terminate()
        for name, result in (
            config_check(workdir, "callTimeout Infinity", {"ocpp.callTimeout": "__inf__"}),
            config_check(workdir, "heartbeatInterval 1e23", {"ocpp.heartbeatInterval": 10**23}),
        ):
            attacks.report(f"config {name}", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer connections and attempts")
    parser.add_argument(
        "--token",
        help="configure this operate token (a version with api.tokens) and use it where the "
        "attack is not about tokens",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
