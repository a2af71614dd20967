"""A simulated day with the rest of the site (simulators/site.py): the building's load and the
sun as profiles, served to the in-process controller as a real Modbus TCP meter on loopback
(pymodbus), which the controller reads with its own reader. The connection point stays within
its limit apart from the meter's own delay, the charging budget follows a step of the
building's load (down at the next reading, up after the hold time), the report counts the
time over the limit honestly, the run is deterministic, and the scenario's site is validated
with errors that name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from simulators.cli import main
from simulators.records import DayRecord
from simulators.report import build_report
from simulators.runner import run_day
from simulators.scenarios import ScenarioError, parse_scenario
from simulators.site import Profile, SiteProfile

GRID = 100.0
MARGIN = 2.0
HOLD = 10.0
SOLAR = 10.0
# The building: 20 kW, 60 kW from STEP_UP to STEP_DOWN. The step up falls between two polls
# of the 1 s meter (0.4 s before the next), so the site is over its limit until that poll.
STEP_UP = 180.6
STEP_DOWN = 300.0
END = 420.0


def site_scenario(**changes: Any) -> dict[str, Any]:
    building = [[0, 20], [STEP_UP / 3600, 20], [STEP_UP / 3600, 60]]
    building += [[STEP_DOWN / 3600, 60], [STEP_DOWN / 3600, 20]]
    scenario: dict[str, Any] = {
        "name": "site-step",
        "station": {
            "stationId": "SITE",
            "gridCapacity": GRID,
            "chargers": [
                {"id": "CP1", "maxPower": 50, "connectors": 1},
                {"id": "CP2", "maxPower": 50, "connectors": 1},
            ],
            "site": {
                "meter": {
                    "type": "modbus",
                    "host": "127.0.0.1",
                    "port": 502,
                    "interval": 1,
                    "model": "eastron-sdm630",
                },
                "margin": MARGIN,
                "holdSeconds": HOLD,
            },
        },
        "durationHours": END / 3600,
        "site": {"building": building, "solar": {"points": [[0, SOLAR]]}},
        "arrivals": [
            {"arrival": 10, "departure": END, "batteryKwh": 200, "soc": 0.1, "maxPowerKw": 50},
            {"arrival": 12, "departure": END, "batteryKwh": 200, "soc": 0.1, "maxPowerKw": 50},
        ],
    }
    scenario.update(changes)
    return scenario


def load_at(record: DayRecord, at: float) -> float:
    """What the vehicles drew once the step at ``at`` settled."""
    (sample,) = [s for s in record.samples if s.at == at]
    return sample.load_kw


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def metered() -> DayRecord:
    return await run_day(parse_scenario(json.dumps(site_scenario())))


def budget(building: float) -> float:
    return GRID - (building - SOLAR) - MARGIN


async def test_the_budget_follows_a_building_step_read_from_the_modbus_meter(
    metered: DayRecord,
) -> None:
    assert metered.problems == []
    # Every second of the day read over Modbus (the first at 0 s, the last at END).
    assert metered.meter_polls == END + 1
    # The two vehicles share what the building and the sun leave, less the margin.
    assert load_at(metered, 100.0) == pytest.approx(budget(20))
    # The step up is seen at the next poll (181 s) and the chargers lowered at once.
    assert load_at(metered, 180.0) == pytest.approx(budget(20))
    assert load_at(metered, 181.0) == pytest.approx(budget(60))
    # The step down raises the budget only once the higher load, last read a second before
    # it, is HOLD seconds old.
    last_high = STEP_DOWN - 1
    assert load_at(metered, STEP_DOWN + 5) == pytest.approx(budget(60))
    assert load_at(metered, last_high + HOLD - 1) == pytest.approx(budget(60))
    assert load_at(metered, last_high + HOLD) == pytest.approx(budget(20))


async def test_the_connection_stays_within_its_limit_but_for_the_meters_delay(
    metered: DayRecord,
) -> None:
    site = build_report(metered)["site"]
    assert site["connectionLimitKw"] == GRID
    # From the step up to the next poll, 0.4 s, the site draws what it drew plus 40 kW.
    assert site["peakConnectionKw"] == pytest.approx(GRID - MARGIN + 40)
    assert site["longestOverLimitSeconds"] == pytest.approx(181 - STEP_UP, abs=1e-3)
    assert site["minutesOverLimit"] == pytest.approx((181 - STEP_UP) / 60, abs=1e-3)
    assert site["meterIntervalSeconds"] == 1
    # Settled steps over the limit: only the step up itself, which no reading has shown yet.
    over = [s.at for s in metered.samples if (s.connection_kw or 0) > GRID + 1e-3]
    assert over == [pytest.approx(STEP_UP)]


async def test_the_fixed_capacity_without_a_meter_is_safe_and_delivers_less(
    metered: DayRecord,
) -> None:
    fixed = parse_scenario(json.dumps(site_scenario())).fixed_capacity()
    assert fixed.station.grid_capacity == GRID - 60  # minus the building's peak
    assert fixed.meter is None and fixed.connection_limit_kw == GRID
    record = await run_day(fixed)
    report, with_meter = build_report(record), build_report(metered)
    assert record.meter_polls == 0
    assert report["site"]["minutesOverLimit"] == 0
    assert report["site"]["peakConnectionKw"] <= GRID
    assert report["energyDeliveredKwh"] < with_meter["energyDeliveredKwh"]


async def test_two_metered_runs_give_the_same_report(metered: DayRecord) -> None:
    again = await run_day(parse_scenario(json.dumps(site_scenario())))
    first, second = build_report(metered), build_report(again)
    for report in (first, second):
        report.pop("runtimeSeconds")
    assert first == second
    assert [s.connection_kw for s in metered.samples] == [s.connection_kw for s in again.samples]


async def test_the_meter_counts_the_battery_and_the_connection_holds_with_it() -> None:
    """The meter shows the vehicles' draw less the battery's discharge: the battery covers
    what the vehicles take above the site's share, the connection stays at its limit less
    the margin, and the budget still follows the building."""
    scenario = site_scenario()
    scenario["station"]["battery"] = {"initialCapacity": 2, "power": 20}
    record = await run_day(parse_scenario(json.dumps(scenario)))
    assert record.problems == []
    (at_100,) = [s for s in record.samples if s.at == 100.0]
    # Both vehicles at their 50 kW: 12 kW of it from the battery, the rest from the grid.
    assert at_100.load_kw == pytest.approx(100)
    assert at_100.battery_kw == pytest.approx(100 - budget(20))
    assert at_100.connection_kw == pytest.approx(GRID - MARGIN)
    site = build_report(record)["site"]
    assert site["longestOverLimitSeconds"] == pytest.approx(181 - STEP_UP, abs=1e-3)
    over = [s.at for s in record.samples if (s.connection_kw or 0) > GRID + 1e-3]
    assert over == [pytest.approx(STEP_UP)]


def test_compare_meter_and_fixed_on_the_command_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "site.json"
    path.write_text(json.dumps(site_scenario(durationHours=0.02)))
    report = tmp_path / "both.json"
    status = main([str(path), "--compare", "meter,fixed", "--report", str(report), "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 0, err
    header = out.splitlines()[0].split()
    assert header[-2:] == ["meter", "fixed"]
    assert "time over the limit (min)" in out
    meter, fixed = json.loads(report.read_text())
    assert (meter["variant"], fixed["variant"]) == ("meter", "fixed")
    assert (meter["gridCapacityKw"], fixed["gridCapacityKw"]) == (GRID, GRID - 60)
    assert fixed["site"]["connectionLimitKw"] == GRID


def test_compare_meter_needs_a_meter(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scenario = site_scenario()
    del scenario["station"]["site"]
    path = tmp_path / "no-meter.json"
    path.write_text(json.dumps(scenario))
    status = main([str(path), "--compare", "meter,fixed", "--no-progress"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "station.site.meter: --compare meter needs a Modbus site meter" in err


@pytest.mark.parametrize(
    ("site", "expected"),
    [
        ({"building": [[0, 20], [25, 30]]}, "site.building[1][0]: must be at most 24"),
        ({"building": [[0, -1]]}, "site.building[0][1]: must be at least 0"),
        ({"building": [[8, 20], [7, 30]]}, "site.building[1]: hour 7 comes before the previous 8"),
        (
            {"building": [[8, 20], [8, 30], [8, 40]]},
            "site.building[2]: a third point at hour 8 (a step takes two)",
        ),
        (
            {"solar": {"peakKw": 80, "points": [[0, 1]]}},
            "site.solar: give either peakKw or points, not both",
        ),
        ({"solar": {"peakKw": 80, "sunrise": 20, "sunset": 6}}, "site.solar: sunset must be"),
        ({"solar": {"peakKw": 0}}, "site.solar.peakKw: must be greater than 0"),
        ({"connectionLimitKw": 0}, "site.connectionLimitKw: must be greater than 0"),
        ({"buildings": []}, "site.buildings:"),
    ],
)
def test_site_errors_name_the_field(site: dict[str, Any], expected: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(json.dumps(site_scenario(site=site)))
    assert any(p.startswith(expected) for p in raised.value.problems), raised.value.problems


def test_a_pushed_meter_is_not_simulated() -> None:
    scenario = copy.deepcopy(site_scenario())
    scenario["station"]["site"]["meter"] = {"type": "push"}
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(json.dumps(scenario))
    assert raised.value.problems == [
        "station.site.meter.type: ev-sim serves a Modbus TCP meter; 'push' is not simulated"
    ]


def test_no_fixed_capacity_is_left_when_the_building_takes_the_connection() -> None:
    scenario = parse_scenario(json.dumps(site_scenario(site={"building": [[0, GRID]]})))
    with pytest.raises(ScenarioError) as raised:
        scenario.fixed_capacity()
    assert raised.value.problems[0].startswith("site.building: peaks at 100 kW")


def test_profiles_interpolate_step_and_repeat_daily() -> None:
    building = Profile(((6, 30), (8, 130), (12, 130), (12, 150), (24, 30)))
    assert building.at(0) == 30  # before the first point: its value
    assert building.at(7 * 3600) == pytest.approx(80)  # linear in between
    assert building.at(12 * 3600) == 150  # a step: the later point from its instant
    assert building.at(12 * 3600, left=True) == 130  # ... the earlier just before
    assert building.at(31 * 3600) == pytest.approx(80)  # the next day repeats it
    assert building.at(24 * 3600, left=True) == 30
    assert building.peak == 150
    site = SiteProfile(building, solar_peak_kw=80, sunrise_h=6, sunset_h=20)
    assert site.solar_kw(13 * 3600) == pytest.approx(80)  # noon of the daylight
    assert site.solar_kw(5 * 3600) == 0 and site.solar_kw(21 * 3600) == 0
    assert site.net_kw(13 * 3600) == pytest.approx(140 - 80)  # 150 falling to 30 at 24 h
    assert site.corners(2 * 86_400)[:4] == [6 * 3600, 8 * 3600, 12 * 3600, 24 * 3600]
