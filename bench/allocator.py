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

import numpy as np

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
from allocator.electrical import allocate_electrical
from allocator.electrical_model import compile_station
from allocator.electrical_types import (
    ACCharger,
    DCCharger,
    Electrical,
    ElectricalDemand,
    ElectricalStation,
)
from tests.allocator.reference import reference_allocate

SIZES = (1_000, 10_000, 100_000)
# Where the reference procedure still runs in seconds.
SMALL_SIZES = (100, 300)
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
            demands.append(
                Demand(f"S{len(demands):07d}", charger.id, rnd.uniform(0, 86_400), vehicle, fixed)
            )

    power = {c.id: c.max_power for c in chargers}

    def groups_of(
        items: list[tuple[float, GroupNode | str]], per: int, prefix: str
    ) -> list[tuple[float, GroupNode]]:
        out: list[tuple[float, GroupNode]] = []
        for start in range(0, len(items), per):
            chunk = items[start : start + per]
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


ROTATIONS = (("L1", "L2", "L3"), ("L2", "L3", "L1"), ("L3", "L1", "L2"))


def electrical_station(
    sessions: int, seed: int = 1
) -> tuple[ElectricalStation, list[ElectricalDemand], float, list[str]]:
    """The same tree with the electrical model: most chargers AC (3-phase on
    rotated wiring, a third of the cars 1-phase, 0.1 A or 1 A steps), the rest
    DC with a minimum power; every group a current limit per phase, the grid
    one too, tight enough that some sessions are paused; a shuffled rotation
    order."""
    tree, demands, root = station(sessions, seed)
    rnd = random.Random(seed)
    data: dict[str, Electrical] = {}
    for i, charger in enumerate(tree.chargers):
        if charger.max_power <= 22:
            data[charger.id] = ACCharger(
                phases=3,
                min_current=6,
                max_current=32 if charger.max_power > 11 else 16,
                current_step=rnd.choice([0.1, 1.0]),
                wiring=ROTATIONS[i % 3],
            )
        else:
            data[charger.id] = DCCharger(min_power=rnd.choice([0, 5, 10]))
    electrical = [
        ElectricalDemand(
            d.session_id,
            d.charger_id,
            d.started_at,
            d.vehicle_max_power,
            vehicle_max_current=rnd.choice([None, 16.0, 32.0]),
            phases=1 if rnd.random() < 0.3 else None,
        )
        for d in demands
    ]
    groups: dict[str, float] = {}

    def walk(group: GroupNode) -> None:
        groups[group.id] = round(group.max_power * 1000 / (3 * 230) * rnd.uniform(0.6, 1.0))
        for sub in group.groups:
            walk(sub)

    for group in tree.groups:
        walk(group)
    grid = root * 1000 / (3 * 230) * 0.8
    order = [d.session_id for d in electrical]
    rnd.shuffle(order)
    return ElectricalStation(tree, data, grid, groups), electrical, root, order


def timed_ms(run: Callable[[], object], runs: int = RUNS) -> tuple[float, float]:
    """Median and fastest of ``runs`` runs, in ms."""
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
    return statistics.median(times) * 1000, min(times) * 1000


def main() -> None:
    print(
        f"allocator benchmark: median (fastest) of {RUNS} runs, python "
        f"{sys.version.split()[0]}, numpy {np.__version__}"
    )
    print(
        f"{'sessions':>9} {'strategy':>10} {'StationTree':>18} {'compiled tree':>18}"
        f" {'reference':>15}"
    )
    figures: dict[tuple[str, int, Strategy], float] = {}
    reference_per_pair: dict[Strategy, float] = {}
    for size in (*SMALL_SIZES, *SIZES):
        tree, demands, root = station(size)
        compiled = compile_tree(tree)
        for strategy in Strategy:
            full = timed_ms(partial(allocate, tree, demands, root, strategy))
            warm = timed_ms(partial(allocate, compiled, demands, root, strategy))
            figures["StationTree", size, strategy] = full[0]
            figures["compiled", size, strategy] = warm[0]
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
                reference = f"{ref_ms:9.0f} ms ok"
            else:
                reference = f"skip (~{estimate / 1000:.0f} s)"
            print(
                f"{size:>9} {strategy.value:>10} {full[0]:8.2f} ({full[1]:6.2f}) ms"
                f" {warm[0]:8.2f} ({warm[1]:6.2f}) ms {reference:>15}"
            )

    print("\ngrowth of the median, measured vs n log n:")
    for kind in ("StationTree", "compiled"):
        for strategy in Strategy:
            ratios = []
            for small, big in itertools.pairwise(SIZES):
                measured = figures[kind, big, strategy] / figures[kind, small, strategy]
                nlogn = big * math.log(big) / (small * math.log(small))
                ratios.append(f"{small} -> {big}: x{measured:.1f} (n log n x{nlogn:.1f})")
            print(f"  {kind:>11} {strategy.value:>10}  " + "   ".join(ratios))
    print(
        "\n'compiled tree' passes compile_tree(tree), done once, instead of the StationTree."
        "\n'reference' is the 1 kW-at-a-time reference procedure of docs/allocation.md"
        " (tests/allocator/reference.py),"
        "\nrun once and checked equal to allocate(); skipped where it would take more than"
        f" ~{REFERENCE_BUDGET_S:.0f} s."
    )

    electrical_main()


def electrical_main() -> None:
    print(
        "\nwith the electrical model (allocator.allocate_electrical): median (fastest) of"
        f" {RUNS} runs"
    )
    print(
        f"{'sessions':>9} {'ElectricalStation':>20} {'compiled':>18} {'paused':>7}"
        f" {'fair (compiled)':>16}"
    )
    for size in SIZES:
        station_, demands, root, order = electrical_station(size)
        compiled = compile_station(station_)
        full = timed_ms(partial(allocate_electrical, station_, demands, root, order))
        warm = timed_ms(partial(allocate_electrical, compiled, demands, root, order))
        paused = sum(
            not x.running for x in allocate_electrical(compiled, demands, root, order).values()
        )
        tree, plain, plain_root = station(size)
        fair = timed_ms(partial(allocate, compile_tree(tree), plain, plain_root))
        print(
            f"{size:>9} {full[0]:10.2f} ({full[1]:6.2f}) ms {warm[0]:8.2f} ({warm[1]:6.2f}) ms"
            f" {paused:>7} {fair[0]:13.2f} ms"
        )
    print(
        "\nThe same stations as above with AC/DC chargers, per-phase limits on every group and"
        " the grid,\n30 % of the cars on one phase; 'fair (compiled)' is today's allocate on the"
        " kW-only station, for scale."
    )


if __name__ == "__main__":
    main()
