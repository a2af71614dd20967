"""Allocator timings: ``python bench/allocator.py`` prints figures (not part of pytest).

A random station: chargers with 1-4 connectors under three levels of groups
(sections > feeders > cabinets, each allowed less than what is below it),
sessions on most connectors, a few of them pinned, and a root limit well
below the chargers' total so that every level binds somewhere.
"""

from __future__ import annotations

import gc
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from allocator import (
    ChargerNode,
    Demand,
    GroupNode,
    StationTree,
    Strategy,
    allocate,
    compile_tree,
)
from tests.allocator.reference import reference_allocate

SIZES = (1_000, 10_000, 100_000)
RUNS = 9
REFERENCE_BUDGET_S = 10.0


def station(sessions: int, seed: int = 1) -> tuple[StationTree, list[Demand], float]:
    rnd = random.Random(seed)
    chargers: list[ChargerNode] = []
    demands: list[Demand] = []
    while len(demands) < sessions:
        charger = ChargerNode(f"CP{len(chargers):06d}", rnd.choice([7.4, 22, 50, 150, 300, 350]))
        chargers.append(charger)
        for _ in range(rnd.randint(1, 4)):
            if len(demands) == sessions or rnd.random() > 0.85:
                continue
            vehicle = rnd.choice([None, 7.4, 11, 22, 50.5, 100, 150, 350])
            fixed = rnd.randint(0, 50) if rnd.random() < 0.01 else None
            demands.append(Demand(f"S{len(demands):07d}", charger.id,
                                  rnd.uniform(0, 86_400), vehicle, fixed))

    power = {c.id: c.max_power for c in chargers}

    def groups_of(items: list[tuple[float, GroupNode | str]], per: int,
                  prefix: str) -> list[tuple[float, GroupNode]]:
        out: list[tuple[float, GroupNode]] = []
        for start in range(0, len(items), per):
            chunk = items[start:start + per]
            below = sum(p for p, _ in chunk)
            node = GroupNode(
                id=f"{prefix}{len(out)}",
                max_power=round(below * rnd.uniform(0.5, 0.9), 1),
                chargers=tuple(x for _, x in chunk if isinstance(x, str)),
                groups=tuple(x for _, x in chunk if isinstance(x, GroupNode)),
            )
            out.append((below, node))
        return out

    # Every 10th charger hangs directly off the root.
    leaf = [(power[c.id], c.id) for i, c in enumerate(chargers) if i % 10]
    cabinets = groups_of(list(leaf), 8, "cabinet-")
    feeders = groups_of(list(cabinets), 6, "feeder-")
    sections = groups_of(list(feeders), 5, "section-")
    total = sum(power.values())
    return StationTree(tuple(chargers), tuple(g for _, g in sections)), demands, total * 0.4


def median_ms(run: Callable[[], object], runs: int = RUNS) -> float:
    # Collect the station just built first, so that a collection it would
    # trigger does not land inside a timed run.
    gc.collect()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        # Freeing the result is the caller's cost, not the allocation's.
        del result
    return statistics.median(times) * 1000


def main() -> None:
    print(f"allocator benchmark: median of {RUNS} runs, python {sys.version.split()[0]}")
    print(f"{'sessions':>9} {'strategy':>10} {'tree':>10} {'compiled':>10} {'reference':>14}")
    figures: dict[tuple[int, Strategy], float] = {}
    reference_per_pair: dict[Strategy, float] = {}
    for size in (100, *SIZES):
        tree, demands, root = station(size)
        compiled = compile_tree(tree)
        for strategy in Strategy:
            full = median_ms(partial(allocate, tree, demands, root, strategy))
            warm = median_ms(partial(allocate, compiled, demands, root, strategy))
            figures[size, strategy] = full
            # The reference costs about (kW handed out) x sessions, both
            # proportional to n: extrapolate from the last size it ran.
            estimate = reference_per_pair.get(strategy, 0.0) * size * size
            if estimate <= REFERENCE_BUDGET_S * 1000:
                start = time.perf_counter()
                expected = reference_allocate(tree, demands, root, strategy)
                ref_ms = (time.perf_counter() - start) * 1000
                reference_per_pair[strategy] = ref_ms / (size * size)
                got = allocate(tree, demands, root, strategy)
                assert {k: v.power for k, v in got.items()} == expected, "differs from reference"
                reference = f"{ref_ms:11.1f} ms"
            else:
                reference = f"skip (~{estimate / 1000:.0f} s)"
            print(f"{size:>9} {strategy.value:>10} {full:7.2f} ms {warm:7.2f} ms {reference:>14}")

    print("\ngrowth (tree given as StationTree), measured vs n log n:")
    for strategy in Strategy:
        for small, big in itertools.pairwise(SIZES):
            measured = figures[big, strategy] / figures[small, strategy]
            nlogn = big * math.log(big) / (small * math.log(small))
            print(f"  {strategy.value:>10} {small:>7} -> {big:>7}: x{measured:5.1f}"
                  f" (n log n: x{nlogn:.1f})")
    print("\n'reference' is the 1 kW-at-a-time procedure of the spec"
          " (tests/allocator/reference.py),\nrun once and checked equal; skipped where it"
          " would take more than"
          f" ~{REFERENCE_BUDGET_S:.0f} s. 'compiled' reuses compile_tree(tree).")


if __name__ == "__main__":
    main()
