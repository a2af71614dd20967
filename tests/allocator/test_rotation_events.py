"""Property 5 (rotation) over random event sequences on random electrical
stations, on a fake clock (docs/electrical-allocation.md, "Rotation").

Hypothesis draws a station (phases, rotated wiring, 1- and 3-phase sessions,
groups with current limits, AC, DC and chargers without data) and a sequence
of events: a car arrives, a car leaves, the root limit moves, time passes by a
random amount (within a period or across several boundaries). The test drives
``rotation_order``, ``allocate_electrical`` and ``paused_since_after`` as a
controller does: a decision after every event and at every rotation boundary
(its timer), energy accumulating from the limits over the elapsed time.
Checked at every decision:

* properties 1-3, with the decision's order as the rotation order;
* at a boundary, the order is the specified one: the sessions paused for at
  least ``maxPause`` first, longest paused first, then the others by least
  energy (ties: earliest start, then id);
* between boundaries, a running session is paused only if the running set no
  longer fits (so a new session that does not fit waits, and nobody is
  switched for fairness), and every waiting session that would fit runs
  (property 3's check against the whole running set);
* no session waits longer than ``max(maxPause, ceil(waiting / running) x
  rotationPeriod) + rotationPeriod`` while it fits on its own, with the most
  waiting and fewest running seen during its wait, on stations where every
  car has the same footprint (where the bound is meant as written); on mixed
  stations a session is still never passed over for longer than ``maxPause``
  plus one period per session paused before it (each boundary runs at least
  the longest-waiting one that fits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from allocator import ChargerNode, StationTree
from allocator.electrical import allocate_electrical
from allocator.electrical_types import (
    ACCharger,
    ElectricalDemand,
    ElectricalLimit,
    ElectricalStation,
)
from allocator.rotation import RotationSession, paused_since_after, rotation_order
from tests.allocator.electrical_oracle import (
    Model,
    check_feasible,
    check_minimum_or_nothing,
    check_pause_only_when_needed,
    fits,
)
from tests.allocator.electrical_strategies import ElectricalCase, electrical_cases

PERIOD = 600.0


@dataclass
class Car:
    demand: ElectricalDemand
    energy: float = 0.0
    running: bool = False
    paused_since: float | None = None
    # Over the current wait: the most waiting and fewest running seen, the
    # sessions paused before it when it became overdue, and whether it fitted
    # on its own at every decision.
    most_waiting: int = 0
    fewest_running: int = 10**9
    ahead: int | None = None
    fitted_alone: bool = True


@dataclass
class Controller:
    """What the controller keeps between decisions, and the checks."""

    case: ElectricalCase
    max_pause: float
    uniform: bool
    now: float = 0.0
    root_limit: float = math.inf
    last_boundary: float | None = None
    next_boundary: float = math.inf
    cars: dict[str, Car] = field(default_factory=dict)
    limits: dict[str, ElectricalLimit] = field(default_factory=dict)

    def advance(self, seconds: float) -> None:
        """Let time pass, deciding again at every boundary on the way."""
        end = self.now + seconds
        while self.next_boundary <= end:
            self._accumulate(self.next_boundary)
            self.decide()
        self._accumulate(end)

    def _accumulate(self, until: float) -> None:
        hours = (until - self.now) / 3600
        for sid, car in self.cars.items():
            car.energy += self.limits[sid].power * hours
        self.now = until

    def decide(self) -> None:
        now = self.now
        sessions = [
            RotationSession(sid, c.demand.started_at, c.energy, c.running, c.paused_since)
            for sid, c in self.cars.items()
        ]
        decision = rotation_order(now, sessions, self.last_boundary, PERIOD, self.max_pause)
        expected_boundary = self.last_boundary is None or now >= self.last_boundary + PERIOD
        assert decision.at_boundary == expected_boundary, (now, self.last_boundary)
        demands = [c.demand for c in self.cars.values()]
        station = self.case.station
        limits = allocate_electrical(station, demands, self.root_limit, decision.order)
        model = Model(ElectricalCase(station, demands, self.root_limit, list(decision.order)))
        check_feasible(model, limits)
        check_minimum_or_nothing(model, limits)
        check_pause_only_when_needed(model, limits)
        if decision.at_boundary:
            check_boundary_order(now, sessions, list(decision.order), self.max_pause)
        else:
            # Between boundaries the running set loses members only when it
            # no longer fits (a new session never displaces one).
            before = [sid for sid, c in self.cars.items() if c.running]
            stopped = [sid for sid in before if not limits[sid].running]
            if stopped:
                minimums = {sid: model.info[sid].min_kw for sid in before}
                assert not fits(model, minimums), ("paused between boundaries", now, stopped)

        running = {sid: limits[sid].running for sid in self.cars}
        # What the run went through (--hypothesis-show-statistics).
        if not all(running.values()):
            event("a decision paused someone")
        if decision.at_boundary and any(c.running and not running[s] for s, c in self.cars.items()):
            event("a boundary rotated someone out")
        if not decision.at_boundary and any(
            c.running and not running[s] for s, c in self.cars.items()
        ):
            event("a running session paused between boundaries")
        since = paused_since_after(now, sessions, running)
        waiting = sum(not r for r in running.values())
        runners = sum(running.values())
        for sid, car in self.cars.items():
            if since[sid] != car.paused_since:
                # A new wait (or none): start counting afresh.
                car.most_waiting, car.fewest_running = 0, 10**9
                car.ahead, car.fitted_alone = None, True
            car.running = running[sid]
            car.paused_since = since[sid]
            if car.paused_since is None:
                continue
            car.most_waiting = max(car.most_waiting, waiting)
            car.fewest_running = min(car.fewest_running, max(runners, 1))
            car.fitted_alone &= fits(model, {sid: model.info[sid].min_kw})
            waited = now - car.paused_since
            if car.ahead is None and waited >= self.max_pause:
                car.ahead = sum(
                    1
                    for other in self.cars.values()
                    if other.paused_since is not None and other.paused_since < car.paused_since
                )
            if not car.fitted_alone:
                continue
            if self.uniform:
                bound = (
                    max(self.max_pause, math.ceil(car.most_waiting / car.fewest_running) * PERIOD)
                    + PERIOD
                )
            else:
                # Overdue at paused_since + maxPause; from the next boundary
                # on, each boundary runs the longest-waiting one that fits.
                bound = self.max_pause + ((car.ahead or 0) + 1) * PERIOD
            assert waited <= bound, (sid, now, car.paused_since, bound, self.uniform)
            if waited >= self.max_pause + PERIOD:
                event("a wait beyond maxPause + one period, within the bound")
        self.limits = limits
        self.last_boundary = decision.last_boundary
        self.next_boundary = decision.next_boundary


def check_boundary_order(
    now: float, sessions: list[RotationSession], order: list[str], max_pause: float
) -> None:
    """The spec's order at a boundary, written out plainly."""
    by_id = {s.session_id: s for s in sessions}
    assert sorted(order) == sorted(by_id)

    def overdue(s: RotationSession) -> bool:
        return s.paused_since is not None and now - s.paused_since >= max_pause

    flags = [overdue(by_id[sid]) for sid in order]
    # The overdue ones form the head of the order.
    assert flags == sorted(flags, reverse=True), order
    head = [by_id[sid] for sid, f in zip(order, flags, strict=True) if f]
    tail = [by_id[sid] for sid, f in zip(order, flags, strict=True) if not f]
    since = [s.paused_since or 0.0 for s in head]
    assert since == sorted(since), "longest paused first"
    keys = [(s.energy, s.started_at, s.session_id) for s in tail]
    assert keys == sorted(keys), "then least energy, earliest start, id"


Event = tuple[str, int]


def events() -> st.SearchStrategy[list[Event]]:
    # Arrivals weigh most, so that stations fill up and sessions wait.
    step = st.one_of(
        st.tuples(st.sampled_from(["arrive"] * 4 + ["leave"]), st.integers(0, 40)),
        # Within a period, or across one or several boundaries.
        st.tuples(st.just("wait"), st.integers(1, int(PERIOD) - 1)),
        st.tuples(st.just("wait"), st.integers(int(PERIOD), int(4 * PERIOD))),
        st.tuples(st.just("limit"), st.integers(1, 20)),
    )
    return st.lists(step, min_size=4, max_size=40)


def run(
    case: ElectricalCase, steps: list[Event], max_pause: float, uniform: bool, scarce: float
) -> None:
    controller = Controller(case, max_pause, uniform, root_limit=case.root_limit * scarce)
    templates = case.demands
    arrived = 0
    for kind, value in steps:
        if kind == "arrive" and templates:
            template = templates[value % len(templates)]
            if uniform:
                # One car per charger, so that every car has the same footprint.
                busy = {c.demand.charger_id for c in controller.cars.values()}
                free = [d for d in templates if d.charger_id not in busy]
                if not free:
                    continue
                template = free[value % len(free)]
            sid = f"car{arrived:03d}"
            arrived += 1
            demand = replace(template, session_id=sid, started_at=controller.now, fixed=None)
            controller.cars[sid] = Car(demand, paused_since=controller.now)
        elif kind == "leave" and controller.cars:
            sid = sorted(controller.cars)[value % len(controller.cars)]
            del controller.cars[sid]
            del controller.limits[sid]
        elif kind == "limit":
            # The root's kW limit moves: a twentieth to all of what it was
            # drawn as, or none.
            controller.root_limit = case.root_limit * value / 20 if value < 20 else math.inf
        else:
            controller.advance(float(value))
            continue
        controller.decide()
    # Let the last state run through a few boundaries.
    controller.advance(3 * max(PERIOD, max_pause))


@settings(deadline=None, max_examples=100, derandomize=True)
@given(
    electrical_cases(max_chargers=6, scale=22, pins=False),
    events(),
    st.sampled_from([0.0, PERIOD, 2 * PERIOD]),
    st.sampled_from([0.02, 0.05, 0.1, 0.3, 1.0]),
)
def test_property_5_over_random_events_on_mixed_stations(
    case: ElectricalCase, steps: list[Event], max_pause: float, scarce: float
) -> None:
    run(case, steps, max_pause, uniform=False, scarce=scarce)


@st.composite
def uniform_cases(draw: st.DrawFn) -> ElectricalCase:
    """Stations where every car has the same footprint: 3-phase AC chargers on
    the same wiring, one car each, a grid current limit that fits some of them."""
    count = draw(st.integers(2, 8))
    chargers = tuple(ChargerNode(f"C{i}", 22) for i in range(count))
    step = draw(st.sampled_from([0.1, 0.5, 1.0]))
    minimum = draw(st.sampled_from([6.0, 8.0]))
    data = {c.id: ACCharger(3, 230, minimum, 32, step) for c in chargers}
    # Room for one to five cars at their minimum.
    grid = draw(st.integers(1, 5)) * minimum + draw(st.sampled_from([0.0, 0.5, 3.0]))
    station = ElectricalStation(StationTree(chargers), data, grid)
    demands = [ElectricalDemand(f"s{i}", c.id, 0.0) for i, c in enumerate(chargers)]
    return ElectricalCase(station, demands, math.inf, None)


@settings(deadline=None, max_examples=60, derandomize=True)
@given(uniform_cases(), events(), st.sampled_from([0.0, PERIOD, 2 * PERIOD]))
def test_property_5_wait_bound_over_random_events_on_uniform_stations(
    case: ElectricalCase, steps: list[Event], max_pause: float
) -> None:
    run(case, steps, max_pause, uniform=True, scarce=1.0)
