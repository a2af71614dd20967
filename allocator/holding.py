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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
        target = self.target[session_id].power
        if held is not None and target < held:
            return target
        if held is not None and session_id in self.pinned:
            return held
        return self.effective[session_id].power


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
    movable = {
        d.session_id
        for d in demands
        if d.fixed is None and d.session_id in held and d.session_id not in fixed
    }
    # Every session that is not going up is pinned at its hold at once. Pinning a
    # session above its target leaves the others less room than the target
    # allocation had, and max-min fair shares only shrink when room shrinks, so
    # such a session could end no higher than its target anyway: at or below its
    # hold, i.e. held (squeezed) or lowered. Only raise candidates remain to check.
    # A hold is whole kW (the limits sent are); were it not, it is counted rounded up.
    pins = {s: math.ceil(held[s]) for s in movable if target[s].power <= held[s]}
    if not any(target[s].power < held[s] for s in pins):
        return HoldingPlan(target, target, frozenset(pins))
    candidates = movable - pins.keys()
    while True:
        effective = allocate(tree, demands, root_limit, strategy, {**fixed, **pins})
        squeezed = {s: math.ceil(held[s]) for s in candidates if effective[s].power < held[s]}
        if not squeezed:
            return HoldingPlan(target, effective, frozenset(pins))
        # Each round pins at least one more raise candidate; usually there is one round.
        pins.update(squeezed)
        candidates -= squeezed.keys()
