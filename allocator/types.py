"""The allocator's inputs and outputs: a station tree, session demands, per-session limits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    """How the root limit is shared among sessions (docs/allocation.md)."""

    FAIR = "fair"
    EVEN_SPLIT = "even-split"


@dataclass(frozen=True, slots=True)
class ChargerNode:
    """A charger: its limit is ``floor(max_power)`` kW over all of its connectors."""

    id: str
    max_power: float


@dataclass(frozen=True, slots=True)
class GroupNode:
    """An intermediate limit between the grid and some chargers (a feeder, a cable)."""

    id: str
    max_power: float
    chargers: tuple[str, ...] = ()
    groups: tuple[GroupNode, ...] = ()


@dataclass(frozen=True, slots=True)
class StationTree:
    """The constraint tree below the station root.

    Chargers named by no group hang directly off the root; ``groups`` are the
    top-level groups (each may nest further groups).
    """

    chargers: tuple[ChargerNode, ...]
    groups: tuple[GroupNode, ...] = ()


@dataclass(frozen=True, slots=True)
class Demand:
    """One active session asking for power.

    ``started_at`` and then ``session_id`` order sessions for the tie-break:
    when whole kW cannot be shared evenly, earlier sessions hold the extra kW.

    ``fixed`` pins the session at exactly that many kW: the power is reserved
    in every node above it before anyone else is served (a lowering the charger
    has not yet accepted, a charger that cannot be limited, a charger offline).
    """

    session_id: str
    charger_id: str
    started_at: float
    vehicle_max_power: float | None = None
    fixed: int | None = None


# What bounded a session's limit, besides a group id.
BOUND_VEHICLE = "vehicle"
BOUND_CHARGER = "charger"
BOUND_STATION = "station"
BOUND_PINNED = "pinned"


@dataclass(frozen=True, slots=True)
class Limit:
    """A session's limit in whole kW and what bounded it.

    ``bound`` is ``"vehicle"`` (its own cap), ``"charger"``, a group id,
    ``"station"`` (the root limit) or ``"pinned"`` (a fixed demand).
    """

    power: int
    bound: str
