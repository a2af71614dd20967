"""The offline upper bound (``ev-sim --bound``): exact on days small enough to work out by
hand, never below what a real run delivered, and in the CLI's table and JSON report."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

pytest.importorskip("scipy.optimize")

from simulators.bound import (
    AcSupply,
    BatteryLimits,
    BoundProblem,
    BoundSession,
    ChargerLimits,
    GroupLimits,
    bound_problem,
    solve_bound,
)
from simulators.cli import main
from simulators.records import DayRecord, SessionRecord
from simulators.report import build_report
from simulators.runner import run_day
from simulators.scenarios import load_scenario, parse_scenario

HOUR = 3600.0
THREE_PHASE = ("L1", "L2", "L3")


def dc(charger_id: str, max_kw: float = 150.0) -> ChargerLimits:
    return ChargerLimits(charger_id, max_kw)


def ac(charger_id: str, wiring: tuple[str, ...] = THREE_PHASE, amps: float = 32.0) -> ChargerLimits:
    return ChargerLimits(charger_id, 22.0, AcSupply(230.0, wiring, amps))


def car(
    name: str,
    charger_id: str,
    hours: tuple[float, float] = (0.0, 1.0),
    wanted_kwh: float = 1000.0,
    max_kw: float = 50.0,
    phases: int | None = None,
) -> BoundSession:
    start, end = hours
    return BoundSession(name, charger_id, start * HOUR, end * HOUR, wanted_kwh, max_kw, phases)


def bound(problem: BoundProblem) -> float:
    return round(solve_bound(problem).energy_kwh, 6)


@pytest.mark.parametrize(
    ("wanted_kwh", "max_kw", "hours", "expected"),
    [
        (80.0, 50.0, 1.0, 50.0),  # its power over its stay
        (30.0, 50.0, 1.0, 30.0),  # what it wanted
        (80.0, 50.0, 2.5, 80.0),
        (200.0, 11.0, 0.5, 5.5),
    ],
)
def test_one_car_alone_gets_what_it_wants_or_its_power_over_its_stay(
    wanted_kwh: float, max_kw: float, hours: float, expected: float
) -> None:
    problem = BoundProblem(
        grid_kw=400.0,
        chargers=(dc("A"),),
        sessions=(car("v", "A", (0.0, hours), wanted_kwh, max_kw),),
    )
    assert bound(problem) == expected


def test_a_charger_slower_than_the_car_bounds_it() -> None:
    problem = BoundProblem(
        grid_kw=400.0, chargers=(dc("A", max_kw=22.0),), sessions=(car("v", "A", max_kw=50.0),)
    )
    assert bound(problem) == 22.0


def test_two_cars_share_the_grid() -> None:
    chargers = (dc("A"), dc("B"))
    both = BoundProblem(
        grid_kw=60.0, chargers=chargers, sessions=(car("v", "A", (0, 2)), car("w", "B", (0, 2)))
    )
    assert bound(both) == 120.0  # 60 kW for two hours; each alone could take 50
    # One leaves after an hour: 60 kW together, then the other alone at its 50 kW.
    staggered = BoundProblem(
        grid_kw=60.0, chargers=chargers, sessions=(car("v", "A", (0, 1)), car("w", "B", (0, 2)))
    )
    assert bound(staggered) == 110.0
    # A car that wants little leaves the rest of the grid to the other.
    modest = BoundProblem(
        grid_kw=60.0,
        chargers=chargers,
        sessions=(car("v", "A", (0, 1), wanted_kwh=5.0), car("w", "B", (0, 1))),
    )
    assert bound(modest) == 55.0


def test_two_connectors_of_one_charger_share_its_power() -> None:
    problem = BoundProblem(
        grid_kw=400.0,
        chargers=(dc("A", max_kw=80.0),),
        sessions=(car("v", "A"), car("w", "A")),
    )
    assert bound(problem) == 80.0


def test_a_group_limit_holds_its_chargers_only() -> None:
    problem = BoundProblem(
        grid_kw=400.0,
        chargers=(dc("A"), dc("B"), dc("C")),
        groups=(GroupLimits("cable", frozenset({"A", "B"}), max_kw=40.0),),
        sessions=(car("v", "A"), car("w", "B"), car("x", "C")),
    )
    assert bound(problem) == 90.0  # 40 for the two under the cable, 50 for the third


def test_a_one_phase_car_on_a_per_phase_limit() -> None:
    # 16 A on L1 only: 16 x 230 V = 3.68 kW, although the grid allows 60 kW in all.
    alone = BoundProblem(
        grid_kw=60.0,
        grid_current=16.0,
        chargers=(ac("A"),),
        sessions=(car("v", "A", phases=1),),
    )
    assert bound(alone) == 3.68
    # Two such cars: on chargers wired alike both load L1; rotated wiring spreads them.
    alike = BoundProblem(
        grid_kw=60.0,
        grid_current=16.0,
        chargers=(ac("A"), ac("B")),
        sessions=(car("v", "A", phases=1), car("w", "B", phases=1)),
    )
    assert bound(alike) == 3.68
    rotated = BoundProblem(
        grid_kw=60.0,
        grid_current=16.0,
        chargers=(ac("A"), ac("B", wiring=("L2", "L3", "L1"))),
        sessions=(car("v", "A", phases=1), car("w", "B", phases=1)),
    )
    assert bound(rotated) == 7.36
    # A three-phase car takes 16 A on each phase: 11.04 kW.
    three = BoundProblem(
        grid_kw=60.0, grid_current=16.0, chargers=(ac("A"),), sessions=(car("v", "A"),)
    )
    assert bound(three) == 11.04


def test_current_limits_of_a_charger_a_group_and_a_car() -> None:
    # The charger's 16 A on three phases: 11.04 kW of its 22.
    charger = BoundProblem(
        grid_kw=400.0, chargers=(ac("A", amps=16.0),), sessions=(car("v", "A", max_kw=22.0),)
    )
    assert bound(charger) == 11.04
    # A group of 20 A per phase over two three-phase chargers: 20 x 230 x 3 = 13.8 kW.
    group = BoundProblem(
        grid_kw=400.0,
        chargers=(ac("A"), ac("B")),
        groups=(GroupLimits("feeder", frozenset({"A", "B"}), max_current=20.0),),
        sessions=(car("v", "A"), car("w", "B")),
    )
    assert bound(group) == 13.8
    # The car's own onboard charger: 16 A on one phase.
    own = BoundProblem(
        grid_kw=400.0,
        chargers=(ac("A"),),
        sessions=(BoundSession("v", "A", 0.0, HOUR, 100.0, 22.0, phases=1, max_current=16.0),),
    )
    assert bound(own) == 3.68


def test_the_battery_adds_its_energy_and_recharges_between_cars() -> None:
    # 10 kW of grid, 20 kWh / 20 kW of battery, a 30 kW car for two hours: 30 kW in the
    # first hour empties the battery, then 10 kW.
    one = BoundProblem(
        grid_kw=10.0,
        battery=BatteryLimits(20.0, 20.0),
        chargers=(dc("A"),),
        sessions=(car("v", "A", (0, 2), max_kw=30.0),),
    )
    assert bound(one) == 40.0
    # A gap of an hour between two cars: the grid refills 10 kWh, the second gets 10 + 10.
    two = BoundProblem(
        grid_kw=10.0,
        battery=BatteryLimits(20.0, 20.0),
        chargers=(dc("A"),),
        sessions=(car("v", "A", (0, 1), max_kw=30.0), car("w", "A", (2, 3), max_kw=30.0)),
    )
    assert bound(two) == 50.0


def test_a_session_that_wants_nothing_or_stays_no_time_adds_nothing() -> None:
    problem = BoundProblem(
        grid_kw=100.0,
        chargers=(dc("A"), dc("B")),
        sessions=(car("v", "A", wanted_kwh=0.0), car("w", "B", (1, 1))),
    )
    assert bound(problem) == 0.0


def test_the_station_config_s_amps_and_phases_reach_the_bound() -> None:
    """A three-phase AC charger at 16 A, a one-phase one wired to L2, a DC charger of 6.9 kW
    (10 A on each phase), 32 A per site phase and a feeder of 20 A over the two AC chargers.
    Each amp of a three-phase car is 0.69 kW, of a one-phase car 0.23 kW: the best hour is
    16 A and 10 A for the three-phase ones (26 A on every phase), and what the feeder leaves
    on L2 for the one-phase car, 20 - 16 = 4 A: 11.04 + 6.9 + 0.92 = 18.86 kWh."""
    station = {
        "stationId": "AMPS",
        "gridCapacity": 100,
        "gridCurrentLimit": 32,
        "chargers": [
            {"id": "AC1", "maxPower": 22, "connectors": 1,
             "electrical": {"kind": "AC", "phases": 3, "maxCurrent": 16}},
            {"id": "AC2", "maxPower": 7.4, "connectors": 1,
             "electrical": {"kind": "AC", "phases": 1, "maxCurrent": 32, "wiring": ["L2"]}},
            {"id": "DC1", "maxPower": 6.9, "connectors": 1},
        ],
        "groups": [{"id": "feeder", "maxCurrent": 20, "chargers": ["AC1", "AC2"]}],
    }  # fmt: skip
    names = ("three", "one", "dc")
    arrivals = [
        {"id": name, "arrival": 0, "departure": 3600, "batteryKwh": 100, "soc": 0.1,
         "maxPowerKw": 50, "chargerId": charger}
        for name, charger in zip(names, ("AC1", "AC2", "DC1"), strict=True)
    ]  # fmt: skip
    scenario = parse_scenario(
        json.dumps({"name": "amps", "durationHours": 1, "station": station, "arrivals": arrivals})
    )
    record = DayRecord("amps", "fair", "virtual", 3600.0, 100.0, None)
    for name, charger in zip(names, ("AC1", "AC2", "DC1"), strict=True):
        record.sessions.append(
            SessionRecord(
                name, 0.0, 3600.0, 50.0, 90.0, 50.0, charger_id=charger, connector_id=1,
                plugged_at=0.0, left_at=3600.0,
            )
        )  # fmt: skip
    problem = bound_problem(scenario, record)
    assert problem.grid_current == 32
    assert problem.chargers[1].ac == AcSupply(230.0, ("L2",), 32.0)
    assert problem.groups == (GroupLimits("feeder", frozenset({"AC1", "AC2"}), None, 20.0),)
    result = solve_bound(problem)
    assert round(result.energy_kwh, 6) == 18.86
    assert round(result.per_session_kwh["one"], 6) == 0.92
    # Without the amps, the same day is bounded by kW only: 22 + 7.4 + 6.9.
    data = json.loads(json.dumps(station))
    del data["gridCurrentLimit"]
    data["groups"] = []
    for charger in data["chargers"]:
        charger.pop("electrical", None)
    plain = parse_scenario(
        json.dumps({"name": "kw", "durationHours": 1, "station": data, "arrivals": arrivals})
    )
    assert round(solve_bound(bound_problem(plain, record)).energy_kwh, 6) == 36.3


def test_a_station_that_reads_the_site_meter_takes_what_the_building_leaves() -> None:
    """A 150 kW connection; the building takes 100 kW until 00:30, then 20 kW. A 200 kW car
    plugged in from 00:00 to 01:00 could take 50 kW, then 130 kW: 90 kWh. Without the meter
    the station holds itself to its gridCapacity, and so does the bound."""
    meter = {"type": "modbus", "host": "127.0.0.1", "model": "eastron-sdm630"}
    station = {
        "stationId": "SITE",
        "gridCapacity": 150,
        "chargers": [{"id": "DC1", "maxPower": 300, "connectors": 1}],
        "site": {"meter": meter},
    }
    arrivals = [
        {"id": "car", "arrival": 0, "departure": 3600, "batteryKwh": 500, "soc": 0.1,
         "maxPowerKw": 200}
    ]  # fmt: skip
    day = {
        "name": "site",
        "durationHours": 1,
        "station": station,
        "arrivals": arrivals,
        "site": {"building": [[0, 100], [0.5, 100], [0.5, 20]]},
    }
    record = DayRecord("site", "fair", "virtual", 3600.0, 150.0, None)
    record.sessions.append(
        SessionRecord(
            "car", 0.0, 3600.0, 200.0, 450.0, 200.0, charger_id="DC1", connector_id=1,
            plugged_at=0.0, left_at=3600.0,
        )
    )  # fmt: skip
    metered = parse_scenario(json.dumps(day))
    assert round(solve_bound(bound_problem(metered, record)).energy_kwh, 6) == 90.0
    fixed = metered.fixed_capacity()  # ev-sim --compare meter,fixed: 150 - 100 = 50 kW
    assert round(solve_bound(bound_problem(fixed, record)).energy_kwh, 6) == 50.0


def night_depot(wirings: Sequence[tuple[str, ...]], limit_a: float) -> BoundProblem:
    """40 AC chargers of 11 kW (16 A) over a night, two or three cars each, 30 % of them
    one-phase (16 A: 3.7 kW), on ``limit_a`` per site phase."""
    rng = random.Random(7)
    chargers = tuple(
        ChargerLimits(f"AC{i:02d}", 11.0, AcSupply(230.0, wirings[i % len(wirings)], 16.0))
        for i in range(40)
    )
    sessions: list[BoundSession] = []
    for i in range(40):
        at = rng.uniform(17, 20) * HOUR
        while at < 30 * HOUR:
            end = min(at + rng.uniform(2, 10) * HOUR, 31 * HOUR)
            one = rng.random() < 0.3
            sessions.append(
                BoundSession(
                    f"v{len(sessions)}", f"AC{i:02d}", at, end, rng.uniform(10, 60),
                    3.7 if one else 11.0, 1 if one else 3, 16.0,
                )
            )  # fmt: skip
            at = end + rng.uniform(0.1, 3) * HOUR
    return BoundProblem(400.0, chargers, tuple(sessions), grid_current=limit_a)


def test_a_forty_charger_night_depot_is_solved_in_seconds() -> None:
    rotated = solve_bound(night_depot([THREE_PHASE, ("L2", "L3", "L1"), ("L3", "L1", "L2")], 100))
    assert rotated.sessions > 80
    assert rotated.solve_s < 10  # about 0.1 s here: a generous margin for a busy machine
    # Never more than 100 A on each of three phases at 230 V over the 14 hours.
    assert rotated.energy_kwh <= 3 * 100 * 230 / 1000 * 14
    # Wired alike, every one-phase car loads L1, which fills before the others.
    alike = solve_bound(night_depot([THREE_PHASE], 100))
    assert alike.energy_kwh < rotated.energy_kwh - 0.1
    tighter = solve_bound(night_depot([THREE_PHASE, ("L2", "L3", "L1"), ("L3", "L1", "L2")], 63))
    assert tighter.energy_kwh < rotated.energy_kwh


async def test_never_below_what_a_real_run_delivered() -> None:
    # The depot's first evening: buses and vans arriving from 16:00 on a tight grid with a
    # battery, the station limiting some of them.
    scenario = load_scenario("depot")
    record = await run_day(scenario, hours=19)
    report = build_report(record)
    result = solve_bound(bound_problem(scenario, record))
    plugged = [s for s in record.sessions if s.plugged]
    assert len(plugged) >= 10
    assert result.sessions == len(plugged)
    # Meter registers are whole Wh: 1 Wh per session of slack.
    assert result.energy_kwh >= report["energyDeliveredKwh"] - 0.001 * len(plugged)
    for session in plugged:
        assert session.meter_kwh is not None
        got = result.per_session_kwh.get(session.vehicle_id, 0.0)
        assert got <= session.requested_kwh + 1e-6
    assert result.energy_kwh <= report["energyRequestedKwh"]
    assert report["driversShortStation"] > 0  # the grid did hold someone back
    assert result.solve_s < 5


def write_day(tmp_path: Path) -> Path:
    """Two DC chargers of 22 kW on 30 kW of grid for an hour, two cars that want more than
    that: the bound is 30 kWh."""
    station = {
        "stationId": "BOUND",
        "gridCapacity": 30,
        "chargers": [
            {"id": "CP1", "maxPower": 22, "connectors": 1},
            {"id": "CP2", "maxPower": 22, "connectors": 1},
        ],
    }
    arrivals = [
        {"arrival": 0, "departure": 3600, "batteryKwh": 100, "soc": 0.1, "maxPowerKw": 22},
        {"arrival": 0, "departure": 3600, "batteryKwh": 100, "soc": 0.2, "maxPowerKw": 22},
    ]
    path = tmp_path / "bound-day.json"
    path.write_text(
        json.dumps({"name": "bound", "durationHours": 1, "station": station, "arrivals": arrivals})
    )
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main([*argv, "--no-progress"])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_cli_prints_the_bound_and_writes_it_to_the_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    status, out, err = run_cli(
        capsys, "--compare", "fair,even-split", str(write_day(tmp_path)), "--bound", "--report",
        str(report),
    )  # fmt: skip
    assert status == 0, err
    lines = out.splitlines()
    bound_line = next(line for line in lines if line.startswith("offline upper bound (kWh)"))
    assert bound_line.split()[-2:] == ["30.0", "30.0"]
    share_line = next(line for line in lines if line.startswith("delivered / bound"))
    # Each cell ends where its column's header does.
    assert len(share_line) == len(lines[0])
    reports = json.loads(report.read_text())
    assert [r["strategy"] for r in reports] == ["fair", "even-split"]
    for r in reports:
        figures = r["bound"]
        assert figures["boundKwh"] == 30.0
        assert figures["deliveredKwh"] == r["energyDeliveredKwh"]
        assert 99.0 <= figures["deliveredOfBoundPercent"] <= 100.0
        assert figures["sessions"] == 2


def test_without_the_flag_the_report_has_no_bound(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    status, out, err = run_cli(capsys, str(write_day(tmp_path)), "--report", str(report))
    assert status == 0, err
    assert "offline upper bound" not in out
    assert "bound" not in json.loads(report.read_text())


def test_without_scipy_the_flag_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # importing it now fails
    status, out, err = run_cli(capsys, str(write_day(tmp_path)), "--bound")
    assert status == 2
    assert out == ""
    assert "--bound: needs scipy" in err
    assert "pip install 'ev-station-controller[sim]'" in err
