"""Progressive filling without the 1 kW steps.

``progressive_fill`` returns exactly what the reference procedure
(docs/allocation.md, "Strategy `fair`") gives for the same caps and node limits; the
package docstring explains why. Both strategies end here: ``fair`` with the
sessions' own caps, ``even-split`` with its phase-1 caps.
"""

from __future__ import annotations

import numpy as np

from allocator.tree import CompiledTree, FloatArray, IntArray

# numpy sorts 16-bit keys with a linear-time radix sort when asked for a
# stable sort; the numbers of overflowing nodes usually fit.
_RADIX_LIMIT = 1 << 16
# A (node, cap) histogram costs nodes x (largest cap) cells; below this many
# cells per session it is cheaper than sorting the caps.
_HISTOGRAM_FACTOR = 3
# Nodes of at most this many sessions (chargers, typically) compare every
# pair of their sessions instead of sorting.
_PAIRWISE_LIMIT = 4


def progressive_fill(
    tree: CompiledTree, node: IntArray, caps: IntArray, room: IntArray
) -> IntArray:
    """Fill sessions up to ``caps`` under every node's ``room``.

    ``node`` is each session's charger and the arrays are in priority order.
    ``room[v]`` is what node ``v`` may still hand out (its limit minus the
    pinned power below it, never negative). Nodes are settled by increasing
    height, so each node sees its sessions already settled by everything below
    it and fills them as one flat node would.
    """
    alloc = caps.copy()
    for at_height, covers_all in zip(tree.at_height, tree.covers_all, strict=True):
        segment = at_height[node]
        if covers_all:
            _fill_flat(alloc, None, segment, room, tree.size)
            continue
        here = np.flatnonzero(segment >= 0)
        if here.size:
            _fill_flat(alloc, here, segment[here], room, tree.size)
    return alloc


def _fill_flat(
    alloc: IntArray, here: IntArray | None, segment: IntArray, room: IntArray, size: int
) -> None:
    """One round of flat filling for many nodes at once.

    Sessions ``here`` (ascending, so in priority order; None for all) sit
    below node ``segment``; ``alloc`` holds what the levels below allowed
    them, which acts as their cap. For a node with room R and caps e_i, the
    filling reaches the largest whole level T with H(T) <= R, where
    H(t) = sum(min(e_i, t)); the R - H(T) kW left go one each to the earliest
    sessions with e_i > T.
    """
    values = alloc if here is None else alloc[here]
    over = np.bincount(segment, weights=values, minlength=size) > room
    if not over.any():
        return
    keep = over[segment]
    if not keep.all():
        kept = np.flatnonzero(keep)
        here = kept if here is None else here[kept]
        segment = segment[kept]
        values = values[kept]
    nodes = np.flatnonzero(over)
    count = len(nodes)
    if count == 1:
        # One node (the root, often): plain scalars, no grouping.
        one_level, one_spare = _single_level(values, int(room[nodes[0]]))
        result = np.minimum(values, one_level)
        if one_spare:
            result[np.flatnonzero(values > one_level)[:one_spare]] += 1
        _store(alloc, here, result)
        return
    limit = room[nodes]
    # Number the overflowing nodes 0..k-1 and group their sessions; the sort
    # is stable, so each node's sessions stay in priority order.
    seg = (np.cumsum(over) - 1)[segment]
    order = np.argsort(seg.astype(np.uint16) if count <= _RADIX_LIMIT else seg, kind="stable")
    seg = seg[order]
    values = values[order]
    here = order if here is None else here[order]
    sizes = np.bincount(seg, minlength=count)
    width = int(values.max()) + 1
    largest = int(sizes.max())
    if count * width <= _HISTOGRAM_FACTOR * len(values):
        level, spare = _levels_by_histogram(seg, values, limit, width)
    elif largest <= _PAIRWISE_LIMIT:
        level, spare = _share(seg, values, _need_pairwise(seg, values, largest), limit, sizes)
    else:
        level, spare = _levels_by_sorting(seg, values, limit, sizes, width)

    seg_level = level[seg]
    result = np.minimum(values, seg_level)
    # The partial round: growing sessions of a node with spare kW, in priority
    # order; the first `spare` of each node get one more kW.
    lucky = (values > seg_level) & (spare[seg] > 0)
    if lucky.any():
        ahead = np.cumsum(lucky)
        in_earlier_nodes: IntArray = (ahead - lucky)[np.cumsum(sizes) - sizes]
        result += lucky & (ahead - in_earlier_nodes[seg] <= spare[seg])
    _store(alloc, here, result)


def _store(alloc: IntArray, here: IntArray | None, result: IntArray) -> None:
    if here is None:
        alloc[:] = result
    else:
        alloc[here] = result


def _single_level(values: IntArray, room: int) -> tuple[int, int]:
    """T and R - H(T) for one node whose caps add up to more than its room."""
    width = int(values.max()) + 1
    if width <= _HISTOGRAM_FACTOR * len(values):
        hist = np.bincount(values, minlength=width)
        t = np.arange(width, dtype=np.int64)
        weighted = hist * t
        need = np.cumsum(weighted) - weighted + t * np.cumsum(hist[::-1])[::-1]
        level = int(np.count_nonzero(need <= room)) - 1
        return level, room - int(need[level])
    caps = np.sort(values)
    below = np.cumsum(caps) - caps
    # The caps that fit are a prefix: H is nondecreasing along sorted caps.
    # Not all fit, as the node overflows.
    settled = int(np.count_nonzero(below + (len(caps) - np.arange(len(caps))) * caps <= room))
    left = room - int(below[settled])
    growing = len(caps) - settled
    level = left // growing
    return level, left - growing * level


def _levels_by_histogram(
    seg: IntArray, values: IntArray, limit: IntArray, width: int
) -> tuple[IntArray, IntArray]:
    """T and R - H(T) per node from a (node, cap) histogram; for few nodes or small caps."""
    nodes = len(limit)
    hist = np.bincount(seg * width + values, minlength=nodes * width).reshape(nodes, width)
    t = np.arange(width, dtype=np.int64)
    at_least = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]
    weighted = hist * t
    need = np.cumsum(weighted, axis=1) - weighted + t * at_least
    # H is nondecreasing and H(0) = 0 <= R, so T is the count of levels that fit, less one.
    level = np.count_nonzero(need <= limit[:, None], axis=1) - 1
    spare = limit - need[np.arange(nodes), level]
    return level.astype(np.int64), spare


def _need_pairwise(seg: IntArray, values: IntArray, largest: int) -> IntArray:
    """H(e_i) for sessions grouped by node, each node holding at most ``largest``."""
    need = values.copy()
    for gap in range(1, largest):
        pair = np.minimum(values[gap:], values[:-gap])
        pair *= seg[gap:] == seg[:-gap]
        need[gap:] += pair
        need[:-gap] += pair
    return need


def _levels_by_sorting(
    seg: IntArray, values: IntArray, limit: IntArray, sizes: IntArray, width: int
) -> tuple[IntArray, IntArray]:
    """T and R - H(T) per node by sorting the caps within each node."""
    order = np.argsort(seg * width + values)
    s_seg = seg[order]
    s_value = values[order]
    ends = np.cumsum(sizes)
    below = np.cumsum(s_value) - s_value
    # H at each session's own cap e_i: the caps below it, plus e_i for every
    # session from it to the end of its node (all have caps >= e_i).
    need = below - (below[ends - sizes])[s_seg] + (ends[s_seg] - np.arange(len(order))) * s_value
    return _share(s_seg, s_value, need, limit, sizes)


def _share(
    seg: IntArray, values: IntArray, need: IntArray, limit: IntArray, sizes: IntArray
) -> tuple[IntArray, IntArray]:
    """T and R - H(T) per node, given H(e_i) for every session.

    H(e_i) <= R exactly for the sessions whose cap e_i is at most T: they are
    settled at their cap and the others share the rest evenly.
    """
    settled = need <= limit[seg]
    settled_sum = np.bincount(seg, weights=np.where(settled, values, 0), minlength=len(limit))
    growing = sizes - np.bincount(seg[settled], minlength=len(limit))
    left = limit - settled_sum.astype(np.int64)
    level = left // growing
    return level, left - growing * level


def own_caps(charger_limit: IntArray, vehicle_cap: FloatArray) -> IntArray:
    """Each session's cap: floor(vehicle_max_power), or the charger's limit.

    ``vehicle_cap`` is already floored, NaN where unknown; caps above the
    charger's limit are cut to it (the charger node would stop them there
    anyway) so that every cap fits comfortably in int64.
    """
    capped = np.clip(vehicle_cap, 0, charger_limit)
    return np.where(np.isnan(capped), charger_limit, capped).astype(np.int64)
