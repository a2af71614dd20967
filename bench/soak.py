"""Soak run: ``python bench/soak.py [--minutes 10] [--chargers 200]`` prints figures.

What runs. The controller as an operator runs it (``python -m controller``, a subprocess on
127.0.0.1 ports 0, a SQLite file in a temporary folder) on a generated station: chargers of two
connectors at 22-150 kW, a grid capacity of 30 % of their sum so that the station is
constrained nearly all the time, two feeder groups (one with a nested cable group) and a
battery. The battery is sized so that it cannot empty within the run: the root limit then
stays ``gridCapacity + battery power`` throughout, and a figure over it is an overrun, not the
moment the battery ran dry. In this process: one simulated charge point per OCPP charger
(``simulators.chargepoint.ChargePoint`` over real WebSockets, with its transaction queue) and a
REST client for 5 % of the chargers, which are driven over ``POST /sessions`` and
``/sessions/{id}/stop`` only (REST and OCPP share connectors, so they get chargers of their
own). Every connector starts and stops sessions with random dwell and idle times; chargers
send MeterValues every 10 s; chargers drop their connection at random (most stay away 1-20 s,
some reboot at once) and resend their queued transaction messages when back. Once, at a
random moment between 35 % and 65 % of the run, the controller gets SIGKILL; after a few
seconds it starts again on the same database and the chargers reconnect and resend.

What is measured, and how.

* Sessions started and acknowledged: charger-side transactions begun and REST starts sent;
  StartTransaction.conf received (the charger learnt its transactionId) and REST 201 received.
* Recovered: right after the restart, before any charger is let back in, the sessions are read
  over REST: every session acknowledged before the kill must be there with the same
  transactionId (and the sessionId seen in earlier polls), charger and connector, still active
  if its charger still runs it and stopped if a REST stop was acknowledged.
* Lost: an acknowledged session missing (or wrong) after the restart or at the end. Duplicated:
  a transactionId given to two charger transactions, or a session in the controller that no
  acknowledged start accounts for (a resent start recorded twice). At the end every transaction
  message has been delivered, so every session must be stopped with the energy of its meter
  readings, and nothing may be left over.
* Highest sum of limits against the root limit, from the chargers' side: for each connector
  with a transaction, its last accepted TxProfile, or one received and not yet answered if
  higher (``bench/_soak_ledger.py``); connectors still on the failsafe default are the allowed
  excursion and are reported apart. To this come the REST sessions' allocations, which only
  exist in the controller. The root limit is ``availablePower`` from ``GET /station/status``,
  polled twice a second: it is the controller's own figure (and here always gridCapacity +
  battery power, which the table says). A poll's figures held at one instant between sending
  and answer, so each poll is compared with the *lowest* charger-side sum over that window:
  sound even though the two sides are read at slightly different times.
* Controller memory: VmRSS from /proc at start (ready, then with every charger connected),
  before the kill, after the restart and at the end. Messages: WebSocket frames the chargers
  sent and received, and REST requests. Run duration: the whole run and its load phase.

Exit status 1 if a session was lost or duplicated, a limit was exceeded or a stopped session's
energy disagrees with its meter; 2 if the run itself could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

# Run as a script: the repository root goes first on sys.path, so that ``bench`` is a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench._soak_controller import ControllerProcess, StartFailed
from bench._soak_ledger import LimitLedger
from shell.clock import SystemClock
from shell.websocket import WebSocketLink
from simulators.chargepoint import ChargePoint
from simulators.charger import ChargerSpec, LocalTransaction

POLL_INTERVAL = 0.5  # s between status polls
LEDGER_LAG = 5.0  # s the ledger stays behind real time, so that every record is in
LAG_PROBE = 0.05  # s between two probes of this process's event loop
SIGTERM_GRACE = 30.0  # s the controller gets to stop cleanly at the end
STALE_AFTER = 3.0  # s after a charger closed its socket, the status must say it is not connected
METER_INTERVAL = 10  # s between MeterValues samples
REST_SHARE = 20  # every 20th charger is driven over REST
POWERS_KW = (22, 22, 50, 75, 100, 150)
VEHICLE_KW = (11, 22, 50, 75, 150)
ENERGY_TOLERANCE_KWH = 1e-6


class RunFailed(Exception):
    """The soak itself could not be carried out (not a finding about the controller)."""


class RestUnavailable(Exception):
    """No answer from the REST API (the controller is down or went down mid-request)."""


# -- the station --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Station:
    config: dict[str, Any]
    ocpp: dict[str, float]  # charger id -> maxPower kW
    rest: dict[str, float]

    @property
    def grid_kw(self) -> float:
        return float(self.config["gridCapacity"])

    @property
    def battery_kw(self) -> float:
        return float(self.config["battery"]["power"])

    @property
    def root_kw(self) -> int:
        return int(self.grid_kw + self.battery_kw)


def make_station(chargers: int, minutes: float, rnd: random.Random) -> Station:
    ids = [f"CP{i:03d}" for i in range(1, chargers + 1)]
    powers = {cid: float(rnd.choice(POWERS_KW)) for cid in ids}
    rest = {cid: kw for i, (cid, kw) in enumerate(powers.items(), 1) if i % REST_SHARE == 0}
    if not rest:
        rest = {ids[-1]: powers[ids[-1]]}
    ocpp = {cid: kw for cid, kw in powers.items() if cid not in rest}
    quarter = max(1, chargers // 4)
    feeder_a = ids[:quarter]
    feeder_b = ids[quarter : 2 * quarter]
    cable = feeder_b[: max(1, len(feeder_b) // 2)]

    def share(members: Iterable[str], fraction: float) -> int:
        return max(1, round(sum(powers[c] for c in members) * fraction))

    grid = share(ids, 0.3)
    battery_kw = max(1, round(grid * 0.1))
    config: dict[str, Any] = {
        "stationId": f"SOAK_{chargers}",
        "gridCapacity": grid,
        "chargers": [{"id": c, "maxPower": powers[c], "connectors": 2} for c in ids],
        # Three times what it could give over the run: it never empties.
        "battery": {
            "initialCapacity": round(battery_kw * minutes / 60 * 3 + 10),
            "power": battery_kw,
        },
        "groups": [
            {"id": "feeder-A", "maxPower": share(feeder_a, 0.35), "chargers": feeder_a},
            {
                "id": "feeder-B",
                "maxPower": share(feeder_b, 0.4),
                "chargers": [c for c in feeder_b if c not in cable],
                "groups": [{"id": "cable-B1", "maxPower": share(cable, 0.3), "chargers": cable}],
            },
        ],
        "ocpp": {"heartbeatInterval": 60},
    }
    return Station(config, ocpp, rest)


# -- what the clients did -----------------------------------------------------------------------


@dataclass(eq=False)
class OcppStart:
    charger_id: str
    connector_id: int  # OCPP, 1-based
    tx: LocalTransaction
    acked_before_kill: bool = False
    running_at_kill: bool = False


@dataclass(eq=False)
class RestStart:
    charger_id: str
    connector_id: int  # REST, 0-based
    session_id: str | None = None
    acked_by: int = 0  # which controller process answered 201 (1 before the kill, 2 after)
    stop_sent: bool = False  # a stop went out (its answer may have been lost in the kill)
    stop_acked_by: int = 0


@dataclass
class Tally:
    rest_starts_unanswered: int = 0
    rest_recorded_without_ack: int = 0
    rest_stop_already_stopped: int = 0
    disconnects: int = 0
    reboots: int = 0
    recovered: int = 0
    recovered_active: int = 0
    acked_before_kill: int = 0
    checked_session_ids: int = 0
    energy_checked: int = 0
    energy_wrong: int = 0
    never_acknowledged: int = 0
    left_active: int = 0
    kill_exit: int | None = None
    killed_at: float = 0.0
    back_at: float = 0.0
    reconnected_s: float | None = None
    sigterm_exit: int | None = None
    sigterm_s: float = 0.0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class WarningCounter(logging.Handler):
    """Counts the simulators' warnings and errors and keeps the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.name}: {record.getMessage()}")


# -- the run ------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.seed: int = args.seed
        self.rnd = random.Random(self.seed)
        self.station = make_station(args.chargers, args.minutes, self.rnd)
        self.workdir = workdir
        config_path = workdir / "station.json"
        config_path.write_text(json.dumps(self.station.config, indent=1))
        self.ctl = ControllerProcess(workdir, config_path, workdir / "controller.db")
        self.run_s = args.minutes * 60
        self.dwell_s = (
            min(max(self.run_s * 0.03, 3.0), 30.0),
            min(max(self.run_s * 0.25, 10.0), 150.0),
        )
        self.idle_mean_s = sum(self.dwell_s) / 2 / 3
        self.generation = 1
        self.up = asyncio.Event()
        self.ending = asyncio.Event()
        self.finished = asyncio.Event()
        self.cps: dict[str, ChargePoint] = {}
        self.ledger = LimitLedger(self.cps)
        self.ocpp_starts: list[OcppStart] = []
        self.rest_starts: list[RestStart] = []
        self.session_ids: dict[int, str] = {}  # transactionId -> sessionId, seen in polls
        self.held: set[str] = set()
        self.held_since: dict[str, float] = {}
        # Chargers the status still called connected well after their socket had closed.
        self.stale_connected: set[str] = set()
        self.tally = Tally()
        self.rss: dict[str, int | None] = {}
        self.rss_peak = 0
        self.rest_requests = 0
        self.frames = 0
        self.polls_failed = 0
        self.roots_seen: set[float] = set()
        self.loop_lags: list[float] = []
        self.controller_cpu_s = 0.0
        self.load_average = (0.0, 0.0)
        self._links: dict[str, WebSocketLink] = {}
        self._poll_in_flight: float | None = None
        self._tags = 0
        self.http: aiohttp.ClientSession | None = None
        self.warnings = WarningCounter()
        self.started_at = 0.0
        self.load_started_at = 0.0
        self.load_ended_at = 0.0

    # -- helpers --------------------------------------------------------------------------------

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the load phase ends."""
        if seconds > 0 and not self.ending.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ending.wait(), seconds)

    async def idle(self, seconds: float) -> None:
        """Sleep, but wake at once when the run is finished (for the background loops)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished.wait(), seconds)

    def dwell(self, rnd: random.Random) -> float:
        return rnd.uniform(*self.dwell_s)

    def gap(self, rnd: random.Random) -> float:
        return rnd.expovariate(1 / self.idle_mean_s)

    def new_tag(self) -> str:
        self._tags += 1
        return f"SOAK{self._tags:06d}"  # idTag is CiString20

    async def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.http is not None
        self.rest_requests += 1
        try:
            async with self.http.request(method, self.ctl.rest_url + path, json=body) as answer:
                return answer.status, await answer.json()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise RestUnavailable(str(error)) from error

    async def sessions(self) -> list[dict[str, Any]]:
        """Every session the controller knows, active and stopped, in one request. A session
        that stops while the answer is put together can be in both parts: the stopped view,
        which comes last, wins."""
        code, views = await self.rest("GET", "/sessions?limit=100000")
        if code != 200:
            raise RunFailed(f"GET /sessions answered {code}: {views}")
        return list({view["sessionId"]: view for view in views}.values())

    def rss_now(self, label: str) -> None:
        self.rss[label] = self.ctl.rss_kib()

    # -- the whole run --------------------------------------------------------------------------

    async def run(self) -> None:
        self.started_at = time.time()
        self.load_average = (os.getloadavg()[0], 0.0)
        logging.getLogger("simulators").addHandler(self.warnings)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            self.http = http
            await self.ctl.start()
            self.up.set()
            self.rss_now("start (ready)")
            await self.connect_chargers()
            self.rss_now("start (chargers on)")
            self.load_started_at = time.time()
            kill_at = self.load_started_at + self.run_s * self.rnd.uniform(0.35, 0.65)
            try:
                async with asyncio.TaskGroup() as background:
                    background.create_task(self.poll_loop(), name="poll")
                    background.create_task(self.ledger_loop(), name="ledger")
                    background.create_task(self.link_loop(), name="links")
                    background.create_task(self.lag_loop(), name="lag")
                    async with asyncio.TaskGroup() as load:
                        self.start_load(load, kill_at)
                    self.load_ended_at = time.time()
                    await self.drain()
                    self.finished.set()
                self.ledger.advance(time.time())
                await self.final_check()
                self.rss_now("end")
                self.controller_cpu_s += self.ctl.cpu_seconds() or 0.0
                self.load_average = (self.load_average[0], os.getloadavg()[0])
                stopping = time.time()
                self.tally.sigterm_exit = await self.ctl.terminate(SIGTERM_GRACE)
                self.tally.sigterm_s = time.time() - stopping
            finally:
                self.harvest_links(final=True)
                await asyncio.gather(*(cp.stop() for cp in self.cps.values()))
                if self.ctl.rss_kib() is not None:
                    self.ctl.kill()
                    await self.ctl.wait()

    async def connect_chargers(self) -> None:
        for index, (charger_id, kw) in enumerate(self.station.ocpp.items()):
            spec = ChargerSpec(
                charger_id, connectors=2, max_power_w=kw * 1000, meter_interval=METER_INTERVAL
            )
            self.cps[charger_id] = ChargePoint(
                self.ctl.ocpp_url,
                spec,
                clock=SystemClock(),
                seed=self.seed + index,
                reconnect_delay=self.rnd.uniform(0.5, 1.5),
            )
        self.ledger = LimitLedger(self.cps)
        await asyncio.gather(*(cp.start() for cp in self.cps.values()))
        try:
            async with asyncio.timeout(120):
                await asyncio.gather(*(cp.wait_online() for cp in self.cps.values()))
        except TimeoutError:
            offline = [c for c, cp in self.cps.items() if not cp.online]
            raise RunFailed(f"{len(offline)} chargers did not come online: {offline[:5]}") from None

    def start_load(self, load: asyncio.TaskGroup, kill_at: float) -> None:
        spawn: Callable[[Coroutine[Any, Any, None]], object] = load.create_task
        for index, cp in enumerate(self.cps.values()):
            for connector_id in (1, 2):
                rnd = random.Random(self.seed * 7919 + index * 2 + connector_id)
                spawn(self.ocpp_connector(cp, connector_id, rnd))
        for index, charger_id in enumerate(self.station.rest):
            for connector_id in (0, 1):
                rnd = random.Random(self.seed * 104729 + index * 2 + connector_id)
                spawn(self.rest_connector(charger_id, connector_id, rnd))
        spawn(self.chaos(load, random.Random(self.seed + 1)))
        spawn(self.restart_at(kill_at))
        spawn(self.end_load_at(self.load_started_at + self.run_s))

    async def end_load_at(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.time()))
        self.ending.set()

    # -- clients --------------------------------------------------------------------------------

    async def ocpp_connector(self, cp: ChargePoint, connector_id: int, rnd: random.Random) -> None:
        charger_id = cp.spec.charge_point_id
        await self.pause(rnd.uniform(0, 2 * self.idle_mean_s))
        while not self.ending.is_set():
            await cp.plug_in(connector_id)
            tx = await cp.start_transaction(connector_id, self.new_tag())
            self.ocpp_starts.append(OcppStart(charger_id, connector_id, tx))
            timed = self.up.is_set() and cp.online
            self.ledger.transaction_started(charger_id, connector_id, tx, timed=timed)
            await self.pause(self.dwell(rnd))
            await cp.stop_transaction(connector_id)
            self.ledger.transaction_stopped(charger_id, connector_id, tx)
            await cp.unplug(connector_id)
            await self.pause(self.gap(rnd))

    async def rest_connector(self, charger_id: str, connector_id: int, rnd: random.Random) -> None:
        await self.pause(rnd.uniform(0, 2 * self.idle_mean_s))
        while not self.ending.is_set():
            await self.up.wait()
            start = RestStart(charger_id, connector_id)
            self.rest_starts.append(start)
            body = {
                "chargerId": charger_id,
                "connectorId": connector_id,
                "vehicleMaxPower": rnd.choice(VEHICLE_KW),
            }
            try:
                code, answer = await self.rest("POST", "/sessions", body)
            except RestUnavailable:
                self.tally.rest_starts_unanswered += 1
                await self.pause(1.0)
                continue
            if code == 201:
                start.session_id, start.acked_by = answer["sessionId"], self.generation
                await self.pause(self.dwell(rnd))
                await self.rest_stop(start, rnd)
            elif code == 409:
                # Busy with a session we never heard of: a start the controller recorded but
                # whose 201 was lost when it was killed.
                await self.clear_unacknowledged(charger_id, connector_id)
            else:
                self.tally.notes.append(f"POST /sessions answered {code}: {answer}")
            await self.pause(self.gap(rnd))

    async def rest_stop(self, start: RestStart, rnd: random.Random) -> None:
        body = {"consumedEnergy": round(rnd.uniform(1, 60), 3)}
        while True:
            await self.up.wait()
            start.stop_sent = True
            try:
                code, answer = await self.rest("POST", f"/sessions/{start.session_id}/stop", body)
            except RestUnavailable:
                await asyncio.sleep(0.5)
                continue
            if code == 200:
                start.stop_acked_by = self.generation
            elif code == 409:
                # Stopped already: our first stop was recorded, its answer lost in the kill.
                self.tally.rest_stop_already_stopped += 1
                start.stop_acked_by = self.generation
            elif code == 404:
                self.tally.lost.append(f"REST session {start.session_id}: stop answered 404")
            else:
                self.tally.notes.append(f"POST /sessions/{{id}}/stop answered {code}: {answer}")
            return

    async def clear_unacknowledged(self, charger_id: str, connector_id: int) -> None:
        ours = {s.session_id for s in self.rest_starts if s.session_id is not None}
        try:
            _, active = await self.rest("GET", "/sessions?status=active")
            for view in active:
                if (view["chargerId"], view["connectorId"]) != (charger_id, connector_id):
                    continue
                if view["sessionId"] in ours:
                    self.tally.notes.append(
                        f"{charger_id}/{connector_id}: busy with our own session"
                    )
                    return
                self.tally.rest_recorded_without_ack += 1
                await self.rest("POST", f"/sessions/{view['sessionId']}/stop", {})
        except RestUnavailable:
            pass

    async def chaos(self, load: asyncio.TaskGroup, rnd: random.Random) -> None:
        """Chargers drop their connection: most stay away 1-20 s, some reboot at once."""
        rate = max(len(self.cps) / 400, 0.2)  # per second
        ids = sorted(self.cps)
        while True:
            await self.pause(rnd.expovariate(rate))
            if self.ending.is_set():
                return
            charger_id = rnd.choice(ids)
            if charger_id in self.held:
                continue
            cp = self.cps[charger_id]
            if rnd.random() < 0.2:
                self.tally.reboots += 1
                await cp.disconnect(reboot=True)
            else:
                self.tally.disconnects += 1
                self.held.add(charger_id)
                await cp.disconnect(hold=True)
                self.held_since[charger_id] = time.time()
                load.create_task(self.reconnect_later(charger_id, rnd.uniform(1, 20)))

    async def reconnect_later(self, charger_id: str, seconds: float) -> None:
        await self.pause(seconds)
        self.held.discard(charger_id)
        self.held_since.pop(charger_id, None)
        self.cps[charger_id].reconnect()

    # -- the restart ----------------------------------------------------------------------------

    async def restart_at(self, when: float) -> None:
        await self.pause(when - time.time())
        if not self.ending.is_set():
            await self.restart()

    async def restart(self) -> None:
        self.up.clear()
        self.rss_now("before the kill")
        self.controller_cpu_s += self.ctl.cpu_seconds() or 0.0
        self.tally.killed_at = time.time()
        self.ctl.kill()
        self.tally.kill_exit = await self.ctl.wait()
        # Every answer read so far came from the first process: wait until each charger has
        # seen its connection go, then note what had been acknowledged.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                while any(cp.link is not None for cp in self.cps.values()):
                    await asyncio.sleep(0.05)
        for start in self.ocpp_starts:
            start.acked_before_kill = start.tx.transaction_id is not None
            start.running_at_kill = start.tx.stopped_at is None
        self.generation = 2
        await asyncio.sleep(self.rnd.uniform(1.0, 4.0))  # down: chargers queue their messages
        await self.ctl.start()
        self.tally.back_at = time.time()
        self.rss_now("after the restart")
        await self.check_recovery()
        for charger_id, cp in self.cps.items():
            cp.url = f"{self.ctl.ocpp_url}/{quote(charger_id, safe='')}"
        self.up.set()
        try:
            async with asyncio.timeout(120):
                while not all(cp.online for c, cp in self.cps.items() if c not in self.held):
                    await asyncio.sleep(0.05)
            self.tally.reconnected_s = time.time() - self.tally.back_at
        except TimeoutError:
            self.tally.notes.append("chargers still offline 120 s after the restart")

    async def check_recovery(self) -> None:
        """Before any charger is back: every session acknowledged before the kill is there,
        with the same ids, in the state its client left it in."""
        views = await self.sessions()
        by_tx: dict[int, list[dict[str, Any]]] = {}
        for view in views:
            if view["transactionId"] is not None:
                by_tx.setdefault(view["transactionId"], []).append(view)
        by_sid: dict[str, dict[str, Any]] = {v["sessionId"]: v for v in views}
        for start in self.ocpp_starts:
            if not start.acked_before_kill:
                continue
            self.tally.acked_before_kill += 1
            tx_id = start.tx.transaction_id
            assert tx_id is not None
            found = by_tx.get(tx_id, [])
            problem = self.ocpp_mismatch(start, found)
            if problem is None and tx_id in self.session_ids:
                self.tally.checked_session_ids += 1
                if found[0]["sessionId"] != self.session_ids[tx_id]:
                    problem = f"sessionId {found[0]['sessionId']} was {self.session_ids[tx_id]}"
            if problem is None and start.running_at_kill and found[0]["status"] != "active":
                problem = "stopped although its charger still runs it"
            if problem is not None:
                self.tally.lost.append(f"after the restart, transaction {tx_id}: {problem}")
                continue
            self.tally.recovered += 1
            self.tally.recovered_active += start.running_at_kill
        for rest in self.rest_starts:
            if rest.acked_by != 1:
                continue
            self.tally.acked_before_kill += 1
            rest_view = by_sid.get(rest.session_id or "")
            problem = self.rest_mismatch(rest, rest_view)
            if problem is None and rest_view is not None:
                stopped = rest_view["status"] == "stopped"
                if rest.stop_acked_by == 1 and not stopped:
                    problem = "active although its stop was acknowledged"
                elif not rest.stop_sent and stopped:
                    problem = "stopped although nobody stopped it"
            if problem is not None:
                self.tally.lost.append(f"after the restart, {rest.session_id}: {problem}")
                continue
            self.tally.recovered += 1
            self.tally.recovered_active += not rest.stop_acked_by
        for tx_id, found in by_tx.items():
            if len(found) > 1:
                self.tally.duplicated.append(
                    f"after the restart, {len(found)} sessions for {tx_id}"
                )

    @staticmethod
    def ocpp_mismatch(start: OcppStart, found: list[dict[str, Any]]) -> str | None:
        if not found:
            return "missing"
        if len(found) > 1:
            return None  # counted as duplicated
        view = found[0]
        where = (view["chargerId"], view["connectorId"] + 1)
        if where != (start.charger_id, start.connector_id):
            return f"on {where}, started on {(start.charger_id, start.connector_id)}"
        return None

    @staticmethod
    def rest_mismatch(start: RestStart, view: dict[str, Any] | None) -> str | None:
        if view is None:
            return "missing"
        where = (view["chargerId"], view["connectorId"])
        if where != (start.charger_id, start.connector_id):
            return f"on {where}, started on {(start.charger_id, start.connector_id)}"
        return None

    # -- background loops -----------------------------------------------------------------------

    async def poll_loop(self) -> None:
        while not self.finished.is_set():
            await self.up.wait()
            sent = time.time()
            self._poll_in_flight = sent
            try:
                code, status = await self.rest("GET", "/station/status")
            except RestUnavailable:
                self.polls_failed += 1
                self._poll_in_flight = None
                await self.idle(0.2)
                continue
            answered = time.time()
            self._poll_in_flight = None
            if code != 200:
                raise RunFailed(f"GET /station/status answered {code}: {status}")
            rest_kw = sum(s["allocatedPower"] for s in status["sessions"] if s["origin"] == "rest")
            root = float(status["availablePower"])
            self.roots_seen.add(root)
            self.ledger.poll(sent, answered, rest_kw, root)
            for session in status["sessions"]:
                tx_id = session["transactionId"]
                if tx_id is not None:
                    self.session_ids.setdefault(tx_id, session["sessionId"])
            self.rss_peak = max(self.rss_peak, self.ctl.rss_kib() or 0)
            for charger in status["chargers"]:
                since = self.held_since.get(charger["id"])
                if charger["connected"] and since is not None and sent - since > STALE_AFTER:
                    self.stale_connected.add(charger["id"])
            await self.idle(POLL_INTERVAL)

    def watermark(self) -> float:
        mark = time.time() - LEDGER_LAG
        if self._poll_in_flight is not None:
            mark = min(mark, self._poll_in_flight - 1e-3)
        return mark

    async def ledger_loop(self) -> None:
        while not self.finished.is_set():
            await self.idle(1.0)
            self.ledger.advance(self.watermark())

    async def lag_loop(self) -> None:
        """How late this process's event loop wakes up: every time the chargers record (a
        profile's arrival, a sample) is late by about as much."""
        loop = asyncio.get_running_loop()
        while not self.finished.is_set():
            expected = loop.time() + LAG_PROBE
            await asyncio.sleep(LAG_PROBE)
            self.loop_lags.append(max(0.0, loop.time() - expected))

    async def link_loop(self) -> None:
        while not self.finished.is_set():
            self.harvest_links()
            await self.idle(0.2)

    def harvest_links(self, final: bool = False) -> None:
        """Frames of connections that ended (and at the end, of every connection)."""
        for charger_id, cp in self.cps.items():
            link, known = cp.link, self._links.get(charger_id)
            if known is not None and (known is not link or final):
                self.frames += known.stats["sent"] + known.stats["received"]
                del self._links[charger_id]
            if link is not None and not final:
                self._links[charger_id] = link

    # -- the end --------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Load over: chargers back online and every transaction message delivered."""
        for charger_id in list(self.held):
            self.held.discard(charger_id)
            self.cps[charger_id].reconnect()
        try:
            async with asyncio.timeout(180):
                await asyncio.gather(*(cp.wait_online() for cp in self.cps.values()))
                await asyncio.gather(*(cp.wait_delivered() for cp in self.cps.values()))
        except TimeoutError:
            waiting = {c: cp.pending_messages for c, cp in self.cps.items() if cp.pending_messages}
            self.tally.notes.append(f"undelivered after 180 s: {waiting}")
        await asyncio.sleep(LEDGER_LAG + 1)  # the last profiles and polls

    async def final_check(self) -> None:
        views = await self.sessions()
        by_tx: dict[int, list[dict[str, Any]]] = {}
        for view in views:
            if view["transactionId"] is not None:
                by_tx.setdefault(view["transactionId"], []).append(view)
        by_sid = {view["sessionId"]: view for view in views}
        acked: Counter[int] = Counter()
        for start in self.ocpp_starts:
            tx = start.tx
            if tx.transaction_id is None:
                self.tally.never_acknowledged += 1
                continue
            acked[tx.transaction_id] += 1
            found = by_tx.get(tx.transaction_id, [])
            problem = self.ocpp_mismatch(start, found)
            if problem is None and len(found) == 1:
                view = found[0]
                if view["status"] != "stopped":
                    problem = "still active after its StopTransaction was delivered"
                elif tx.meter_stop is not None:
                    self.tally.energy_checked += 1
                    expected = (tx.meter_stop - tx.meter_start) / 1000
                    if abs(float(view["consumedEnergy"]) - expected) > ENERGY_TOLERANCE_KWH:
                        self.tally.energy_wrong += 1
                        if self.tally.energy_wrong <= 5:
                            self.tally.notes.append(
                                f"transaction {tx.transaction_id}: consumedEnergy "
                                f"{view['consumedEnergy']} kWh, meters say {expected} kWh"
                            )
            if problem is not None:
                self.tally.lost.append(f"at the end, transaction {tx.transaction_id}: {problem}")
        for tx_id, count in acked.items():
            if count > 1:
                self.tally.duplicated.append(f"transactionId {tx_id} given to {count} transactions")
        for tx_id, found in by_tx.items():
            if len(found) > 1:
                self.tally.duplicated.append(f"{len(found)} sessions with transactionId {tx_id}")
            elif tx_id not in acked and found[0]["origin"] == "ocpp":
                self.tally.duplicated.append(
                    f"session {found[0]['sessionId']} (transactionId {tx_id}) that no charger "
                    "transaction was given"
                )
        ours: set[str] = set()
        for rest in self.rest_starts:
            if rest.session_id is None:
                continue
            ours.add(rest.session_id)
            rest_view = by_sid.get(rest.session_id)
            problem = self.rest_mismatch(rest, rest_view)
            if problem is None and rest_view is not None and rest_view["status"] != "stopped":
                problem = "active although its stop was acknowledged"
            if problem is not None:
                self.tally.lost.append(f"at the end, {rest.session_id}: {problem}")
        for view in views:
            if view["origin"] == "rest" and view["sessionId"] not in ours:
                if view["status"] == "active":
                    self.tally.rest_recorded_without_ack += 1
                    await self.rest("POST", f"/sessions/{view['sessionId']}/stop", {})
            elif view["status"] == "active":
                self.tally.left_active += 1


# -- the report ---------------------------------------------------------------------------------


def mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def n(value: float) -> str:
    return f"{value:,.0f}"


def mb(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.0f} MB"


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """Median, 99th percentile and maximum (zeros when there is nothing)."""
    if not values:
        return 0.0, 0.0, 0.0
    ordered = sorted(values)
    return (
        ordered[len(ordered) // 2],
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        ordered[-1],
    )


Row = tuple[str, str, str]  # figure, value, detail


def figures(soak: Soak) -> list[Row]:
    tally, ledger, station = soak.tally, soak.ledger, soak.station
    ocpp_acked = sum(s.tx.transaction_id is not None for s in soak.ocpp_starts)
    rest_acked = sum(s.session_id is not None for s in soak.rest_starts)
    total_s = time.time() - soak.started_at
    unanswered_at_kill = [s for s in soak.ocpp_starts if not s.acked_before_kill]
    before_kill = [s.tx.started_at < tally.killed_at for s in unanswered_at_kill]
    during_downtime = [
        tally.killed_at <= s.tx.started_at < tally.back_at for s in unanswered_at_kill
    ]
    rows: list[Row] = [
        (
            "sessions started",
            n(len(soak.ocpp_starts) + len(soak.rest_starts)),
            f"OCPP transactions {n(len(soak.ocpp_starts))}"
            f" + REST starts {n(len(soak.rest_starts))}",
        ),
        (
            "acknowledged",
            n(ocpp_acked + rest_acked),
            f"StartTransaction.conf {n(ocpp_acked)} + REST 201 {n(rest_acked)}"
            f"; REST starts unanswered (in flight at the kill) {tally.rest_starts_unanswered}",
        ),
        (
            "recovered after the restart",
            n(tally.recovered),
            f"of {n(tally.acked_before_kill)} acknowledged before the kill "
            f"({n(tally.recovered_active)} active, the rest history); "
            f"sessionId also compared for {n(tally.checked_session_ids)}",
        ),
        (
            "answered only by the new process",
            n(sum(before_kill) + sum(during_downtime)),
            f"StartTransactions from the chargers' queues: {n(sum(before_kill))} begun before "
            f"the kill and not answered by then, {n(sum(during_downtime))} begun while the "
            "controller was down",
        ),
        ("lost", n(len(tally.lost)), "acknowledged, then missing or wrong (must be 0)"),
        (
            "duplicated",
            n(len(tally.duplicated)),
            "sessions recorded twice or transactionIds given twice (must be 0)",
        ),
    ]
    highest, worst = ledger.highest(), ledger.worst()
    if highest is not None and worst is not None:
        rows.append(
            (
                "highest sum of limits / root limit",
                f"{n(highest.total_kw)} / {n(highest.root_kw)} kW",
                f"chargers' TxProfiles {n(highest.chargers_kw)} + REST {n(highest.rest_kw)}; "
                f"over the root in {len(ledger.exceeded())} of {n(len(ledger.verdicts))} polls"
                f" (closest: {worst.total_kw - worst.root_kw:+,.0f} kW)",
            )
        )
    rows += [
        (
            "root limit",
            f"{n(station.root_kw)} kW",
            f"grid {n(station.grid_kw)} + battery {n(station.battery_kw)}; availablePower polled: "
            + ", ".join(n(r) for r in sorted(soak.roots_seen)),
        ),
        (
            "chargers' TxProfiles alone, peak",
            f"{n(ledger.highest_sum_kw)} kW",
            f"at any instant, at {mmss(ledger.highest_sum_at - soak.load_started_at)}",
        ),
    ]
    waits = ledger.wait_quantiles()
    if waits is not None:
        rows.append(
            (
                "start -> first TxProfile accepted",
                f"{waits[0] * 1000:,.0f} ms",
                f"median; p99 {waits[1] * 1000:,.0f} ms, max {waits[2]:,.1f} s (started with "
                f"charger and controller up); at most {ledger.on_failsafe_most} transactions on "
                "the failsafe default at once",
            )
        )
    lag = quantiles(soak.loop_lags)
    load_s = soak.load_ended_at - soak.load_started_at
    stop = "killed" if tally.sigterm_exit is None else f"exit {tally.sigterm_exit}"
    rows += [
        (
            "TxProfiles accepted / refused",
            f"{n(ledger.tx_profiles_accepted)} / "
            f"{n(ledger.refused_id_unknown + ledger.refused_ended)}",
            f"refused: {n(ledger.refused_id_unknown)} arrived before the StartTransaction.conf "
            f"(id unknown to the charger), {n(ledger.refused_ended)} for a transaction already "
            f"ended; failsafe defaults installed {n(ledger.default_profiles)}"
            + (f"; unmatched {ledger.unmatched_profiles}" if ledger.unmatched_profiles else ""),
        ),
        (
            "stopped sessions' energy",
            f"{n(tally.energy_checked - tally.energy_wrong)} / {n(tally.energy_checked)}",
            "OCPP sessions whose consumedEnergy is meterStop - meterStart",
        ),
        (
            "charger disconnects",
            n(tally.disconnects + tally.reboots),
            f"{tally.disconnects} away 1-20 s, {tally.reboots} reboots",
        ),
        (
            "controller restart",
            f"at {mmss(tally.killed_at - soak.load_started_at)}",
            f"SIGKILL (exit {tally.kill_exit}), serving again after "
            f"{tally.back_at - tally.killed_at:.1f} s, chargers back in "
            + ("-" if tally.reconnected_s is None else f"{tally.reconnected_s:.1f} s"),
        ),
        (
            "controller memory (VmRSS)",
            f"{mb(soak.rss.get('start (ready)'))} -> {mb(soak.rss.get('end'))}",
            "; ".join(f"{k} {mb(v)}" for k, v in soak.rss.items()) + f"; peak {mb(soak.rss_peak)}",
        ),
        (
            "messages exchanged",
            n(soak.frames + 2 * soak.rest_requests),
            f"OCPP frames {n(soak.frames)} (charger side, both ways, "
            f"{soak.frames / max(total_s, 1):,.0f}/s) + REST {n(soak.rest_requests)} requests "
            "and their answers",
        ),
        (
            "CPU",
            f"{n(soak.controller_cpu_s)} s controller",
            f"{soak.controller_cpu_s / max(total_s, 1):.0%} of a core over the run; this "
            f"process {n(sum(os.times()[:2]))} s; load average {soak.load_average[0]:.1f} at "
            f"the start, {soak.load_average[1]:.1f} at the end (2 cores, shared)",
        ),
        (
            "client event loop lag",
            f"{lag[0] * 1000:,.0f} ms",
            f"median; p99 {lag[1] * 1000:,.0f} ms, max {lag[2] * 1000:,.0f} ms (the chargers' "
            "timings are late by as much)",
        ),
        (
            "run duration",
            f"{total_s / 60:.1f} min",
            f"load {load_s / 60:.1f} min, then delivery of every queued message and the checks",
        ),
        (
            "controller stop (SIGTERM)",
            stop,
            f"after {tally.sigterm_s:.1f} s"
            + (f" (no exit within {SIGTERM_GRACE:.0f} s: SIGKILL)" if stop == "killed" else ""),
        ),
    ]
    return rows


def problems(soak: Soak) -> list[str]:
    """What makes the run fail."""
    tally = soak.tally
    found = [*tally.lost, *tally.duplicated]
    found += [
        f"over the root limit at {mmss(v.at - soak.load_started_at)}: TxProfiles "
        f"{v.chargers_kw:,.1f} + REST {v.rest_kw:,.0f} > {v.root_kw:,.0f} kW"
        for v in soak.ledger.exceeded()
    ]
    if tally.energy_wrong:
        found.append(f"{tally.energy_wrong} stopped sessions with the wrong energy")
    return found


def notes(soak: Soak) -> list[str]:
    """What is worth knowing but does not fail the run."""
    tally, ledger = soak.tally, soak.ledger
    found = list(tally.notes)
    if tally.never_acknowledged:
        found.append(f"{tally.never_acknowledged} charger transactions never got a transactionId")
    if tally.rest_recorded_without_ack:
        found.append(
            f"{tally.rest_recorded_without_ack} REST sessions recorded whose 201 never arrived "
            "(committed just before the kill): stopped by the soak"
        )
    if tally.rest_stop_already_stopped:
        found.append(f"{tally.rest_stop_already_stopped} REST stops answered 409 already stopped")
    if tally.left_active:
        found.append(f"{tally.left_active} sessions still active at the end")
    if ledger.late_events:
        found.append(f"{ledger.late_events} ledger events recorded late")
    if soak.warnings.count:
        found.append(
            f"{soak.warnings.count} simulator warnings, first: " + " | ".join(soak.warnings.first)
        )
    if soak.stale_connected:
        found.append(
            f"{len(soak.stale_connected)} chargers still shown connected more than "
            f"{STALE_AFTER:.0f} s after their socket closed: {sorted(soak.stale_connected)[:8]}"
        )
    replaced = soak.ctl.log_count("new connection replaces the previous one")
    if replaced:
        found.append(f"{replaced} reconnections found the charger's previous connection open")
    errors = soak.ctl.log_errors()
    if errors:
        found.append(f"{len(errors)} ERROR lines in the controller log, first: {errors[0]}")
    if soak.polls_failed:
        found.append(f"{soak.polls_failed} status polls unanswered (the controller was down)")
    if tally.sigterm_exit is None:
        found.append(
            f"the controller did not exit within {SIGTERM_GRACE:.0f} s of SIGTERM; its log ends "
            f"with: {soak.ctl.last_log_line()}"
        )
    return found


def keep_files(soak: Soak, failures: list[str]) -> bool:
    """The database and the controller's log are kept when there is something to look into."""
    hung = soak.tally.sigterm_exit is None
    return bool(failures or soak.args.keep or soak.ctl.log_errors() or hung)


def report(soak: Soak) -> int:
    station, config = soak.station, soak.station.config
    print(
        f"soak: {len(config['chargers'])} chargers ({len(station.ocpp)} OCPP, "
        f"{len(station.rest)} REST), {2 * len(config['chargers'])} connectors, "
        f"grid {n(station.grid_kw)} kW, battery {n(station.battery_kw)} kW / "
        f"{n(config['battery']['initialCapacity'])} kWh, groups feeder-A, feeder-B > cable-B1; "
        f"seed {soak.seed}"
    )
    rows = figures(soak)
    label_w = max(len(r[0]) for r in rows)
    value_w = max(len(r[1]) for r in rows)
    print(f"{'figure':{label_w}}  {'value':>{value_w}}  detail")
    print(f"{'-' * label_w}  {'-' * value_w}  {'-' * 40}")
    for label, value, detail in rows:
        print(f"{label:{label_w}}  {value:>{value_w}}  {detail}")
    failures = problems(soak)
    for line in failures[:20]:
        print(f"PROBLEM: {line}")
    for line in notes(soak):
        print(f"note: {line}")
    kept = f" (files in {soak.workdir})" if keep_files(soak, failures) else ""
    print(f"result: {'FAILED' if failures else 'ok'}{kept}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="load phase (default 10)")
    parser.add_argument("--chargers", type=int, default=200, help="chargers (default 200)")
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(3), "big"))
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    args = parser.parse_args()
    if args.chargers < 4 or args.minutes <= 0:
        parser.error("at least 4 chargers and a positive duration")
    folder = tempfile.mkdtemp(prefix="soak-")
    soak = Soak(args, Path(folder))
    try:
        asyncio.run(soak.run())
    except (RunFailed, StartFailed) as error:
        print(f"soak: the run could not be carried out: {error} (files in {folder})")
        return 2
    status = report(soak)
    if not keep_files(soak, problems(soak)):
        shutil.rmtree(folder)
    return status


if __name__ == "__main__":
    sys.exit(main())
