"""The stationary battery: stored energy over time, for peak shaving.

Theory (docs/allocation.md, "The battery"). The power that flows is piecewise constant:
it changes only when the station load changes (the controller calls
``advance`` before every change) or when the battery itself crosses a
threshold (empty, back at 5 %, full). ``next_event_at`` predicts the next
threshold from the current flow so that the controller can wake at that exact
moment instead of polling; integration is exact between events.

Hysteresis: once empty the battery may not discharge again before it holds
5 % of ``initial_capacity``, otherwise it would toggle between "may discharge"
and "empty" every few seconds and the chargers' limits with it.

Reserve: the allocator stops counting on the battery when it is down to
``reserve`` kWh, not at zero. Lowered limits take a moment to be accepted by
the chargers; meanwhile the battery keeps covering the load above the grid
(it discharges whenever it holds energy and the load needs it), so the grid
connection is not overdrawn during that moment. The station sets the reserve
to the battery's full power for one OCPP call timeout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from controller.core.state import BatteryRecord

HOUR = 3600.0
REARM_FRACTION = 0.05
# Energy differences below this (kWh) are rounding noise from float arithmetic.
EPSILON_KWH = 1e-9
# A threshold (empty, full, re-armed) less than this much time away at full power counts as
# reached. A wake-up set closer than the clock can tell apart from now (epoch seconds as a
# float step by about 2e-7 s) would otherwise find no time passed, predict the same moment
# again, and never end.
SNAP_SECONDS = 0.001


class BatteryMode(StrEnum):
    CHARGING = "charging"
    DISCHARGING = "discharging"
    IDLE = "idle"


@dataclass(frozen=True, slots=True)
class Flow:
    """Battery power at a given station load: positive discharging, negative charging."""

    power: float

    @property
    def mode(self) -> BatteryMode:
        if self.power > 0:
            return BatteryMode.DISCHARGING
        if self.power < 0:
            return BatteryMode.CHARGING
        return BatteryMode.IDLE


class Battery:
    def __init__(
        self,
        *,
        initial_capacity: float,
        power: float,
        grid_capacity: float,
        now: float,
        stored_energy: float | None = None,
        may_discharge: bool | None = None,
        reserve: float = 0.0,
    ) -> None:
        self.initial_capacity = initial_capacity
        self.power = power
        self.grid_capacity = grid_capacity
        self.reserve = max(reserve, 0.0)
        # Well above the reserve, or re-arming would be followed by emptying at once.
        self.rearm_energy = max(REARM_FRACTION * initial_capacity, 2 * self.reserve)
        self._snap_kwh = EPSILON_KWH + power * SNAP_SECONDS / HOUR
        stored = initial_capacity if stored_energy is None else stored_energy
        self.stored_energy = min(max(stored, 0.0), initial_capacity)
        self.may_discharge = (
            self.stored_energy > self.reserve + EPSILON_KWH
            if may_discharge is None
            else may_discharge
        )
        self.updated_at = now
        self._load = 0.0

    def record(self) -> BatteryRecord:
        return BatteryRecord(self.stored_energy, self.may_discharge, self.updated_at)

    def restore(self, record: BatteryRecord, now: float) -> None:
        """Take up where a stored record left off. Nothing flowed while the controller was
        down: the energy is as stored, and integration resumes from ``now``."""
        self.stored_energy = min(max(record.stored_energy, 0.0), self.initial_capacity)
        self.may_discharge = record.may_discharge
        self.updated_at = now

    @property
    def available_power(self) -> float:
        """What the allocator may count on from the battery right now (kW)."""
        return self.power if self.may_discharge else 0.0

    @property
    def load(self) -> float:
        return self._load

    def flow(self) -> Flow:
        """The battery's power at the current load."""
        return Flow(self._power())

    def _power(self) -> float:
        # Runs at every meter reading: a float, no object.
        load = self._load
        if load > self.grid_capacity and self.stored_energy > EPSILON_KWH:
            return min(load - self.grid_capacity, self.power)
        if load < self.grid_capacity and self.stored_energy < self.initial_capacity - EPSILON_KWH:
            return -min(self.grid_capacity - load, self.power)
        return 0.0

    def grid_power(self) -> float:
        """What the station draws from the grid: load minus discharge plus charge."""
        return self._load - self._power()

    def advance(self, now: float) -> bool:
        """Integrate the energy up to ``now``; True when may_discharge changed.

        The caller reallocates when this returns True: the root limit moved.
        """
        elapsed = now - self.updated_at
        if elapsed <= 0:
            return False
        self.updated_at = now
        before = self.may_discharge
        energy = self.stored_energy - self._power() * elapsed / HOUR
        self.stored_energy = min(max(energy, 0.0), self.initial_capacity)
        self._settle()
        return self.may_discharge != before

    def set_load(self, load: float, now: float) -> bool:
        """Integrate up to ``now`` under the old load, then switch to the new one."""
        changed = self.advance(now)
        self._load = max(load, 0.0)
        return changed

    def set_grid_capacity(self, capacity: float, now: float) -> bool:
        """Integrate up to ``now`` under the old share of the grid, then answer to the new
        one (a site meter or an external limit moves it: docs/site.md)."""
        changed = self.advance(now)
        self.grid_capacity = capacity
        return changed

    def next_event_at(self) -> float | None:
        """When the flow will next change on its own (empty, re-armed or full)."""
        flow = self._power()
        if flow > 0:
            floor = self.reserve if self.may_discharge else 0.0
            when = self.updated_at + max(self.stored_energy - floor, 0.0) / flow * HOUR
        elif flow < 0:
            rate = -flow
            target = self.initial_capacity
            if not self.may_discharge and self.stored_energy < self.rearm_energy:
                target = self.rearm_energy
            when = self.updated_at + (target - self.stored_energy) / rate * HOUR
        else:
            return None
        # Never now: a wake-up must find time passed, or nothing would move (SNAP_SECONDS).
        return max(when, math.nextafter(self.updated_at, math.inf))

    def _settle(self) -> None:
        # Snap values that float arithmetic left a hair away from a threshold,
        # so that a wake-up scheduled at the predicted moment sees the event.
        snap = self._snap_kwh
        if self.stored_energy <= snap:
            self.stored_energy = 0.0
        if self.stored_energy <= self.reserve + snap:
            self.may_discharge = False
        if self.initial_capacity - self.stored_energy <= snap:
            self.stored_energy = self.initial_capacity
        if not self.may_discharge and self.stored_energy >= self.rearm_energy - snap:
            self.may_discharge = self.stored_energy > self.reserve + snap
