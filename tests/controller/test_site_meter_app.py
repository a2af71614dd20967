"""The whole controller reading a real Modbus TCP meter on loopback (docs/site.md): the budget
follows a load step up at once and a step down after the hold time, solar export raises it,
a silent meter falls back and a returning one restores it, and a meter that cannot be read
at start-up (unreachable, or the wrong register map) never stops the controller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controller.app import ControllerApp
from controller.config import config_from_dict
from controller.core.site import MeterState
from shell.clock import ManualClock
from simulators.site_meter import SiteMeterServer

WAIT = 10.0  # seconds of real time any one step may take: a bound, never a pace


def station(port: int, **meter: Any) -> dict[str, Any]:
    return {
        "stationId": "OFFICE",
        "gridCapacity": 250,
        "chargers": [{"id": f"CP{i}", "maxPower": 100, "connectors": 1} for i in (1, 2, 3)],
        "site": {
            "meter": {
                "type": "modbus",
                "host": "127.0.0.1",
                "port": port,
                "interval": 1,
                "model": "eastron-sdm630",
                **meter,
            },
            "margin": 5,
            "holdSeconds": 10,
            "meterTimeout": 5,
            "fallbackPower": 60,
        },
    }


@pytest.fixture
async def meter() -> AsyncIterator[SiteMeterServer]:
    server = SiteMeterServer("eastron-sdm630")
    await server.start()
    yield server
    await server.stop()


async def until(app: ControllerApp, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        await app.wait_until(predicate)


async def polled(app: ControllerApp, count: int) -> None:
    reader = app.site_meter
    assert reader is not None
    async with asyncio.timeout(WAIT):
        await reader.polled(count)


async def tick(app: ControllerApp, clock: ManualClock) -> None:
    """Move the station's clock on by the meter's interval; the poll that falls due goes out
    for real and is over (its reading handled, or its failure logged) before this returns,
    so that the next tick finds the reader waiting for it."""
    reader = app.site_meter
    assert reader is not None
    polls = reader.polls
    clock.advance(1)
    await polled(app, polls + 1)


async def test_the_budget_follows_the_meter(
    start_controller: Callable[..., Any], clock: ManualClock, meter: SiteMeterServer
) -> None:
    meter.set(40, (60.0, 58.0, 61.0))
    app: ControllerApp = await start_controller(config_from_dict(station(meter.port)))
    await polled(app, 1)
    # The reallocation follows the reading within milliseconds.
    await until(app, lambda: app.core.available_power == 205)  # 250 - 40 - 5
    site = app.core.site
    assert site is not None and site.last is not None
    assert site.last.currents == pytest.approx((60.0, 58.0, 61.0))
    meter.set(100)  # the building steps up: lowered at the next reading
    await tick(app, clock)
    await until(app, lambda: app.core.available_power == 145)
    meter.set(40)  # and down: raised only once the hold time is over
    await tick(app, clock)
    assert app.core.available_power == 145
    for _ in range(9):
        await tick(app, clock)
    await until(app, lambda: app.core.available_power == 205)
    meter.set(-60)  # the roof exports: more than the connection, after the hold time
    for _ in range(11):
        await tick(app, clock)
    await until(app, lambda: app.core.available_power == 305)  # 250 + 60 - 5


async def test_a_silent_meter_falls_back_and_its_return_restores_the_budget(
    start_controller: Callable[..., Any],
    clock: ManualClock,
    meter: SiteMeterServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter.set(40)
    app: ControllerApp = await start_controller(config_from_dict(station(meter.port)))
    await polled(app, 1)
    await until(app, lambda: app.core.meter_state is MeterState.OK)
    await meter.stop()
    caplog.set_level(logging.INFO)
    for _ in range(6):  # polls fail: nothing is read, the controller goes on
        await tick(app, clock)
    await until(app, lambda: app.core.available_power == 60)
    assert app.core.meter_state is MeterState.STALE
    assert "no reading for 5 s; the charging budget falls to 60 kW" in caplog.text
    await meter.start()
    await tick(app, clock)
    await until(app, lambda: app.core.available_power == 205)


async def test_an_unreachable_meter_at_start_up_leaves_the_fallback(
    start_controller: Callable[..., Any], clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    silent = SiteMeterServer("eastron-sdm630")
    await silent.start()
    port = silent.port
    await silent.stop()  # a port nothing listens on
    caplog.set_level(logging.INFO)
    app: ControllerApp = await start_controller(config_from_dict(station(port)))
    assert app.status()["siteMeter"] == {
        "state": "stale",
        "lastReading": None,
        "lastReadingAt": None,
        "currents": None,
        "nonChargingCurrents": None,
        "nonChargingLoad": None,
        "gridShare": 60,
    }
    assert f"site meter: Modbus TCP 127.0.0.1:{port} unit 1, eastron-sdm630" in caplog.text
    await until(app, lambda: f"site meter 127.0.0.1:{port}" in caplog.text)
    assert app.status()["availablePower"] == 60


async def test_the_wrong_register_map_is_logged_and_leaves_the_fallback(
    start_controller: Callable[..., Any], meter: SiteMeterServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An SDM630 (input registers) read as if its power were a holding register."""
    caplog.set_level(logging.INFO)
    wrong = {"registers": {"power": {"address": 52, "table": "holding"}}}
    data = station(meter.port, **wrong)
    del data["site"]["meter"]["model"]
    app: ControllerApp = await start_controller(config_from_dict(data))
    await until(app, lambda: "site meter 127.0.0.1" in caplog.text)
    assert app.core.meter_state is MeterState.STALE
    assert app.status()["availablePower"] == 60
