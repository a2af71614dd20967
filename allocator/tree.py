"""The station tree compiled into flat arrays, validated once.

Node 0 is the station root, then the groups in depth-first order, then the
chargers in the order the tree lists them. Every per-node quantity of an
allocation (limit, pinned power, usage) is then an array indexed by node, and
walking up the tree is an array lookup (``parent``) applied to many sessions
at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from allocator.types import (
    BOUND_CHARGER,
    BOUND_PINNED,
    BOUND_STATION,
    BOUND_VEHICLE,
    GroupNode,
    StationTree,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Limits and pinned values are exact integers, and sums of them are formed in
# float64 (np.bincount) and int64. Refusing single powers above 10**9 kW (a
# terawatt, far beyond any site) keeps every such sum exact for up to 10**6
# sessions.
MAX_KW = 10**9

ROOT = 0
# Fixed positions in CompiledTree.bound_names; groups follow.
VEHICLE, PINNED, CHARGER, STATION = range(4)
_RESERVED = frozenset({BOUND_CHARGER, BOUND_PINNED, BOUND_STATION, BOUND_VEHICLE})


@dataclass(frozen=True, slots=True, eq=False)
class CompiledTree:
    """A validated :class:`StationTree` as arrays indexed by node.

    Build it with :func:`compile_tree`; it is immutable and may be reused for
    any number of allocations while the station's configuration stays the same.
    """

    # The bound labels an allocation can report, and which one each node
    # stands for (an index into ``bound_names``): a compact code per session
    # lets the results be deduplicated as integers.
    bound_names: tuple[str, ...]
    node_bound: IntArray
    # floor(max_power) per node; the root's entry is unused (the root limit is
    # an argument of every allocation, the battery moves it).
    limit: IntArray
    # Parent of each node; the root is its own parent so that walking up past
    # the top stays in bounds.
    parent: IntArray
    # Longest path down to a charger (chargers 1, the root the largest). A
    # node's children all have smaller heights, so processing nodes by
    # increasing height visits every child before its parent.
    height: IntArray
    # Non-root nodes grouped by depth, deepest first: adding each level into
    # its parents in this order sums any per-charger quantity up the tree.
    levels_bottom_up: tuple[IntArray, ...]
    # Charger id -> node index.
    charger_node: Mapping[str, int]
    # Number of nodes on the longest charger-to-root path, root included.
    path_length: int
    # For each height h = 1, 2, ... up to the root's: the ancestor of each
    # charger (indexed by charger node) whose height is h, or -1 where the
    # path skips that height. Heights strictly increase up a path, so every
    # charger has at most one ancestor per height.
    at_height: tuple[IntArray, ...]
    # Whether every charger has an ancestor at that height.
    covers_all: tuple[bool, ...]

    @property
    def size(self) -> int:
        return len(self.parent)


def compile_tree(tree: StationTree) -> CompiledTree:
    """Validate ``tree`` and lay it out as arrays.

    Raises ValueError for duplicate charger or group ids, a group id that is a
    reserved bound label ("vehicle", "charger", "station", "pinned"), a group
    naming an unknown charger or a charger already in another group, and a
    non-finite, negative-infinite or absurd (> 10**9 kW) ``max_power``.
    """
    chargers = tree.chargers
    charger_ids = [c.id for c in chargers]
    groups: list[GroupNode] = []
    group_parent: list[int] = []
    # Depth-first, so that a group's index is known before its children's.
    stack: list[tuple[GroupNode, int]] = [(g, ROOT) for g in reversed(tree.groups)]
    while stack:
        group, up = stack.pop()
        groups.append(group)
        group_parent.append(up)
        if group.groups:
            index = len(groups)
            stack.extend([(g, index) for g in reversed(group.groups)])

    group_ids = [g.id for g in groups]
    if len(set(group_ids)) != len(group_ids):
        raise ValueError(f"duplicate group id: {_first_duplicate(group_ids)!r}")
    reserved = _RESERVED.intersection(group_ids)
    if reserved:
        raise ValueError(f"group id {min(reserved)!r} is reserved as a bound label")

    first_charger = 1 + len(groups)
    size = first_charger + len(chargers)
    charger_node = dict(zip(charger_ids, range(first_charger, size), strict=True))
    if len(charger_node) != len(chargers):
        raise ValueError(f"duplicate charger id: {_first_duplicate(charger_ids)!r}")

    parent = np.zeros(size, dtype=np.int64)
    parent[1:first_charger] = group_parent
    members = [charger_id for group in groups for charger_id in group.chargers]
    try:
        member_node = np.fromiter(
            map(charger_node.__getitem__, members), dtype=np.int64, count=len(members)
        )
    except KeyError as exc:
        owner = next(g.id for g in groups if exc.args[0] in g.chargers)
        raise ValueError(f"group {owner!r} names unknown charger {exc.args[0]!r}") from None
    if len(member_node) and np.bincount(member_node).max() > 1:
        raise ValueError(f"charger {_first_duplicate(members)!r} belongs to more than one group")
    parent[member_node] = np.repeat(
        np.arange(1, first_charger, dtype=np.int64), [len(g.chargers) for g in groups]
    )

    limit = np.zeros(size, dtype=np.int64)
    limit[1:first_charger] = _whole_kw_array(
        np.array([g.max_power for g in groups], dtype=np.float64), "group max_power"
    )
    limit[first_charger:] = _whole_kw_array(
        np.array([c.max_power for c in chargers], dtype=np.float64), "charger max_power"
    )

    # A group's parent precedes it (depth-first order), so one forward sweep
    # over the groups gives their depths; chargers follow from their parents.
    depth = np.zeros(size, dtype=np.int64)
    group_depth = [0] * first_charger
    for index, up in enumerate(group_parent, start=1):
        group_depth[index] = group_depth[up] + 1
    depth[:first_charger] = group_depth
    depth[first_charger:] = depth[parent[first_charger:]] + 1
    levels = tuple(
        np.flatnonzero(depth == d).astype(np.int64) for d in range(int(depth.max()), 0, -1)
    )
    height = np.zeros(size, dtype=np.int64)
    height[first_charger:] = 1
    for level in levels:
        np.maximum.at(height, parent[level], height[level] + 1)
    # An empty station still has a root that can hold a (zero) allocation.
    height[ROOT] = max(int(height[ROOT]), 1)
    path_length = int(depth[first_charger:].max()) + 1 if chargers else 1

    at_height: list[IntArray] = []
    covers_all: list[bool] = []
    chain = np.arange(size, dtype=np.int64)
    for h in range(1, int(height[ROOT]) + 1):
        hit = height[chain] == h
        at_height.append(np.where(hit, chain, -1))
        covers_all.append(bool(hit[first_charger:].all()))
        chain = np.where(hit, parent[chain], chain)

    node_bound = np.full(size, CHARGER, dtype=np.int64)
    node_bound[ROOT] = STATION
    node_bound[1:first_charger] = np.arange(4, 4 + len(groups))

    for array in (limit, parent, height, node_bound, *levels, *at_height):
        array.setflags(write=False)
    return CompiledTree(
        bound_names=(BOUND_VEHICLE, BOUND_PINNED, BOUND_CHARGER, BOUND_STATION, *group_ids),
        node_bound=node_bound,
        limit=limit,
        parent=parent,
        height=height,
        levels_bottom_up=levels,
        charger_node=charger_node,
        path_length=path_length,
        at_height=tuple(at_height),
        covers_all=tuple(covers_all),
    )


def subtree_sums(tree: CompiledTree, per_node: npt.NDArray[np.number[Any]]) -> FloatArray:
    """Sum a per-node quantity (usually non-zero at chargers only) up the tree."""
    total = per_node.astype(np.float64)
    for level in tree.levels_bottom_up:
        total += np.bincount(tree.parent[level], weights=total[level], minlength=tree.size)
    return total


def _whole_kw_array(values: FloatArray, what: str) -> IntArray:
    bad = ~np.isfinite(values) | (values > MAX_KW)
    if bad.any():
        raise ValueError(
            f"{what} must be a finite number of kW up to {MAX_KW}, "
            f"not {values[np.flatnonzero(bad)[0]]!r}"
        )
    return np.maximum(np.floor(values), 0).astype(np.int64)


def _first_duplicate(items: list[str]) -> str:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    raise AssertionError("no duplicate")
