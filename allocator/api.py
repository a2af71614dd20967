"""The allocator's entry point."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from allocator.bounds import bound_codes
from allocator.even_split import phase_one_share
from allocator.fair import own_caps, progressive_fill
from allocator.sessions import read_demands
from allocator.tree import ROOT, CompiledTree, IntArray, compile_tree, subtree_sums
from allocator.types import Demand, Limit, StationTree, Strategy


def allocate(
    tree: StationTree | CompiledTree,
    demands: Sequence[Demand],
    root_limit: float,
    strategy: Strategy = Strategy.FAIR,
    pins: Mapping[str, int] | None = None,
) -> dict[str, Limit]:
    """One whole-kW limit per demand, keyed by session id (docs/allocation.md).

    ``pins`` overrides ``fixed`` for the sessions it names: the same as passing
    demands with those ``fixed`` values, without building new demands (the
    controller reruns the allocation with pins after every start).

    ``root_limit`` is the station's available power (grid plus battery); its
    floor is the root limit, never below 0 (``inf`` means no station limit).
    ``tree`` may be compiled once with :func:`compile_tree` and reused.

    ``fair`` is exactly the reference procedure's progressive filling
    (docs/allocation.md, "Strategy `fair`"). ``even-split`` is the original
    system's two phases, with pinned sessions counted among a charger's
    sessions and every group a limit in phase 2 (see
    :mod:`allocator.even_split`). A pinned demand (``fixed``) gets exactly
    that, reserved first in every node above it, with bound "pinned"; the
    others below a node that the pinned alone overfill get 0.

    Raises ValueError for a demand on a charger that is not in the tree,
    duplicate session ids, a NaN ``root_limit``, ``started_at`` or
    ``vehicle_max_power``, a negative or absurd ``fixed``, an unknown
    strategy, or an invalid tree (see :func:`compile_tree`).
    """
    strategy = Strategy(strategy)
    compiled = tree if isinstance(tree, CompiledTree) else compile_tree(tree)
    if math.isnan(root_limit):
        raise ValueError("root_limit must not be NaN")
    ids, sessions = read_demands(compiled, demands, pins)
    node = sessions.node
    pinned = sessions.pinned

    charger_limit = compiled.limit[node]
    caps = own_caps(charger_limit, sessions.vehicle_cap)
    share: IntArray | None = None
    if strategy is Strategy.EVEN_SPLIT:
        share = phase_one_share(charger_limit, node, compiled.size)
        caps = np.minimum(caps, share)

    # Pinned power is reserved first in every node above it; the others share
    # what is left, and nothing at all below a node the pinned alone overfill.
    pinned_sum = subtree_sums(
        compiled,
        np.bincount(node[pinned], weights=sessions.fixed[pinned], minlength=compiled.size),
    ).astype(np.int64)
    room = np.maximum(compiled.limit - pinned_sum, 0)
    free = np.flatnonzero(~pinned)
    station = math.inf if root_limit == math.inf else max(0, math.floor(root_limit))
    # A root above everything the free sessions can take never binds; cutting
    # it there keeps it in int64 whatever the caller passed.
    room[ROOT] = min(max(0, station - int(pinned_sum[ROOT])), int(caps[free].sum()))

    power = sessions.fixed.copy()
    power[free] = progressive_fill(compiled, node[free], caps[free], room)
    code = bound_codes(compiled, node, power, pinned, sessions.vehicle_cap, station, share)
    return _limits(ids, sessions.source, power, code, compiled.bound_names)


def _limits(
    ids: list[str], source: IntArray, power: IntArray, code: IntArray, names: tuple[str, ...]
) -> dict[str, Limit]:
    # Most sessions share a (power, bound) pair with others; one Limit per
    # distinct pair is much cheaper than one per session, and they are immutable.
    distinct, which = _distinct_pairs(power, code, len(names))
    shared = np.empty(len(distinct), dtype=object)
    shared[:] = [Limit(p, names[c]) for p, c in distinct]
    in_caller_order = np.empty(len(ids), dtype=np.int64)
    in_caller_order[source] = which
    result = dict(zip(ids, shared[in_caller_order].tolist(), strict=True))
    if len(result) != len(ids):
        duplicate = next(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"duplicate session id: {duplicate!r}")
    return result


def _distinct_pairs(
    power: IntArray, code: IntArray, codes: int
) -> tuple[list[tuple[int, int]], IntArray]:
    """The distinct (power, code) pairs, and which one each session has."""
    if len(power) == 0:
        return [], np.zeros(0, dtype=np.int64)
    # Renumber the codes in use (a station may have thousands of groups, few
    # of which bind) so that the pairs fit a small dense table when powers
    # are small; otherwise sort.
    used = np.zeros(codes, dtype=np.bool_)
    used[code] = True
    renumber = np.cumsum(used) - 1
    in_use = int(renumber[-1]) + 1
    key = power * in_use + renumber[code]
    span = (int(power.max()) + 1) * in_use
    if span <= 4 * len(power) + 1024:
        present = np.bincount(key, minlength=span) > 0
        keys = np.flatnonzero(present)
        which = (np.cumsum(present) - 1)[key]
    else:
        keys, which = np.unique(key, return_inverse=True)
    code_of = np.flatnonzero(used)
    return [(k // in_use, int(code_of[k % in_use])) for k in keys.tolist()], which.reshape(
        -1
    ).astype(np.int64)
