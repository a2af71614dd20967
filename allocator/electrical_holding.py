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
from allocator.holding import hold_back, value_to_send


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
        return value_to_send(
            sent_value(self.target[session_id]),
            sent_value(self.effective[session_id]),
            held,
            session_id in self.pinned,
        )


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
    movable = [
        d.session_id
        for d in demands
        if d.fixed is None and d.session_id in held and d.session_id not in fixed
    ]

    def allocate_pinned(pins: Mapping[str, float]) -> dict[str, ElectricalLimit]:
        return allocate_electrical(station, with_pins({**fixed, **pins}), root_limit, order)

    effective, pinned = hold_back(target, movable, held, sent_value, allocate_pinned)
    return ElectricalHoldingPlan(target, dict(effective), pinned)
