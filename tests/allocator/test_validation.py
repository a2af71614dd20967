"""Inputs the allocator refuses, and the purity of the package."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

import allocator
from allocator import ChargerNode, Demand, GroupNode, StationTree, allocate, compile_tree

TREE = StationTree((ChargerNode("A", 50), ChargerNode("B", 50)))


def test_unknown_charger() -> None:
    with pytest.raises(ValueError, match="unknown charger 'Z'"):
        allocate(TREE, [Demand("s", "Z", 0.0)], 100)


def test_duplicate_session_id() -> None:
    with pytest.raises(ValueError, match="duplicate session id: 's'"):
        allocate(TREE, [Demand("s", "A", 0.0), Demand("s", "B", 1.0)], 100)


@pytest.mark.parametrize(
    "demand",
    [
        Demand("s", "A", math.nan),
        Demand("s", "A", 0.0, vehicle_max_power=math.nan),
        Demand("s", "A", 0.0, fixed=-1),
        Demand("s", "A", 0.0, fixed=10**10),
    ],
    ids=["nan-start", "nan-vehicle", "negative-fixed", "absurd-fixed"],
)
def test_bad_demand(demand: Demand) -> None:
    with pytest.raises(ValueError):
        allocate(TREE, [demand], 100)


def test_nan_root_limit() -> None:
    with pytest.raises(ValueError):
        allocate(TREE, [], math.nan)


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError):
        allocate(TREE, [], 100, "greedy")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tree",
    [
        StationTree((ChargerNode("A", 50), ChargerNode("A", 50))),
        StationTree((ChargerNode("A", 50),), (GroupNode("g", 10, ("Z",)),)),
        StationTree(
            (ChargerNode("A", 50),), (GroupNode("g", 10, ("A",)), GroupNode("h", 10, ("A",)))
        ),
        StationTree((ChargerNode("A", 50),), (GroupNode("g", 10, groups=(GroupNode("g", 5),)),)),
        StationTree((ChargerNode("A", 50),), (GroupNode("station", 10, ("A",)),)),
        StationTree((ChargerNode("A", math.inf),)),
        StationTree((ChargerNode("A", 50),), (GroupNode("g", math.nan),)),
    ],
    ids=[
        "duplicate-charger",
        "unknown-charger",
        "charger-twice",
        "duplicate-group",
        "reserved-group-id",
        "infinite-charger",
        "nan-group",
    ],
)
def test_bad_tree(tree: StationTree) -> None:
    with pytest.raises(ValueError):
        compile_tree(tree)
    with pytest.raises(ValueError):
        allocate(tree, [], 100)


def test_compiled_tree_is_reusable() -> None:
    compiled = compile_tree(TREE)
    demands = [Demand("s", "A", 0.0, 30), Demand("t", "B", 1.0)]
    assert allocate(compiled, demands, 60) == allocate(TREE, demands, 60)
    assert allocate(compiled, demands, 60) == allocate(compiled, demands, 60)


FORBIDDEN = {"asyncio", "socket", "sqlite3", "time", "datetime", "aiohttp", "websockets"}


def test_the_package_is_pure() -> None:
    """No event loop, network, database or clock anywhere in allocator/."""
    package = Path(allocator.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert modules
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
