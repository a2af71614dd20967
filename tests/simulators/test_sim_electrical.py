"""Scenarios with the electrical model: AC vehicles and chargers in the scenario file, the kw-only
variant, and whole days against the real controller in process (loopback OCPP, virtual clock)
whose report shows per-phase site currents, pauses and waits.

The days pin the controller to kW-only allocation (``Scenario.kw_only``) where the assertions
depend on what it sends: what the electrical allocation sends is the controller's to test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulators.cli import main
from simulators.report import build_report, format_table
from simulators.runner import run_day
from simulators.scenarios import (
    ScenarioError,
    charger_specs,
    load_scenario,
    parse_scenario,
)

WIRINGS = (["L1", "L2", "L3"], ["L2", "L3", "L1"], ["L3", "L1", "L2"])


def ac_charger(index: int, **electrical: Any) -> dict[str, Any]:
    return {
        "id": f"AC{index}",
        "maxPower": 11.04,
        "connectors": 1,
        "electrical": {"kind": "AC", "phases": 3, "maxCurrent": 16, **electrical},
    }


def small_depot(**changes: Any) -> dict[str, Any]:
    """Three AC chargers on 20 A per phase, two 3-phase cars and a 1-phase car: shared evenly
    in kW (13.8 kW / 3 = 4.6 kW) the 3-phase cars get 6.7 A, the 1-phase car 20 A of its 16."""
    scenario: dict[str, Any] = {
        "name": "small-depot",
        "station": {
            "stationId": "SMALL",
            "gridCapacity": 13.8,
            "gridCurrentLimit": 20,
            "chargers": [ac_charger(i, wiring=WIRINGS[0]) for i in range(1, 4)],
        },
        "durationHours": 1,
        "arrivals": [
            {
                "chargerId": f"AC{i}",
                "arrival": 10 + i,
                "departure": 3600,
                "batteryKwh": 60,
                "soc": 0.2,
                "phases": phases,
                "maxCurrent": 16,
                "curve": "ac",
            }
            for i, phases in ((1, 3), (2, 3), (3, 1))
        ],
    }
    scenario.update(changes)
    return scenario


def parsed(data: dict[str, Any]) -> Any:
    return parse_scenario(json.dumps(data))


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as error:
        parsed(data)
    return error.value.problems


# -- the scenario file --------------------------------------------------------------------------


def test_an_ac_vehicle_takes_its_power_from_phases_and_current() -> None:
    scenario = parsed(small_depot())
    one_phase = scenario.visits()[2].vehicle
    assert (one_phase.phases, one_phase.max_current) == (1, 16)
    assert one_phase.max_kw == pytest.approx(3.68)
    assert scenario.visits()[0].vehicle.max_kw == pytest.approx(11.04)


def test_a_vehicle_needs_a_power_or_phases_and_current() -> None:
    data = small_depot()
    del data["arrivals"][0]["phases"]
    assert problems(data) == ["arrivals[0]: give maxPowerKw, or phases and maxCurrent"]
    data = small_depot()
    data["arrivals"][0]["phases"] = 4
    assert problems(data)[0].startswith("arrivals[0].phases")


def test_chargers_get_their_phases_wiring_and_quirks() -> None:
    data = small_depot(chargerQuirks={"AC2": {"belowMinimum": "clamp"}})
    data["station"]["chargers"][1]["electrical"]["wiring"] = WIRINGS[1]
    specs = charger_specs(parsed(data).station, parsed(data).charger_quirks)
    assert [s.ac.below_minimum for s in specs if s.ac] == ["suspend", "clamp", "suspend"]
    assert specs[1].ac is not None and specs[1].ac.wiring == ("L2", "L3", "L1")
    assert (specs[0].phases, specs[0].ac is not None and specs[0].ac.max_current) == (3, 16)


def test_quirks_name_an_ac_charger() -> None:
    data = small_depot(chargerQuirks={"NOPE": {"belowMinimum": "clamp"}})
    assert problems(data) == ["chargerQuirks.NOPE: unknown charger"]
    data = small_depot(chargerQuirks={"DC1": {"belowMinimum": "clamp"}})
    data["station"]["chargers"].append({"id": "DC1", "maxPower": 50, "connectors": 1})
    assert problems(data) == [
        "chargerQuirks.DC1.belowMinimum: only an AC charger (electrical kind AC) has a "
        "minimum current"
    ]
    data = small_depot(chargerQuirks={"AC1": {"belowMinimum": "trip"}})
    assert problems(data)[0].startswith("chargerQuirks.AC1.belowMinimum")


def test_kw_only_strips_amps_and_phases_from_the_controller_only() -> None:
    data = small_depot()
    data["station"]["gridCapacity"] = 50
    data["station"]["groups"] = [{"id": "ROW", "maxCurrent": 10, "chargers": ["AC1", "AC2"]}]
    scenario = parsed(data).kw_only()
    controller = scenario.controller_config
    assert not controller.has_electrical_model
    assert controller.grid_capacity == pytest.approx(13.8)  # 3 x 230 V x 20 A
    assert controller.groups[0].max_power == pytest.approx(6.9)  # 3 x 230 V x 10 A
    assert scenario.station.grid_current_limit == 20  # the physics keep the limits
    assert all(spec.ac is not None for spec in charger_specs(scenario.station))


def test_kw_only_needs_the_electrical_model() -> None:
    with pytest.raises(ScenarioError, match="kw-only needs"):
        load_scenario("carpark").kw_only()


def test_the_shipped_overbooked_depot() -> None:
    scenario = load_scenario("overbooked-depot")
    station = scenario.station
    assert (len(station.chargers), station.grid_current_limit) == (40, 100)
    assert station.allocation.rotation_period == 900
    wirings = [c.ac.site_phases() for c in station.chargers if c.ac is not None]
    assert {w: wirings.count(w) for w in set(wirings)} == {
        ("L1", "L2", "L3"): 14,
        ("L2", "L3", "L1"): 13,
        ("L3", "L1", "L2"): 13,
    }
    vehicles = [v.vehicle for v in scenario.visits()]
    one_phase = sum(1 for v in vehicles if v.phases == 1) / len(vehicles)
    assert 0.25 <= one_phase <= 0.35
    arrivals = [v.arrival / 3600 for v in vehicles]
    assert max(arrivals) < 7 and min(v.departure for v in vehicles) / 3600 > 10


# -- whole days against the controller ----------------------------------------------------------


def with_a_fourth_car(data: dict[str, Any]) -> None:
    """A fourth charger, with a 3-phase car arriving at 20 min: shared evenly in kW the
    3-phase cars then fall below 6 A."""
    data["station"]["chargers"].append(ac_charger(4, wiring=WIRINGS[0]))
    data["arrivals"].append(
        {
            "chargerId": "AC4",
            "arrival": 1200,
            "departure": 3600,
            "batteryKwh": 60,
            "soc": 0.2,
            "phases": 3,
            "maxCurrent": 16,
            "curve": "ac",
        }
    )


async def test_a_kw_only_day_suspends_three_phase_cars_below_six_amps() -> None:
    """Shared in kW the two 3-phase cars get 4.6 kW, 6.7 A: they charge. A fourth car brings
    them to 3.45 kW, 5 A: their chargers suspend them (pauses, a wait with no energy), while
    the 1-phase car on L1 keeps charging."""
    data = small_depot()
    with_a_fourth_car(data)
    record = await run_day(parsed(data).kw_only())
    report = build_report(record)
    phases = report["sitePhases"]
    assert phases["limitA"] == 20
    # The 1-phase car draws on L1 only: L1 carries more than the others.
    assert phases["peakA"]["L1"] > phases["peakA"]["L2"] == phases["peakA"]["L3"]
    assert report["pauses"] >= 2 and report["pausesPerSessionMax"] >= 1
    assert report["longestWaitMinutes"] > 0
    assert report["longestWaitVehicleId"] is not None
    by_vehicle = {s.vehicle_id: s for s in record.sessions}
    # The 1-phase car: 3.45 kW is 15 A on its one phase, it never waits.
    assert by_vehicle["V0003"].longest_wait_s == 0
    # Per-phase currents and power agree at every step: sum of currents x 230 V = load.
    for sample in record.samples:
        assert sum(sample.phase_a) * 230 == pytest.approx(sample.load_kw * 1000, abs=1)
    table = format_table([report])
    assert "peak L1 / L2 / L3 (A)" in table and "pauses per session" in table


async def test_the_clamp_quirk_draws_six_amps_above_its_limit() -> None:
    """The same four cars, the chargers clamping: the 3-phase cars draw 6 A on 5 A limits, the
    runner sees each draw above its limit and the phases above what the controller booked."""
    data = small_depot(
        chargerQuirks={f"AC{i}": {"belowMinimum": "clamp"} for i in range(1, 5)},
    )
    with_a_fourth_car(data)
    record = await run_day(parsed(data).kw_only())
    report = build_report(record)
    assert report["limitBreaches"] > 0
    assert any("above its applied limit" in p for p in record.problems)
    assert report["peakGridPowerKw"] > 13.8


def test_compare_electrical_and_kw_only(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small_depot()))
    out, plot = tmp_path / "report.json", tmp_path / "night.png"
    argv = ["--compare", "electrical,kw-only", str(path), "--no-progress", "--report", str(out)]
    assert main([*argv, "--plot", str(plot)]) == 0
    # A station without a battery and with gridCurrentLimit plots its phases instead.
    assert (tmp_path / "night-electrical.png").stat().st_size > 0
    assert (tmp_path / "night-kw-only.png").stat().st_size > 0
    reports = json.loads(out.read_text())
    assert [r["variant"] for r in reports] == ["electrical", "kw-only"]
    for report in reports:
        assert report["sitePhases"]["limitA"] == 20
        assert set(report["sitePhases"]["startPeakA"]) == {"L1", "L2", "L3"}
    table = capsys.readouterr().out
    assert "electrical" in table and "kw-only" in table and "phase limit (A)" in table


def test_compare_electrical_needs_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--compare", "electrical,kw-only", "carpark", "--no-progress"]) == 2
    assert "needs the electrical model" in capsys.readouterr().err
