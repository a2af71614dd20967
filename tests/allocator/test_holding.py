"""Lower before raise: allocation with limits chargers still hold (docs/allocation.md,
"Holding back")."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from allocator import ChargerNode, Demand, StationTree, Strategy
from allocator.holding import allocate_holding

TREE = StationTree(chargers=(ChargerNode("A", 200), ChargerNode("B", 200), ChargerNode("C", 300)))


def demand(sid: str, charger: str, t: float, vmax: float | None = None) -> Demand:
    return Demand(session_id=sid, charger_id=charger, started_at=t, vehicle_max_power=vmax)


def test_without_holds_effective_equals_target() -> None:
    demands = [demand("a", "A", 0), demand("b", "B", 1)]
    plan = allocate_holding(TREE, demands, 300, Strategy.FAIR, {})
    assert plan.effective == plan.target
    assert plan.target["a"].power == 150


def test_new_session_waits_for_the_lowering_to_be_accepted() -> None:
    # a and b hold 200 each of a 400 kW root; c arrives.
    demands = [demand("a", "A", 0), demand("b", "B", 1), demand("c", "C", 2)]
    plan = allocate_holding(TREE, demands, 400, Strategy.FAIR, {"a": 200, "b": 200})
    assert [plan.target[s].power for s in "abc"] == [134, 133, 133]
    assert [plan.effective[s].power for s in "abc"] == [200, 200, 0]
    assert plan.to_send("a", 200) == 134
    assert plan.to_send("b", 200) == 133
    assert plan.to_send("c", None) == 0
    # a accepted its lowering: its hold is now 134, c may have what a freed.
    plan = allocate_holding(TREE, demands, 400, Strategy.FAIR, {"a": 134, "b": 200})
    assert [plan.effective[s].power for s in "abc"] == [134, 200, 66]
    plan = allocate_holding(TREE, demands, 400, Strategy.FAIR, {"a": 134, "b": 133})
    assert plan.effective == plan.target


def test_a_squeezed_session_is_held_not_lowered() -> None:
    # b's target does not go down, but a's pin would squeeze it: b keeps its hold
    # and is sent nothing, c waits.
    demands = [demand("a", "A", 0), demand("b", "B", 1, 60), demand("c", "C", 2)]
    plan = allocate_holding(TREE, demands, 200, Strategy.FAIR, {"a": 140, "b": 60})
    assert [plan.target[s].power for s in "abc"] == [70, 60, 70]
    assert [plan.effective[s].power for s in "abc"] == [140, 60, 0]
    assert plan.to_send("b", 60) == 60


@settings(max_examples=200, deadline=None)
@given(
    caps=st.lists(st.one_of(st.none(), st.integers(1, 250)), min_size=1, max_size=8),
    holds=st.lists(st.one_of(st.none(), st.integers(0, 300)), min_size=8, max_size=8),
    root=st.integers(0, 700),
)
def test_sum_of_what_chargers_may_apply_never_exceeds_a_limit(
    caps: list[int | None], holds: list[int | None], root: int
) -> None:
    chargers = "ABC"
    demands = [demand(f"s{i}", chargers[i % 3], float(i), cap) for i, cap in enumerate(caps)]
    held = {f"s{i}": h for i, h in enumerate(holds[: len(caps)]) if h is not None}
    plan = allocate_holding(TREE, demands, root, Strategy.FAIR, held)
    # After sending: a session may apply max(hold, what was sent); raises only up to effective.
    may_apply = {}
    for d in demands:
        sent = plan.to_send(d.session_id, held.get(d.session_id))
        may_apply[d.session_id] = max(held.get(d.session_id, 0), sent)
        assert may_apply[d.session_id] == max(
            held.get(d.session_id, 0), plan.effective[d.session_id].power
        )
    limits = {"A": 200, "B": 200, "C": 300}
    prior_total = sum(held.values())
    # The holds themselves may already be over (the root just dropped); then nothing grows.
    assert sum(may_apply.values()) <= max(root, prior_total)
    for charger, limit in limits.items():
        on = [s for s in demands if s.charger_id == charger]
        before = sum(held.get(s.session_id, 0) for s in on)
        assert sum(may_apply[s.session_id] for s in on) <= max(limit, before)
    if prior_total <= root:
        assert sum(plan.effective[s].power for s in may_apply) <= root


@settings(max_examples=100, deadline=None)
@given(
    caps=st.lists(st.one_of(st.none(), st.integers(1, 250)), min_size=1, max_size=8),
    pins=st.lists(st.one_of(st.none(), st.integers(0, 300)), min_size=8, max_size=8),
    root=st.integers(0, 700),
)
def test_pins_argument_equals_fixed_demands(
    caps: list[int | None], pins: list[int | None], root: int
) -> None:
    from allocator import allocate

    demands = [demand(f"s{i}", "ABC"[i % 3], float(i), cap) for i, cap in enumerate(caps)]
    mapping = {f"s{i}": p for i, p in enumerate(pins[: len(caps)]) if p is not None}
    rebuilt = [
        Demand(
            d.session_id, d.charger_id, d.started_at, d.vehicle_max_power, mapping.get(d.session_id)
        )
        for d in demands
    ]
    assert allocate(TREE, demands, root, Strategy.FAIR, mapping) == allocate(TREE, rebuilt, root)
