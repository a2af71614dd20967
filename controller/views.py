"""The JSON shapes of the REST API (docs/api.md), in one place. Pure: they read the core.

No response may hold ``NaN`` or ``Infinity``: they are not JSON, and the dashboard's
``JSON.parse`` fails on them. Every input is bounded, so every number here is finite;
:func:`finite_dumps` makes sure of it (docs/security-input.md).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Annotated, Any, Final, Literal, overload

from pydantic import Field
from typing_extensions import TypedDict

from controller.core.battery import Battery
from controller.core.sessions import Session
from controller.core.site import ExternalLimit, MeterState
from controller.core.state import ChargerState, ProfileReport
from controller.core.station import StationCore
from shell.clock import iso_utc

log = logging.getLogger(__name__)

# What ``json.dumps`` writes by default, without its NaN and Infinity.
_ENCODER: Final = json.JSONEncoder(allow_nan=False)


def finite_dumps(data: Any) -> str:
    """JSON text of a response. A NaN or an infinity in it is a bug (every input is bounded):
    it is logged with where it was, and sent as null, so the client still gets valid JSON and
    the rest of the answer."""
    try:
        return _ENCODER.encode(data)
    except ValueError:
        found: list[str] = []
        cleaned = _without_non_finite(data, "$", found)
        log.error("non-finite numbers in a response, sent as null: %s", ", ".join(found[:10]))
        return _ENCODER.encode(cleaned)


def _without_non_finite(value: Any, path: str, found: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{path} = {value}")
        return None
    if isinstance(value, dict):
        return {k: _without_non_finite(v, f"{path}.{k}", found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_non_finite(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


@overload
def number(value: float) -> float: ...


@overload
def number(value: float | None) -> float | None: ...


def number(value: float | None) -> float | None:
    """Whole numbers as JSON integers (``400``, not ``400.0``), like the config file."""
    if value is None:
        return None
    rounded = round(float(value), 6)
    return int(rounded) if rounded.is_integer() else rounded


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso_utc(timestamp)


# -- the shapes ---------------------------------------------------------------------------
# TypedDicts, so that mypy checks every view below against its shape at no cost per answer,
# and the OpenAPI document (controller.openapi) is generated from these same types.

Kw = Annotated[float, Field(description="kW")]
Kwh = Annotated[float, Field(description="kWh")]
IsoTime = Annotated[str, Field(description="ISO 8601 UTC, e.g. 2026-11-29T21:09:39.574Z")]


class SessionView(TypedDict):
    """A charging session, active or stopped (docs/api.md, "Session")."""

    sessionId: Annotated[str, Field(description="a UUID given by the controller")]
    chargerId: str
    connectorId: Annotated[int, Field(description="0-based")]
    vehicleMaxPower: Annotated[Kw | None, Field(description="declared maximum, kW")]
    learnedMaxPower: Annotated[Kw | None, Field(description="learned from the draw, kW")]
    allocatedPower: Annotated[
        float,
        Field(
            description="the limit now, kW (the last one once stopped); whole kW, or with the "
            "electrical model the current times voltage times phases it is sent"
        ),
    ]
    limitedBy: Annotated[
        str | None,
        Field(description="what bounded it: vehicle, charger, a group id, station or pinned"),
    ]
    consumedPower: Annotated[Kw | None, Field(description="last reported draw, kW")]
    consumedEnergy: Annotated[Kwh, Field(description="energy so far, kWh")]
    stateOfCharge: Annotated[float | None, Field(description="%, when reported")]
    startedAt: IsoTime | None
    stoppedAt: IsoTime | None
    status: Literal["active", "stopped"]
    origin: Literal["rest", "ocpp"]
    transactionId: Annotated[int | None, Field(description="OCPP transaction id")]
    phases: Annotated[
        int | None,
        Field(description="phases the vehicle uses: stated over REST or learned; null: unknown"),
    ]
    sitePhases: Annotated[
        list[str] | None,
        Field(description="with the electrical model, the site phases (L1-L3) it is counted on"),
    ]
    allocatedCurrent: Annotated[
        float | None,
        Field(description="with the electrical model, its limit in A per phase (AC chargers)"),
    ]
    consumedCurrent: Annotated[
        list[float | None] | None,
        Field(description="its last per-phase Current.Import, A on the charger's phases 1-3"),
    ]
    paused: Annotated[bool, Field(description="waiting at 0 for room (electrical model)")]
    pausedSince: IsoTime | None


class BatteryView(TypedDict):
    """The stationary battery (docs/api.md, "Station status")."""

    storedEnergy: Kwh
    initialCapacity: Kwh
    power: Annotated[Kw, Field(description="rated power, kW")]
    mode: Literal["charging", "discharging", "idle"]
    currentPower: Annotated[Kw, Field(description="> 0 discharging, < 0 charging")]
    mayDischarge: Annotated[bool, Field(description="whether the allocation counts on it")]


class ConnectorView(TypedDict):
    connectorId: Annotated[int, Field(description="0-based")]
    status: Annotated[str, Field(description="as last reported over OCPP")]
    errorCode: str | None
    sessionId: str | None


class ProfileReportView(TypedDict):
    """The last SetChargingProfile sent to a charger and its answer (docs/api.md)."""

    purpose: Literal["TxProfile", "TxDefaultProfile"]
    connectorId: Annotated[
        int | None, Field(description="0-based; null for the failsafe default (every connector)")
    ]
    limit: Annotated[Kw, Field(description="kW (per connector for the failsafe default)")]
    current: Annotated[
        float | None, Field(description="A per phase, when it was sent in amps (electrical model)")
    ]
    sentAt: IsoTime
    result: Annotated[
        Literal["accepted", "rejected", "error", "timeout", "lost", "not-sent"] | None,
        Field(description="null while unanswered"),
    ]
    answeredAt: IsoTime | None


class ChargerView(TypedDict):
    """One configured charger (docs/api.md, "Station status")."""

    id: str
    maxPower: Kw
    connectors: int
    allocatedPower: Annotated[float, Field(description="sum of its sessions' limits, kW")]
    connected: bool
    booted: bool
    status: Annotated[str | None, Field(description="OCPP status of connector 0")]
    vendor: str | None
    model: str | None
    firmwareVersion: str | None
    lastSeen: IsoTime | None
    limitsConfirmed: bool
    smartCharging: bool
    lastProfile: ProfileReportView | None
    connectorStatus: list[ConnectorView]


class SiteMeterView(TypedDict):
    """The grid meter and what it leaves for charging (docs/site.md)."""

    state: Annotated[
        Literal["ok", "stale"],
        Field(description="stale: no valid reading within site.meterTimeout (or none yet)"),
    ]
    lastReading: Annotated[Kw | None, Field(description="the site at the connection point")]
    lastReadingAt: IsoTime | None
    currents: Annotated[list[float] | None, Field(description="A, L1..L3, when read")]
    nonChargingCurrents: Annotated[
        list[float] | None, Field(description="A per phase, less what the station draws")
    ]
    nonChargingLoad: Annotated[
        Kw | None, Field(description="the reading minus charging plus battery discharge")
    ]
    gridShare: Annotated[Kw, Field(description="the connection's kW left for charging")]


class ExternalLimitView(TypedDict):
    """A cap on the root limit from outside the site (docs/site.md, "External limit")."""

    maxPower: Kw
    until: Annotated[IsoTime | None, Field(description="null: until cleared")]
    reason: str
    setBy: Annotated[str, Field(description="the API token's name, or the client's address")]
    setAt: IsoTime


class ExternalLimitAnswerView(TypedDict):
    externalLimit: ExternalLimitView | None


class PhaseView(TypedDict):
    """One site phase with the electrical model (docs/electrical.md)."""

    phase: Annotated[str, Field(description="L1, L2 or L3")]
    bookedCurrent: Annotated[float, Field(description="A counted on it by the limits in force")]
    limit: Annotated[float | None, Field(description="gridCurrentLimit, A; null: none")]


class StatusView(TypedDict):
    """The station now (docs/api.md, "Station status")."""

    stationId: str
    gridCapacity: Kw
    availablePower: Annotated[int, Field(description="the root limit now, kW")]
    allocatedPower: Annotated[float, Field(description="sum of the active sessions' limits, kW")]
    gridPower: Annotated[Kw, Field(description="drawn from the grid now, kW")]
    strategy: Literal["fair", "even-split"]
    battery: BatteryView | None
    siteMeter: Annotated[SiteMeterView | None, Field(description="null without site.meter")]
    externalLimit: ExternalLimitView | None
    phases: Annotated[
        list[PhaseView] | None,
        Field(description="with the electrical model, each site phase's booked current"),
    ]
    chargers: list[ChargerView]
    sessions: list[SessionView]


class JournalLineView(TypedDict):
    """One line of the journal (docs/api.md, "Journal")."""

    seq: int
    at: Annotated[float, Field(description="Unix seconds")]
    kind: str
    chargerId: str | None
    sessionId: str | None
    data: dict[str, Any]


class HealthView(TypedDict):
    status: Literal["ok"]


class ErrorDetailView(TypedDict):
    field: str
    message: str


class ErrorView(TypedDict):
    """Every error answer (docs/api.md, "Errors")."""

    error: Annotated[str, Field(description="a stable code, for programs")]
    message: Annotated[str, Field(description="one sentence, for people")]
    details: list[ErrorDetailView]


def session_view(session: Session) -> SessionView:
    return {
        "sessionId": session.session_id,
        "chargerId": session.charger_id,
        "connectorId": session.connector_id,
        "vehicleMaxPower": number(session.vehicle_max_power),
        "learnedMaxPower": number(session.learned_max_power),
        "allocatedPower": number(session.allocated_power),
        "limitedBy": session.limited_by,
        "consumedPower": number(session.consumed_power),
        "consumedEnergy": number(session.consumed_energy),
        "stateOfCharge": number(session.state_of_charge),
        "startedAt": _iso(session.started_at),
        "stoppedAt": _iso(session.stopped_at),
        "status": session.status.value,
        "origin": session.origin.value,
        "transactionId": session.transaction_id,
        "phases": _phase_count(session),
        "sitePhases": None if session.site_phases is None else list(session.site_phases),
        "allocatedCurrent": number(session.allocated_current),
        "consumedCurrent": None
        if session.consumed_currents is None
        else [number(a) for a in session.consumed_currents],
        "paused": session.active and session.paused_since is not None,
        "pausedSince": _iso(session.paused_since) if session.active else None,
    }


def _phase_count(session: Session) -> int | None:
    used = session.phases_in_use
    return used if isinstance(used, int) or used is None else len(used)


def battery_view(battery: Battery | None) -> BatteryView | None:
    if battery is None:
        return None
    flow = battery.flow()
    return {
        "storedEnergy": number(battery.stored_energy),
        "initialCapacity": number(battery.initial_capacity),
        "power": number(battery.power),
        "mode": flow.mode.value,
        "currentPower": number(flow.power),
        "mayDischarge": battery.may_discharge,
    }


def profile_report_view(report: ProfileReport | None) -> ProfileReportView | None:
    if report is None:
        return None
    return {
        "purpose": report.purpose,
        # Numbered like connectorStatus (from 0); the failsafe default is for every connector.
        "connectorId": report.connector_id - 1 if report.connector_id > 0 else None,
        "limit": number(report.limit),
        "current": number(report.current),
        "sentAt": iso_utc(report.sent_at),
        "result": None if report.result is None else report.result.value,
        "answeredAt": _iso(report.answered_at),
    }


def site_meter_view(core: StationCore) -> SiteMeterView | None:
    site = core.site
    if site is None:
        return None
    last = site.last
    now = core.now
    return {
        "state": "ok" if site.state(now) is MeterState.OK else "stale",
        "lastReading": None if last is None else number(last.power),
        "lastReadingAt": None if last is None else _iso(last.at),
        "currents": None if last is None or last.currents is None else list(last.currents),
        "nonChargingCurrents": (
            None
            if last is None or last.non_charging_currents is None
            else [number(a) for a in last.non_charging_currents]
        ),
        "nonChargingLoad": None if last is None else number(last.non_charging_load),
        "gridShare": number(site.share(now)),
    }


def external_limit_view(limit: ExternalLimit | None) -> ExternalLimitView | None:
    if limit is None:
        return None
    return {
        "maxPower": number(limit.max_power),
        "until": _iso(limit.until),
        "reason": limit.reason,
        "setBy": limit.set_by,
        "setAt": iso_utc(limit.set_at),
    }


def charger_view(core: StationCore, charger: ChargerState) -> ChargerView:
    charger_id = charger.charger_id
    config = core.charger_config(charger_id)
    connectors: list[ConnectorView] = []
    allocated = 0.0
    for connector_id in range(config.connectors):
        session = core.session_on(charger_id, connector_id)
        if session is not None:
            allocated += session.allocated_power
        reported = core.connectors.get((charger_id, connector_id + 1))
        status = None if reported is None else reported.status
        if status is None:
            status = "Charging" if session is not None else "Available"
        connectors.append(
            {
                "connectorId": connector_id,
                "status": status,
                "errorCode": None if reported is None else reported.error_code,
                "sessionId": None if session is None else session.session_id,
            }
        )
    whole = core.connectors.get((charger_id, 0))
    return {
        "id": charger_id,
        "maxPower": number(config.max_power),
        "connectors": config.connectors,
        "allocatedPower": number(allocated),
        "connected": charger.connected,
        "booted": charger.booted,
        "status": None if whole is None else whole.status,
        "vendor": charger.vendor,
        "model": charger.model,
        "firmwareVersion": charger.firmware_version,
        "lastSeen": _iso(charger.last_seen),
        "limitsConfirmed": core.limits_confirmed(charger_id),
        "smartCharging": charger.smart_charging,
        "lastProfile": profile_report_view(charger.last_profile),
        "connectorStatus": connectors,
    }


def phase_views(core: StationCore) -> list[PhaseView] | None:
    booked = core.phase_bookings()
    if booked is None:
        return None
    limit = number(core.config.grid_current_limit)
    return [
        {"phase": phase, "bookedCurrent": number(amps), "limit": limit}
        for phase, amps in booked.items()
    ]


def status_view(core: StationCore) -> StatusView:
    config = core.config
    return {
        "stationId": config.station_id,
        "gridCapacity": number(config.grid_capacity),
        "availablePower": core.available_power,
        "allocatedPower": number(core.allocated_power()),
        "gridPower": number(core.grid_power()),
        "strategy": config.allocation.strategy.value,
        "battery": battery_view(core.battery),
        "siteMeter": site_meter_view(core),
        "externalLimit": external_limit_view(core.external_limit),
        "phases": phase_views(core),
        "chargers": [charger_view(core, c) for c in core.chargers.values()],
        "sessions": [session_view(s) for s in core.active_sessions()],
    }
