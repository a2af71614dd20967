"""``ev-sim --url``: the same chargers and vehicles against a controller that runs on its own,
in real time. The day is a few seconds long; nothing here depends on how long anything takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.app import ControllerApp
from controller.config import config_from_dict
from controller.repository import Repository
from simulators.report import build_report
from simulators.runner import RunError, run_day
from simulators.scenarios import parse_scenario

STATION = {
    "stationId": "REMOTE",
    "gridCapacity": 50,
    "chargers": [{"id": "CP1", "maxPower": 50, "connectors": 2}],
    "battery": {"initialCapacity": 10, "power": 20},
}


async def test_a_running_controller_is_driven_in_real_time(tmp_path: Path) -> None:
    scenario = parse_scenario(
        json.dumps(
            {
                "name": "remote",
                "durationHours": 3 / 3600,
                "meterInterval": 1,
                "station": STATION,
                "arrivals": [
                    {
                        "arrival": 0.2,
                        "departure": 2.5,
                        "batteryKwh": 40,
                        "soc": 0.5,
                        "maxPowerKw": 40,
                    },
                    {
                        "arrival": 0.4,
                        "departure": 2.5,
                        "batteryKwh": 40,
                        "soc": 0.5,
                        "maxPowerKw": 40,
                    },
                ],
            }
        )
    )
    app = ControllerApp(scenario.station, rest_port=0, ocpp_port=0, db_path=tmp_path / "c.db")
    await app.start()
    try:
        url = f"ws://127.0.0.1:{app.ocpp_port}/ocpp"
        record = await run_day(scenario, url=url)
    finally:
        await app.stop()
    assert record.mode == "realtime"
    assert record.problems == []
    sessions = [s for s in record.sessions if s.plugged]
    assert len(sessions) == 2
    for session in sessions:
        assert session.meter_kwh is not None and session.meter_kwh > 0
        assert session.controller_kwh is None  # a remote controller is seen only via chargers
        stopped = Repository(tmp_path / "c.db").session_by_transaction(session.transaction_id or -1)
        assert stopped is not None and stopped.consumed_energy == session.meter_kwh
    report = build_report(record)
    assert report["profilesSent"] >= 2  # the failsafe default, then the sessions' limits
    assert report["battery"]["initialCapacityKwh"] == 10


async def test_a_running_controller_with_another_station_is_refused(tmp_path: Path) -> None:
    scenario = parse_scenario(
        json.dumps(
            {
                "name": "remote",
                "durationHours": 1,
                "station": STATION,
                "arrivals": [
                    {"arrival": 1, "departure": 2, "batteryKwh": 40, "soc": 0.5, "maxPowerKw": 9}
                ],
            }
        )
    )
    one_connector = [{"id": "CP1", "maxPower": 50, "connectors": 1}]
    other = config_from_dict({**STATION, "gridCapacity": 40, "chargers": one_connector})
    app = ControllerApp(other, rest_port=0, ocpp_port=0, db_path=tmp_path / "c.db")
    await app.start()
    try:
        with pytest.raises(RunError) as refused:
            await run_day(
                scenario,
                url=f"ws://127.0.0.1:{app.ocpp_port}/ocpp",
                rest_url=f"http://127.0.0.1:{app.rest_port}",
            )
    finally:
        await app.stop()
    assert str(refused.value) == (
        "the running controller's station is not the scenario's: gridCapacity 40 (scenario: 50); "
        "charger CP1: 50 kW, 1 connector(s) (scenario: 50 kW, 2 connector(s))"
    )
