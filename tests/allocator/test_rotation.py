"""Property 5 (rotation) over random event sequences on a fake clock
(docs/electrical-allocation.md, "Rotation").

A night at a small station, one minute per tick: cars arrive wanting some
energy, charge at what the allocation gives, leave when full; sometimes the
grid limit moves. Every tick: rotation order, allocation, energy. Checked:
no session that wants energy waits longer than the bound, a running session
is paused between boundaries only when the running set no longer fits, and
properties 1-3 hold on every allocation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocator import ChargerNode, GroupNode, StationTree
from allocator.electrical import allocate_electrical
from allocator.electrical_types import ACCharger, ElectricalDemand, ElectricalStation
from allocator.rotation import RotationSession, paused_since_after, rotation_order
from tests.allocator.electrical_oracle import (
    Model,
    check_feasible,
    check_minimum_or_nothing,
    check_pause_only_when_needed,
    fits,
)
from tests.allocator.electrical_strategies import ROTATIONS, ElectricalCase

PERIOD = 900.0
MAX_PAUSE = 1800.0
TICK = 180.0


@dataclass
class Car:
    demand: ElectricalDemand
    wanted: float  # kWh still wanted
    energy: float = 0.0
    running: bool = False
    paused_since: float | None = None
    # Per wait (keyed by its start): the most waiting and fewest running seen.
    crowd: dict[float, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Night:
    station: ElectricalStation
    arrivals: list[tuple[float, ElectricalDemand, float]]
    grid_changes: dict[float, float]


def night(seed: int, *, uniform: bool) -> Night:
    """A station of 6-14 AC chargers under one group; cars over five hours.

    ``uniform``: every car 3-phase on the same chargers, so R cars always fit
    and the wait bound of the spec applies as it is written; otherwise 1- and
    3-phase cars on rotated wiring, groups with current limits.
    """
    rnd = random.Random(seed)
    count = rnd.randint(6, 14)
    chargers = tuple(ChargerNode(f"C{i:02d}", 22) for i in range(count))
    data = {
        c.id: ACCharger(
            3, 230, 6, 32, rnd.choice([0.1, 1.0]), ROTATIONS[i % 3 if not uniform else 0]
        )
        for i, c in enumerate(chargers)
    }
    groups: tuple[GroupNode, ...] = ()
    group_current: dict[str, float] = {}
    if not uniform:
        half = count // 2
        groups = (GroupNode("left", 1000, tuple(c.id for c in chargers[:half])),)
        group_current = {"left": float(rnd.choice([16, 24, 40]))}
    grid = float(rnd.choice([13, 20, 32, 40]))
    station = ElectricalStation(StationTree(chargers, groups), data, grid, group_current)
    arrivals: list[tuple[float, ElectricalDemand, float]] = []
    for i in range(rnd.randint(count // 2, count * 2)):
        t = float(rnd.randrange(0, 5 * 3600, 180))
        phases = None if uniform or rnd.random() < 0.6 else 1
        demand = ElectricalDemand(f"car{i:03d}", "", t, phases=phases)
        arrivals.append((t, demand, rnd.uniform(2, 25)))
    arrivals.sort(key=lambda a: a[0])
    changes = {}
    if not uniform:
        for _ in range(rnd.randint(0, 4)):
            changes[float(rnd.randrange(0, 5 * 3600, 180))] = float(rnd.choice([6, 13, 20, 32, 40]))
    return Night(station, arrivals, changes)


def simulate(n: Night, *, check_bound: bool) -> None:
    station = n.station
    free_chargers = [c.id for c in station.tree.chargers]
    cars: dict[str, Car] = {}
    last_boundary: float | None = None
    arrivals = list(n.arrivals)
    now = 0.0
    grid = station.grid_current_limit
    end = 5 * 3600 + 12 * 3600
    while now < end and (arrivals or cars):
        if now in n.grid_changes:
            grid = n.grid_changes[now]
        current_station = ElectricalStation(
            station.tree, station.chargers, grid, station.group_max_current
        )
        while arrivals and arrivals[0][0] <= now and free_chargers:
            _, demand, wanted = arrivals.pop(0)
            charger = free_chargers.pop(0)
            plugged = ElectricalDemand(demand.session_id, charger, now, phases=demand.phases)
            cars[demand.session_id] = Car(plugged, wanted, paused_since=now)
        sessions = [
            RotationSession(sid, c.demand.started_at, c.energy, c.running, c.paused_since)
            for sid, c in cars.items()
        ]
        decision = rotation_order(now, sessions, last_boundary, PERIOD, MAX_PAUSE)
        # The clock starts at 0 and ticks divide the period: boundaries are
        # the multiples of the period.
        at_boundary = now % PERIOD == 0
        assert decision.at_boundary == at_boundary
        assert decision.next_boundary == (now // PERIOD + 1) * PERIOD
        demands = [c.demand for c in cars.values()]
        limits = allocate_electrical(current_station, demands, math.inf, decision.order)
        case = ElectricalCase(current_station, demands, math.inf, list(decision.order))
        model = Model(case)
        check_feasible(model, limits)
        check_minimum_or_nothing(model, limits)
        check_pause_only_when_needed(model, limits)

        previously = [sid for sid, c in cars.items() if c.running]
        stopped = [sid for sid in previously if not limits[sid].running]
        if stopped and not at_boundary:
            # Between boundaries only a running set that no longer fits loses members.
            minimums = {sid: model.info[sid].min_kw for sid in previously}
            assert not fits(model, minimums), (now, stopped)

        running = {sid: limits[sid].running for sid in cars}
        since = paused_since_after(now, sessions, running)
        waiting = sum(not r for r in running.values())
        runners = sum(running.values())
        for sid, c in cars.items():
            c.running = running[sid]
            c.paused_since = since[sid]
        if check_bound:
            for sid, c in cars.items():
                if c.paused_since is None:
                    continue
                # The longest wait allowed so far, with the most waiting and
                # the fewest running seen since this wait began.
                w, r = c.crowd.get(c.paused_since, (0, 10**9))
                w, r = max(w, waiting), min(r, max(runners, 1))
                c.crowd[c.paused_since] = (w, r)
                bound = max(MAX_PAUSE, math.ceil(w / r) * PERIOD) + PERIOD
                assert now - c.paused_since <= bound, (sid, now, c.paused_since, w, r)

        last_boundary = decision.last_boundary
        for sid, c in list(cars.items()):
            c.energy += limits[sid].power * TICK / 3600
            if c.energy >= c.wanted:
                del cars[sid]
                free_chargers.append(c.demand.charger_id)
        now += TICK


@settings(deadline=None, max_examples=12, derandomize=True)
@given(st.integers(0, 2**32))
def test_no_one_waits_longer_than_the_bound_on_a_uniform_station(seed: int) -> None:
    simulate(night(seed, uniform=True), check_bound=True)


@settings(deadline=None, max_examples=12, derandomize=True)
@given(st.integers(0, 2**32))
def test_no_switching_between_boundaries_on_mixed_stations(seed: int) -> None:
    simulate(night(seed, uniform=False), check_bound=False)


def session(
    sid: str, energy: float, *, running: bool, since: float | None, start: float = 0.0
) -> RotationSession:
    return RotationSession(sid, start, energy, running, since)


def test_at_a_boundary_overdue_sessions_come_first_then_least_energy() -> None:
    sessions = [
        session("rich", 30, running=True, since=None),
        session("poor", 1, running=True, since=None),
        session("long", 20, running=False, since=0.0),
        session("longer", 25, running=False, since=-100.0),
        session("short", 5, running=False, since=1500.0),
    ]
    decision = rotation_order(2000.0, sessions, 1100.0, 900, 1800)
    assert decision.at_boundary and decision.last_boundary == 2000.0
    assert decision.order == ("longer", "long", "poor", "short", "rich")
    assert decision.next_boundary == 2900.0


def test_between_boundaries_the_running_keep_their_place() -> None:
    sessions = [
        session("rich", 30, running=True, since=None),
        session("poor", 1, running=True, since=None),
        session("waiting", 0, running=False, since=0.0),
    ]
    decision = rotation_order(1000.0, sessions, 900.0, 900, 1800)
    assert not decision.at_boundary
    assert decision.order == ("poor", "rich", "waiting")
    assert (decision.last_boundary, decision.next_boundary) == (900.0, 1800.0)


def test_boundaries_do_not_drift_with_late_calls() -> None:
    decision = rotation_order(3000.0, [], 900.0, 900)
    assert (decision.last_boundary, decision.next_boundary) == (2700.0, 3600.0)
    assert rotation_order(5.0, [], None, 900).last_boundary == 5.0


def test_paused_since_after_an_allocation() -> None:
    sessions = [
        session("stays", 1, running=True, since=None),
        session("stops", 1, running=True, since=None),
        session("waits", 1, running=False, since=10.0),
        session("resumes", 1, running=False, since=10.0),
    ]
    running = {"stays": True, "stops": False, "waits": False, "resumes": True}
    assert paused_since_after(50.0, sessions, running) == {
        "stays": None,
        "stops": 50.0,
        "waits": 10.0,
        "resumes": None,
    }


@pytest.mark.parametrize(("period", "max_pause"), [(0, None), (math.inf, None), (900, -1)])
def test_bad_periods_are_refused(period: float, max_pause: float | None) -> None:
    with pytest.raises(ValueError):
        rotation_order(0.0, [], None, period, max_pause)
