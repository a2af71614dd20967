"""The three ways of finding a node's level agree with the definition.

For a node with room R over sessions with caps e_i (their total above R), the
level T is the largest whole t with H(t) = sum(min(e_i, t)) <= R, and R - H(T)
kW are left for the partial round.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import allocator.fair as fair
from allocator.fair import (
    _levels_by_histogram,
    _levels_by_sorting,
    _need_pairwise,
    _share,
    _single_level,
)


def by_definition(caps: list[int], room: int) -> tuple[int, int]:
    def h(t: int) -> int:
        return sum(min(e, t) for e in caps)

    level = max(t for t in range(max(caps) + 1) if h(t) <= room)
    return level, room - h(level)


@st.composite
def overflowing_nodes(draw: st.DrawFn) -> list[tuple[list[int], int]]:
    nodes = []
    for _ in range(draw(st.integers(1, 5))):
        caps = draw(st.lists(st.integers(0, 20), min_size=1, max_size=6))
        if sum(caps) == 0:
            caps.append(1)
        nodes.append((caps, draw(st.integers(0, sum(caps) - 1))))
    return nodes


@given(overflowing_nodes())
def test_histogram_pairwise_and_sorting_find_the_level(nodes: list[tuple[list[int], int]]) -> None:
    # Sessions grouped by node, as the filling hands them over.
    seg = np.array([i for i, (caps, _) in enumerate(nodes) for _ in caps], dtype=np.int64)
    values = np.array([e for caps, _ in nodes for e in caps], dtype=np.int64)
    limit = np.array([room for _, room in nodes], dtype=np.int64)
    sizes = np.bincount(seg, minlength=len(nodes))
    width = int(values.max()) + 1
    expected = [by_definition(caps, room) for caps, room in nodes]

    ways = {
        "histogram": _levels_by_histogram(seg, values, limit, width),
        "pairwise": _share(
            seg, values, _need_pairwise(seg, values, int(sizes.max())), limit, sizes
        ),
        "sorting": _levels_by_sorting(seg, values, limit, sizes, width),
    }
    for way, (level, spare) in ways.items():
        assert list(zip(level.tolist(), spare.tolist(), strict=True)) == expected, way


@pytest.mark.parametrize("histogram_factor", [0, 10**9], ids=["sorting", "histogram"])
@given(overflowing_nodes())
def test_a_single_node_finds_its_level(
    histogram_factor: int, nodes: list[tuple[list[int], int]]
) -> None:
    caps, room = nodes[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fair, "_HISTOGRAM_FACTOR", histogram_factor)
        found = _single_level(np.array(caps, dtype=np.int64), room)
    assert found == by_definition(caps, room)
