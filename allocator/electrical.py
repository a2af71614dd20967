"""Allocation with the electrical model (docs/electrical-allocation.md).

Five passes over the linear constraints of :mod:`allocator.electrical_model`:

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
5. *Levelling*: a session rounding left below others on a constraint that
   refuses its step takes a step from the highest there, then the top-up
   runs again.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from allocator.api import allocate
from allocator.electrical_model import (
    AC,
    CompiledStation,
    SessionArrays,
    compile_station,
    min_down,
    min_up,
    pairs_on,
    read_sessions,
    sums_up,
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
    limit[0, ROOT] = math.inf if root_limit == math.inf else max(0, math.floor(root_limit))

    pinned = np.flatnonzero(s.pinned)
    base = sums_up(cs, s.node[pinned], np.take(s.weight, pinned, axis=1) * s.pinned_kw[pinned])
    running, blocked_at = _running_set(cs, s, limit, base)
    units, held = _fill(cs, s, limit, base, running)
    # Sessions held at their minimum stay there: their fair share is below it
    # (docs/electrical-allocation.md, "Held at the minimum").
    _top_up(cs, s, limit, base, running & ~held, units)
    if _level_up(cs, s, limit, base, running & ~held, units):
        _top_up(cs, s, limit, base, running & ~held, units)
    return _limits(cs, ids, s, limit, base, running, blocked_at, units, held)


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
    cs: CompiledStation, s: SessionArrays, limit: FloatArray, base: FloatArray
) -> tuple[BoolArray, IntArray]:
    """Greedy in rank order: keep a session if its minimum fits with those kept before.

    Returns the running mask and, per session, the constraint that refused
    it (-1 if running).
    """
    count = len(s.node)
    running = ~s.pinned
    blocked_at = np.full(count, -1, dtype=np.int64)
    min_kw = np.where(s.pinned, 0.0, s.units_min * s.step_kw)
    total = base + sums_up(cs, s.node, s.weight * min_kw)
    contested = total > limit + TOLERANCE
    if not contested.any():
        return running, blocked_at
    # Only the sessions with a minimum under a contested constraint can be refused.
    under = _under(cs, s, contested)
    walk = np.flatnonzero(under & (min_kw > 0))
    ps, pc, pw = pairs_on(cs, s, walk, contested.ravel())
    sessions = ps.tolist()
    constraints = pc.tolist()
    amounts = (pw * min_kw[ps]).tolist()
    room = (limit + TOLERANCE - base).ravel().tolist()
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


def _under(cs: CompiledStation, s: SessionArrays, flagged: BoolArray) -> BoolArray:
    """Whether each session is on a ``flagged`` constraint (SLOTS x nodes) above it."""
    above = np.take(min_down(cs, np.where(flagged, 0.0, 1.0)), s.node, axis=1) == 0
    result: BoolArray = (above & (s.weight > 0)).any(axis=0)
    return result


def _fill(
    cs: CompiledStation,
    s: SessionArrays,
    limit: FloatArray,
    base: FloatArray,
    running: BoolArray,
) -> tuple[IntArray, BoolArray]:
    """Whole steps per session after the max-min filling and rounding down."""
    count = len(s.node)
    held = np.zeros(count, dtype=np.bool_)
    cap_kw = s.units_cap * s.step_kw
    min_kw = s.units_min * s.step_kw
    reserved = base
    while True:
        free = np.flatnonzero(running & ~held)
        level = _water_fill(cs, limit, reserved, free, s, cap_kw)
        short = np.zeros(count, dtype=np.bool_)
        short[free] = level[free] < min_kw[free] - 1e-9
        if not short.any():
            break
        # Held below its minimum with this much room, so with less room too
        # (docs/electrical-allocation.md, "Held at the minimum").
        held |= short
        at = np.flatnonzero(short)
        reserved = reserved + sums_up(cs, s.node[at], np.take(s.weight, at, axis=1) * min_kw[at])
    units = np.floor(np.nan_to_num(level, posinf=0.0) / s.step_kw + 1e-9).astype(np.int64)
    units = np.clip(units, s.units_min, s.units_cap)
    units[held] = s.units_min[held]
    units[~running] = 0
    return units, held


def _water_fill(
    cs: CompiledStation,
    limit: FloatArray,
    reserved: FloatArray,
    active: IntArray,
    s: SessionArrays,
    cap_kw: FloatArray,
) -> FloatArray:
    """Continuous progressive filling of the ``active`` sessions: everyone grows
    at the same kW rate, each session stops at its cap or when a constraint it
    is on is full.

    Each round computes, with what is settled so far, the level at which each
    constraint would be full if nobody else stopped first (a lower bound of
    when it really fills: stopping sessions only slows it). A constraint whose
    level is the lowest among the levels and caps of all its sessions really
    fills then, so its sessions are settled at that level; so is a session
    whose cap is below every level it sees. Each round settles at least the
    overall lowest one, usually many. Every step is a sum up or a minimum
    down the tree (docs/electrical-allocation.md, "The algorithm").
    """
    # A session on no constraint that can fill grows to its cap.
    level = cap_kw.astype(np.float64)
    filled = reserved
    # Sorted by node once (filtering keeps the order) for the minimums up the tree.
    active = active[np.argsort(s.node[active], kind="stable")]
    node = s.node[active]
    weight = np.take(s.weight, active, axis=1)
    cap = cap_kw[active]
    # Where a session is on no constraint of a slot: never the lowest there.
    off = np.where(weight > 0, 0.0, np.inf)
    rate = sums_up(cs, node, weight)
    while len(active):
        with np.errstate(divide="ignore", invalid="ignore"):
            full_at = np.where(rate > 0, (limit - filled) / rate, np.inf)
        np.maximum(full_at, 0.0, out=full_at)
        seen = np.minimum(
            np.minimum.reduce(np.take(min_down(cs, full_at), node, axis=1) + off), cap
        )
        # A constraint fills first among all its sessions see when none of
        # them sees anything lower.
        settles = (min_up(cs, node, seen + off) >= full_at) & (full_at < np.inf)
        above = np.take(min_down(cs, np.where(settles, 0.0, np.inf)), node, axis=1) + off
        settled = (seen >= cap) | (np.minimum.reduce(above) == 0)
        done = np.flatnonzero(settled)
        level[active[done]] = seen[done]
        done_weight = np.take(weight, done, axis=1)
        filled = filled + sums_up(cs, node[done], done_weight * seen[done])
        keep = np.flatnonzero(~settled)
        if len(keep) < len(done):
            rate = sums_up(cs, node[keep], np.take(weight, keep, axis=1))
        else:
            rate = rate - sums_up(cs, node[done], done_weight)
        active, node, cap = active[keep], node[keep], cap[keep]
        weight, off = np.take(weight, keep, axis=1), np.take(off, keep, axis=1)
    return level


def _top_up(
    cs: CompiledStation,
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
    step does not fit is done (room only shrinks), so the walk sees about
    (candidates + steps given) entries: the slack left by rounding down.
    """
    on = s.weight > 0
    step_use = s.weight * s.step_kw
    used = base + sums_up(cs, s.node, s.weight * (units * s.step_kw))
    room_array = limit + TOLERANCE - used
    # A session's step is the same on every node above it, slot by slot: it
    # fits if it fits the least room above it on each of its slots.
    least_room = np.take(min_down(cs, room_array), s.node, axis=1)
    fits = ~(on & (step_use > least_room)).any(axis=0)
    candidate = eligible & ~s.pinned & (units < s.units_cap) & fits
    # A constraint with room for every step the candidates could still take
    # never refuses one: leave it out of the walk. A candidate can take no
    # more steps than its cap, nor than the least room above it holds.
    with np.errstate(divide="ignore", invalid="ignore"):
        room_for = np.where(on, np.floor(least_room / step_use), np.inf).min(axis=0)
    headroom = np.where(candidate, np.minimum(s.units_cap - units, room_for), 0)
    wanted = sums_up(cs, s.node, step_use * headroom)
    tight = wanted > room_array
    free = candidate & ~_under(cs, s, tight)
    units[free] += headroom[free].astype(np.int64)
    candidate &= ~free
    listed = np.flatnonzero(candidate)
    if not len(listed):
        return
    pair_session, pair_constraint, pair_weight = pairs_on(cs, s, listed, tight.ravel())
    bounds = np.searchsorted(pair_session, np.stack([listed, listed + 1]))
    room_flat = room_array.ravel()
    # Within a candidate, its most oversubscribed constraint first (the least
    # room for what its candidates want): a step that does not fit is then
    # usually refused at the first check.
    served = room_flat[pair_constraint] / wanted.ravel()[pair_constraint]
    lows = bounds[0]
    worst = np.minimum.reduceat(served, lows)
    at_worst = np.flatnonzero(served == np.repeat(worst, bounds[1] - lows))
    first_worst = at_worst[np.searchsorted(at_worst, lows)]
    swap = np.arange(len(served))
    swap[lows], swap[first_worst] = first_worst, lows
    room = room_flat.tolist()
    constraint = pair_constraint[swap].tolist()
    amount = (pair_weight * s.step_kw[pair_session])[swap].tolist()
    step = s.step_kw.tolist()
    # Never beyond its headroom: the constraints left out of the walk were
    # sized for that many steps (and the least room above it holds no more).
    cap = (units + headroom.astype(np.int64)).tolist()
    given = units.tolist()
    # The candidates in (power, rank) order, sorted once; a session that took
    # a step waits in a heap (few at a time); the next is the lower head.
    first = np.lexsort((listed, units[listed] * s.step_kw[listed]))
    queue = listed[first].tolist()
    queue_lo = bounds[0][first].tolist()
    queue_hi = bounds[1][first].tolist()
    queue_power = [given[i] * step[i] for i in queue]
    queue.append(len(given))  # a sentinel after the last
    queue_power.append(math.inf)
    heap: list[tuple[float, int, int, int]] = []
    at = 0
    while True:
        if heap and heap[0][:2] < (queue_power[at], queue[at]):
            _, i, lo, hi = heapq.heappop(heap)
        elif at < len(queue_lo):
            i, lo, hi = queue[at], queue_lo[at], queue_hi[at]
            at += 1
        else:
            break
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


def _level_up(
    cs: CompiledStation,
    s: SessionArrays,
    limit: FloatArray,
    base: FloatArray,
    eligible: BoolArray,
    units: IntArray,
) -> bool:
    """Move steps from higher sessions to a lower one that only that lets climb.

    Rounding can leave a session whose continuous share was small below
    others it shares its bottleneck with: the room the others' rounding left
    went, one step at a time, to sessions with smaller steps, and its own
    step no longer fits (docs/electrical-allocation.md, "Rounding"). The
    top-up only adds. Here each such session, lowest first, takes steps from
    the highest session on a constraint that refuses its step, as long as
    that one stays at least one step above it, until one step of its own
    fits; moves that do not end in that step are undone. Returns whether
    anything moved (then the caller tops up again: a donor may have freed
    room elsewhere).
    """
    on = s.weight > 0
    step_use = s.weight * s.step_kw
    used = base + sums_up(cs, s.node, s.weight * (units * s.step_kw))
    room_array = limit + TOLERANCE - used
    least_room = np.take(min_down(cs, room_array), s.node, axis=1)
    movable = eligible & ~s.pinned
    blocked = movable & (units < s.units_cap) & (on & (step_use > least_room)).any(axis=0)
    if not blocked.any():
        return False
    tree = cs.tree
    # Only a session with a possible donor on every constraint that refuses
    # its step can be helped: per constraint, the most a session on it keeps
    # after giving one step (a maximum up the tree), against what the low one
    # needs its donors to keep.
    power = units * s.step_kw
    keeps = np.where(movable & (units > s.units_min), power - s.step_kw, -np.inf)
    by_node = np.argsort(s.node, kind="stable")
    most_kept = -min_up(cs, s.node[by_node], np.take(np.where(on, -keeps, np.inf), by_node, axis=1))
    needed = power + 2 * s.step_kw
    chain = s.node.copy()
    for _ in range(tree.path_length):
        refusing = on & (step_use > np.take(room_array, chain, axis=1))
        blocked &= ~(refusing & (np.take(most_kept, chain, axis=1) < needed)).any(axis=0)
        chain = tree.parent[chain]
    if not blocked.any():
        return False
    size = tree.size
    room = room_array.ravel().tolist()
    parent = tree.parent.tolist()
    node = s.node.tolist()
    step = s.step_kw.tolist()
    floor_units = s.units_min.tolist()
    cap = s.units_cap.tolist()
    given = units.tolist()
    on_list = on.T.tolist()
    use_list = step_use.T.tolist()
    donors: dict[int, list[tuple[float, int]]] = {}

    def uses(i: int) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        v = node[i]
        while True:
            out.extend((k * size + v, use_list[i][k]) for k in range(4) if on_list[i][k])
            if v == ROOT:
                return out
            v = parent[v]

    def heap_of(c: int) -> list[tuple[float, int]]:
        heap = donors.get(c)
        if heap is None:
            k, v = divmod(c, size)
            chain = s.node.copy()
            below = chain == v
            for _ in range(tree.path_length):
                chain = tree.parent[chain]
                below |= chain == v
            members = np.flatnonzero(below & on[k] & movable)
            heap = [(-given[j] * step[j], j) for j in members.tolist()]
            heapq.heapify(heap)
            donors[c] = heap
        return heap

    def donor_on(c: int, above: float) -> int:
        """The highest session on c that stays at ``above`` or more after
        giving a step; -1 if none."""
        heap = heap_of(c)
        passed: list[tuple[float, int]] = []  # too big a step to give one
        found = -1
        while heap:
            power, j = heap[0]
            if -power != given[j] * step[j]:  # moved since: refresh
                heapq.heapreplace(heap, (-given[j] * step[j], j))
            elif given[j] <= floor_units[j]:  # at its minimum: never a donor
                heapq.heappop(heap)
            elif -power < above:  # nobody lower can stay at above either
                break
            elif (given[j] - 1) * step[j] >= above:
                found = j
                break
            else:
                passed.append(heapq.heappop(heap))
        for entry in passed:
            heapq.heappush(heap, entry)
        return found

    moved = False
    low_first = np.flatnonzero(blocked)
    low_first = low_first[np.argsort(units[low_first] * s.step_kw[low_first], kind="stable")]
    for i in low_first.tolist():
        mine = uses(i)
        taken: list[tuple[int, list[tuple[int, float]]]] = []
        while given[i] < cap[i]:
            short = next((c for c, amount in mine if amount > room[c]), -1)
            if short < 0:
                for c, amount in mine:
                    room[c] -= amount
                given[i] += 1
                taken.clear()
                moved = True
                # One step: what the donors freed beyond it goes to the
                # lowest in the top-up that follows.
                break
            # The donor stays a step above where this one would be.
            j = donor_on(short, (given[i] + 1) * step[i] + step[i])
            if j < 0 or j == i:
                break
            theirs = uses(j)
            for c, amount in theirs:
                room[c] += amount
            given[j] -= 1
            taken.append((j, theirs))
        for j, theirs in taken:  # moves that bought no step
            for c, amount in theirs:
                room[c] -= amount
            given[j] += 1
    units[:] = given
    return moved


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
    room = limit + TOLERANCE - (base + sums_up(cs, s.node, s.weight * power))
    # The closest node where one more step does not fit.
    on = s.weight > 0
    step_use = s.weight * s.step_kw
    closest = np.full(count, -1, dtype=np.int64)
    chain = s.node.copy()
    looking = np.ones(count, dtype=np.bool_)
    for _ in range(tree.path_length):
        full = looking & (on & (step_use > np.take(room, chain, axis=1))).any(axis=0)
        closest[full] = chain[full]
        looking &= ~full & (chain != ROOT)
        chain = tree.parent[chain]

    # A bound code per session: an index into labels.
    labels = [*tree.bound_names, BOUND_MINIMUM]
    minimum_code = len(labels) - 1
    node_code = tree.node_bound
    at_cap = units >= s.units_cap
    cap_code = np.where(s.vehicle_bound, VEHICLE, CHARGER)
    code = np.where(closest >= 0, node_code[np.maximum(closest, 0)], STATION)
    code = np.where(at_cap, cap_code, code)
    code = np.where(held & (units == s.units_min), minimum_code, code)
    code = np.where(at_cap & (s.units_cap > s.units_min), cap_code, code)
    code = np.where(running, code, node_code[np.maximum(blocked_at, 0) % tree.size])
    code = np.where(s.pinned, PINNED, code)

    is_ac = s.kind == AC
    phases_used = s.mask.sum(axis=1)
    kw = np.where(s.pinned, s.pinned_kw, power).round(9)
    amps = np.where(
        s.pinned, s.pinned_kw * 1000 / (cs.voltage[s.node] * phases_used), units * cs.step[s.node]
    ).round(9)
    amps[~is_ac] = 0.0
    live = np.where(s.pinned, s.pinned_kw > 0, running)
    phase_code = s.mask @ np.array([1, 2, 4])
    # Most sessions share their limit with others; one ElectricalLimit per
    # distinct limit is much cheaper than one per session, and they are immutable.
    small = ((code * 8 + phase_code) * 2 + live) * 2 + is_ac
    by_key = np.lexsort((amps, kw, small))
    new = np.ones(count, dtype=np.bool_)
    if count:
        sorted_small, sorted_kw, sorted_amps = small[by_key], kw[by_key], amps[by_key]
        new[1:] = (
            (sorted_small[1:] != sorted_small[:-1])
            | (sorted_kw[1:] != sorted_kw[:-1])
            | (sorted_amps[1:] != sorted_amps[:-1])
        )
    which = np.empty(count, dtype=np.int64)
    which[by_key] = np.cumsum(new) - 1
    first = by_key[new]
    phase_sets = [tuple(p for b, p in enumerate(SITE_PHASES) if n >> b & 1) for n in range(8)]
    shared = np.empty(len(first), dtype=object)
    shared[:] = [
        ElectricalLimit(r, k, a if ac else None, phase_sets[m], labels[c])
        for r, k, a, ac, m, c in zip(
            live[first].tolist(),
            kw[first].tolist(),
            amps[first].tolist(),
            is_ac[first].tolist(),
            phase_code[first].tolist(),
            code[first].tolist(),
            strict=True,
        )
    ]
    in_caller_order = np.empty(count, dtype=np.int64)
    in_caller_order[s.source] = which
    return dict(zip(ids, shared[in_caller_order].tolist(), strict=True))
