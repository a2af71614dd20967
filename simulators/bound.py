"""The offline upper bound of a day: the most energy the station could have delivered.

``ev-sim --bound`` solves a linear program over the day a run recorded and prints its optimum
beside the energy the controller delivered (docs/simulator-bound.md says what it assumes).

The problem (:class:`BoundProblem`): every session that plugged in, on the connector it got,
from its plug-in to when it left, wanting its energy; the station's limits: the grid in kW
(less what the rest of the site takes, when the station reads a site meter), ``gridCurrentLimit``
in A per site phase, each group's ``maxPower`` and ``maxCurrent``, each charger's ``maxPower``
and per-phase ``maxCurrent``, each vehicle's maximum power (and its AC phases and current), and
the stationary battery's power and energy. No minimum current: a session may take any power
from 0 up, so this bounds every allocation, with or without the 6 A minimum.

Time: the day is cut at every instant where something changes (a plug-in, a departure, a
corner of the site's profile, at least every ``SITE_STEP_S`` with a site). Between two cuts
the set of sessions and the limits are fixed, so a schedule's average power over a stretch
satisfies every constraint the instantaneous powers do (they are linear and time-invariant
there): one power per session per stretch loses nothing, and the optimum is exact for the
relaxed problem. Instants are rounded outward to whole seconds (plug-ins down, departures up),
which can only add room; a time-varying site headroom is taken at its largest over a stretch.
Every approximation errs upwards, so the result stays an upper bound.

What bounds a session's energy: what its driver wanted, and what its own charging curve takes
unlimited over its stay (a tapering curve cannot take its maximum power all along; the runner
computes that figure in 10 s steps, :data:`CURVE_MARGIN` covers the integration's error).
Its power is bounded by the curve's maximum.

scipy is optional (the ``sim`` extra): :func:`require_scipy` says how to install it.
"""

from __future__ import annotations

import bisect
import importlib
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.config import ChargerConfig, GroupConfig
from simulators.records import DayRecord
from simulators.scenarios import Scenario
from simulators.site import DAY_S, SiteProfile

__all__ = [
    "AcSupply",
    "BatteryLimits",
    "BoundError",
    "BoundProblem",
    "BoundResult",
    "BoundSession",
    "BoundUnavailable",
    "ChargerLimits",
    "GroupLimits",
    "add_bounds",
    "bound_figures",
    "bound_problem",
    "format_bound",
    "require_scipy",
    "solve_bound",
]

SITE_PHASES = ("L1", "L2", "L3")
# A charger without an AC description (DC, or no `electrical`) draws the same current on the
# three site phases at this voltage (docs/site.md, "Per phase").
DC_PHASE_VOLTAGE = 230.0
# A site's profile is cut at least this often (seconds), so that the largest headroom over a
# stretch is close to the headroom all along it.
SITE_STEP_S = 900.0
# The runner's figure of what a curve takes unlimited integrates in 10 s steps, as the
# simulated vehicles do, but on another grid of instants: this much room (relative, and kWh)
# keeps the cap above anything a vehicle could have drawn.
CURVE_MARGIN = 1e-3
CURVE_MARGIN_KWH = 1e-3
HOUR_S = 3600.0


class BoundUnavailable(Exception):
    """scipy is not installed."""


class BoundError(Exception):
    """The linear program could not be solved (a message says why)."""


def require_scipy() -> None:
    try:
        importlib.import_module("scipy.optimize")
    except ImportError:
        raise BoundUnavailable(
            "needs scipy (HiGHS): pip install 'ev-station-controller[sim]' or pip install scipy"
        ) from None


# -- the problem ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcSupply:
    """An AC charger's side of the wiring: ``site_phases[k]`` is the site phase its phase k+1
    is connected to; ``max_current`` is A per phase (None: only ``max_kw`` holds)."""

    voltage: float
    site_phases: tuple[str, ...]
    max_current: float | None = None


@dataclass(frozen=True, slots=True)
class ChargerLimits:
    charger_id: str
    max_kw: float
    ac: AcSupply | None = None  # None: balanced on the three site phases, as DC


@dataclass(frozen=True, slots=True)
class GroupLimits:
    """A group's limits over every charger under it (its subgroups' included)."""

    group_id: str
    chargers: frozenset[str]
    max_kw: float | None = None
    max_current: float | None = None  # A per site phase


@dataclass(frozen=True, slots=True)
class BatteryLimits:
    """The stationary battery: full at the start, ``power_kw`` either way, no losses."""

    capacity_kwh: float
    power_kw: float


@dataclass(frozen=True, slots=True)
class BoundSession:
    """One plugged-in stay. ``phases`` and ``max_current`` describe an AC vehicle's onboard
    charger (None: as many phases as the charger has, no current limit of its own)."""

    session_id: str
    charger_id: str
    start: float  # seconds from the start of the day
    end: float
    wanted_kwh: float
    max_kw: float
    phases: int | None = None
    max_current: float | None = None


# The most kW the rest of the site leaves the station between two instants (seconds).
Headroom = Callable[[float, float], float]


@dataclass(frozen=True, slots=True)
class BoundProblem:
    grid_kw: float
    chargers: tuple[ChargerLimits, ...]
    sessions: tuple[BoundSession, ...]
    grid_current: float | None = None  # A per site phase
    groups: tuple[GroupLimits, ...] = ()
    battery: BatteryLimits | None = None
    headroom: Headroom | None = None
    # Instants where the headroom bends or steps (the stretches are cut there too).
    cuts: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class BoundResult:
    energy_kwh: float
    sessions: int
    stretches: int
    variables: int
    constraints: int
    solve_s: float
    per_session_kwh: dict[str, float] = field(default_factory=dict)


# -- one session on the wiring -------------------------------------------------------------------


def _phase_load(
    session: BoundSession, charger: ChargerLimits
) -> tuple[dict[str, float], float, float | None]:
    """How a session loads the site phases: A per kW on each phase it uses, its own power
    bound (kW), and its A per kW on the charger's phases (None on a balanced charger)."""
    ac = charger.ac
    cap_kw = min(session.max_kw, charger.max_kw)
    if ac is None:
        per_kw = 1000.0 / (3 * DC_PHASE_VOLTAGE)
        return dict.fromkeys(SITE_PHASES, per_kw), cap_kw, None
    used = len(ac.site_phases)
    if session.phases is not None:
        used = max(1, min(used, session.phases))
    per_kw = 1000.0 / (ac.voltage * used)
    loads: dict[str, float] = {}
    for phase in ac.site_phases[:used]:
        loads[phase] = loads.get(phase, 0.0) + per_kw
    for amps in (ac.max_current, session.max_current):
        if amps is not None:
            cap_kw = min(cap_kw, amps * ac.voltage * used / 1000.0)
    return loads, cap_kw, per_kw


# -- the linear program --------------------------------------------------------------------------


def _cuts(problem: BoundProblem) -> list[float]:
    """The instants where a stretch ends, outward to whole seconds."""
    moments: set[float] = set(problem.cuts)
    for s in problem.sessions:
        moments.add(math.floor(s.start))
        moments.add(math.ceil(s.end))
    return sorted(moments)


class _Rows:
    """Sparse constraint rows ``sum coef * x <= bound`` (or ``==``), built up one at a time."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.values: list[float] = []
        self.bounds: list[float] = []

    def add(self, terms: Iterable[tuple[int, float]], bound: float) -> None:
        row = len(self.bounds)
        for col, value in terms:
            self.rows.append(row)
            self.cols.append(col)
            self.values.append(value)
        self.bounds.append(bound)

    def matrix(self, columns: int) -> Any:
        sparse = importlib.import_module("scipy.sparse")
        return sparse.csr_array(
            (self.values, (self.rows, self.cols)), shape=(len(self.bounds), columns)
        )


def solve_bound(problem: BoundProblem) -> BoundResult:
    """The most energy (kWh) the sessions could have taken within every limit."""
    require_scipy()
    started = time.perf_counter()
    optimize = importlib.import_module("scipy.optimize")
    chargers = {c.charger_id: c for c in problem.chargers}
    sessions = [s for s in problem.sessions if s.end > s.start and s.wanted_kwh > 0]
    unknown = sorted({s.charger_id for s in sessions} - chargers.keys())
    if unknown:
        raise BoundError(f"sessions on unknown chargers: {', '.join(unknown)}")
    cuts = _cuts(problem)  # sorted, distinct: every stretch is a pair of neighbours
    stretches = list(itertools.pairwise(cuts))

    # Variables: a power per session per stretch it covers, then (with a battery) its
    # discharge per stretch (negative: charging) and its energy at each stretch's end.
    objective: list[float] = []
    upper: list[float] = []
    lower: list[float] = []
    weight: list[float] = []  # kWh per kW of each variable (a stretch's hours)
    owner: list[int] = []  # session index of each power variable
    by_stretch: list[list[int]] = [[] for _ in stretches]
    loads = [_phase_load(s, chargers[s.charger_id]) for s in sessions]
    for index, session in enumerate(sessions):
        start, end = math.floor(session.start), math.ceil(session.end)
        cap_kw = loads[index][1]
        if cap_kw <= 0:
            continue
        for k in range(bisect.bisect_left(cuts, start), bisect.bisect_left(cuts, end)):
            hours = (cuts[k + 1] - cuts[k]) / HOUR_S
            by_stretch[k].append(len(objective))
            objective.append(-hours)
            lower.append(0.0)
            upper.append(cap_kw)
            weight.append(hours)
            owner.append(index)
    powers = len(objective)
    battery = problem.battery
    discharge = energy = -1
    if battery is not None:
        discharge = len(objective)
        for _ in stretches:
            objective.append(0.0)
            lower.append(-battery.power_kw)
            upper.append(battery.power_kw)
        energy = len(objective)
        for _ in stretches:
            objective.append(0.0)
            lower.append(0.0)
            upper.append(battery.capacity_kwh)

    ub, eq = _Rows(), _Rows()
    # Each session: no more than it wants.
    per_session: list[list[tuple[int, float]]] = [[] for _ in sessions]
    for col in range(powers):
        per_session[owner[col]].append((col, weight[col]))
    for index, terms in enumerate(per_session):
        if terms:
            ub.add(terms, sessions[index].wanted_kwh)
    for k, (a, b) in enumerate(stretches):
        cols = by_stretch[k]
        if not cols and battery is None:
            continue
        relief = [] if battery is None else [(discharge + k, -1.0)]
        root_kw = problem.grid_kw
        if problem.headroom is not None:
            root_kw = min(root_kw, problem.headroom(a, b))
        # The grid in kW, and no export from the battery.
        ub.add([(c, 1.0) for c in cols] + relief, max(0.0, root_kw))
        if battery is not None:
            ub.add([(c, -1.0) for c in cols] + [(discharge + k, 1.0)], 0.0)
            previous = battery.capacity_kwh
            hours = (b - a) / HOUR_S
            terms = [(energy + k, 1.0), (discharge + k, hours)]
            if k > 0:
                terms.append((energy + k - 1, -1.0))
                previous = 0.0
            eq.add(terms, previous)
        if not cols:
            continue
        _stretch_rows(ub, problem, sessions, loads, owner, cols, relief, chargers)
    if not objective:  # nobody could take anything
        return BoundResult(0.0, len(sessions), len(stretches), 0, 0, time.perf_counter() - started)
    solution = optimize.linprog(
        objective,
        A_ub=ub.matrix(len(objective)) if ub.bounds else None,
        b_ub=ub.bounds or None,
        A_eq=eq.matrix(len(objective)) if eq.bounds else None,
        b_eq=eq.bounds or None,
        bounds=list(zip(lower, upper, strict=True)),
        method="highs",
    )
    if solution.status != 0:
        raise BoundError(f"the linear program was not solved: {solution.message}")
    per: dict[str, float] = {}
    for col in range(powers):
        name = sessions[owner[col]].session_id
        per[name] = per.get(name, 0.0) + float(solution.x[col]) * weight[col]
    return BoundResult(
        energy_kwh=-float(solution.fun),
        sessions=len(sessions),
        stretches=len(stretches),
        variables=len(objective),
        constraints=len(ub.bounds) + len(eq.bounds),
        solve_s=time.perf_counter() - started,
        per_session_kwh=per,
    )


def _stretch_rows(
    ub: _Rows,
    problem: BoundProblem,
    sessions: Sequence[BoundSession],
    loads: Sequence[tuple[dict[str, float], float, float | None]],
    owner: Sequence[int],
    cols: Sequence[int],
    relief: list[tuple[int, float]],
    chargers: dict[str, ChargerLimits],
) -> None:
    """One stretch's shared limits: site phases, groups, chargers with several sessions."""
    if problem.grid_current is not None:
        # The battery, a balanced three-phase inverter, relieves each phase equally.
        per_kw = 1000.0 / (3 * DC_PHASE_VOLTAGE)
        for phase in SITE_PHASES:
            terms = [(c, loads[owner[c]][0].get(phase, 0.0)) for c in cols]
            terms = [(c, v) for c, v in terms if v] + [(d, v * per_kw) for d, v in relief]
            ub.add(terms, problem.grid_current)
    for group in problem.groups:
        inside = [c for c in cols if sessions[owner[c]].charger_id in group.chargers]
        if not inside:
            continue
        if group.max_kw is not None:
            ub.add([(c, 1.0) for c in inside], group.max_kw)
        if group.max_current is not None:
            for phase in SITE_PHASES:
                terms = [(c, loads[owner[c]][0].get(phase, 0.0)) for c in inside]
                terms = [(c, v) for c, v in terms if v]
                if terms:
                    ub.add(terms, group.max_current)
    on_charger: dict[str, list[int]] = {}
    for c in cols:
        on_charger.setdefault(sessions[owner[c]].charger_id, []).append(c)
    for charger_id, shared in on_charger.items():
        if len(shared) < 2:
            continue  # one session alone: its own bound already holds the charger's
        charger = chargers[charger_id]
        ub.add([(c, 1.0) for c in shared], charger.max_kw)
        ac = charger.ac
        if ac is not None and ac.max_current is not None:
            for phase in set(ac.site_phases):
                terms = [(c, loads[owner[c]][0].get(phase, 0.0)) for c in shared]
                terms = [(c, v) for c, v in terms if v]
                if terms:
                    ub.add(terms, ac.max_current)


# -- from a scenario and what a run recorded -----------------------------------------------------


def _charger_limits(charger: ChargerConfig) -> ChargerLimits:
    """A charger of the station config: an AC one with its phases, wiring and current
    (docs/electrical.md); any other draws balanced on the three phases."""
    ac = charger.ac
    if ac is None:
        return ChargerLimits(charger.id, charger.max_power)
    phases = ac.site_phases()[: ac.phases]
    return ChargerLimits(
        charger.id, charger.max_power, AcSupply(ac.voltage, phases, ac.max_current)
    )


def _group_limits(groups: Iterable[GroupConfig]) -> list[GroupLimits]:
    """Every group, nested ones too, each over all the chargers under it."""
    found: list[GroupLimits] = []

    def walk(group: GroupConfig) -> frozenset[str]:
        members = frozenset(group.chargers).union(*(walk(sub) for sub in group.groups))
        found.append(GroupLimits(group.id, members, group.max_power, group.max_current))
        return members

    for group in groups:
        walk(group)
    return found


def _vehicle_ac(vehicle: Any) -> tuple[int | None, float | None]:
    """An AC vehicle's phases and current per phase, when the simulator describes them (read
    by name: the vehicles' AC model is another piece of work, simulators/vehicles.py)."""
    phases = getattr(vehicle, "phases", None)
    amps = getattr(vehicle, "max_current", None)
    if amps is None:
        amps = getattr(vehicle, "max_current_a", None)
    return (
        None if phases is None else int(phases),
        None if amps is None else float(amps),
    )


def _site_headroom(site: SiteProfile, limit_kw: float) -> Headroom:
    """The most the rest of the site leaves between two instants: the connection's limit less
    the building at its lowest plus the sun at its highest over the stretch (the stretches are
    cut at the profiles' corners, so the building is linear in between)."""
    middle_h = (site.sunrise_h + site.sunset_h) / 2

    def headroom(a: float, b: float) -> float:
        building = min(site.building_kw(a), site.building_kw(b, left=True))
        solar = max(site.solar_kw(a), site.solar_kw(b, left=True))
        if site.solar is None and site.solar_peak_kw > 0:
            day = math.floor(a / DAY_S)
            while day * DAY_S <= b:
                noon = day * DAY_S + middle_h * HOUR_S
                if a <= noon <= b:
                    solar = max(solar, site.solar_peak_kw)
                day += 1
        return limit_kw - building + solar

    return headroom


def bound_problem(scenario: Scenario, record: DayRecord) -> BoundProblem:
    """The problem of a run: its sessions as they plugged in (charger, plug-in, departure as
    the runner recorded them) on the scenario's station."""
    station = scenario.station
    vehicles = {v.vehicle.vehicle_id: v.vehicle for v in scenario.visits()}
    sessions: list[BoundSession] = []
    for s in record.sessions:
        if s.plugged_at is None or s.charger_id is None:
            continue
        end = s.left_at if s.left_at is not None else record.duration_s
        achievable = s.plugged_achievable_kwh
        if achievable is None:
            achievable = s.achievable_kwh
        phases, amps = _vehicle_ac(vehicles.get(s.vehicle_id))
        sessions.append(
            BoundSession(
                session_id=s.vehicle_id,
                charger_id=s.charger_id,
                start=s.plugged_at,
                end=end,
                wanted_kwh=min(s.requested_kwh, achievable * (1 + CURVE_MARGIN) + CURVE_MARGIN_KWH),
                max_kw=s.max_kw,
                phases=phases,
                max_current=amps,
            )
        )
    headroom: Headroom | None = None
    cuts: list[float] = []
    if scenario.site is not None and scenario.meter is not None:
        # The station reads the site: it may take what the building and the sun leave.
        limit = scenario.connection_limit_kw
        assert limit is not None
        profile = scenario.site.profile()
        headroom = _site_headroom(profile, limit)
        cuts = profile.corners(record.duration_s)
        steps = math.ceil(record.duration_s / SITE_STEP_S)
        cuts += [min(i * SITE_STEP_S, record.duration_s) for i in range(steps + 1)]
    battery = station.battery
    return BoundProblem(
        grid_kw=float(station.grid_capacity),
        grid_current=station.grid_current_limit,
        chargers=tuple(_charger_limits(c) for c in station.chargers),
        groups=tuple(_group_limits(station.groups)),
        battery=None
        if battery is None
        else BatteryLimits(float(battery.initial_capacity), float(battery.power)),
        sessions=tuple(sessions),
        headroom=headroom,
        cuts=tuple(sorted(set(cuts))),
    )


# -- in the report -------------------------------------------------------------------------------


def bound_figures(
    result: BoundResult, delivered_kwh: float, common_kwh: float | None = None
) -> dict[str, Any]:
    """The report's ``bound`` object. ``common_kwh``: the bound the runs of a comparison are
    measured against (the largest of theirs), when it is not this run's own."""
    own = result.energy_kwh
    bound = own if common_kwh is None else common_kwh
    return {
        "boundKwh": round(bound, 3),
        "runBoundKwh": round(own, 3),
        "deliveredKwh": round(delivered_kwh, 3),
        "deliveredOfBoundPercent": None if bound <= 0 else round(100 * delivered_kwh / bound, 2),
        "sessions": result.sessions,
        "stretches": result.stretches,
        "variables": result.variables,
        "constraints": result.constraints,
        "solveSeconds": round(result.solve_s, 3),
    }


def format_bound(reports: Sequence[dict[str, Any]], table: str = "") -> str:
    """Rows to print under the report's table: the bound beside the delivered energy. Given
    the table (:func:`simulators.report.format_table`), each cell ends where its column does."""
    names = [str(r.get("variant") or r["strategy"]) for r in reports]
    header = table.splitlines()[0] if table else ""
    ends: list[int] = []
    position = header.find("  ")
    for name in names:
        found = header.find(name, max(position, 0)) if position >= 0 else -1
        position = found + len(name) if found >= 0 else -1
        ends.append(position)
    lines = []
    for label, key in (("offline upper bound (kWh)", "boundKwh"), ("delivered / bound", "share")):
        line = label
        for report, end in zip(reports, ends, strict=True):
            cell = _bound_cell(report.get("bound"), key)
            line += " " * max(2, end - len(line) - len(cell)) + cell
        lines.append(line)
    return "\n".join(lines)


def _bound_cell(bound: dict[str, Any] | None, key: str) -> str:
    if bound is None:
        return "-"
    if key == "share":
        share = bound["deliveredOfBoundPercent"]
        return "-" if share is None else f"{share:.1f} %"
    return f"{bound[key]:.1f}"


def add_bounds(
    days: Sequence[Scenario], records: Sequence[DayRecord], reports: Sequence[dict[str, Any]]
) -> None:
    """Put the ``bound`` into each report (``ev-sim --bound``). Each run is bounded over its
    own plug-ins; the runs of a comparison are all measured against the largest of those
    bounds, which bounds every one of them (the same figure for all unless a driver who
    leaves when done freed a connector sooner in one run than in another)."""
    results = [solve_bound(bound_problem(d, r)) for d, r in zip(days, records, strict=True)]
    common = max((r.energy_kwh for r in results), default=0.0)
    for result, report in zip(results, reports, strict=True):
        delivered = float(report["energyDeliveredKwh"])
        report["bound"] = bound_figures(result, delivered, common if len(results) > 1 else None)
