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

# The site's nominal phase voltage (V). Until the electrical model of the chargers exists,
# every charger counts as drawing the same current on the three phases of the site, as a DC
# charger does: I = P / (3 x 230 V) on each (docs/site.md, "Per phase").
PHASE_VOLTAGE = 230.0


def balanced_amps(kw: float) -> float:
    """The current on each phase of a balanced three-phase load of ``kw``."""
    return kw * 1000.0 / (3 * PHASE_VOLTAGE)


def balanced_kw(amps: float) -> float:
    """The power of a balanced three-phase load drawing ``amps`` on each phase."""
    return amps * 3 * PHASE_VOLTAGE / 1000.0


# A reading beyond this many times the connection's capacity, either way, is not the site:
# a wrong scale, word order or register. Taken as such, a huge export would raise the
# budget without bound, so it is ignored (and the meter goes stale if nothing better comes).
PLAUSIBLE_FACTOR = 10.0


def plausible(power: float, capacity: float) -> bool:
    return abs(power) <= PLAUSIBLE_FACTOR * capacity


class _Peaks:
    """The highest value of a sliding time window: a monotonic queue (each value in and out
    once), whose front is the highest value seen within the window."""

    def __init__(self) -> None:
        self._queue: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float) -> None:
        queue = self._queue
        while queue and queue[-1][1] <= value:
            queue.pop()
        queue.append((at, value))

    def highest(self, since: float) -> float | None:
        """The highest value after ``since`` (the latest counts even when older)."""
        self._forget(since)
        queue = self._queue
        return queue[0][1] if queue else None

    def next_drop_at(self, now: float, hold: float) -> float | None:
        """When the highest value of a window of ``hold`` seconds next falls (None: it
        cannot fall without a new value); always after ``now``."""
        self._forget(now - hold)
        queue = self._queue
        return queue[0][0] + hold if len(queue) > 1 else None

    def _forget(self, since: float) -> None:
        queue = self._queue
        while len(queue) > 1 and queue[0][0] <= since:
            queue.popleft()


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
    # A per phase: the phase current minus what charging and the battery draw on it.
    non_charging_currents: Currents | None = None


class SiteBudget:
    """The share of the grid connection the chargers and the battery may use."""

    def __init__(
        self,
        *,
        capacity: float,
        margin: float,
        hold: float,
        timeout: float,
        fallback: float,
        current_limit: float | None = None,
    ) -> None:
        self.capacity = capacity
        self.margin = margin
        self.hold = hold
        self.timeout = timeout
        self.fallback = min(fallback, capacity)
        # A per site phase (gridCurrentLimit): with phase currents read, each phase's
        # headroom bounds the share too.
        self.current_limit = current_limit
        self.last: SiteReading | None = None
        self._load = _Peaks()
        self._phases = (_Peaks(), _Peaks(), _Peaks())

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
        per_phase: Currents | None = None
        if currents is not None:
            station = balanced_amps(charging - battery_flow)
            per_phase = (currents[0] - station, currents[1] - station, currents[2] - station)
            for peaks, amps in zip(self._phases, per_phase, strict=True):
                peaks.add(at, amps)
        reading = SiteReading(at, power, currents, load, per_phase)
        self.last = reading
        self._load.add(at, load)
        return reading

    def state(self, now: float) -> MeterState:
        last = self.last
        if last is None or now - last.at > self.timeout:
            return MeterState.STALE
        return MeterState.OK

    def highest_load(self, now: float) -> float | None:
        """The highest non-charging load of the hold window (the latest reading counts even
        when it is older than the window: it is what is known)."""
        return self._load.highest(now - self.hold)

    def share(self, now: float) -> float:
        """kW of the connection for the chargers and the battery now."""
        load = self.highest_load(now)
        if load is None or self.state(now) is MeterState.STALE:
            return self.fallback
        # Export (a negative load: solar) raises it above the capacity; the chargers' own
        # maxima still bound what the allocation hands out.
        share = self.capacity - load - self.margin
        last = self.last
        if self.current_limit is not None and last is not None and last.currents is not None:
            # The busiest phase's headroom, for a station that draws evenly on all three.
            busiest = max(p.highest(now - self.hold) or 0.0 for p in self._phases)
            share = min(share, balanced_kw(self.current_limit - busiest) - self.margin)
        return max(0.0, share)

    def next_change_at(self, now: float) -> float | None:
        """When the share may change with no new reading: a window's peak leaves it, or the
        meter turns stale."""
        moments = [
            moment
            for peaks in (self._load, *self._phases)
            if (moment := peaks.next_drop_at(now, self.hold)) is not None
        ]
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
