"""The in-process controller end starts on port 0 and stops with every task it started."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.config import config_from_dict
from shell.clock import ManualClock
from simulators.ends import LocalController

STATION = {
    "stationId": "ENDS",
    "gridCapacity": 50,
    "chargers": [{"id": "CP1", "maxPower": 50, "connectors": 1}],
    "battery": {"initialCapacity": 10, "power": 20},
}


async def test_the_real_controller_starts_and_stops(tmp_path: Path) -> None:
    local = LocalController(config_from_dict(STATION), ManualClock(), tmp_path)
    await local.start()
    assert local.url.startswith("ws://127.0.0.1:") and local.url.endswith("/ocpp")
    await local.stop()
    assert asyncio.all_tasks() == {asyncio.current_task()}
