"""Sessions, and the errors a request about them can get (docs/allocation.md, docs/api.md).

A session is one vehicle on one connector. Its ``connector_id`` is 0-based, as in the REST
API; OCPP's 1-based connector ids are converted at the OCPP edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from controller.core.fields import DERIVED


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
    allocated_power: int = field(default=0, metadata=DERIVED)
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

    @property
    def cap(self) -> float | None:
        """The vehicle's limit for the allocator: declared, else learned, else unknown."""
        if self.vehicle_max_power is not None:
            return self.vehicle_max_power
        return self.learned_max_power

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
