"""Hypothesis strategies: random stations (nested groups included) and sessions.

``cases`` draws every value through Hypothesis (good shrinking, slow per
value); ``large_cases`` builds a station of hundreds of sessions from one
drawn seed, which keeps big examples cheap.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from hypothesis import strategies as st

from allocator import ChargerNode, Demand, GroupNode, StationTree

T = TypeVar("T")


@dataclass(frozen=True)
class Case:
    tree: StationTree
    demands: list[Demand]
    root_limit: float


# Fractional and tiny limits on purpose: floors, zero limits, 1 kW shares.
_POWERS = [0.5, 1, 2, 3.7, 7.9, 11, 22, 43.5, 50, 75, 150, 200, 300]
_VEHICLES = [0.4, 1, 1.9, 3, 7.4, 11, 22, 49.9, 100, 150, 350]


class Source(Protocol):
    def integer(self, low: int, high: int) -> int: ...
    def real(self, low: float, high: float) -> float: ...
    def choice(self, items: Sequence[T]) -> T: ...
    def shuffled(self, items: list[T]) -> list[T]: ...


class _Drawn:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def real(self, low: float, high: float) -> float:
        return self.draw(st.floats(low, high, allow_nan=False))

    def choice(self, items: Sequence[T]) -> T:
        return self.draw(st.sampled_from(items))

    def shuffled(self, items: list[T]) -> list[T]:
        return self.draw(st.permutations(items))


class _Seeded:
    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.rnd.randint(low, high)

    def real(self, low: float, high: float) -> float:
        return self.rnd.uniform(low, high)

    def choice(self, items: Sequence[T]) -> T:
        return self.rnd.choice(items)

    def shuffled(self, items: list[T]) -> list[T]:
        return self.rnd.sample(items, len(items))


def build_case(
    src: Source, *, min_chargers: int = 1, max_chargers: int, scale: float, pins: bool
) -> Case:
    """A station of min..max_chargers chargers with 1-4 connectors and 0-4 groups."""

    def power(top: float) -> float:
        if src.integer(0, 1):
            return src.choice([p for p in _POWERS if p <= top])
        return round(src.real(0, top), 1)

    n_chargers = src.integer(min_chargers, max_chargers)
    chargers = [ChargerNode(f"CP{i}", power(scale)) for i in range(n_chargers)]
    connectors = [src.integer(1, 4) for _ in chargers]

    # Group j's parent is an earlier group or the root; each charger sits in
    # at most one group. A group's limit is mostly a fraction of what is below
    # it, so that groups do bind.
    n_groups = src.integer(0, 4)
    group_parent = [src.integer(-1, j - 1) for j in range(n_groups)]
    charger_group = [src.integer(-1, n_groups - 1) for _ in chargers]
    below = [0.0] * n_groups
    for charger, g in zip(chargers, charger_group, strict=True):
        if g >= 0:
            below[g] += charger.max_power
    built: dict[int, GroupNode] = {}
    for j in reversed(range(n_groups)):
        subgroups = tuple(built[k] for k in range(j + 1, n_groups) if group_parent[k] == j)
        below[j] += sum(below[k] for k in range(j + 1, n_groups) if group_parent[k] == j)
        limit = (
            power(scale * 2) if src.integer(0, 3) == 0 else round(below[j] * src.real(0.2, 1.2), 1)
        )
        built[j] = GroupNode(
            id=f"G{j}",
            max_power=limit,
            chargers=tuple(c.id for c, g in zip(chargers, charger_group, strict=True) if g == j),
            groups=subgroups,
        )
    top = tuple(built[j] for j in range(n_groups) if group_parent[j] == -1)
    tree = StationTree(tuple(chargers), top)

    # Few distinct start times and shuffled ids, so both tie-breaks matter.
    # Vehicles: unknown, common values, or around the charger's power (where
    # a vehicle cap and the charger's share compete).
    slots: list[tuple[str, float | None, int | None, float]] = []
    for charger, n_connectors in zip(chargers, connectors, strict=True):
        for _ in range(n_connectors - src.integer(0, n_connectors) // 2):
            kind = src.integer(0, 3)
            vehicle = (
                None
                if kind == 0
                else src.choice(_VEHICLES)
                if kind == 1
                else round(src.real(0, charger.max_power * 1.2), 2)
                if kind == 2
                else round(src.real(0, scale * 1.5), 2)
            )
            fixed = src.integer(0, int(scale) // 2) if pins and src.integer(0, 5) == 0 else None
            slots.append((charger.id, vehicle, fixed, float(src.integer(0, 4))))
    ids = src.shuffled([f"s{i:03d}" for i in range(len(slots))])
    demands = [
        Demand(sid, charger_id, started_at, vehicle, fixed)
        for sid, (charger_id, vehicle, fixed, started_at) in zip(ids, slots, strict=True)
    ]
    # Tight, loose, or more than everything below (then lower nodes bind).
    total = sum(c.max_power for c in chargers)
    kind = src.integer(0, 3)
    root_limit = (
        round(src.real(0, total), 1)
        if kind == 0
        else float(src.integer(0, int(scale) * 2))
        if kind == 1
        else total + 1
        if kind == 2
        else round(src.real(0.3, 0.9) * total, 1)
    )
    return Case(tree, demands, root_limit)


@st.composite
def cases(draw: st.DrawFn, *, max_chargers: int = 8, scale: float = 300, pins: bool = True) -> Case:
    return build_case(_Drawn(draw), max_chargers=max_chargers, scale=scale, pins=pins)


def large_cases(
    *, min_chargers: int = 1, max_chargers: int = 100, scale: float = 300
) -> st.SearchStrategy[Case]:
    return st.integers(0, 2**32).map(
        lambda seed: build_case(
            _Seeded(seed),
            min_chargers=min_chargers,
            max_chargers=max_chargers,
            scale=scale,
            pins=True,
        )
    )
