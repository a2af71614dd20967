"""Progressive filling without the 1 kW steps.

``progressive_fill`` returns exactly what the reference procedure of the
behaviour spec (section 3) gives for the same caps and node limits; the
package docstring explains why. Both strategies end here: ``fair`` with the
sessions' own caps, ``even-split`` with its phase-1 caps.
"""

from __future__ import annotations

import numpy as np

from allocator.tree import ROOT, CompiledTree, FloatArray, IntArray

# numpy sorts 16-bit keys with a linear-time radix sort when asked for a
# stable sort; node indices usually fit.
_RADIX_LIMIT = 1 << 16


def progressive_fill(tree: CompiledTree, node: IntArray, caps: IntArray,
                     room: IntArray) -> IntArray:
    """Fill sessions up to ``caps`` under every node's ``room``.

    ``node`` is each session's charger and the arrays are in priority order.
    ``room[v]`` is what node ``v`` may still hand out (its limit minus the
    pinned power below it, never negative). Nodes are settled by increasing
    height, so each node sees its sessions already settled by everything below
    it and fills them as one flat node would.
    """
    alloc = caps.copy()
    chain = node.copy()
    for height in range(1, int(tree.height[ROOT]) + 1):
        here = np.flatnonzero(tree.height[chain] == height)
        if here.size == 0:
            continue
        segment = chain[here]
        chain[here] = tree.parent[segment]
        _fill_flat(alloc, here, segment, room, tree.size)
    return alloc


def _fill_flat(alloc: IntArray, here: IntArray, segment: IntArray, room: IntArray,
               size: int) -> None:
    """One round of flat filling for many nodes at once.

    Sessions ``here`` (ascending, so in priority order) sit below node
    ``segment``; ``alloc`` holds what the levels below allowed them, which acts
    as their cap. For a node with room R and caps e_i, the filling reaches the
    largest whole level T with sum(min(e_i, T)) <= R; the R - sum(min(e_i, T))
    kW left go one each to the earliest sessions with e_i > T.
    """
    values = alloc[here]
    total = np.bincount(segment, weights=values, minlength=size)
    over = total > room
    if not over.any():
        return
    keep = over[segment]
    here, segment, values = here[keep], segment[keep], values[keep]

    # Sorted by (node, cap): within a node, sum(min(e, e_i)) at each of its
    # own caps e_i is a prefix sum plus e_i times the sessions not below it.
    order = np.argsort(segment * (int(values.max()) + 1) + values)
    s_node = segment[order]
    s_value = values[order]
    count = len(order)
    head = np.empty(count, dtype=np.bool_)
    head[0] = True
    np.not_equal(s_node[1:], s_node[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    sizes = np.diff(np.append(starts, count))
    run = np.cumsum(head) - 1
    below = np.cumsum(s_value) - s_value
    position = np.arange(count)
    need = below - below[starts][run] + (sizes[run] - (position - starts[run])) * s_value
    # The first session whose own cap cannot be reached by everyone from it
    # on; one exists in every run because the run's total exceeds its room.
    first = np.minimum.reduceat(np.where(need > room[s_node], position, count), starts)
    nodes = s_node[starts]
    settled = below[first] - below[starts]
    growing = sizes - (first - starts)
    left = room[nodes] - settled
    level = left // growing
    spare = left - growing * level

    node_level = np.zeros(size, dtype=np.int64)
    node_level[nodes] = level
    node_spare = np.zeros(size, dtype=np.int64)
    node_spare[nodes] = spare
    seg_level = node_level[segment]
    alloc[here] = np.minimum(values, seg_level)

    # The partial round: growing sessions of a node with spare kW, in priority
    # order; the first `spare` of each node get one more kW.
    lucky = (values > seg_level) & (node_spare[segment] > 0)
    if not lucky.any():
        return
    cand = here[lucky]
    c_node = segment[lucky]
    keys = c_node.astype(np.uint16) if size <= _RADIX_LIMIT else c_node
    by_node = np.argsort(keys, kind="stable")
    b_node = c_node[by_node]
    b_head = np.empty(len(b_node), dtype=np.bool_)
    b_head[0] = True
    np.not_equal(b_node[1:], b_node[:-1], out=b_head[1:])
    b_starts = np.flatnonzero(b_head)
    rank = np.arange(len(b_node)) - b_starts[np.cumsum(b_head) - 1]
    winners = cand[by_node[rank < node_spare[b_node]]]
    alloc[winners] += 1


def own_caps(charger_limit: IntArray, vehicle_cap: FloatArray) -> IntArray:
    """Each session's cap: floor(vehicle_max_power), or the charger's limit.

    ``vehicle_cap`` is already floored, NaN where unknown; caps above the
    charger's limit are cut to it (the charger node would stop them there
    anyway) so that every cap fits comfortably in int64.
    """
    capped = np.clip(vehicle_cap, 0, charger_limit)
    return np.where(np.isnan(capped), charger_limit, capped).astype(np.int64)
