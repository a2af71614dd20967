"""What the station core is told: typed events, each carrying ``now`` (epoch seconds).

Charger events name the charger and, where a reply or a stale connection matters, the
connection they came on (``link``: a number the shell gives each connection, never
reused). Requests that need an answer carry ``reply_to``, an opaque token that the core
hands back in its ``Reply`` command. Ids the core needs for new sessions come in the
event (``new_session_id``): the core draws no random numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class ProfileResult(StrEnum):
    """How a SetChargingProfile call ended."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # answered with another status
    ERROR = "error"  # a CALLERROR (or an unusable answer): it may have been applied
    TIMEOUT = "timeout"  # no answer in time: it may have been applied
    LOST = "lost"  # the connection ended with the call on the wire: it may have been applied
    NOT_SENT = "not-sent"  # the connection ended (or there was none) before it went out


# -- chargers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargerConnected:
    now: float
    charger_id: str
    link: int


@dataclass(frozen=True, slots=True)
class ChargerDisconnected:
    now: float
    charger_id: str
    link: int


@dataclass(frozen=True, slots=True)
class ChargerBooted:
    now: float
    charger_id: str
    link: int
    vendor: str
    model: str
    firmware_version: str | None = None
    serial_number: str | None = None


@dataclass(frozen=True, slots=True)
class ChargerHeard:
    """A message that changes nothing else (Heartbeat, notifications): the charger is alive."""

    now: float
    charger_id: str


@dataclass(frozen=True, slots=True)
class ConnectorStatusReported:
    now: float
    charger_id: str
    connector_id: int  # OCPP numbering: 0 is the charger
    status: str
    error_code: str
    info: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigurationRead:
    """The answer to the GetConfiguration sent after a boot (None: no usable answer)."""

    now: float
    charger_id: str
    ref: int
    keys: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class ProfileAnswered:
    now: float
    charger_id: str
    ref: int
    result: ProfileResult


@dataclass(frozen=True, slots=True)
class MeterReading:
    now: float
    charger_id: str
    connector_id: int  # OCPP numbering
    transaction_id: int | None
    power_kw: float | None = None
    energy_register_kwh: float | None = None
    state_of_charge: float | None = None
    # A on the charger's phases 1, 2, 3 (Current.Import with a phase, at the outlet); None for
    # a phase not reported, or as a whole when the message had no per-phase current
    # (docs/ocpp.md, "Meter values").
    phase_currents: tuple[float | None, float | None, float | None] | None = None


@dataclass(frozen=True, slots=True)
class TransactionStartRequested:
    now: float
    charger_id: str
    link: int
    reply_to: object
    connector_id: int  # OCPP numbering
    id_tag: str
    timestamp: str  # as the charger wrote it: part of what identifies a resend
    meter_start: int
    new_session_id: str


@dataclass(frozen=True, slots=True)
class TransactionStopRequested:
    now: float
    charger_id: str
    reply_to: object
    transaction_id: int
    meter_stop: int
    id_tag: str | None = None
    reason: str | None = None


# -- the REST API ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStartRequested:
    now: float
    reply_to: object
    charger_id: str
    connector_id: int  # 0-based
    vehicle_max_power: float | None
    new_session_id: str
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class SessionStopRequested:
    now: float
    reply_to: object
    session_id: str
    consumed_energy: float | None = None


@dataclass(frozen=True, slots=True)
class SessionUpdateRequested:
    now: float
    reply_to: object
    session_id: str
    consumed_power: float | None = None
    vehicle_max_power: float | None = None
    phases: int | None = None


# -- the shell -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitDone:
    """These proposals are durable: apply them."""

    now: float
    proposals: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CommitFailed:
    """These proposals could not be made durable: drop them, refuse their requests."""

    now: float
    proposals: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time has passed (a wake-up came due, or someone reads the status)."""

    now: float


@dataclass(frozen=True, slots=True)
class Reallocate:
    """The reallocation the core asked for with ``ScheduleReallocation``."""

    now: float


@dataclass(frozen=True, slots=True)
class Flush:
    """Hand over the rows changed since the last flush (written behind)."""

    now: float


# -- the site (docs/site.md) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteMeterRead:
    """The grid meter's reading: the whole site at the connection point."""

    now: float
    power: float  # kW, import positive, export negative
    currents: tuple[float, float, float] | None = None  # A, L1..L3


@dataclass(frozen=True, slots=True)
class ExternalLimitRequested:
    """``PUT /station/limit`` (max_power set) or ``DELETE /station/limit`` (None)."""

    now: float
    reply_to: object
    max_power: float | None
    until: float | None = None
    reason: str = ""
    set_by: str = ""


Event = (
    ChargerConnected
    | ChargerDisconnected
    | ChargerBooted
    | ChargerHeard
    | ConnectorStatusReported
    | ConfigurationRead
    | ProfileAnswered
    | MeterReading
    | TransactionStartRequested
    | TransactionStopRequested
    | SessionStartRequested
    | SessionStopRequested
    | SessionUpdateRequested
    | SiteMeterRead
    | ExternalLimitRequested
    | CommitDone
    | CommitFailed
    | Tick
    | Reallocate
    | Flush
)
