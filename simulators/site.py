"""The rest of the site behind a simulated station's grid connection: a building's load and
solar panels over the day (pure; no I/O).

:class:`SiteProfile` says what the building draws and the panels give at a moment of the day
(seconds from the day's start; the profiles repeat every 24 h). The runner shows it to the
controller through :class:`simulators.site_meter.SiteMeter` (simulators/README.md, "The rest
of the site").
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

__all__ = [
    "CLOCK_RESOLUTION_S",
    "DAY_S",
    "Profile",
    "SiteProfile",
    "phase_currents",
]

DAY_S = 86_400.0
# What the virtual clock resolves around the epoch's 1.7e9 s (float spacing 2.4e-7 s).
CLOCK_RESOLUTION_S = 1e-6
# A balanced three-phase site at 230 V phase voltage: the currents the meter shows (A).
PHASE_VOLTAGE = 230.0


@dataclass(frozen=True, slots=True)
class Profile:
    """kW over the hours of a day: ``(hour, kW)`` points, linear in between; two points at the
    same hour make a step (the second holds from that instant). Before the first point the
    first value holds, after the last the last; every day repeats the same profile."""

    points: tuple[tuple[float, float], ...]

    def at(self, seconds: float, *, left: bool = False) -> float:
        """The value at ``seconds``; with ``left``, the value just before (at a step: the
        value the step leaves)."""
        if not self.points:
            return 0.0
        hour = _hour(seconds, left)
        hours = [h for h, _ in self.points]
        # The last point at or before this hour (the later of a step's two points); with
        # left, the last point before it.
        index = (bisect.bisect_left if left else bisect.bisect_right)(hours, hour) - 1
        if index < 0:
            return self.points[0][1]
        if index == len(self.points) - 1:
            return self.points[-1][1]
        (h0, v0), (h1, v1) = self.points[index], self.points[index + 1]
        return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)

    @property
    def peak(self) -> float:
        return max((v for _, v in self.points), default=0.0)

    def corners(self) -> list[float]:
        """Seconds from the start of a day where the profile bends or steps."""
        return sorted({h * 3600 for h, _ in self.points})


@dataclass(frozen=True, slots=True)
class SiteProfile:
    """The building's load and the solar panels' output, kW, at any moment of the day."""

    building: Profile
    solar: Profile | None = None
    solar_peak_kw: float = 0.0
    sunrise_h: float = 6.0
    sunset_h: float = 20.0

    def building_kw(self, seconds: float, *, left: bool = False) -> float:
        return self.building.at(seconds, left=left)

    def solar_kw(self, seconds: float, *, left: bool = False) -> float:
        """A half sine from sunrise to sunset peaking at ``solar_peak_kw`` (a clear day), or
        the given points."""
        if self.solar is not None:
            return self.solar.at(seconds, left=left)
        if self.solar_peak_kw <= 0:
            return 0.0
        hour = _hour(seconds, left)
        if not self.sunrise_h < hour < self.sunset_h:
            return 0.0
        share = (hour - self.sunrise_h) / (self.sunset_h - self.sunrise_h)
        return self.solar_peak_kw * math.sin(math.pi * share)

    def net_kw(self, seconds: float, *, left: bool = False) -> float:
        """What the rest of the site takes at the connection (negative: it exports); with
        ``left``, just before ``seconds`` (what a step there leaves)."""
        return self.building_kw(seconds, left=left) - self.solar_kw(seconds, left=left)

    def corners(self, duration_s: float) -> list[float]:
        """Every moment of the run where a profile bends or steps (the runner measures
        there, so that a step is seen when it happens)."""
        daily = self.building.corners() + ([] if self.solar is None else self.solar.corners())
        moments = {
            day * DAY_S + at
            for day in range(math.ceil(duration_s / DAY_S))
            for at in daily
            if day * DAY_S + at < duration_s
        }
        return sorted(moments)


def _hour(seconds: float, left: bool) -> float:
    """The hour of the day; just before midnight (24) rather than at it with ``left``."""
    in_day = seconds % DAY_S
    if left and in_day == 0 and seconds > 0:
        in_day = DAY_S
    return in_day / 3600


def phase_currents(power_kw: float) -> tuple[float, float, float]:
    """The currents of a balanced three-phase load of ``power_kw`` (A, never negative: a
    meter shows the magnitude)."""
    current = abs(power_kw) * 1000 / (3 * PHASE_VOLTAGE)
    return (current, current, current)
