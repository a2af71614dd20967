"""The worked examples of docs/allocation.md, for both strategies."""

from __future__ import annotations

import pytest

from allocator import ChargerNode, Demand, GroupNode, Limit, StationTree, Strategy, allocate
from tests.allocator.reference import reference_allocate

EXAMPLE_CHARGERS = (ChargerNode("CP001", 200), ChargerNode("CP002", 200), ChargerNode("CP003", 300))
EXAMPLE = StationTree(EXAMPLE_CHARGERS)
FEEDER_A = StationTree(EXAMPLE_CHARGERS, (GroupNode("feeder-A", 300, ("CP001", "CP002")),))
THREE_100 = StationTree(tuple(ChargerNode(f"C{i}", 100) for i in range(3)))
SMALL = StationTree((ChargerNode("CP7", 7.9),))


def sessions(*specs: tuple[str, float | None]) -> list[Demand]:
    """Demands in start order, from (charger, vehicleMaxPower) pairs."""
    return [
        Demand(session_id=f"s{i}", charger_id=charger, started_at=float(i), vehicle_max_power=vmp)
        for i, (charger, vmp) in enumerate(specs)
    ]


# (root limit, tree, sessions, fair, even-split) as in the spec; even-split is
# None where the spec gives no figure (its even-split knows no groups).
TABLE: list[tuple[str, float, StationTree, list[Demand], list[int], list[int] | None]] = [
    (
        "500-battery",
        500,
        EXAMPLE,
        sessions(("CP001", 150), ("CP001", 50), ("CP003", 350)),
        [150, 50, 300],
        [100, 50, 300],
    ),
    (
        "500-feeder-A",
        500,
        FEEDER_A,
        sessions(("CP001", 200), ("CP002", 200), ("CP003", 300)),
        [150, 150, 200],
        None,
    ),
    (
        "400-five",
        400,
        EXAMPLE,
        sessions(("CP001", 22), ("CP001", 150), ("CP002", 150), ("CP003", 350), ("CP003", 350)),
        [22, 95, 95, 94, 94],
        [22, 95, 95, 94, 94],
    ),
    (
        "30-three",
        30,
        THREE_100,
        sessions(("C0", 100), ("C1", 100), ("C2", 100)),
        [10, 10, 10],
        [10, 10, 10],
    ),
    (
        "31-three",
        31,
        THREE_100,
        sessions(("C0", 100), ("C1", 100), ("C2", 100)),
        [11, 10, 10],
        [11, 10, 10],
    ),
    ("400.9-7.9kW", 400.9, SMALL, sessions(("CP7", 11)), [7], [7]),
]
ROWS = [
    pytest.param(root, tree, demands, strategy, expected, id=f"{name}-{strategy.value}")
    for name, root, tree, demands, fair, even_split in TABLE
    for strategy, expected in ((Strategy.FAIR, fair), (Strategy.EVEN_SPLIT, even_split))
    if expected is not None
]


def powers(limits: dict[str, Limit], demands: list[Demand]) -> list[int]:
    return [limits[d.session_id].power for d in demands]


@pytest.mark.parametrize(("root", "tree", "demands", "strategy", "expected"), ROWS)
def test_worked_example(
    root: float, tree: StationTree, demands: list[Demand], strategy: Strategy, expected: list[int]
) -> None:
    assert powers(allocate(tree, demands, root, strategy), demands) == expected


@pytest.mark.parametrize(("root", "tree", "demands", "strategy", "expected"), ROWS)
def test_the_reference_procedure_gives_the_worked_example(
    root: float,
    tree: StationTree,
    demands: list[Demand],
    strategy: Strategy,
    expected: list[int],
) -> None:
    result = reference_allocate(tree, demands, root, strategy)
    assert [result[d.session_id] for d in demands] == expected


def test_bounds_of_the_first_example() -> None:
    demands = sessions(("CP001", 150), ("CP001", 50), ("CP003", 350))
    assert allocate(EXAMPLE, demands, 500) == {
        "s0": Limit(150, "vehicle"),
        "s1": Limit(50, "vehicle"),
        "s2": Limit(300, "charger"),
    }
    assert allocate(EXAMPLE, demands, 500, Strategy.EVEN_SPLIT) == {
        "s0": Limit(100, "charger"),
        "s1": Limit(50, "vehicle"),
        "s2": Limit(300, "charger"),
    }


def test_bounds_with_a_feeder() -> None:
    demands = sessions(("CP001", 200), ("CP002", 200), ("CP003", 300))
    assert allocate(FEEDER_A, demands, 500) == {
        "s0": Limit(150, "feeder-A"),
        "s1": Limit(150, "feeder-A"),
        "s2": Limit(200, "station"),
    }


def test_even_split_respects_groups() -> None:
    """Our extension: the spec's even-split knows no groups; a feeder is still a limit."""
    demands = sessions(("CP001", 200), ("CP002", 200), ("CP003", 300))
    limits = allocate(FEEDER_A, demands, 500, Strategy.EVEN_SPLIT)
    assert powers(limits, demands) == [150, 150, 200]
    assert limits["s0"].bound == "feeder-A"


def test_short_power_goes_to_earlier_sessions() -> None:
    demands = sessions(("C0", 100), ("C1", 100), ("C2", 100))
    limits = allocate(THREE_100, demands, 32)
    assert powers(limits, demands) == [11, 11, 10]
    assert {limit.bound for limit in limits.values()} == {"station"}


def test_ties_in_start_time_go_to_the_smaller_session_id() -> None:
    demands = [Demand(sid, f"C{i}", 5.0, 100) for i, sid in enumerate(["b", "c", "a"])]
    limits = allocate(THREE_100, demands, 32)
    assert {sid: limit.power for sid, limit in limits.items()} == {"a": 11, "b": 11, "c": 10}


def test_unknown_vehicle_limit_is_the_charger_limit() -> None:
    demands = [Demand("s", "CP7", 0.0)]
    assert allocate(SMALL, demands, 100) == {"s": Limit(7, "charger")}


def test_a_vehicle_wanting_less_leaves_the_rest_to_its_neighbour() -> None:
    demands = sessions(("CP001", 30), ("CP001", None))
    assert powers(allocate(EXAMPLE, demands, 500), demands) == [30, 170]


def test_pinned_session_is_reserved_first() -> None:
    demands = sessions(("CP001", None), ("CP001", None))
    demands[1] = Demand("s1", "CP001", 1.0, fixed=120)
    assert allocate(EXAMPLE, demands, 500) == {
        "s0": Limit(80, "charger"),
        "s1": Limit(120, "pinned"),
    }


def test_pinned_over_a_limit_keep_their_value_and_the_others_get_nothing() -> None:
    demands = [
        Demand("p", "CP001", 0.0, fixed=250),
        Demand("q", "CP001", 1.0),
        Demand("r", "CP002", 2.0),
    ]
    limits = allocate(FEEDER_A, demands, 500)
    assert limits == {
        "p": Limit(250, "pinned"),
        "q": Limit(0, "charger"),
        "r": Limit(50, "feeder-A"),
    }


def test_no_sessions() -> None:
    assert allocate(EXAMPLE, [], 400) == {}


def test_negative_root_limit_is_zero() -> None:
    demands = sessions(("CP001", 100))
    assert allocate(EXAMPLE, demands, -5) == {"s0": Limit(0, "station")}


def test_infinite_root_limit_binds_nobody() -> None:
    demands = sessions(("CP001", 100), ("CP003", None))
    assert allocate(EXAMPLE, demands, float("inf")) == {
        "s0": Limit(100, "vehicle"),
        "s1": Limit(300, "charger"),
    }


def test_large_pinned_value_is_reported_as_is() -> None:
    """Powers far apart (here a pinned 10**6 kW) take the sorting path of the result table."""
    demands = [
        Demand("big", "CP001", 0.0, fixed=10**6),
        Demand("s", "CP002", 1.0, 100),
        Demand("t", "CP003", 2.0),
    ]
    assert allocate(EXAMPLE, demands, float("inf")) == {
        "big": Limit(10**6, "pinned"),
        "s": Limit(100, "vehicle"),
        "t": Limit(300, "charger"),
    }
