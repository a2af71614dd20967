"""The electrical model laid out as linear constraints over sessions' kW.

Every session's current on a site phase is proportional to its power: an AC
session using n phases at voltage V draws ``P / (V x n)`` on each of its site
phases, a DC session (or one on a charger without electrical data) draws
``P / (3 x 230 V)`` on each of the three. So every limit, in kW or in amps per
phase, is a constraint ``sum(weight x P) <= limit`` over the sessions below a
node, and the allocation is a filling under linear constraints
(docs/electrical-allocation.md, "The model").

Constraint ``4 v`` is node v's kW limit, ``4 v + 1 + k`` its current limit on
site phase k. A session takes part in the finite constraints of the nodes
from its charger up to the root (in that order: the closest node first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from allocator.sessions import _priority_order
from allocator.tree import ROOT, BoolArray, CompiledTree, FloatArray, IntArray, compile_tree

# Kinds of charger node.
LEGACY, DC, AC = range(3)
SLOTS = 4  # per node: kW, L1, L2, L3
# Float noise allowance when turning kW or amps into whole steps.
_STEP_NOISE = 1e-9


@dataclass(frozen=True, slots=True, eq=False)
class CompiledStation:
    """An :class:`ElectricalStation` validated and laid out as arrays; reusable."""

    station: ElectricalStation
    tree: CompiledTree
    # Limit per constraint (4 per node); the root's kW entry is set per call.
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


def compile_station(station: ElectricalStation) -> CompiledStation:
    """Validate the electrical data and lay it out; ValueError on bad data."""
    tree = compile_tree(station.tree)
    size = tree.size
    limit = np.full(size * SLOTS, np.inf)
    limit[0::SLOTS] = tree.limit
    kind = np.full(size, LEGACY, dtype=np.int64)
    voltage = np.full(size, DC_VOLTAGE)
    phase_mask = np.ones((size, 3), dtype=np.bool_)
    minimum = np.zeros(size)
    step = np.ones(size)
    max_current = np.full(size, np.inf)
    wiring = np.tile(np.arange(3, dtype=np.int64), (size, 1))

    if station.grid_current_limit is not None:
        limit[ROOT * SLOTS + 1 : ROOT * SLOTS + 4] = _amps(
            station.grid_current_limit, "gridCurrentLimit"
        )
    group_node = _group_nodes(station, tree)
    for group_id, amps in station.group_max_current.items():
        if group_id not in group_node:
            raise ValueError(f"maxCurrent for unknown group {group_id!r}")
        v = group_node[group_id]
        limit[v * SLOTS + 1 : v * SLOTS + 4] = _amps(amps, f"group {group_id!r} maxCurrent")

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
            limit[v * SLOTS + 1 : v * SLOTS + 4] = data.max_current
    for array in (limit, kind, voltage, phase_mask, minimum, step, max_current, wiring):
        array.setflags(write=False)
    return CompiledStation(
        station, tree, limit, kind, voltage, phase_mask, minimum, step, max_current, wiring
    )


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
    """Per-session arrays in rotation order (position = rank), and their constraints."""

    source: IntArray  # position in the caller's sequence
    node: IntArray
    kind: IntArray
    # Site phases used, and the kW of one step (AC: step x V x n; else 1 kW).
    mask: BoolArray
    step_kw: FloatArray
    # Minimum and cap in whole steps; whether the vehicle's own cap set it.
    units_min: IntArray
    units_cap: IntArray
    vehicle_bound: BoolArray
    pinned: BoolArray
    pinned_kw: FloatArray
    # The constraints: pair i ties session pair_session[i] to constraint
    # pair_constraint[i] with pair_weight[i] (A or kW per kW), grouped by
    # session in rank order, the closest node first within a session.
    pair_session: IntArray
    pair_constraint: IntArray
    pair_weight: FloatArray


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
    if len(set(ids)) != count:
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate session id: {duplicate!r}")
    try:
        node = np.fromiter(
            (tree.charger_node[d.charger_id] for d in demands), dtype=np.int64, count=count
        )
    except KeyError as exc:
        raise ValueError(f"demand for unknown charger {exc.args[0]!r}") from None
    started = np.array([d.started_at for d in demands], dtype=np.float64).reshape(count)
    if np.isnan(started).any():
        raise ValueError("started_at must not be NaN")
    rank = _ranks(ids, started, order)
    by_rank = np.argsort(rank, kind="stable").astype(np.int64)
    node = node[by_rank]
    ordered = [demands[i] for i in by_rank.tolist()]

    kind = cs.kind[node]
    mask = cs.phase_mask[node].copy()
    # Sessions that state their phases. A count n (the usual case) means the
    # charger's first n phases, looked up in the wiring for all at once.
    kinds = kind.tolist()
    stated = [i for i, d in enumerate(ordered) if d.phases is not None and kinds[i] == AC]
    counted = [i for i in stated if type(ordered[i].phases) is int]
    if counted:
        n = np.array([ordered[i].phases for i in counted], dtype=np.int64)
        at = np.array(counted, dtype=np.int64)
        available = cs.phase_mask[node[at]].sum(axis=1)
        wrong = np.flatnonzero((n < 1) | (n > available))
        if len(wrong):
            d = ordered[counted[int(wrong[0])]]
            raise ValueError(
                f"session {d.session_id!r}: phases must be 1..{int(available[wrong[0]])} "
                f"distinct phases of its charger, not {d.phases!r}"
            )
        mask[at] = False
        for k in range(3):
            rows = at[n > k]
            mask[rows, cs.wiring[node[rows], k]] = True
    listed = [i for i in stated if type(ordered[i].phases) is not int]
    if listed:
        masks: dict[tuple[int, object], BoolArray] = {}
        rows_list: list[BoolArray] = []
        for position in listed:
            d = ordered[position]
            key = (int(node[position]), d.phases)
            row = masks.get(key)
            if row is None:
                row = masks[key] = _session_mask(cs, key[0], d)
            rows_list.append(row)
        mask[listed] = np.array(rows_list)
    used = mask.sum(axis=1)
    voltage = cs.voltage[node]
    step_a = cs.step[node]
    is_ac = kind == AC
    step_kw = np.where(is_ac, step_a * voltage * used / 1000, 1.0)

    vehicle_kw = _optional(ordered, "vehicle_max_power")
    vehicle_a = _optional(ordered, "vehicle_max_current")
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

    fixed = _optional(ordered, "fixed")
    pinned = ~np.isnan(fixed)
    if (fixed[pinned] < 0).any() or not np.isfinite(fixed[pinned]).all():
        raise ValueError("fixed must be a finite value >= 0")
    amps_per_kw = np.where(is_ac, 1000 / (voltage * used), 1000 / (3 * DC_VOLTAGE))
    pinned_kw = np.where(pinned, np.where(is_ac, fixed / amps_per_kw, fixed), 0.0)

    ps, pc, pw = _pairs(cs, node, mask, amps_per_kw)
    return ids, SessionArrays(
        source=by_rank,
        node=node,
        kind=kind,
        mask=mask,
        step_kw=step_kw,
        units_min=units_min.astype(np.int64),
        units_cap=units_cap.astype(np.int64),
        vehicle_bound=vehicle_bound,
        pinned=pinned,
        pinned_kw=pinned_kw,
        pair_session=ps,
        pair_constraint=pc,
        pair_weight=pw,
    )


def _ranks(ids: list[str], started: FloatArray, order: Sequence[str] | None) -> IntArray:
    count = len(ids)
    # The default order: earliest start, then smallest id (as allocate's priority).
    default = _priority_order(started, started.tolist(), ids)
    rank = np.empty(count, dtype=np.int64)
    if not order:
        rank[default] = np.arange(count)
        return rank
    position: Mapping[str, int] = {sid: i for i, sid in reversed(list(enumerate(order)))}
    named = np.fromiter((position.get(sid, -1) for sid in ids), dtype=np.int64, count=count)
    rank[default] = np.arange(count) + len(order)
    return np.where(named >= 0, named, rank)


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
    nan = math.nan
    array = np.fromiter(
        (nan if v is None else v for v in values), dtype=np.float64, count=len(values)
    )
    if np.count_nonzero(np.isnan(array)) != missing:
        raise ValueError(f"{name} must not be NaN")
    return array


def _pairs(
    cs: CompiledStation, node: IntArray, mask: BoolArray, amps_per_kw: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Every (session, finite constraint) pair, grouped by session, closest node first."""
    tree = cs.tree
    count = len(node)
    sessions = np.arange(count, dtype=np.int64)
    parts_s: list[IntArray] = []
    parts_c: list[IntArray] = []
    parts_w: list[FloatArray] = []
    chain = node.copy()
    alive = np.ones(count, dtype=np.bool_)
    for _ in range(tree.path_length):
        for k in range(SLOTS):
            constraint = chain * SLOTS + k
            take = alive & np.isfinite(cs.limit[constraint])
            if k:
                take &= mask[:, k - 1]
            at = np.flatnonzero(take)
            parts_s.append(sessions[at])
            parts_c.append(constraint[at])
            parts_w.append(np.ones(len(at)) if k == 0 else amps_per_kw[at])
        alive &= chain != ROOT
        chain = tree.parent[chain]
    ps = np.concatenate(parts_s)
    # The parts were made closest node first: a stable sort by session keeps that.
    by_session = np.argsort(ps, kind="stable")
    return ps[by_session], np.concatenate(parts_c)[by_session], np.concatenate(parts_w)[by_session]
