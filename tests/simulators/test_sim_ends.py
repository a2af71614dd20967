"""The in-process controller end: stopping it survives a battery timer that missed its cancel."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from controller.config import config_from_dict
from simulators import ends
from simulators.clock import VirtualClock
from simulators.ends import LocalController

STATION = {
    "stationId": "ENDS",
    "gridCapacity": 50,
    "chargers": [{"id": "CP1", "maxPower": 50, "connectors": 1}],
    "battery": {"initialCapacity": 10, "power": 20},
}


class StubbornApp:
    """Stops like ControllerApp: cancels its battery timer and waits for it. The timer swallows
    the first cancellation, as asyncio.wait_for() does on Python 3.11 when the event it waits
    for is set at that moment."""

    def __init__(self) -> None:
        self.timer = asyncio.create_task(self._timer(), name=ends.BATTERY_TASK)
        self.swallowed = 0

    async def _timer(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.swallowed += 1
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.timer


async def test_stop_cancels_a_battery_timer_that_missed_its_cancellation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ends, "STOP_GRACE", 0.01)
    local = LocalController(config_from_dict(STATION), VirtualClock(), tmp_path)
    app = StubbornApp()
    local.app = app  # type: ignore[assignment]
    async with asyncio.timeout(10):
        await local.stop()
    assert app.swallowed == 1
    assert app.timer.cancelled()


async def test_the_real_controller_starts_and_stops(tmp_path: Path) -> None:
    local = LocalController(config_from_dict(STATION), VirtualClock(), tmp_path)
    await local.start()
    assert local.url.startswith("ws://127.0.0.1:") and local.url.endswith("/ocpp")
    await local.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == ends.BATTERY_TASK]
