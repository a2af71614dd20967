"""Properties of the allocation on random stations (docs/allocation.md)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import allocator.fair as fair
from allocator import Demand, GroupNode, Limit, StationTree, Strategy, allocate
from tests.allocator.reference import reference_allocate
from tests.allocator.strategies import Case, cases, large_cases

STRATEGIES = st.sampled_from(list(Strategy))
# Small enough for the 1 kW-at-a-time oracle, big enough for nested groups and ties.
SMALL = cases(max_chargers=8, scale=80)
# Hypothesis favours tiny examples; these seeded ones hold 20-130 sessions.
MEDIUM = large_cases(min_chargers=20, max_chargers=100, scale=150)
# Up to a few hundred sessions.
LARGE = st.one_of(cases(max_chargers=12), large_cases(max_chargers=150))


class View:
    """The station seen from the tests: node limits and each charger's ancestors."""

    def __init__(self, case: Case) -> None:
        self.limit: dict[str, float] = {"station": max(0, math.floor(case.root_limit))}
        self.above: dict[str, list[str]] = {}

        def walk(group: GroupNode, path: list[str]) -> None:
            self.limit[group.id] = math.floor(group.max_power)
            for charger_id in group.chargers:
                self.above[charger_id] = ["charger:" + charger_id, group.id, *path]
            for sub in group.groups:
                walk(sub, [group.id, *path])

        for group in case.tree.groups:
            walk(group, ["station"])
        for charger in case.tree.chargers:
            self.limit["charger:" + charger.id] = math.floor(charger.max_power)
            self.above.setdefault(charger.id, ["charger:" + charger.id, "station"])
        self.case = case
        self.on_charger = Counter(d.charger_id for d in case.demands)

    def cap(self, d: Demand, strategy: Strategy) -> int:
        charger_limit = int(self.limit["charger:" + d.charger_id])
        own = charger_limit if d.vehicle_max_power is None else math.floor(d.vehicle_max_power)
        own = max(0, min(own, charger_limit))
        if strategy is Strategy.EVEN_SPLIT:
            own = min(own, charger_limit // self.on_charger[d.charger_id])
        return own

    def usage(self, limits: dict[str, Limit], *, pinned_only: bool = False) -> dict[str, int]:
        used = dict.fromkeys(self.limit, 0)
        for d in self.case.demands:
            if pinned_only and d.fixed is None:
                continue
            for key in self.above[d.charger_id]:
                used[key] += limits[d.session_id].power
        return used


def node_of(d: Demand, bound: str) -> str:
    """The node a bound label names, for a session on charger d.charger_id."""
    return "charger:" + d.charger_id if bound == "charger" else bound


@settings(deadline=None, max_examples=150)
@given(SMALL, STRATEGIES)
def test_equal_to_the_reference_procedure(case: Case, strategy: Strategy) -> None:
    limits = allocate(case.tree, case.demands, case.root_limit, strategy)
    expected = reference_allocate(case.tree, case.demands, case.root_limit, strategy)
    assert {sid: limit.power for sid, limit in limits.items()} == expected


@settings(deadline=None, max_examples=50)
@given(MEDIUM, STRATEGIES)
def test_equal_to_the_reference_procedure_on_busier_stations(
    case: Case, strategy: Strategy
) -> None:
    limits = allocate(case.tree, case.demands, case.root_limit, strategy)
    expected = reference_allocate(case.tree, case.demands, case.root_limit, strategy)
    assert {sid: limit.power for sid, limit in limits.items()} == expected


# The filling finds each node's level by a (node, cap) histogram, by comparing
# sessions pairwise, or by sorting, whichever is cheaper for the batch at hand;
# force each way (and the non-radix grouping) in turn.
WAYS = {
    "histogram": {"_HISTOGRAM_FACTOR": 10**9},
    "pairwise": {"_HISTOGRAM_FACTOR": 0, "_PAIRWISE_LIMIT": 10**6},
    "sorting": {"_HISTOGRAM_FACTOR": 0, "_PAIRWISE_LIMIT": 0},
    "sorting-without-radix": {"_HISTOGRAM_FACTOR": 0, "_PAIRWISE_LIMIT": 0, "_RADIX_LIMIT": 0},
}


@pytest.mark.parametrize("way", WAYS)
@settings(deadline=None, max_examples=40)
@given(case=st.one_of(SMALL, MEDIUM), strategy=STRATEGIES)
def test_every_way_of_finding_levels_equals_the_reference(
    way: str, case: Case, strategy: Strategy
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in WAYS[way].items():
            patch.setattr(fair, name, value)
        limits = allocate(case.tree, case.demands, case.root_limit, strategy)
    expected = reference_allocate(case.tree, case.demands, case.root_limit, strategy)
    assert {sid: limit.power for sid, limit in limits.items()} == expected


@settings(deadline=None, max_examples=60)
@given(cases(max_chargers=8, scale=80, pins=False), STRATEGIES)
def test_equal_to_the_reference_procedure_without_pins(case: Case, strategy: Strategy) -> None:
    limits = allocate(case.tree, case.demands, case.root_limit, strategy)
    expected = reference_allocate(case.tree, case.demands, case.root_limit, strategy)
    assert {sid: limit.power for sid, limit in limits.items()} == expected


@settings(deadline=None)
@given(LARGE, STRATEGIES)
def test_never_over_a_limit(case: Case, strategy: Strategy) -> None:
    view = View(case)
    limits = allocate(case.tree, case.demands, case.root_limit, strategy)
    assert set(limits) == {d.session_id for d in case.demands}
    for d in case.demands:
        power = limits[d.session_id].power
        assert isinstance(power, int)
        if d.fixed is not None:
            assert limits[d.session_id] == Limit(d.fixed, "pinned")
        else:
            assert 0 <= power <= view.cap(d, strategy)
    used = view.usage(limits)
    pinned = view.usage(limits, pinned_only=True)
    for key, limit in view.limit.items():
        if pinned[key] > limit:
            # Pinned alone overfill the node: nobody else below it gets anything.
            assert used[key] == pinned[key], key
        else:
            assert used[key] <= limit, key


@settings(deadline=None)
@given(LARGE, STRATEGIES, st.randoms(use_true_random=False))
def test_independent_of_input_order(case: Case, strategy: Strategy, rnd: random.Random) -> None:
    """Neither the order of the demands nor that of the chargers in the tree matters."""
    shuffled = list(case.demands)
    rnd.shuffle(shuffled)
    chargers = list(case.tree.chargers)
    rnd.shuffle(chargers)
    reordered = StationTree(tuple(chargers), case.tree.groups)
    assert allocate(reordered, shuffled, case.root_limit, strategy) == allocate(
        case.tree, case.demands, case.root_limit, strategy
    )


@settings(deadline=None)
@given(LARGE, STRATEGIES)
def test_work_conserving(case: Case, strategy: Strategy) -> None:
    """No free session could take 1 kW more without passing its cap or a node's limit.

    For even-split the cap is the phase-1 cap: it may leave power unused by design.
    """
    view = View(case)
    limits = allocate(case.tree, case.demands, case.root_limit, strategy)
    used = view.usage(limits)
    for d in case.demands:
        if d.fixed is not None:
            continue
        power = limits[d.session_id].power
        blocked = power >= view.cap(d, strategy) or any(
            used[key] + 1 > view.limit[key] for key in view.above[d.charger_id]
        )
        assert blocked, d


@settings(deadline=None)
@given(LARGE, STRATEGIES)
def test_bounds_are_consistent(case: Case, strategy: Strategy) -> None:
    view = View(case)
    limits = allocate(case.tree, case.demands, case.root_limit, strategy)
    used = view.usage(limits)
    for d in case.demands:
        limit = limits[d.session_id]
        if d.fixed is not None:
            assert limit.bound == "pinned"
            continue
        assert limit.bound != "pinned"
        if limit.bound == "vehicle":
            assert d.vehicle_max_power is not None
            assert limit.power == max(0, math.floor(d.vehicle_max_power))
            continue
        node = node_of(d, limit.bound)
        assert node in view.above[d.charger_id], (d, limit)
        at_share = (
            strategy is Strategy.EVEN_SPLIT
            and limit.bound == "charger"
            and (limit.power == view.cap(d, strategy))
        )
        assert at_share or used[node] >= view.limit[node], (d, limit)
        # Nothing closer stopped it.
        for key in view.above[d.charger_id]:
            if key == node:
                break
            assert used[key] < view.limit[key], (d, limit, key)


@settings(deadline=None)
@given(LARGE)
def test_sessions_stopped_by_a_node_end_within_1kw_earliest_first(case: Case) -> None:
    """When power is short, the earlier sessions hold the extra kW (fair)."""
    limits = allocate(case.tree, case.demands, case.root_limit)
    by_node: dict[str, list[Demand]] = defaultdict(list)
    for d in case.demands:
        bound = limits[d.session_id].bound
        if bound not in ("vehicle", "pinned"):
            by_node[node_of(d, bound)].append(d)
    for group in by_node.values():
        group.sort(key=lambda d: (d.started_at, d.session_id))
        powers = [limits[d.session_id].power for d in group]
        assert max(powers) - min(powers) <= 1
        assert powers == sorted(powers, reverse=True)


@settings(deadline=None, max_examples=30)
@given(cases(max_chargers=4, scale=50))
def test_even_split_equals_the_spec_without_groups_or_pins(case: Case) -> None:
    """Without groups and pins, even-split is the spec's phase 1 then phase 2 on the root only."""
    tree = StationTree(case.tree.chargers)
    demands = [
        Demand(d.session_id, d.charger_id, d.started_at, d.vehicle_max_power) for d in case.demands
    ]
    view = View(Case(tree, demands, case.root_limit))
    caps = {d.session_id: view.cap(d, Strategy.EVEN_SPLIT) for d in demands}
    # Phase 2, 1 kW at a time, with only these caps and the root limit.
    alloc = dict.fromkeys(caps, 0)
    room = view.limit["station"]
    while room > 0:
        growable = [d for d in demands if alloc[d.session_id] < caps[d.session_id]]
        if not growable:
            break
        d = min(growable, key=lambda d: (alloc[d.session_id], d.started_at, d.session_id))
        alloc[d.session_id] += 1
        room -= 1
    limits = allocate(tree, demands, case.root_limit, Strategy.EVEN_SPLIT)
    assert {sid: limit.power for sid, limit in limits.items()} == alloc
