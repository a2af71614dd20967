"""Pure power allocation: station tree + sessions + available power -> whole-kW limits."""

from __future__ import annotations

from allocator.types import (
    BOUND_CHARGER,
    BOUND_PINNED,
    BOUND_STATION,
    BOUND_VEHICLE,
    ChargerNode,
    Demand,
    GroupNode,
    Limit,
    StationTree,
    Strategy,
)

__all__ = [
    "BOUND_CHARGER",
    "BOUND_PINNED",
    "BOUND_STATION",
    "BOUND_VEHICLE",
    "ChargerNode",
    "Demand",
    "GroupNode",
    "Limit",
    "StationTree",
    "Strategy",
]
