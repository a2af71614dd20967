"""What bounded each session's limit."""

from __future__ import annotations

import numpy as np

from allocator.tree import (
    CHARGER,
    PINNED,
    ROOT,
    STATION,
    VEHICLE,
    BoolArray,
    CompiledTree,
    FloatArray,
    IntArray,
    subtree_sums,
)


def bound_codes(
    tree: CompiledTree,
    node: IntArray,
    power: IntArray,
    pinned: BoolArray,
    vehicle_cap: FloatArray,
    root_limit: float,
    share: IntArray | None = None,
) -> IntArray:
    """An index into ``tree.bound_names`` per session.

    "pinned" for pinned sessions; "vehicle" for a session at its vehicle's own
    cap (an unknown vehicle has none: a session held at the charger's limit is
    bound by the charger); "charger" for an even-split session at its phase-1
    ``share``; else the closest node that is full (adding 1 kW would exceed
    its limit), counting the pinned power in it.
    """
    code = np.full(len(power), -1, dtype=np.int64)
    code[pinned] = PINNED
    # NaN (unknown) compares False.
    code[(code < 0) & (power >= vehicle_cap)] = VEHICLE
    if share is not None:
        code[(code < 0) & (power >= share)] = CHARGER

    usage = subtree_sums(tree, np.bincount(node, weights=power, minlength=tree.size))
    limit = tree.limit.astype(np.float64)
    limit[ROOT] = root_limit
    full = usage >= limit
    chain = node.copy()
    for _ in range(tree.path_length):
        hit = (code < 0) & full[chain]
        code[hit] = tree.node_bound[chain[hit]]
        chain = tree.parent[chain]
    # Unreachable when the filling is work-conserving (the property tests
    # check every label); a label must still be one of the known ones.
    code[code < 0] = STATION
    return code
