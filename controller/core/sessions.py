"""Sessions, and the errors a request about them can get (docs/allocation.md, docs/api.md).

A session is one vehicle on one connector. Its ``connector_id`` is 0-based, as in the REST
API; OCPP's 1-based connector ids are converted at the OCPP edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from controller.core.fields import DERIVED, TRANSIENT
from controller.core.phases import PhaseLearner


class SessionStatus(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"


class Origin(StrEnum):
    REST = "rest"
    OCPP = "ocpp"


@dataclass(slots=True)
class Session:
    session_id: str
    charger_id: str
    connector_id: int
    vehicle_max_power: float | None
    started_at: float
    origin: Origin = Origin.REST
    status: SessionStatus = SessionStatus.ACTIVE
    # kW booked: whole kW, or with the electrical model current x voltage x phases used.
    allocated_power: float = field(default=0, metadata=DERIVED)
    limited_by: str | None = field(default=None, metadata=DERIVED)
    consumed_power: float | None = None
    consumed_energy: float = 0.0
    state_of_charge: float | None = None
    stopped_at: float | None = None
    stop_reason: str | None = None
    transaction_id: int | None = None
    id_tag: str | None = None
    meter_start_wh: float | None = None
    # The limit went up after the last reading: the vehicle may already draw more than it
    # reported, so the load counts it at its limit until it reports again.
    reading_stale: bool = False
    reading_at: float | None = None
    # What the vehicle was seen to take, when OCPP does not say (controller.core.demand).
    learned_max_power: float | None = None
    # How many phases the vehicle uses, as REST stated it (docs/electrical.md, "Sessions").
    phases: int | None = None
    # With the electrical model: since when the session has waited at 0 (docs/electrical.md,
    # "Rotation"), None while it runs.
    paused_since: float | None = None
    # Which of the charger's phases its readings show it uses; a restart learns them again
    # from the next readings (controller.core.phases).
    phase_learner: PhaseLearner = field(default_factory=PhaseLearner, metadata=TRANSIENT)
    # When it last ran again after waiting at 0: a car needs time to ramp up after a pause
    # as after its start, before what it draws says what it can take.
    resumed_at: float | None = field(default=None, metadata=TRANSIENT)
    # With the electrical model, what the last allocation gave it: A per phase on an AC
    # charger (None otherwise), and the site phases it is counted on.
    allocated_current: float | None = field(default=None, metadata=TRANSIENT)
    site_phases: tuple[str, ...] | None = field(default=None, metadata=TRANSIENT)
    # The last per-phase Current.Import it reported (A on the charger's phases 1-3).
    consumed_currents: tuple[float | None, float | None, float | None] | None = field(
        default=None, metadata=TRANSIENT
    )

    @property
    def cap(self) -> float | None:
        """The vehicle's limit for the allocator: the lower of declared and learned (a car
        that said what it takes may still take less: full, or tapering), else unknown."""
        declared, learned = self.vehicle_max_power, self.learned_max_power
        if declared is None:
            return learned
        return declared if learned is None else min(declared, learned)

    @property
    def phases_in_use(self) -> int | tuple[int, ...] | None:
        """For the allocator: stated, else learned, else None (all of its charger's)."""
        return self.phases if self.phases is not None else self.phase_learner.used

    @property
    def active(self) -> bool:
        return self.status is SessionStatus.ACTIVE

    def copy(self) -> Session:
        """A snapshot: what a record or an answer carries, never changed afterwards."""
        return replace(self)


class StationError(Exception):
    """A request the station refuses; ``code`` is stable, ``field`` names the input."""

    code = "station_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownCharger(StationError):
    code = "unknown_charger"


class UnknownSession(StationError):
    code = "unknown_session"


class InvalidConnector(StationError):
    code = "invalid_connector"


class ConnectorBusy(StationError):
    code = "connector_busy"


class SessionAlreadyStopped(StationError):
    code = "session_stopped"


class LimitAlreadyOver(StationError):
    """An external limit whose end is already past: it would never be in force."""

    code = "limit_over"


class NoPushMeter(StationError):
    code = "no_push_meter"
