"""What a simulated day leaves behind: the station at each step and each driver's visit.

Plain data (no I/O, no controller): :mod:`simulators.report` and :mod:`simulators.plot` read
it, :mod:`simulators.runner` fills it. Times count in seconds from the start of the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DayRecord", "Sample", "SessionRecord"]


@dataclass(frozen=True, slots=True)
class Sample:
    """The station at one step, after things settled. ``at`` counts from the day's start."""

    at: float
    load_kw: float  # what the vehicles draw
    grid_kw: float  # load - battery discharge + battery charge
    battery_kwh: float | None
    battery_kw: float  # positive discharging, negative charging
    allocated_kw: float | None  # the controller's sum of session limits (in-process only)
    # With a simulated site (None without): the rest of the site (building - solar) ...
    site_kw: float | None = None
    # ... the connection point as the step found it, before anything in it reacted ...
    connection_before_kw: float | None = None
    # ... and just before the step's instant (differs from the above at a step of a profile).
    connection_arriving_kw: float | None = None
    # The chargers' current on each site phase L1, L2, L3 (A): AC chargers through their
    # wiring, the others as balanced three-phase loads.
    phase_a: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def connection_kw(self) -> float | None:
        """The whole site at the connection point once the step settled (None: no site)."""
        return None if self.site_kw is None else self.site_kw + self.grid_kw


@dataclass(slots=True)
class SessionRecord:
    """One driver's visit as the runner saw it. Times count from the day's start."""

    vehicle_id: str
    arrival: float
    departure: float
    max_kw: float
    requested_kwh: float
    # What it would have taken on its own curve over its whole stay, with no limit or wait.
    achievable_kwh: float
    # The same from when it plugged in (None: never plugged in, or not known, then taken as
    # achievable_kwh): what it lost waiting for a free connector is the difference.
    plugged_achievable_kwh: float | None = None
    charger_id: str | None = None
    connector_id: int | None = None
    plugged_at: float | None = None
    left_at: float | None = None
    done_at: float | None = None  # when the vehicle reached its target
    delivered_kwh: float = 0.0  # what the vehicle took
    meter_kwh: float | None = None  # (meterStop - meterStart) / 1000 on its charger
    controller_kwh: float | None = None  # consumedEnergy the controller recorded
    transaction_id: int | None = None
    constrained_s: float = 0.0  # time its limit was below what it could take
    # Seconds its own curve, unlimited, would have needed for delivered_kwh (None: not known,
    # then taken as flat at max_kw, delivered_kwh / max_kw).
    unlimited_s: float | None = None
    power: list[tuple[float, float]] = field(default_factory=list)  # (at, kW) per step
    # Times its charger suspended it (Charging -> SuspendedEVSE) after it had drawn power.
    pauses: int = 0
    # The longest stretch it drew nothing while it still wanted energy (seconds).
    longest_wait_s: float = 0.0

    @property
    def plugged(self) -> bool:
        return self.plugged_at is not None

    @property
    def short_kwh(self) -> float:
        return max(0.0, self.requested_kwh - self.delivered_kwh)

    @property
    def charging_s(self) -> float:
        """Plugged-in time while it still wanted energy."""
        if self.plugged_at is None:
            return 0.0
        end = self.left_at if self.left_at is not None else self.plugged_at
        if self.done_at is not None:
            end = min(end, self.done_at)
        return max(0.0, end - self.plugged_at)


@dataclass(slots=True)
class DayRecord:
    """Everything a report or a plot needs about one simulated day."""

    scenario: str
    strategy: str
    mode: str  # "virtual" | "realtime"
    duration_s: float
    grid_capacity_kw: float
    battery_capacity_kwh: float | None
    connection_limit_kw: float | None = None  # with a simulated site: the connection's limit
    grid_current_limit_a: float | None = None  # the station's gridCurrentLimit (A per phase)
    # The highest current on each site phase the instant a car started, before the controller
    # answered (it draws under its TxDefaultProfile, the others at their old limits).
    start_peak_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    meter_interval_s: float | None = None  # with a site meter the controller reads
    meter_polls: int = 0  # readings of the simulated site meter the controller took
    variant: str | None = None  # the name a comparison gave this run ("meter", "fixed")
    samples: list[Sample] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)
    profiles_sent: int = 0
    profiles_rejected: int = 0  # SetChargingProfile the simulated chargers did not accept
    runtime_s: float = 0.0
    steps: int = 0
    # Breaches the runner saw at a step: a draw above a limit, an allocation above its cap.
    problems: list[str] = field(default_factory=list)
