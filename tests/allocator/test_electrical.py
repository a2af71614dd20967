"""Allocation with the electrical model: properties 1-4 and 6 on random stations
(docs/electrical-allocation.md), worked examples, and refused inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator import ChargerNode, GroupNode, StationTree, allocate
from allocator.electrical import allocate_electrical
from allocator.electrical_model import compile_station
from allocator.electrical_types import (
    ACCharger,
    DCCharger,
    ElectricalDemand,
    ElectricalLimit,
    ElectricalStation,
)
from tests.allocator.electrical_oracle import Model, check_all
from tests.allocator.electrical_strategies import (
    ElectricalCase,
    electrical_cases,
    large_electrical_cases,
)
from tests.allocator.strategies import Case, cases, large_cases

SMALL = electrical_cases()
LARGE = large_electrical_cases()


def run(case: ElectricalCase) -> dict[str, ElectricalLimit]:
    return allocate_electrical(case.station, case.demands, case.root_limit, case.order)


@settings(deadline=None, max_examples=300, derandomize=True)
@given(SMALL)
def test_properties_1_to_4_on_small_stations(case: ElectricalCase) -> None:
    check_all(Model(case), run(case))


@settings(deadline=None, max_examples=60, derandomize=True)
@given(LARGE)
def test_properties_1_to_4_on_busy_stations(case: ElectricalCase) -> None:
    check_all(Model(case), run(case))


@settings(deadline=None, max_examples=60, derandomize=True)
@given(SMALL, st.floats(0.05, 1.0))
def test_properties_hold_when_power_is_scarce(case: ElectricalCase, fraction: float) -> None:
    """A low root limit pauses sessions: the pause and rotation paths."""
    scarce = ElectricalCase(case.station, case.demands, case.root_limit * fraction, case.order)
    check_all(Model(scarce), run(scarce))


def _plain(case: Case) -> tuple[ElectricalStation, list[ElectricalDemand]]:
    demands = [
        ElectricalDemand(
            d.session_id, d.charger_id, d.started_at, d.vehicle_max_power, fixed=d.fixed
        )
        for d in case.demands
    ]
    return ElectricalStation(case.tree), demands


@settings(deadline=None, max_examples=150, derandomize=True)
@given(st.one_of(cases(max_chargers=10), large_cases(max_chargers=120)))
def test_property_6_without_electrical_data_limits_are_todays(case: Case) -> None:
    station, demands = _plain(case)
    got = allocate_electrical(station, demands, case.root_limit)
    today = allocate(case.tree, case.demands, case.root_limit)
    assert {s: (int(x.power), x.bound, x.running, x.current) for s, x in got.items()} == {
        s: (x.power, x.bound, True, None) for s, x in today.items()
    }


def test_rotation_order_does_not_change_todays_limits() -> None:
    tree = StationTree((ChargerNode("A", 50), ChargerNode("B", 50)))
    demands = [ElectricalDemand("a", "A", 0.0), ElectricalDemand("b", "B", 1.0)]
    got = allocate_electrical(ElectricalStation(tree), demands, 31, order=["b", "a"])
    assert {s: x.power for s, x in got.items()} == {"a": 16.0, "b": 15.0}


# Six 3-phase AC chargers of 11 kW on rotated wiring, sharing 64 A per phase.
SIX = StationTree(tuple(ChargerNode(f"C{i}", 22) for i in range(6)))
ROTATED = (("L1", "L2", "L3"), ("L2", "L3", "L1"), ("L3", "L1", "L2"))


def six(grid: float, *, max_current: float = 16) -> ElectricalStation:
    chargers = {f"C{i}": ACCharger(3, 230, 6, max_current, 0.1, ROTATED[i % 3]) for i in range(6)}
    return ElectricalStation(SIX, chargers, grid_current_limit=grid)


def test_six_three_phase_cars_share_64a_evenly() -> None:
    demands = [ElectricalDemand(f"s{i}", f"C{i}", float(i)) for i in range(6)]
    got = allocate_electrical(six(64), demands, math.inf)
    # 64 / 6 = 10.67 A: each rounds down to 10.6 A, and the 0.4 A left per
    # phase go one step each to the first four in order.
    assert [x.current for x in got.values()] == [10.7] * 4 + [10.6] * 2
    assert all(x.running and x.bound == "station" for x in got.values())
    assert got["s0"].power == pytest.approx(10.7 * 230 * 3 / 1000)


def test_one_phase_cars_are_counted_on_their_own_phase_only() -> None:
    # Three 1-phase cars on three rotated chargers use L1, L2 and L3 once each:
    # each may take its charger's 16 A although the grid allows 20 A per phase.
    demands = [ElectricalDemand(f"s{i}", f"C{i}", float(i), phases=1) for i in range(3)]
    got = allocate_electrical(six(20), demands, math.inf)
    assert [(x.current, x.phases, x.bound) for x in got.values()] == [
        (16.0, ("L1",), "charger"),
        (16.0, ("L2",), "charger"),
        (16.0, ("L3",), "charger"),
    ]


def test_below_the_minimum_the_last_in_order_is_paused_not_shared() -> None:
    # 64 A over eleven 3-phase cars would be 5.8 A each: ten run at 6 A or more, one waits.
    tree = StationTree(tuple(ChargerNode(f"C{i}", 22) for i in range(11)))
    chargers = {f"C{i}": ACCharger(3, 230, 6, 32, 0.1) for i in range(11)}
    station = ElectricalStation(tree, chargers, grid_current_limit=64)
    demands = [ElectricalDemand(f"s{i:02d}", f"C{i}", float(i)) for i in range(11)]
    got = allocate_electrical(station, demands, math.inf, order=[f"s{i:02d}" for i in range(11)])
    assert [x.running for x in got.values()] == [True] * 10 + [False]
    assert {x.current for x in got.values()} == {0.0, 6.4}
    assert got["s10"] == ElectricalLimit(False, 0.0, 0.0, ("L1", "L2", "L3"), "station")
    # Another order pauses another session.
    order = [f"s{i:02d}" for i in range(1, 11)] + ["s00"]
    assert not allocate_electrical(station, demands, math.inf, order=order)["s00"].running


def test_a_one_phase_car_is_not_capped_below_a_three_phase_share() -> None:
    """Fair in kW: a 1-phase car at 16 A (3.7 kW) is below a 3-phase share; it keeps 16 A."""
    tree = StationTree((ChargerNode("A", 22), ChargerNode("B", 22)))
    chargers = {"A": ACCharger(3, 230, 6, 32, 0.1), "B": ACCharger(3, 230, 6, 32, 0.1)}
    station = ElectricalStation(tree, chargers, grid_current_limit=40)
    demands = [
        ElectricalDemand("one", "A", 0.0, phases=1, vehicle_max_current=16),
        ElectricalDemand("three", "B", 1.0),
    ]
    got = allocate_electrical(station, demands, math.inf)
    assert got["one"].current == 16.0 and got["one"].bound == "vehicle"
    assert got["three"].current == 24.0 and got["three"].bound == "station"


def test_group_current_limit_and_dc_charger() -> None:
    tree = StationTree(
        (ChargerNode("AC", 22), ChargerNode("DC", 50)),
        (GroupNode("feeder", 1000, ("AC", "DC")),),
    )
    chargers: dict[str, ACCharger | DCCharger] = {
        "AC": ACCharger(3, 230, 6, 32, 1.0),
        "DC": DCCharger(min_power=5),
    }
    station = ElectricalStation(tree, chargers, group_max_current={"feeder": 40})
    demands = [ElectricalDemand("ac", "AC", 0.0), ElectricalDemand("dc", "DC", 1.0)]
    got = allocate_electrical(station, demands, math.inf)
    # 40 A per phase: the DC session draws P / 690 V on each phase.
    ac, dc = got["ac"], got["dc"]
    assert ac.current is not None and dc.current is None
    assert ac.current + dc.power * 1000 / 690 <= 40 + 1e-9
    assert abs(ac.power - dc.power) <= 1 + 0.69 + 1e-9
    assert ac.bound == dc.bound == "feeder"


def test_a_compiled_station_gives_the_same_limits() -> None:
    station = six(50)
    demands = [ElectricalDemand(f"s{i}", f"C{i}", float(i), phases=1 + i % 3) for i in range(6)]
    assert allocate_electrical(compile_station(station), demands, 100) == allocate_electrical(
        station, demands, 100
    )


@pytest.mark.parametrize(
    ("station", "demand", "message"),
    [
        (ElectricalStation(SIX, {"Z": DCCharger()}), None, "unknown charger 'Z'"),
        (ElectricalStation(SIX, {"C0": ACCharger(phases=4)}), None, "phases must be 1, 2 or 3"),
        (
            ElectricalStation(SIX, {"C0": ACCharger(wiring=("L1", "L1", "L2"))}),
            None,
            "distinct site phases",
        ),
        (ElectricalStation(SIX, {"C0": ACCharger(current_step=0)}), None, "currentStep"),
        (
            ElectricalStation(SIX, {"C0": ACCharger(min_current=10, max_current=8)}),
            None,
            "maxCurrent",
        ),
        (ElectricalStation(SIX, {"C0": DCCharger(min_power=30)}), None, "minPower"),
        (ElectricalStation(SIX, grid_current_limit=-1), None, "gridCurrentLimit"),
        (ElectricalStation(SIX, group_max_current={"g": 10}), None, "unknown group 'g'"),
        (
            ElectricalStation(SIX, {"C0": ACCharger(phases=1)}),
            ElectricalDemand("s", "C0", 0.0, phases=(2,)),
            "phases must be",
        ),
        (six(10), ElectricalDemand("s", "C0", 0.0, phases=4), "phases must be 1..3"),
        (six(10), ElectricalDemand("s", "C0", 0.0, phases=0), "phases must be 1..3"),
        (six(10), ElectricalDemand("s", "C0", math.nan), "started_at"),
        (six(10), ElectricalDemand("s", "C0", 0.0, vehicle_max_current=math.nan), "NaN"),
        (six(10), ElectricalDemand("s", "C0", 0.0, fixed=-1), "fixed"),
        (six(10), ElectricalDemand("s", "nope", 0.0), "unknown charger 'nope'"),
    ],
)
def test_refused_inputs(
    station: ElectricalStation, demand: ElectricalDemand | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        allocate_electrical(station, [demand] if demand else [], 100)


def test_duplicate_session_ids_are_refused() -> None:
    demands = [ElectricalDemand("s", "C0", 0.0), ElectricalDemand("s", "C1", 1.0)]
    with pytest.raises(ValueError, match="duplicate session id: 's'"):
        allocate_electrical(six(64), demands, 100)
