"""Pure power allocation: station tree + sessions + available power -> whole-kW limits.

Theory of operation
-------------------
docs/allocation.md ("Strategy `fair`") defines ``fair`` by a reference procedure:
starting from 0, repeatedly add 1 kW to the growable session with the lowest
allocation (ties: earliest ``started_at``, then smallest ``session_id``), where
growable means the session stays within its cap and every node above it
(charger, groups, station root) stays within its limit. We compute the same
result without the 1 kW steps.

*Rounds.* The procedure works in rounds: round t+1 visits the sessions at
level t in priority order and gives each 1 kW if it is still growable.
Allocations only grow, so a session that is not growable never becomes
growable again.

*One node.* For a single node with room R over sessions with caps e_i, the
procedure reaches the largest whole level T with ``sum(min(e_i, T)) <= R``;
everyone ends at ``min(e_i, T)`` except that in the partial round T+1 the
``R - sum(min(e_i, T))`` kW left go one each to the earliest-priority sessions
with ``e_i > T``. Equivalently, a session is settled at its cap iff
``H(e_i) <= R`` (``H(t) = sum(min(e_j, t))``), and the others share the rest:
``T = (R - settled caps) // growing``.

*A tree.* Let ``A_v`` be what node v's subtree would hand out if v were the
top of the station (its "internal" result). Then ``A_v`` is the one-node fill
at v whose caps are the internal results of v's children (a session's own cap
at the bottom). Why: until round T_v+1 nothing at v binds, so its subtree
evolves as if v were absent; in round T_v+1 a session below v grows iff it
grows in its child's internal result and v still has room when its turn comes
in priority order, which is the one-node rule with those results as caps
(nodes below that fill up in the same round are accounted for by the caps:
they let through exactly their internal winners, who come first in priority).
After that round v is full and nothing below it grows again. Induction from
the chargers up to the root gives the reference result at the root.

So ``progressive_fill`` (:mod:`allocator.fair`) settles all nodes of height 1
(chargers), then height 2, ... up to the root, each height in one vectorised
pass over the sessions of the nodes that overflow. The session arrays are in
priority order from the start and a stable sort groups them by node, so the
partial round is "the first ``spare`` of each node" by position. H(e_i) comes
from a (node, cap) histogram when the nodes are few, from pairwise comparison
when the nodes are small (chargers), else from sorting the caps within each
node. One sort per height and a small tree height make the whole allocation
about O(n log n).

*Pinned sessions* (``Demand.fixed``) are taken out first: their power is
subtracted from the room of every node above them (room never negative), and
the others are filled in what remains. *even-split* is the same filling with
its phase-1 caps (see :mod:`allocator.even_split`).

The station tree is validated and laid out as arrays by :func:`compile_tree`;
``allocate`` accepts the result, so a caller whose configuration does not
change compiles once instead of at every allocation.

*The electrical model* (docs/electrical-allocation.md) is a second entry
point, ``allocate_electrical``: currents per phase, minimums, pauses in a
rotation order (``allocator.rotation``). Every limit is then a linear
constraint over the sessions' kW, filled max-min fair in rounds that settle
each constraint that fills before any other its sessions see; a station
without electrical data is handed to ``allocate`` unchanged.

The package is pure: no I/O, no clock, no event loop, no global mutable state.
numpy is used because per-session Python work is what the time budget cannot
afford (see ``bench/allocator.py``).
"""

from __future__ import annotations

from allocator.api import allocate
from allocator.electrical import allocate_electrical
from allocator.electrical_model import CompiledStation, compile_station
from allocator.electrical_types import (
    ACCharger,
    DCCharger,
    ElectricalDemand,
    ElectricalLimit,
    ElectricalStation,
)
from allocator.rotation import (
    RotationDecision,
    RotationSession,
    paused_since_after,
    rotation_order,
)
from allocator.tree import CompiledTree, compile_tree
from allocator.types import (
    BOUND_CHARGER,
    BOUND_PINNED,
    BOUND_STATION,
    BOUND_VEHICLE,
    ChargerNode,
    Demand,
    GroupNode,
    Limit,
    StationTree,
    Strategy,
)

__all__ = [
    "BOUND_CHARGER",
    "BOUND_PINNED",
    "BOUND_STATION",
    "BOUND_VEHICLE",
    "ACCharger",
    "ChargerNode",
    "CompiledStation",
    "CompiledTree",
    "DCCharger",
    "Demand",
    "ElectricalDemand",
    "ElectricalLimit",
    "ElectricalStation",
    "GroupNode",
    "Limit",
    "RotationDecision",
    "RotationSession",
    "StationTree",
    "Strategy",
    "allocate",
    "allocate_electrical",
    "compile_station",
    "compile_tree",
    "paused_since_after",
    "rotation_order",
]
