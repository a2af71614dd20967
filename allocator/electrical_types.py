"""Inputs and outputs of the allocation with the electrical model (docs/electrical-allocation.md).

The station tree stays :class:`allocator.types.StationTree` (kW limits); the
electrical model adds, beside it, what each charger is (AC with phases, a
minimum current and a step, or DC with a minimum power) and the per-phase
current limits of the root and of groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from allocator.types import StationTree

SITE_PHASES = ("L1", "L2", "L3")
# Every constraint is checked with this much slack (in A or kW): float sums of
# currents such as 0.1 A steps are not exact, and a microampere is physically
# nothing. The tests' oracles use the same tolerance.
TOLERANCE = 1e-6
# What a DC charger (or a charger without electrical data) is counted on: a
# balanced draw over the three site phases at 230 V (docs/electrical-allocation.md).
DC_VOLTAGE = 230.0


@dataclass(frozen=True, slots=True)
class ACCharger:
    """An AC charger: the car is sent a current per phase.

    ``wiring[k]`` is the site phase the charger's phase k+1 is connected to;
    ``None`` means L1, L2, L3 in order (only L1 for a 1-phase charger).
    ``max_current`` ``None`` means what the charger's kW limit allows
    (``max_power / (voltage x phases)``).
    """

    phases: int = 3
    voltage: float = 230.0
    min_current: float = 6.0
    max_current: float | None = None
    current_step: float = 0.1
    wiring: tuple[str, ...] | None = None

    def site_phases(self) -> tuple[str, ...]:
        return self.wiring if self.wiring is not None else SITE_PHASES[: self.phases]


@dataclass(frozen=True, slots=True)
class DCCharger:
    """A DC charger: a kW limit, whole kW as today, never between 0 and ``min_power``."""

    min_power: float = 0.0


Electrical = ACCharger | DCCharger


@dataclass(frozen=True, slots=True)
class ElectricalStation:
    """The kW tree plus the electrical model.

    ``chargers`` maps a charger id to its electrical data; a charger absent
    from it is counted as DC with ``min_power`` 0 (docs/electrical-allocation.md,
    "Compatible"). ``grid_current_limit`` is amps per site phase at the root;
    ``group_max_current`` amps per phase for the groups it names.
    """

    tree: StationTree
    chargers: Mapping[str, Electrical] = field(default_factory=dict)
    grid_current_limit: float | None = None
    group_max_current: Mapping[str, float] = field(default_factory=dict)

    @property
    def has_electrical_data(self) -> bool:
        """False when the station must get exactly today's limits (property 6)."""
        return (
            bool(self.chargers)
            or self.grid_current_limit is not None
            or bool(self.group_max_current)
        )


@dataclass(frozen=True, slots=True)
class ElectricalDemand:
    """One active session.

    ``phases``: which of its charger's phases the session uses (1-based
    numbers, e.g. ``(1,)`` for a 1-phase car on phase 1 of the charger), or
    a count n for the first n; ``None`` for all of them. Ignored on a DC
    charger. ``vehicle_max_power`` (kW) and ``vehicle_max_current`` (A per
    phase) are the vehicle's own caps. ``fixed`` pins the session at that
    value, in its own unit: A per phase on an AC charger, kW otherwise; it is
    counted first, as a pin of :func:`allocator.allocate` is.
    """

    session_id: str
    charger_id: str
    started_at: float
    vehicle_max_power: float | None = None
    vehicle_max_current: float | None = None
    phases: int | tuple[int, ...] | None = None
    fixed: float | None = None


# Bound labels beyond those of allocator.types: a session held at its minimum
# (it is exempt from fairness), and one whose limit is 0 because it is paused.
BOUND_MINIMUM = "minimum"
BOUND_PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class ElectricalLimit:
    """A session's limit with the electrical model.

    ``running`` False means paused (limit 0). ``current`` is the limit per
    phase in A for a session on an AC charger (a multiple of its step),
    ``None`` otherwise. ``power`` is the kW booked: ``current x voltage x
    phases used`` for AC, the limit in kW for DC. ``phases`` are the site
    phases the session is counted on. ``bound`` is what stopped it:
    ``"vehicle"``, ``"charger"``, a group id, ``"station"``, ``"pinned"``,
    ``"minimum"`` (held at its minimum) or, for a paused session, the node
    where its minimum did not fit.
    """

    running: bool
    power: float
    current: float | None
    phases: tuple[str, ...]
    bound: str
