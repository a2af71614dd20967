"""Strategy ``even-split``: the original system's two-phase algorithm.

Phase 1 gives each session the cap ``min(floor(charger.maxPower / k),
floor(vehicleMaxPower))``, ``k`` the number of active sessions on its charger.
Phase 2 is the progressive filling with these caps.

Two choices beyond the original system, which had neither groups nor pinned
sessions (docs/allocation.md, "Strategy `even-split`"):

* Pinned sessions are active sessions on their charger, so they count in
  ``k``: the share of the others does not grow because a neighbour is pinned.
  The pinned power is still reserved in the charger in phase 2, so the charger
  is never over its limit unless the pinned sessions alone exceed it.
* Groups are physical limits (a feeder, a cable). Phase 2 fills under every
  node of the tree (chargers, groups, root), not the root alone. Without
  groups and pins this is exactly the original phase 2: the phase-1 caps of a
  charger's sessions add up to at most its limit, so a charger never stops
  anyone.
"""

from __future__ import annotations

import numpy as np

from allocator.tree import IntArray


def phase_one_share(charger_limit: IntArray, node: IntArray, size: int) -> IntArray:
    """floor(charger limit / k), k the sessions (pinned included) on the charger."""
    on_charger = np.bincount(node, minlength=size)[node]
    return charger_limit // np.maximum(on_charger, 1)
