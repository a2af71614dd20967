"""The rest of the site behind the grid connection (docs/site.md). Pure: time comes in.

A meter at the connection point measures the whole site: the chargers, the stationary
battery and everything else (a building, a workshop, solar panels). What is not charging
is the reading minus what the sessions draw, plus what the battery gives (it lowers the
reading while it discharges). The chargers and the battery may share the connection's limit
minus the highest of that non-charging load over the last ``hold`` seconds, minus a margin:
so a rise lowers the budget at the next reading, and a fall raises it only once the higher
load has not been seen for ``hold`` seconds (a kettle does not make forty chargers flap).
A meter silent for ``timeout`` seconds, or not heard yet, leaves the fallback budget.

An external limit (a grid operator's curtailment, an energy manager's plan) caps the root
limit until it expires or is cleared.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum

Currents = tuple[float, float, float]


class MeterState(StrEnum):
    OK = "ok"  # a valid reading within the timeout: the budget follows the site
    STALE = "stale"  # none within the timeout (or none yet): the fallback budget
    ABSENT = "absent"  # no meter configured: the fixed grid capacity, as without one


@dataclass(frozen=True, slots=True)
class SiteReading:
    """The meter's last reading and what it meant."""

    at: float
    power: float  # kW at the connection point, import positive
    currents: Currents | None  # A, L1..L3
    non_charging_load: float  # kW: the reading minus charging plus the battery's discharge


class SiteBudget:
    """The share of the grid connection the chargers and the battery may use."""

    def __init__(
        self, *, capacity: float, margin: float, hold: float, timeout: float, fallback: float
    ) -> None:
        self.capacity = capacity
        self.margin = margin
        self.hold = hold
        self.timeout = timeout
        self.fallback = min(fallback, capacity)
        self.last: SiteReading | None = None
        # (at, load), loads strictly decreasing from the front: the front is the highest
        # load of the hold window (a monotonic queue: each reading in and out once).
        self._peaks: deque[tuple[float, float]] = deque()

    def record(
        self,
        at: float,
        power: float,
        currents: Currents | None,
        charging: float,
        battery_flow: float,
    ) -> SiteReading:
        """A reading taken at ``at``; ``charging`` is what the sessions draw, ``battery_flow``
        the battery's power (positive discharging)."""
        load = power - charging + battery_flow
        reading = SiteReading(at, power, currents, load)
        self.last = reading
        peaks = self._peaks
        while peaks and peaks[-1][1] <= load:
            peaks.pop()
        peaks.append((at, load))
        return reading

    def state(self, now: float) -> MeterState:
        last = self.last
        if last is None or now - last.at > self.timeout:
            return MeterState.STALE
        return MeterState.OK

    def highest_load(self, now: float) -> float | None:
        """The highest non-charging load of the hold window (the latest reading counts even
        when it is older than the window: it is what is known)."""
        peaks = self._peaks
        while len(peaks) > 1 and peaks[0][0] <= now - self.hold:
            peaks.popleft()
        return peaks[0][1] if peaks else None

    def share(self, now: float) -> float:
        """kW of the connection for the chargers and the battery now."""
        load = self.highest_load(now)
        if load is None or self.state(now) is MeterState.STALE:
            return self.fallback
        # Export (a negative load: solar) raises it above the capacity; the chargers' own
        # maxima still bound what the allocation hands out.
        return max(0.0, self.capacity - load - self.margin)

    def next_change_at(self, now: float) -> float | None:
        """When the share may change with no new reading: the window's peak leaves it, or
        the meter turns stale."""
        moments: list[float] = []
        if len(self._peaks) > 1:
            moments.append(self._peaks[0][0] + self.hold)
        last = self.last
        if last is not None and now - last.at <= self.timeout:
            moments.append(last.at + self.timeout + 1e-6)
        return min(moments) if moments else None


@dataclass(slots=True)
class ExternalLimit:
    """A cap on the root limit from outside the site, stored so that a restart keeps it
    (``PUT /station/limit``)."""

    max_power: float
    until: float | None  # None: until cleared
    reason: str
    set_by: str
    set_at: float

    def in_force(self, now: float) -> bool:
        return self.until is None or now < self.until

    def copy(self) -> ExternalLimit:
        return replace(self)


@dataclass(frozen=True, slots=True)
class ExternalLimitCleared:
    """The external limit's row goes."""
