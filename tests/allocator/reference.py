"""The reference procedure of docs/allocation.md ("Strategy `fair`"), literally: 1 kW at a time.

Slow on purpose (steps x sessions x depth) and written to be read next to the
spec; the fast allocator must give exactly the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from allocator import Demand, GroupNode, StationTree, Strategy


def reference_allocate(
    tree: StationTree,
    demands: Sequence[Demand],
    root_limit: float,
    strategy: Strategy = Strategy.FAIR,
) -> dict[str, int]:
    """Whole kW per session id, by progressive filling."""
    # Node limits: the root, each group, each charger.
    limit: dict[str, int] = {"station": max(0, math.floor(root_limit))}
    # For each charger, the nodes above a session on it: charger, groups..., root.
    above: dict[str, list[str]] = {}

    def walk(group: GroupNode, path: list[str]) -> None:
        key = "group:" + group.id
        limit[key] = math.floor(group.max_power)
        for charger_id in group.chargers:
            above[charger_id] = ["charger:" + charger_id, key, *path]
        for sub in group.groups:
            walk(sub, [key, *path])

    for group in tree.groups:
        walk(group, ["station"])
    for charger in tree.chargers:
        limit["charger:" + charger.id] = math.floor(charger.max_power)
        above.setdefault(charger.id, ["charger:" + charger.id, "station"])

    # A session's cap: floor(vehicleMaxPower), or the charger's limit when unknown.
    cap: dict[str, int] = {}
    for d in demands:
        charger_limit = limit["charger:" + d.charger_id]
        own = charger_limit if d.vehicle_max_power is None else math.floor(d.vehicle_max_power)
        cap[d.session_id] = own
    if strategy is Strategy.EVEN_SPLIT:
        # Phase 1: min(floor(charger.maxPower / k), floor(vehicleMaxPower)),
        # k the active sessions on the charger (pinned ones included).
        for d in demands:
            k = sum(1 for other in demands if other.charger_id == d.charger_id)
            share = limit["charger:" + d.charger_id] // k
            cap[d.session_id] = min(cap[d.session_id], share)

    # 1. Every active session starts at 0 kW (a pinned one at its fixed kW).
    alloc = {d.session_id: d.fixed if d.fixed is not None else 0 for d in demands}
    used = dict.fromkeys(limit, 0)
    for d in demands:
        for key in above[d.charger_id]:
            used[key] += alloc[d.session_id]

    # 2. Growable: 1 kW more keeps the session within its cap and every node
    #    above it within its limit. Pinned sessions never grow.
    def growable(d: Demand) -> bool:
        if d.fixed is not None or alloc[d.session_id] + 1 > cap[d.session_id]:
            return False
        return all(used[key] + 1 <= limit[key] for key in above[d.charger_id])

    # 3. While some session is growable, add 1 kW to the one with the lowest
    #    allocation; ties to the earliest start, then the smallest session id.
    while True:
        candidates = [d for d in demands if growable(d)]
        if not candidates:
            return alloc
        d = min(candidates, key=lambda d: (alloc[d.session_id], d.started_at, d.session_id))
        alloc[d.session_id] += 1
        for key in above[d.charger_id]:
            used[key] += 1
