"""Demands turned into arrays, sorted once into priority order.

Priority is the tie-break of the reference procedure: earlier ``started_at``
first, then the smaller ``session_id``. Keeping every per-session array in that
order lets the filling pick "the earliest sessions of a node" by position
alone, without sorting again.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not
from typing import Protocol, cast

import numpy as np

from allocator.tree import MAX_KW, BoolArray, CompiledTree, FloatArray, IntArray
from allocator.types import Demand


@dataclass(frozen=True, slots=True, eq=False)
class Sessions:
    """Per-session arrays, all in priority order (position = priority rank)."""

    # Position in the caller's demand sequence, to map results back.
    source: IntArray
    # Charger node of each session.
    node: IntArray
    # floor(vehicle_max_power), NaN when the vehicle's limit is unknown.
    vehicle_cap: FloatArray
    pinned: BoolArray
    # The pinned kW where ``pinned``, 0 elsewhere.
    fixed: IntArray


class _Placed(Protocol):
    @property
    def charger_id(self) -> str: ...
    @property
    def started_at(self) -> float: ...


def charger_nodes_and_starts(
    tree: CompiledTree, demands: Sequence[_Placed]
) -> tuple[IntArray, FloatArray, list[float]]:
    """Each demand's charger node and start (as an array, and as given), in the caller's
    order; ValueError for an unknown charger or a NaN start. Shared by both allocations."""
    count = len(demands)
    try:
        node = np.fromiter(
            map(tree.charger_node.__getitem__, [d.charger_id for d in demands]),
            dtype=np.int64,
            count=count,
        )
    except KeyError as exc:
        raise ValueError(f"demand for unknown charger {exc.args[0]!r}") from None
    started = [d.started_at for d in demands]
    start = np.array(started, dtype=np.float64).reshape(count)
    if np.isnan(start).any():
        raise ValueError("started_at must not be NaN")
    return node, start, started


def read_demands(
    tree: CompiledTree, demands: Sequence[Demand], pins: Mapping[str, int] | None = None
) -> tuple[list[str], Sessions]:
    """Validate ``demands`` and sort them by priority; ``pins`` overrides ``fixed``.

    Returns the session ids in the caller's order and the arrays. Duplicate
    session ids are not checked here: the result dict reveals them for free.
    """
    count = len(demands)
    ids = [d.session_id for d in demands]
    node, start, started = charger_nodes_and_starts(tree, demands)

    vehicle = [d.vehicle_max_power for d in demands]
    vehicle_cap = np.floor(np.array(vehicle, dtype=np.float64).reshape(count))
    # np.array turns None into NaN; a NaN the caller passed must not pass as "unknown".
    unknown = np.flatnonzero(np.isnan(vehicle_cap)).tolist()
    if [vehicle[i] for i in unknown].count(None) != len(unknown):
        raise ValueError("vehicle_max_power must not be NaN")

    fixed_values = [d.fixed for d in demands]
    if pins:
        fixed_values = [pins.get(i, f) for i, f in zip(ids, fixed_values, strict=True)]
    fixed = np.zeros(count, dtype=np.int64)
    pinned = np.zeros(count, dtype=np.bool_)
    if fixed_values.count(None) != count:
        at = list(compress(range(count), map(is_not, fixed_values, repeat(None))))
        kws = [operator.index(v) for v in cast("list[int]", [fixed_values[i] for i in at])]
        for position, kw in zip(at, kws, strict=True):
            if not 0 <= kw <= MAX_KW:
                raise ValueError(
                    f"session {ids[position]!r}: fixed must be within 0..{MAX_KW} kW, not {kw}"
                )
        fixed[at] = kws
        pinned[at] = True

    order = _priority_order(start, started, ids)
    return ids, Sessions(
        source=order,
        node=node[order],
        vehicle_cap=vehicle_cap[order],
        pinned=pinned[order],
        fixed=fixed[order],
    )


def _priority_order(start: FloatArray, started: list[float], ids: list[str]) -> IntArray:
    order = np.argsort(start).astype(np.int64)
    ordered = start[order]
    tie = ordered[1:] == ordered[:-1]
    if tie.any():
        # Only sessions that share a start time need the session id, and string
        # comparison must be Python's (numpy's fixed-width strings ignore
        # trailing NULs), so those few are sorted here.
        tied = np.zeros(len(order), dtype=np.bool_)
        tied[1:] |= tie
        tied[:-1] |= tie
        slots = np.flatnonzero(tied)
        members = sorted(order[slots].tolist(), key=lambda i: (started[i], ids[i]))
        order[slots] = members
    return order
