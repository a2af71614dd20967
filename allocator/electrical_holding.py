"""Holding back with the electrical model (docs/allocation.md, "Holding back";
docs/electrical-allocation.md).

The same two allocations as :func:`allocator.holding.allocate_holding`, with
:func:`allocator.electrical.allocate_electrical`: ``target`` is where the
station is heading, ``effective`` what it counts now, with every session that
will be lowered (or cannot grow yet) pinned at what its charger holds. A
session's value is in the unit its charger is sent: A per phase on an AC
charger, kW otherwise; ``held`` and ``fixed`` are in that unit too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from allocator.electrical import allocate_electrical
from allocator.electrical_model import CompiledStation
from allocator.electrical_types import ElectricalDemand, ElectricalLimit, ElectricalStation


def sent_value(limit: ElectricalLimit) -> float:
    """What a charger is sent for this limit: A per phase on AC (0 when paused), else kW."""
    if not limit.running:
        return 0.0
    return limit.current if limit.current is not None else limit.power


@dataclass(frozen=True, slots=True)
class ElectricalHoldingPlan:
    target: dict[str, ElectricalLimit]
    effective: dict[str, ElectricalLimit]
    # Sessions whose effective limit is their hold, not a limit of their own.
    pinned: frozenset[str] = frozenset()

    def to_send(self, session_id: str, held: float | None) -> float:
        """The value to push for a session whose charger holds ``held`` now (see
        :meth:`allocator.holding.HoldingPlan.to_send`: lowerings go to the target, a pinned
        session keeps its hold, everyone else gets the effective limit)."""
        target = sent_value(self.target[session_id])
        if held is not None and target < held:
            return target
        if held is not None and session_id in self.pinned:
            return held
        return sent_value(self.effective[session_id])


def allocate_electrical_holding(
    station: ElectricalStation | CompiledStation,
    demands: Sequence[ElectricalDemand],
    root_limit: float,
    held: Mapping[str, float],
    fixed: Mapping[str, float] | None = None,
    order: Sequence[str] | None = None,
) -> ElectricalHoldingPlan:
    """``held[session_id]``: the most that session's charger may be applying now (its unit).

    ``order`` is the rotation order (:mod:`allocator.rotation`). Sessions absent from
    ``held`` are not pinned; ``fixed`` pins sessions regardless of holds.
    """
    fixed = fixed or {}

    def with_pins(pins: Mapping[str, float]) -> list[ElectricalDemand]:
        return [
            replace(d, fixed=pins[d.session_id]) if d.session_id in pins else d for d in demands
        ]

    target = allocate_electrical(station, with_pins(fixed), root_limit, order)
    movable = {
        d.session_id
        for d in demands
        if d.fixed is None and d.session_id in held and d.session_id not in fixed
    }
    # As in allocate_holding: every session not going up is pinned at its hold at once;
    # only raise candidates remain to check.
    pins = {s: held[s] for s in movable if sent_value(target[s]) <= held[s]}
    if not any(sent_value(target[s]) < held[s] for s in pins):
        return ElectricalHoldingPlan(target, target, frozenset(pins))
    candidates = movable - pins.keys()
    while True:
        effective = allocate_electrical(station, with_pins({**fixed, **pins}), root_limit, order)
        squeezed = {s: held[s] for s in candidates if sent_value(effective[s]) < held[s]}
        if not squeezed:
            return ElectricalHoldingPlan(target, effective, frozenset(pins))
        # Each round pins at least one more raise candidate (a paused one too).
        pins.update(squeezed)
        candidates -= squeezed.keys()
