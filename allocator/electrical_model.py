"""The electrical model laid out as linear constraints over sessions' kW.

Every session's current on a site phase is proportional to its power: an AC
session using n phases at voltage V draws ``P / (V x n)`` on each of its site
phases, a DC session (or one on a charger without electrical data) draws
``P / (3 x 230 V)`` on each of the three. So every limit, in kW or in amps per
phase, is a constraint ``sum(weight x P) <= limit`` over the sessions below a
node, and the allocation is a filling under linear constraints
(docs/electrical-allocation.md, "The model").

Constraint ``4 v`` is node v's kW limit, ``4 v + 1 + k`` its current limit on
site phase k (an array of limits reshaped to nodes x 4). A session takes part
in the constraints of the nodes from its charger up to the root, with the
weights of :attr:`SessionArrays.weight`. Totals per constraint are sums up the
tree and "the tightest constraint above a session" a minimum down the tree
(:func:`sums_up`, :func:`min_down`); only the few passes that must walk
sessions one by one list (session, constraint) pairs, and only for the
constraints that can refuse someone (:func:`pairs_on`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter

import numpy as np

from allocator.electrical_types import (
    DC_VOLTAGE,
    SITE_PHASES,
    ACCharger,
    DCCharger,
    ElectricalDemand,
    ElectricalStation,
)
from allocator.sessions import _priority_order, charger_nodes_and_starts
from allocator.tree import ROOT, BoolArray, CompiledTree, FloatArray, IntArray, compile_tree

# Kinds of charger node.
LEGACY, DC, AC = range(3)
SLOTS = 4  # per node: kW, L1, L2, L3
_SLOT = np.arange(SLOTS, dtype=np.int64)
# Items grouped by a key: the items in key order, where each key's run starts, the keys.
Grouped = tuple[IntArray, IntArray, IntArray]
# Float noise allowance when turning kW or amps into whole steps.
_STEP_NOISE = 1e-9


@dataclass(frozen=True, slots=True, eq=False)
class CompiledStation:
    """An :class:`ElectricalStation` validated and laid out as arrays; reusable."""

    station: ElectricalStation
    tree: CompiledTree
    # Limit per constraint, SLOTS x nodes; the root's kW entry is set per call.
    limit: FloatArray
    # Per node (meaningful for chargers): kind, voltage, phase count, site
    # phase mask, minimum (A for AC, kW for DC), step (A for AC), max current.
    kind: IntArray
    voltage: FloatArray
    phase_mask: BoolArray
    minimum: FloatArray
    step: FloatArray
    max_current: FloatArray
    # Site phase index of charger phase k+1, per charger node (AC only).
    wiring: IntArray
    # Per level of tree.levels_bottom_up: the constraints of each node's
    # parent, flattened (see constraint_ids), to add a level into its parents;
    # and the level's nodes grouped by parent (nodes, where each group
    # starts, the group's parent), to take minimums into the parents.
    parent_slots: tuple[IntArray, ...]
    by_parent: tuple[Grouped, ...]


def compile_station(station: ElectricalStation) -> CompiledStation:
    """Validate the electrical data and lay it out; ValueError on bad data."""
    tree = compile_tree(station.tree)
    size = tree.size
    limit = np.full((SLOTS, size), np.inf)
    limit[0] = tree.limit
    kind = np.full(size, LEGACY, dtype=np.int64)
    voltage = np.full(size, DC_VOLTAGE)
    phase_mask = np.ones((size, 3), dtype=np.bool_)
    minimum = np.zeros(size)
    step = np.ones(size)
    max_current = np.full(size, np.inf)
    wiring = np.tile(np.arange(3, dtype=np.int64), (size, 1))

    if station.grid_current_limit is not None:
        limit[1:, ROOT] = _amps(station.grid_current_limit, "gridCurrentLimit")
    group_node = _group_nodes(station, tree)
    for group_id, amps in station.group_max_current.items():
        if group_id not in group_node:
            raise ValueError(f"maxCurrent for unknown group {group_id!r}")
        v = group_node[group_id]
        limit[1:, v] = _amps(amps, f"group {group_id!r} maxCurrent")

    for charger_id, data in station.chargers.items():
        if charger_id not in tree.charger_node:
            raise ValueError(f"electrical data for unknown charger {charger_id!r}")
        v = tree.charger_node[charger_id]
        if isinstance(data, DCCharger):
            if not (
                math.isfinite(data.min_power) and 0 <= math.ceil(data.min_power) <= tree.limit[v]
            ):
                raise ValueError(f"charger {charger_id!r}: minPower must be within 0..its maxPower")
            kind[v] = DC
            minimum[v] = math.ceil(data.min_power - _STEP_NOISE)
            continue
        if not isinstance(data, ACCharger):
            raise ValueError(f"charger {charger_id!r}: electrical must be AC or DC data")
        _check_ac(charger_id, data)
        sites = [SITE_PHASES.index(p) for p in data.site_phases()]
        kind[v] = AC
        voltage[v] = data.voltage
        phase_mask[v] = False
        phase_mask[v, sites] = True
        wiring[v, : len(sites)] = sites
        minimum[v] = data.min_current
        step[v] = data.current_step
        if data.max_current is not None:
            max_current[v] = data.max_current
            limit[1:, v] = data.max_current
    parent_slots = tuple(
        constraint_ids(size, tree.parent[level]) for level in tree.levels_bottom_up
    )
    by_parent = tuple(_grouped(level, tree.parent[level]) for level in tree.levels_bottom_up)
    for array in (limit, kind, voltage, phase_mask, minimum, step, max_current, wiring):
        array.setflags(write=False)
    return CompiledStation(
        station,
        tree,
        limit,
        kind,
        voltage,
        phase_mask,
        minimum,
        step,
        max_current,
        wiring,
        parent_slots,
        by_parent,
    )


def constraint_ids(size: int, node: IntArray) -> IntArray:
    """The constraints of ``node`` (each node's SLOTS constraints), as flat
    indices into a SLOTS x ``size`` array: ``slot x size + node``, slot-major."""
    ids: IntArray = (node + size * _SLOT[:, None]).ravel()
    return ids


def _grouped(items: IntArray, key: IntArray) -> Grouped:
    """``items`` sorted by ``key``, where each run of one key starts, and that key."""
    by_key = np.argsort(key, kind="stable")
    items, key = items[by_key], key[by_key]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if len(key) else key
    return items, starts, key[starts]


def _group_nodes(station: ElectricalStation, tree: CompiledTree) -> dict[str, int]:
    # compile_tree numbers groups depth-first from 1; bound_names lists them
    # after the four reserved labels in the same order.
    names = tree.bound_names[4:]
    return {name: index for index, name in enumerate(names, start=1)}


def _amps(value: float, what: str) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number of amps >= 0, not {value!r}")
    return float(value)


def _check_ac(charger_id: str, data: ACCharger) -> None:
    where = f"charger {charger_id!r}"
    if data.phases not in (1, 2, 3):
        raise ValueError(f"{where}: phases must be 1, 2 or 3")
    sites = data.site_phases()
    if len(sites) != data.phases or len(set(sites)) != len(sites):
        raise ValueError(f"{where}: wiring must name {data.phases} distinct site phases")
    if any(p not in SITE_PHASES for p in sites):
        raise ValueError(f"{where}: wiring names a phase other than L1, L2, L3")
    if not (math.isfinite(data.voltage) and data.voltage > 0):
        raise ValueError(f"{where}: voltage must be positive")
    if not (math.isfinite(data.current_step) and data.current_step > 0):
        raise ValueError(f"{where}: currentStep must be positive")
    if not (math.isfinite(data.min_current) and data.min_current >= 0):
        raise ValueError(f"{where}: minCurrent must be >= 0")
    if data.max_current is not None and not (
        math.isfinite(data.max_current) and data.max_current >= data.min_current
    ):
        raise ValueError(f"{where}: maxCurrent must be at least minCurrent")


@dataclass(frozen=True, slots=True, eq=False)
class SessionArrays:
    """Per-session arrays in rotation order (position = rank)."""

    source: IntArray  # position in the caller's sequence
    node: IntArray
    kind: IntArray
    # Site phases used, and the kW of one step (AC: step x V x n; else 1 kW).
    mask: BoolArray
    step_kw: FloatArray
    # What one kW of the session counts on each constraint slot of every node
    # above it: 1 on the kW slot, amps per kW on the phases it uses, 0 on the
    # others (shape: SLOTS x sessions).
    weight: FloatArray
    # Minimum and cap in whole steps; whether the vehicle's own cap set it.
    units_min: IntArray
    units_cap: IntArray
    vehicle_bound: BoolArray
    pinned: BoolArray
    pinned_kw: FloatArray


def read_sessions(
    cs: CompiledStation, demands: Sequence[ElectricalDemand], order: Sequence[str] | None
) -> tuple[list[str], SessionArrays]:
    """Validate ``demands`` and lay them out in rotation order.

    ``order`` lists session ids first to last; sessions it does not name
    follow by earliest ``started_at``, then smallest id.
    """
    tree = cs.tree
    count = len(demands)
    ids = [d.session_id for d in demands]
    node, start, started = charger_nodes_and_starts(tree, demands)
    by_rank = _rank_order(ids, start, started, order)

    # Everything is read in the caller's order, then put in rank order at once.
    kind = cs.kind[node]
    mask = cs.phase_mask[node]
    phases = [d.phases for d in demands]
    if phases.count(None) != count:
        mask = _stated_phases(cs, demands, phases, node, kind, mask)
    used = mask.sum(axis=1)
    voltage = cs.voltage[node]
    step_a = cs.step[node]
    is_ac = kind == AC
    step_kw = np.where(is_ac, step_a * voltage * used / 1000, 1.0)

    vehicle_kw = _optional(demands, "vehicle_max_power")
    vehicle_a = _optional(demands, "vehicle_max_current")
    charger_kw = tree.limit[node].astype(np.float64)
    # Caps in steps: the charger's kW and current limits, and the vehicle's.
    noise = _STEP_NOISE
    charger_units = np.where(
        is_ac,
        np.floor(np.minimum(charger_kw / step_kw, cs.max_current[node] / step_a) + noise),
        charger_kw,
    )
    vehicle_units = np.where(
        is_ac,
        np.floor(np.fmin(vehicle_kw / step_kw, vehicle_a / step_a) + noise),
        np.floor(vehicle_kw),
    )
    vehicle_units = np.clip(vehicle_units, 0, None)
    vehicle_bound = vehicle_units <= charger_units  # False where NaN (unknown)
    units_cap = np.fmin(vehicle_units, charger_units)
    units_min = np.where(is_ac, np.ceil(cs.minimum[node] / step_a - noise), cs.minimum[node])
    # A vehicle or charger cap below the minimum cannot be signalled: the
    # session runs at its minimum (the car draws what it wants below that).
    units_cap = np.maximum(units_cap, units_min)

    fixed = _optional(demands, "fixed")
    pinned = ~np.isnan(fixed)
    if (fixed[pinned] < 0).any() or not np.isfinite(fixed[pinned]).all():
        raise ValueError("fixed must be a finite value >= 0")
    amps_per_kw = np.where(is_ac, 1000 / (voltage * used), 1000 / (3 * DC_VOLTAGE))
    pinned_kw = np.where(pinned, np.where(is_ac, fixed / amps_per_kw, fixed), 0.0)
    weight = np.empty((SLOTS, count))
    weight[0] = 1.0
    weight[1:] = mask.T * amps_per_kw

    r = by_rank
    return ids, SessionArrays(
        source=r,
        node=node[r],
        kind=kind[r],
        mask=mask[r],
        step_kw=step_kw[r],
        weight=np.take(weight, r, axis=1),
        units_min=units_min[r].astype(np.int64),
        units_cap=units_cap[r].astype(np.int64),
        vehicle_bound=vehicle_bound[r],
        pinned=pinned[r],
        pinned_kw=pinned_kw[r],
    )


def _rank_order(
    ids: list[str], start: FloatArray, started: list[float], order: Sequence[str] | None
) -> IntArray:
    """Caller positions in rank order: ``order`` first (an id named twice
    counts where it is first named; unknown ids are ignored), then the others
    by earliest start, then smallest id (as allocate's priority).

    Refuses duplicate session ids.
    """
    count = len(ids)
    index = dict(zip(ids, range(count), strict=True))
    if len(index) != count:
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate session id: {duplicate!r}")
    if not order:
        return _priority_order(start, started, ids)
    named = np.fromiter(map(index.get, order, repeat(-1)), dtype=np.int64, count=len(order))
    named = named[named >= 0]
    if len(named) and np.bincount(named, minlength=count).max() > 1:
        _, first = np.unique(named, return_index=True)
        named = named[np.sort(first)]
    if len(named) == count:
        return named
    rest = np.ones(count, dtype=np.bool_)
    rest[named] = False
    others = np.flatnonzero(rest)
    at = others.tolist()
    within = _priority_order(start[others], [started[i] for i in at], [ids[i] for i in at])
    return np.concatenate([named, others[within]])


def _stated_phases(
    cs: CompiledStation,
    demands: Sequence[ElectricalDemand],
    phases: list[int | tuple[int, ...] | None],
    node: IntArray,
    kind: IntArray,
    charger_mask: BoolArray,
) -> BoolArray:
    """Each session's site phases where it states its phases (AC only)."""
    mask = charger_mask.copy()
    kinds = kind.tolist()
    stated = [i for i, p in enumerate(phases) if p is not None and kinds[i] == AC]
    # A count n (the usual case) means the charger's first n phases, looked
    # up in the wiring for all at once.
    counted = [i for i in stated if type(phases[i]) is int]
    if counted:
        n = np.array([phases[i] for i in counted], dtype=np.int64)
        at = np.array(counted, dtype=np.int64)
        available = cs.phase_mask[node[at]].sum(axis=1)
        wrong = np.flatnonzero((n < 1) | (n > available))
        if len(wrong):
            d = demands[counted[int(wrong[0])]]
            raise ValueError(
                f"session {d.session_id!r}: phases must be 1..{int(available[wrong[0]])} "
                f"distinct phases of its charger, not {d.phases!r}"
            )
        mask[at] = False
        for k in range(3):
            rows = at[n > k]
            mask[rows, cs.wiring[node[rows], k]] = True
    listed = [i for i in stated if type(phases[i]) is not int]
    if listed:
        masks: dict[tuple[int, object], BoolArray] = {}
        rows_list: list[BoolArray] = []
        for position in listed:
            key = (int(node[position]), phases[position])
            row = masks.get(key)
            if row is None:
                row = masks[key] = _session_mask(cs, key[0], demands[position])
            rows_list.append(row)
        mask[listed] = np.array(rows_list)
    return mask


def _session_mask(cs: CompiledStation, v: int, d: ElectricalDemand) -> BoolArray:
    charger_phases = int(cs.phase_mask[v].sum())
    phases = d.phases
    chosen = tuple(range(1, phases + 1)) if isinstance(phases, int) else tuple(phases or ())
    if (
        not chosen
        or len(set(chosen)) != len(chosen)
        or any(not isinstance(k, int) or not 1 <= k <= charger_phases for k in chosen)
    ):
        raise ValueError(
            f"session {d.session_id!r}: phases must be 1..{charger_phases} distinct phases "
            f"of its charger, not {phases!r}"
        )
    mask = np.zeros(3, dtype=np.bool_)
    mask[cs.wiring[v, [k - 1 for k in chosen]]] = True
    return mask


def _optional(demands: Sequence[ElectricalDemand], name: str) -> FloatArray:
    """One optional number per demand as floats, NaN for None (a NaN given is refused)."""
    values = list(map(attrgetter(name), demands))
    missing = values.count(None)
    if missing == len(values):
        return np.full(len(values), np.nan)
    # np.array turns None into NaN; a NaN the caller passed must not pass as "unknown".
    array = np.array(values, dtype=np.float64).reshape(len(values))
    if np.count_nonzero(np.isnan(array)) != missing:
        raise ValueError(f"{name} must not be NaN")
    return array


# Sums and extremes over the tree. Every constraint of node v applies to the
# sessions below v, so "the total on each constraint" is a sum of per-charger
# totals up the tree, and "the tightest constraint above a session" a minimum
# down the tree: both cost O(sessions + nodes), however deep the station,
# instead of one entry per (session, constraint) pair.


def sums_up(cs: CompiledStation, node: IntArray, values: FloatArray) -> FloatArray:
    """Per slot and node, the sum of ``values`` (SLOTS x sessions) of the sessions below it."""
    tree = cs.tree
    size = tree.size
    total = np.bincount(
        constraint_ids(size, node), weights=values.ravel(), minlength=SLOTS * size
    ).astype(np.float64, copy=False)  # no sessions: bincount gives integers
    total = total.reshape(SLOTS, size)
    for level, slots in zip(tree.levels_bottom_up, cs.parent_slots, strict=True):
        total += np.bincount(
            slots, weights=np.take(total, level, axis=1).ravel(), minlength=SLOTS * size
        ).reshape(SLOTS, size)
    return total


def min_up(cs: CompiledStation, node: IntArray, values: FloatArray) -> FloatArray:
    """Per slot and node, the least of ``values`` (SLOTS x sessions) below it
    (inf if none); ``node`` must be sorted (sessions grouped by their node)."""
    tree = cs.tree
    least = np.full((SLOTS, tree.size), np.inf)
    if len(node):
        starts = np.flatnonzero(np.concatenate(([True], node[1:] != node[:-1])))
        least[:, node[starts]] = np.minimum.reduceat(values, starts, axis=1)
    for children, child_starts, parents in cs.by_parent:
        if len(children):
            least[:, parents] = np.minimum(
                np.take(least, parents, axis=1),
                np.minimum.reduceat(np.take(least, children, axis=1), child_starts, axis=1),
            )
    return least


def min_down(cs: CompiledStation, per_node: FloatArray) -> FloatArray:
    """Per slot and node, the least of ``per_node`` over the node and its ancestors."""
    tree = cs.tree
    least = per_node.copy()
    for level in reversed(tree.levels_bottom_up):
        least[:, level] = np.minimum(
            np.take(least, level, axis=1), np.take(least, tree.parent[level], axis=1)
        )
    return least


def pairs_on(
    cs: CompiledStation, s: SessionArrays, sessions: IntArray, wanted: BoolArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """The (session, constraint, weight) pairs of ``sessions`` (ascending ranks)
    on the ``wanted`` constraints (flat, see :func:`constraint_ids`), grouped
    by session in rank order, the closest node first within a session."""
    tree = cs.tree
    parts_s: list[IntArray] = []
    parts_c: list[IntArray] = []
    parts_w: list[FloatArray] = []
    size = tree.size
    weight = np.take(s.weight, sessions, axis=1)
    chain = s.node[sessions]
    alive = np.ones(len(sessions), dtype=np.bool_)
    for _ in range(tree.path_length):
        for k in range(SLOTS):
            constraint = k * size + chain
            at = np.flatnonzero(alive & wanted[constraint] & (weight[k] > 0))
            parts_s.append(sessions[at])
            parts_c.append(constraint[at])
            parts_w.append(weight[k, at])
        alive &= chain != ROOT
        chain = tree.parent[chain]
    ps = np.concatenate(parts_s)
    # The parts were made closest node first: a stable sort by session keeps that.
    by_session = np.argsort(ps, kind="stable")
    return ps[by_session], np.concatenate(parts_c)[by_session], np.concatenate(parts_w)[by_session]
