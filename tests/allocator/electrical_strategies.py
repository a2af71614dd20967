"""Random electrical stations for the property tests (docs/electrical-allocation.md).

A kW station from :func:`tests.allocator.strategies.build_case`, then, per
charger: AC (1 or 3 phases, rotated wiring, a minimum, a step, sometimes a
current limit), DC with a minimum power, or no electrical data; current
limits per phase on the root and on some groups; sessions using one, two or
all of their charger's phases, some with a vehicle current.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import strategies as st

from allocator import GroupNode
from allocator.electrical_types import (
    ACCharger,
    DCCharger,
    Electrical,
    ElectricalDemand,
    ElectricalStation,
)
from tests.allocator.strategies import Case, Source, _Drawn, _Seeded, build_case

ROTATIONS = (("L1", "L2", "L3"), ("L2", "L3", "L1"), ("L3", "L1", "L2"))


@dataclass(frozen=True)
class ElectricalCase:
    station: ElectricalStation
    demands: list[ElectricalDemand]
    root_limit: float
    order: list[str] | None


def _groups(groups: tuple[GroupNode, ...]) -> list[GroupNode]:
    out: list[GroupNode] = []
    for g in groups:
        out.append(g)
        out.extend(_groups(g.groups))
    return out


def electrify(
    src: Source, case: Case, *, dc_share: int = 1, legacy_share: int = 1
) -> ElectricalCase:
    chargers: dict[str, Electrical] = {}
    for charger in case.tree.chargers:
        kind = src.integer(0, 4 + dc_share + legacy_share)
        if kind < dc_share:
            fitting = [m for m in (0, 1, 5, 10.5) if math.ceil(m) <= math.floor(charger.max_power)]
            chargers[charger.id] = DCCharger(min_power=src.choice(fitting))
        elif kind < dc_share + legacy_share:
            continue
        else:
            count = src.choice([1, 3, 3])
            wiring = src.choice(ROTATIONS)[:count]
            chargers[charger.id] = ACCharger(
                phases=count,
                voltage=src.choice([230.0, 230.0, 240.0]),
                min_current=src.choice([6.0, 6.0, 8.0, 0.0]),
                max_current=src.choice([None, 16.0, 32.0, 63.0]),
                current_step=src.choice([0.1, 0.1, 1.0, 0.5]),
                wiring=None if src.integer(0, 4) == 0 else wiring,
            )
    group_max_current = {
        g.id: float(src.choice([6, 16, 20, 32, 40, 63, 100, 250]))
        for g in _groups(case.tree.groups)
        if src.integer(0, 1)
    }
    grid = [None, 16.0, 32.0, 64.0, 100.0, 400.0][src.integer(0, 5)]
    demands: list[ElectricalDemand] = []
    for d in case.demands:
        data = chargers.get(d.charger_id)
        phases: int | tuple[int, ...] | None = None
        current = None
        fixed: float | None = d.fixed
        if isinstance(data, ACCharger):
            pick = src.integer(0, 4)
            if data.phases == 3 and pick == 1:
                phases = 1
            elif data.phases == 3 and pick == 2:
                phases = (src.integer(1, 3),)
            elif data.phases == 3 and pick == 3:
                phases = (1, 3)
            if src.integer(0, 2) == 0:
                current = float(src.choice([5, 10, 16, 32]))
            if fixed is not None:
                fixed = float(src.choice([0, 6, 10, 16]))
        demands.append(
            ElectricalDemand(
                d.session_id,
                d.charger_id,
                d.started_at,
                vehicle_max_power=d.vehicle_max_power,
                vehicle_max_current=current,
                phases=phases,
                fixed=fixed,
            )
        )
    order = None
    if src.integer(0, 1):
        order = src.shuffled([d.session_id for d in demands])
        # A rotation order may leave sessions out; they come last.
        order = order[: src.integer(0, len(order))]
    station = ElectricalStation(case.tree, chargers, grid, group_max_current)
    return ElectricalCase(station, demands, case.root_limit, order)


@st.composite
def electrical_cases(
    draw: st.DrawFn, *, max_chargers: int = 8, scale: float = 60, pins: bool = True
) -> ElectricalCase:
    src = _Drawn(draw)
    case = build_case(src, max_chargers=max_chargers, scale=scale, pins=pins)
    return electrify(src, case)


def large_electrical_cases(
    *, min_chargers: int = 10, max_chargers: int = 80, scale: float = 60
) -> st.SearchStrategy[ElectricalCase]:
    def build(seed: int) -> ElectricalCase:
        src = _Seeded(seed)
        case = build_case(
            src, min_chargers=min_chargers, max_chargers=max_chargers, scale=scale, pins=True
        )
        return electrify(src, case)

    return st.integers(0, 2**32).map(build)
