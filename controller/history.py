"""The last hour of the station for the dashboard's chart (docs/dashboard.md, "History").

Kept here at the edge, in memory only: a restart starts a new chart. A sample is taken
when the core has handled events and at least ``interval`` seconds of the station's clock
have passed since the last one. A running controller handles an event every second at least
(the write-behind's flush), so this samples every ``interval`` seconds without a timer of
its own: a periodic timer on the clock would wake simulated days and tests that jump from
one timer to the next.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from controller.core.site import MeterState
from controller.core.station import StationCore
from controller.views import number
from shell.clock import Clock, iso_utc

# Seconds between samples, and how far back the chart goes.
HISTORY_INTERVAL = 5.0
HISTORY_SPAN = 3600.0


@dataclass(frozen=True, slots=True)
class Sample:
    """The station at one moment. Per-phase currents join these fields (and the point's
    JSON) once the controller has the site's electrical model."""

    at: float
    grid_power: float
    grid_capacity: float
    allocated_power: float
    battery_energy: float | None
    # The whole site at the connection point, as the grid meter last read it while its
    # readings are valid (docs/site.md); None without a meter or while it is silent.
    site_power: float | None = None


def sample_of(core: StationCore, now: float) -> Sample:
    battery = core.battery
    site = core.site
    site_power = None
    if site is not None and site.last is not None and site.state(now) is MeterState.OK:
        site_power = site.last.power
    return Sample(
        at=now,
        grid_power=core.grid_power(),
        grid_capacity=core.config.grid_capacity,
        allocated_power=core.allocated_power(),
        battery_energy=None if battery is None else battery.stored_energy,
        site_power=site_power,
    )


def point_view(sample: Sample) -> dict[str, Any]:
    return {
        "at": iso_utc(sample.at),
        "gridPower": number(sample.grid_power),
        "gridCapacity": number(sample.grid_capacity),
        "allocatedPower": number(sample.allocated_power),
        "batteryEnergy": number(sample.battery_energy),
        "sitePower": number(sample.site_power),
    }


class History:
    """A bounded ring of samples, oldest first."""

    def __init__(
        self,
        core: StationCore,
        clock: Clock,
        *,
        interval: float = HISTORY_INTERVAL,
        span: float = HISTORY_SPAN,
    ) -> None:
        self._core = core
        self._clock = clock
        self.interval = interval
        self.span = span
        self._samples: deque[Sample] = deque(maxlen=int(span / interval) + 1)

    def observe(self) -> None:
        """The core may have changed: sample it when the last sample is old enough."""
        now = self._clock.now()
        if self._samples and now - self._samples[-1].at < self.interval:
            return
        self._samples.append(sample_of(self._core, now))

    def samples(self) -> list[Sample]:
        """What lies within the span, as of now."""
        since = self._clock.now() - self.span
        return [s for s in self._samples if s.at >= since]

    def view(self) -> dict[str, Any]:
        """The stream's ``history`` event."""
        return {
            "interval": number(self.interval),
            "span": number(self.span),
            "now": iso_utc(self._clock.now()),
            "points": [point_view(s) for s in self.samples()],
        }
