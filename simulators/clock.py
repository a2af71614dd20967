"""Clocks for simulated chargers: the shared clock of :mod:`shell.clock`.

Everything a simulated charger times (heartbeats, meter samples, call timeouts, answer delays)
goes through one of these, so the same charger runs in real time against a live controller or
on a virtual clock that a runner or a test moves by hand; one virtual clock drives both ends
of a simulated station day.
"""

from __future__ import annotations

from shell.clock import Clock, sleep_until, to_datetime
from shell.clock import ManualClock as VirtualClock
from shell.clock import SystemClock as RealClock

__all__ = ["Clock", "RealClock", "VirtualClock", "sleep_until", "to_datetime"]
