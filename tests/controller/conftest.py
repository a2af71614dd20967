from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.app import ControllerApp
from controller.config import StationConfig, config_from_dict
from shell.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]


def example_config(**changes: Any) -> StationConfig:
    data = json.loads((ROOT / "config.json").read_text())
    data.update(changes)
    return config_from_dict(data)


def ac_station(count: int, grid_current: float, **extra: Any) -> dict[str, Any]:
    """``count`` 22 kW 3-phase AC chargers AC0, AC1, ... (docs/electrical.md) on
    ``grid_current`` A per site phase: 6 A per car fit ``grid_current / 6`` of them."""
    return {
        "stationId": "amps",
        "gridCapacity": 100,
        "gridCurrentLimit": grid_current,
        "chargers": [
            {"id": f"AC{i}", "maxPower": 22, "connectors": 1, "electrical": {"kind": "AC"}}
            for i in range(count)
        ],
        **extra,
    }


def many_chargers(count: int, *, grid: float) -> dict[str, Any]:
    """A station of ``count`` single-connector 22 kW chargers C000, C001, ..."""
    return {
        "stationId": "MANY",
        "gridCapacity": grid,
        "chargers": [{"id": f"C{i:03d}", "maxPower": 22, "connectors": 1} for i in range(count)],
    }


class Api:
    """A real HTTP client against the controller's real REST server."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def request(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        # As a real client must: a body of another type is refused with 415.
        headers = {} if data is None else {"Content-Type": "application/json"}
        async with self.http.request(
            method, self.base + path, data=data, headers=headers
        ) as response:
            text = await response.text()
            assert response.content_type == "application/json", text
            return response.status, json.loads(text)

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.request("GET", path)

    async def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        return await self.request("POST", path, body, raw=raw)

    async def status(self) -> dict[str, Any]:
        code, body = await self.get("/station/status")
        assert code == 200
        check_status_invariants(body)
        status: dict[str, Any] = body
        return status


def check_status_invariants(status: dict[str, Any]) -> None:
    """Spec section 5: caps, charger sums and the total all hold at every call."""
    chargers = {c["id"]: c for c in status["chargers"]}
    per_charger: dict[str, int] = {}
    for session in status["sessions"]:
        cap = session["vehicleMaxPower"]
        if cap is not None:
            assert session["allocatedPower"] <= cap
        per_charger[session["chargerId"]] = (
            per_charger.get(session["chargerId"], 0) + session["allocatedPower"]
        )
    for charger_id, total in per_charger.items():
        assert total <= chargers[charger_id]["maxPower"]
        assert total == chargers[charger_id]["allocatedPower"]
    assert status["allocatedPower"] == sum(s["allocatedPower"] for s in status["sessions"])
    assert status["allocatedPower"] <= status["availablePower"]


ApiFactory = Callable[..., Any]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "controller.db"


@pytest.fixture
async def start_api(start_controller: Callable[..., Any]) -> AsyncIterator[Callable[..., Any]]:
    """Start the controller and hand back a real HTTP client for its REST API."""
    sessions: list[aiohttp.ClientSession] = []

    async def start(config: StationConfig | None = None) -> Api:
        app: ControllerApp = await start_controller(config)
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Api(http, f"http://127.0.0.1:{app.rest_port}")

    yield start
    for http in sessions:
        await http.close()


@pytest.fixture
async def api(start_api: Callable[..., Any]) -> Api:
    result: Api = await start_api()
    return result


@pytest.fixture
async def start_controller(clock: ManualClock, db_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start the whole controller (REST + OCPP) on free loopback ports, on a SQLite file
    in the test's tmp_path (the same file for every start within one test: a restart);
    keyword arguments go to ControllerApp."""
    apps: list[ControllerApp] = []

    async def start(config: StationConfig | None = None, **options: Any) -> ControllerApp:
        app = ControllerApp(
            config or example_config(),
            clock=clock,
            host="127.0.0.1",
            rest_port=0,
            ocpp_port=0,
            db_path=db_path,
            **options,
        )
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


async def run_timers_until(
    app: ControllerApp, clock: ManualClock, predicate: Callable[[], bool], *, steps: int = 100
) -> None:
    """Jump the manual clock from one timer to the next (call timeouts, retries, the
    battery) until ``predicate`` holds, each time waiting for the controller to act on what
    came due (it sets a new timer, or the predicate holds). Only for peers that never
    answer: a jump past a call's deadline times out an answer still in transit."""
    for _ in range(steps):
        if predicate():
            return
        wakeup = clock.next_wakeup()

        def moved(wakeup: float | None = wakeup) -> bool:
            return predicate() or clock.next_wakeup() != wakeup

        if wakeup is not None:
            clock.set(max(wakeup, clock.now()))
        await asyncio.wait_for(app.wait_until(moved), 10)
    raise AssertionError("the condition did not come true")


def ocpp_url(app: ControllerApp) -> str:
    return f"ws://127.0.0.1:{app.ocpp_port}/ocpp"
