"""Allocation with the electrical model (docs/electrical-allocation.md).

Four passes over the linear constraints of :mod:`allocator.electrical_model`:

1. *Running set*: sessions in rotation order, each kept if its minimum fits
   with the pinned sessions and every session kept before it at theirs, on
   every constraint. Only constraints that the sum of all minimums overfills
   can refuse anyone, so only sessions on those are walked one by one.
2. *Filling*: max-min fair in kW among the running sessions, continuous,
   under every constraint and cap. A session whose fair level is below its
   minimum is held at its minimum and the others are filled again.
3. *Rounding* each session down to its step (never below its minimum).
4. *Top-up*: the lowest sessions take one more step while every constraint
   they are on still has room, until no session can.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from allocator.api import allocate
from allocator.electrical_model import (
    AC,
    SLOTS,
    CompiledStation,
    SessionArrays,
    compile_station,
    read_sessions,
)
from allocator.electrical_types import (
    BOUND_MINIMUM,
    SITE_PHASES,
    TOLERANCE,
    ElectricalDemand,
    ElectricalLimit,
    ElectricalStation,
)
from allocator.tree import CHARGER, PINNED, ROOT, STATION, VEHICLE, BoolArray, FloatArray, IntArray
from allocator.types import Demand, Limit


def allocate_electrical(
    station: ElectricalStation | CompiledStation,
    demands: Sequence[ElectricalDemand],
    root_limit: float,
    order: Sequence[str] | None = None,
) -> dict[str, ElectricalLimit]:
    """One limit per demand, keyed by session id.

    ``order`` is the rotation order (:mod:`allocator.rotation`): the running
    set is the greedy one in that order. Sessions it does not name come after,
    earliest start first. ``root_limit`` is the station's available kW, as for
    :func:`allocator.allocate`. A station without any electrical data gets
    exactly :func:`allocator.allocate`'s ``fair`` limits (property 6).

    Raises ValueError for invalid stations or demands (see
    :func:`allocator.electrical_model.compile_station`).
    """
    if math.isnan(root_limit):
        raise ValueError("root_limit must not be NaN")
    cs = station if isinstance(station, CompiledStation) else compile_station(station)
    if not cs.station.has_electrical_data:
        return _as_today(cs, demands, root_limit)
    ids, s = read_sessions(cs, demands, order)
    limit = cs.limit.copy()
    limit[ROOT * SLOTS] = math.inf if root_limit == math.inf else max(0, math.floor(root_limit))

    base = np.bincount(
        s.pair_constraint,
        weights=s.pair_weight * s.pinned_kw[s.pair_session],
        minlength=len(limit),
    ).astype(np.float64)
    s = _without_slack_constraints(s, limit, base)
    running, blocked_at = _running_set(s, limit, base)
    units, held = _fill(s, limit, base, running)
    # Sessions held at their minimum stay there: their fair share is below it
    # (docs/electrical-allocation.md, "Held at the minimum").
    _top_up(s, limit, base, running & ~held, units)
    return _limits(cs, ids, s, limit, base, running, blocked_at, units, held)


def _without_slack_constraints(
    s: SessionArrays, limit: FloatArray, base: FloatArray
) -> SessionArrays:
    """Drop the pairs of constraints that hold even with every session at its cap.

    They can refuse no one and fill for no one; leaving them out makes every
    later pass shorter (a charger's kW limit above its car's cap, a feeder with
    room to spare).
    """
    at_cap = np.where(s.pinned, 0.0, s.units_cap * s.step_kw)
    most = base + np.bincount(
        s.pair_constraint, weights=s.pair_weight * at_cap[s.pair_session], minlength=len(limit)
    )
    keep = most[s.pair_constraint] > limit[s.pair_constraint]
    if keep.all():
        return s
    return replace(
        s,
        pair_session=s.pair_session[keep],
        pair_constraint=s.pair_constraint[keep],
        pair_weight=s.pair_weight[keep],
    )


def _as_today(
    cs: CompiledStation, demands: Sequence[ElectricalDemand], root_limit: float
) -> dict[str, ElectricalLimit]:
    plain: list[Demand] = []
    for d in demands:
        fixed = None
        if d.fixed is not None:
            if not float(d.fixed).is_integer():
                raise ValueError(f"session {d.session_id!r}: fixed must be whole kW")
            fixed = int(d.fixed)
        plain.append(Demand(d.session_id, d.charger_id, d.started_at, d.vehicle_max_power, fixed))
    result = allocate(cs.tree, plain, root_limit)
    return {sid: _from_limit(limit) for sid, limit in result.items()}


def _from_limit(limit: Limit) -> ElectricalLimit:
    return ElectricalLimit(True, float(limit.power), None, SITE_PHASES, limit.bound)


def _running_set(
    s: SessionArrays, limit: FloatArray, base: FloatArray
) -> tuple[BoolArray, IntArray]:
    """Greedy in rank order: keep a session if its minimum fits with those kept before.

    Returns the running mask and, per session, the constraint that refused
    it (-1 if running).
    """
    count = len(s.node)
    running = ~s.pinned
    blocked_at = np.full(count, -1, dtype=np.int64)
    min_kw = s.units_min * s.step_kw
    use = s.pair_weight * np.where(s.pinned, 0.0, min_kw)[s.pair_session]
    total = base + np.bincount(s.pair_constraint, weights=use, minlength=len(limit))
    contested = total > limit + TOLERANCE
    if not contested.any():
        return running, blocked_at
    on = contested[s.pair_constraint] & (use > 0)
    sessions = s.pair_session[on].tolist()
    constraints = s.pair_constraint[on].tolist()
    amounts = use[on].tolist()
    room = (limit + TOLERANCE - base).tolist()
    # Pairs are grouped by session in rank order: walk them one session at a time.
    i = 0
    end = len(sessions)
    while i < end:
        session = sessions[i]
        j = i
        refused = -1
        while j < end and sessions[j] == session:
            if refused < 0 and amounts[j] > room[constraints[j]]:
                refused = constraints[j]
            j += 1
        if refused >= 0:
            running[session] = False
            blocked_at[session] = refused
        else:
            for k in range(i, j):
                room[constraints[k]] -= amounts[k]
        i = j
    return running, blocked_at


def _fill(
    s: SessionArrays, limit: FloatArray, base: FloatArray, running: BoolArray
) -> tuple[IntArray, BoolArray]:
    """Whole steps per session after the max-min filling and rounding down."""
    count = len(s.node)
    units = np.zeros(count, dtype=np.int64)
    held = np.zeros(count, dtype=np.bool_)
    cap_kw = s.units_cap * s.step_kw
    min_kw = s.units_min * s.step_kw
    while True:
        free = running & ~held
        reserved = base + np.bincount(
            s.pair_constraint,
            weights=s.pair_weight * np.where(held, min_kw, 0.0)[s.pair_session],
            minlength=len(limit),
        )
        in_fill = free[s.pair_session]
        level = _water_fill(
            limit,
            reserved,
            s.pair_session[in_fill],
            s.pair_constraint[in_fill],
            s.pair_weight[in_fill],
            cap_kw,
        )
        short = free & (level < min_kw - 1e-9)
        if not short.any():
            break
        # Held below its minimum with this much room, so with less room too
        # (docs/electrical-allocation.md, "Held at the minimum").
        held |= short
    units = np.floor(np.nan_to_num(level, posinf=0.0) / s.step_kw + 1e-9).astype(np.int64)
    units = np.clip(units, s.units_min, s.units_cap)
    units[held] = s.units_min[held]
    units[~running] = 0
    return units, held


def _water_fill(
    limit: FloatArray,
    reserved: FloatArray,
    ps: IntArray,
    pc: IntArray,
    pw: FloatArray,
    cap_kw: FloatArray,
) -> FloatArray:
    """Continuous progressive filling: everyone grows at the same kW rate, each
    session stops at its cap or when a constraint it is on is full.

    ``ps`` (grouped by session) / ``pc`` / ``pw`` are the sessions' pairs.
    Each round computes, with what is settled so far, the level at which each
    constraint would be full if nobody else stopped first (a lower bound of
    when it really fills: stopping sessions only slows it). A constraint whose
    level is the lowest among the levels and caps of all its sessions really
    fills then, so its sessions are settled at that level; so is a session
    whose cap is below every level it sees. Each round settles at least the
    overall lowest one, usually many.
    """
    # A session on no constraint that can fill grows to its cap.
    level = cap_kw.astype(np.float64)
    filled = reserved.copy()
    size = len(limit)
    while len(ps):
        rate = np.bincount(pc, weights=pw, minlength=size)
        with np.errstate(divide="ignore", invalid="ignore"):
            full_at = np.where(rate > 0, (limit - filled) / rate, np.inf)
        np.maximum(full_at, 0.0, out=full_at)
        first = np.empty(len(ps), dtype=np.bool_)
        first[0] = True
        np.not_equal(ps[1:], ps[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        sessions = ps[starts]
        seen = np.minimum(np.minimum.reduceat(full_at[pc], starts), cap_kw[sessions])
        # A constraint fills first among all its sessions see when none of
        # them sees anything lower (a count, cheaper than a minimum per constraint).
        earlier = np.bincount(pc, weights=seen[group] < full_at[pc], minlength=size)
        settles_here = earlier == 0
        settled = (seen >= cap_kw[sessions]) | (
            np.bincount(group, weights=settles_here[pc], minlength=len(sessions)) > 0
        )
        level[sessions[settled]] = seen[settled]
        done = settled[group]
        filled += np.bincount(pc[done], weights=pw[done] * seen[group[done]], minlength=size)
        keep = ~done
        ps, pc, pw = ps[keep], pc[keep], pw[keep]
    return level


def _top_up(
    s: SessionArrays,
    limit: FloatArray,
    base: FloatArray,
    eligible: BoolArray,
    units: IntArray,
) -> None:
    """Give ``eligible`` sessions one more step at a time, always to the lowest
    (ties: rank) that can take it, until none can.

    One at a time on purpose: with steps of different sizes, a parallel round
    would let a big step jump above small ones that could still climb. Only
    sessions whose step fits everywhere now take part, and a session whose
    step does not fit is done (room only shrinks), so the heap sees about
    (candidates + steps given) entries: the slack left by rounding down.
    """
    size = len(limit)
    step_use = s.pair_weight * s.step_kw[s.pair_session]
    used = base + np.bincount(
        s.pair_constraint,
        weights=s.pair_weight * (units * s.step_kw)[s.pair_session],
        minlength=size,
    )
    room_array = limit + TOLERANCE - used
    fits = step_use <= room_array[s.pair_constraint]
    candidate = (
        eligible
        & ~s.pinned
        & (units < s.units_cap)
        & (np.bincount(s.pair_session, weights=~fits, minlength=len(units)) == 0)
    )
    # A constraint with room for every step the candidates could still take
    # never refuses one: leave it out of the walk.
    headroom = (s.units_cap - units)[s.pair_session] * step_use
    wanted = np.bincount(
        s.pair_constraint,
        weights=np.where(candidate[s.pair_session], headroom, 0.0),
        minlength=size,
    )
    tight = wanted > room_array
    free = candidate & (
        np.bincount(s.pair_session, weights=tight[s.pair_constraint], minlength=len(units)) == 0
    )
    units[free] = s.units_cap[free]
    candidate &= ~free
    listed = np.flatnonzero(candidate)
    if not len(listed):
        return
    on = np.flatnonzero(tight[s.pair_constraint] & candidate[s.pair_session])
    pair_session = s.pair_session[on]
    bounds = np.searchsorted(pair_session, np.stack([listed, listed + 1]))
    room = room_array.tolist()
    constraint = s.pair_constraint[on].tolist()
    amount = step_use[on].tolist()
    step = s.step_kw.tolist()
    cap = s.units_cap.tolist()
    given = units.tolist()
    heap = [
        (given[i] * step[i], i, lo, hi)
        for i, lo, hi in zip(listed.tolist(), bounds[0].tolist(), bounds[1].tolist(), strict=True)
    ]
    heapq.heapify(heap)
    while heap:
        _, i, lo, hi = heapq.heappop(heap)
        for k in range(lo, hi):
            if amount[k] > room[constraint[k]]:
                break
        else:
            for k in range(lo, hi):
                room[constraint[k]] -= amount[k]
            given[i] += 1
            if given[i] < cap[i]:
                heapq.heappush(heap, (given[i] * step[i], i, lo, hi))
    units[listed] = np.array(given, dtype=np.int64)[listed]


def _limits(
    cs: CompiledStation,
    ids: list[str],
    s: SessionArrays,
    limit: FloatArray,
    base: FloatArray,
    running: BoolArray,
    blocked_at: IntArray,
    units: IntArray,
    held: BoolArray,
) -> dict[str, ElectricalLimit]:
    tree = cs.tree
    count = len(units)
    power = units * s.step_kw
    used = base + np.bincount(
        s.pair_constraint, weights=s.pair_weight * power[s.pair_session], minlength=len(limit)
    )
    # The closest constraint on which one more step does not fit.
    step_use = s.pair_weight * s.step_kw[s.pair_session]
    full = step_use > limit[s.pair_constraint] + TOLERANCE - used[s.pair_constraint]
    closest = np.full(count, -1, dtype=np.int64)
    at = np.flatnonzero(full)[::-1]
    closest[s.pair_session[at]] = s.pair_constraint[at]  # the first pair wins

    # A bound code per session: an index into labels.
    labels = [*tree.bound_names, BOUND_MINIMUM]
    minimum_code = len(labels) - 1
    node_code = tree.node_bound
    at_cap = units >= s.units_cap
    cap_code = np.where(s.vehicle_bound, VEHICLE, CHARGER)
    code = np.where(closest >= 0, node_code[np.maximum(closest, 0) // SLOTS], STATION)
    code = np.where(at_cap, cap_code, code)
    code = np.where(held & (units == s.units_min), minimum_code, code)
    code = np.where(at_cap & (s.units_cap > s.units_min), cap_code, code)
    code = np.where(running, code, node_code[np.maximum(blocked_at, 0) // SLOTS])
    code = np.where(s.pinned, PINNED, code)

    is_ac = s.kind == AC
    phases_used = s.mask.sum(axis=1)
    kw = np.where(s.pinned, s.pinned_kw, power).round(9)
    amps = np.where(
        s.pinned, s.pinned_kw * 1000 / (cs.voltage[s.node] * phases_used), units * cs.step[s.node]
    ).round(9)
    live = np.where(s.pinned, s.pinned_kw > 0, running)
    phase_sets = np.empty(8, dtype=object)
    phase_sets[:] = [tuple(p for b, p in enumerate(SITE_PHASES) if n >> b & 1) for n in range(8)]
    label_array = np.empty(len(labels), dtype=object)
    label_array[:] = labels
    current = amps.astype(object)
    current[~is_ac] = None
    made = list(
        map(
            ElectricalLimit,
            live.tolist(),
            kw.tolist(),
            current.tolist(),
            phase_sets[s.mask @ np.array([1, 2, 4])].tolist(),
            label_array[code].tolist(),
        )
    )
    in_caller_order = np.empty(count, dtype=object)
    in_caller_order[s.source] = made
    return dict(zip(ids, in_caller_order.tolist(), strict=True))
