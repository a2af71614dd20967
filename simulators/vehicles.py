"""Vehicles as a charger sees them: a battery that fills along a charging curve.

Pure and deterministic: a vehicle never draws more than the limit it is offered nor more than
its curve allows at its state of charge, and every kWh it absorbs is counted once
(``delivered_kwh`` is exactly the sum of what :meth:`Vehicle.advance` returned).

Curves. A DC fast-charging battery takes its full power up to about 80 % state of charge, then
the battery management tapers it roughly linearly to about a tenth of the maximum at 100 %. An
AC onboard charger is flat almost to the top (about 95 %), then tapers to about a third.

Phases. An AC onboard charger draws on 1, 2 or 3 phases, at most ``max_current`` A on each
(16 A on one phase is 3.7 kW, 32 A on three 22 kW): on an AC charger it draws on the fewer of
its own and the charger's phases (:mod:`simulators.charger`). ``phases`` None is a vehicle that
takes whatever phases the charger offers (and a DC vehicle, which has no onboard charger).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["ChargingCurve", "CurveKind", "Vehicle"]

_EPSILON_KWH = 1e-9


class CurveKind(StrEnum):
    DC = "dc"
    AC = "ac"


@dataclass(frozen=True, slots=True)
class ChargingCurve:
    """Power the vehicle accepts at a state of charge (0..1): flat, then a linear taper."""

    max_kw: float
    taper_from_soc: float = 0.8
    end_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_kw) and self.max_kw > 0):
            raise ValueError("max_kw must be a positive number")
        if not 0 < self.taper_from_soc <= 1:
            raise ValueError("taper_from_soc must be in (0, 1]")
        if not 0 <= self.end_fraction <= 1:
            raise ValueError("end_fraction must be in [0, 1]")

    @classmethod
    def of(cls, kind: CurveKind, max_kw: float) -> ChargingCurve:
        if kind is CurveKind.DC:
            return cls(max_kw, taper_from_soc=0.8, end_fraction=0.1)
        return cls(max_kw, taper_from_soc=0.95, end_fraction=0.3)

    def power_kw(self, soc: float) -> float:
        soc = min(max(soc, 0.0), 1.0)
        if soc <= self.taper_from_soc or self.taper_from_soc >= 1:
            return self.max_kw
        progress = (soc - self.taper_from_soc) / (1 - self.taper_from_soc)
        return self.max_kw * (1 - (1 - self.end_fraction) * progress)


@dataclass
class Vehicle:
    """One visit. Times are seconds from the start of the scenario day; soc is 0..1.

    The goal is ``target_soc`` or, when given, ``target_energy_kwh`` (whichever is reached
    first). Once there it draws nothing; it leaves at ``departure``, or at once when
    ``leave_when_done`` (otherwise it stays plugged in drawing 0, as real cars do).
    """

    vehicle_id: str
    arrival: float
    departure: float
    battery_kwh: float
    soc: float
    curve: ChargingCurve
    target_soc: float = 1.0
    target_energy_kwh: float | None = None
    leave_when_done: bool = False
    phases: int | None = None  # AC phases its onboard charger uses; None: what it is offered
    max_current: float | None = None  # A per phase its onboard charger takes; None: no cap
    delivered_kwh: float = 0.0
    initial_soc: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.battery_kwh > 0:
            raise ValueError("battery_kwh must be positive")
        if not 0 <= self.soc <= 1 or not 0 <= self.target_soc <= 1:
            raise ValueError("soc and target_soc must be in [0, 1]")
        if self.departure < self.arrival:
            raise ValueError("departure must not be before arrival")
        if self.target_energy_kwh is not None and self.target_energy_kwh < 0:
            raise ValueError("target_energy_kwh must not be negative")
        if self.phases is not None and self.phases not in (1, 2, 3):
            raise ValueError("phases must be 1, 2 or 3")
        if self.max_current is not None and not self.max_current > 0:
            raise ValueError("max_current must be positive")
        self.initial_soc = self.soc

    @property
    def max_kw(self) -> float:
        return self.curve.max_kw

    @property
    def requested_kwh(self) -> float:
        """Energy from arrival to the goal."""
        by_soc = max(0.0, self.target_soc - self.initial_soc) * self.battery_kwh
        if self.target_energy_kwh is None:
            return by_soc
        return min(by_soc, self.target_energy_kwh)

    @property
    def remaining_kwh(self) -> float:
        return max(0.0, self.requested_kwh - self.delivered_kwh)

    @property
    def done(self) -> bool:
        return self.remaining_kwh <= _EPSILON_KWH

    def power_at(self, soc: float, limit_kw: float) -> float:
        """kW drawn at ``soc`` under ``limit_kw``: ``min(limit, curve(soc))``, 0 when done."""
        if self.done:
            return 0.0
        return max(0.0, min(limit_kw, self.curve.power_kw(soc)))

    def demand_kw(self) -> float:
        """What it would draw now with no limit."""
        return self.power_at(self.soc, math.inf)

    def advance(self, dt: float, power_kw: float) -> float:
        """Absorb ``power_kw`` for ``dt`` seconds, stopping at the goal; returns the kWh taken."""
        if dt < 0 or power_kw < 0:
            raise ValueError("dt and power must not be negative")
        energy = min(power_kw * dt / 3600.0, self.remaining_kwh)
        self.delivered_kwh += energy
        self.soc = min(1.0, self.soc + energy / self.battery_kwh)
        return energy

    def charge(self, dt: float, limit_kw: float, max_step: float = 10.0) -> float:
        """Charge for ``dt`` seconds under ``limit_kw``, following the taper in steps of at most
        ``max_step`` seconds; returns the kWh taken (average power = kWh * 3600 / dt)."""
        energy = 0.0
        left = dt
        while left > 0 and not self.done:
            step = min(left, max_step)
            energy += self.advance(step, self.power_at(self.soc, limit_kw))
            left -= step
        return energy

    def unlimited_seconds(self, energy_kwh: float, max_step: float = 10.0) -> float:
        """Seconds its own curve, with no limit, needs from its arrival state of charge to take
        ``energy_kwh`` (at most what it requested): what its charge would have lasted had
        nothing held it back. The report compares this with how long it actually took."""
        probe = dataclasses.replace(
            self, soc=self.initial_soc, delivered_kwh=0.0, target_energy_kwh=energy_kwh
        )
        seconds = 0.0
        while not probe.done:
            power = probe.power_at(probe.soc, math.inf)
            if power <= 0:
                return math.inf
            step = min(max_step, probe.remaining_kwh * 3600.0 / power)
            probe.advance(step, power)
            seconds += step
        return seconds

    def wants_to_leave(self, t: float) -> bool:
        return t >= self.departure or (self.leave_when_done and self.done)
