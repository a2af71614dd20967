"""Allocation while chargers still hold older, higher limits (docs/allocation.md,
"Holding back").

A charger applies a new limit only once it has accepted it. Until then it may
still draw up to what it held before, so handing that power to someone else
would let the sum of what chargers may be applying exceed the root limit.

``allocate_holding`` therefore computes two allocations:

* ``target``: where the station is heading, ignoring what chargers hold. A
  session whose target is below what its charger holds gets a lowering sent
  (to its target).
* ``effective``: what the station counts and reports right now. Every session
  that will be lowered is pinned at what its charger holds; so is every session
  that the pins would squeeze below its own hold (it is not lowered, it just
  cannot grow yet). The others share what is left, and whatever they get above
  their hold is a raise that is safe to send at once: the effective limits plus
  the holds of pinned sessions never exceed any node's limit.

Confirmations shrink the holds; the next run then lets the raises through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from allocator.api import allocate
from allocator.tree import CompiledTree
from allocator.types import Demand, Limit, StationTree, Strategy


@dataclass(frozen=True, slots=True)
class HoldingPlan:
    target: dict[str, Limit]
    effective: dict[str, Limit]
    # Sessions whose effective limit is their hold, not a limit of their own.
    pinned: frozenset[str] = frozenset()

    def to_send(self, session_id: str, held: float | None) -> float:
        """The limit to push for a session whose charger holds ``held`` kW now.

        A lowering goes straight to the target. A session pinned at its hold
        keeps what it holds: its effective limit is a reservation, and if the
        hold has shrunk since this plan (a lowering was accepted meanwhile),
        sending it would undo that lowering. Otherwise the effective limit,
        which this plan found safe to raise to.
        """
        return value_to_send(
            self.target[session_id].power,
            self.effective[session_id].power,
            held,
            session_id in self.pinned,
        )


def value_to_send(target: float, effective: float, held: float | None, pinned: bool) -> float:
    """See :meth:`HoldingPlan.to_send`, for limits already read in the unit of ``held``."""
    if held is not None and target < held:
        return target
    if held is not None and pinned:
        return held
    return effective


L = TypeVar("L")


def hold_back(
    target: Mapping[str, L],
    movable: Iterable[str],
    held: Mapping[str, float],
    value: Callable[[L], float],
    allocate_pinned: Callable[[Mapping[str, float]], Mapping[str, L]],
) -> tuple[Mapping[str, L], frozenset[str]]:
    """The effective allocation beside ``target`` and the sessions pinned at their hold.

    ``movable``: sessions with a hold and no pin of their own; ``value`` reads a limit in
    the unit of the holds; ``allocate_pinned`` allocates again with these sessions pinned.
    Every session that is not going up is pinned at its hold at once. Pinning a session
    above its target leaves the others less room than the target allocation had, and max-min
    fair shares only shrink when room shrinks, so such a session could end no higher than its
    target anyway: at or below its hold, i.e. held (squeezed) or lowered. Only raise
    candidates remain to check.
    """
    movable = set(movable)
    pins = {s: held[s] for s in movable if value(target[s]) <= held[s]}
    if not any(value(target[s]) < held[s] for s in pins):
        return target, frozenset(pins)
    candidates = movable - pins.keys()
    while True:
        effective = allocate_pinned(pins)
        squeezed = {s: held[s] for s in candidates if value(effective[s]) < held[s]}
        if not squeezed:
            return effective, frozenset(pins)
        # Each round pins at least one more raise candidate; usually there is one round.
        pins.update(squeezed)
        candidates -= squeezed.keys()


def allocate_holding(
    tree: StationTree | CompiledTree,
    demands: Sequence[Demand],
    root_limit: float,
    strategy: Strategy,
    held: Mapping[str, float],
    fixed: Mapping[str, int] | None = None,
) -> HoldingPlan:
    """``held[session_id]``: the most that session's charger may be applying now.

    Sessions absent from ``held`` (new ones still on the failsafe default,
    sessions with no charger to profile) are not pinned. ``fixed`` pins
    sessions regardless of holds, like ``Demand.fixed``.
    """
    fixed = fixed or {}
    target = allocate(tree, demands, root_limit, strategy, fixed)
    movable = [
        d.session_id
        for d in demands
        if d.fixed is None and d.session_id in held and d.session_id not in fixed
    ]

    def allocate_pinned(pins: Mapping[str, float]) -> dict[str, Limit]:
        # A hold is whole kW (the limits sent are); were it not, it is counted rounded up.
        whole = {s: math.ceil(kw) for s, kw in pins.items()}
        return allocate(tree, demands, root_limit, strategy, {**fixed, **whole})

    effective, pinned = hold_back(target, movable, held, lambda limit: limit.power, allocate_pinned)
    return HoldingPlan(target, dict(effective), pinned)
