"""What a simulated day shows, as a JSON-ready report and as a table (pure; no I/O).

The figures (camelCase keys, kW and kWh):

* ``peakGridPowerKw``: the highest grid draw at any step; grid draw is what the vehicles
  actually drew minus the battery's discharge plus its charge. ``gridCapacityExceeded`` allows
  ``GRID_TOLERANCE_KW`` for the meters' resolution (each reports its power to 0.1 W).
* ``energyRequestedKwh``: what every arriving driver wanted (up to their target);
  ``energyDeliveredKwh``: what the chargers' meters measured.
* ``driversShort``: drivers who left with less than they wanted (by more than
  ``SHORT_TOLERANCE_KWH``), ``driversShortList`` says by how much each and splits it by cause
  (see :func:`short_parts`): ``noConnectorShortKwh``, what they lost waiting for a free
  connector (all of it for a driver who never found one); ``stationShortKwh``, what the
  station's limits kept from them once plugged in; ``vehicleShortKwh``, what their own curve
  could not have taken in their stay anyway. Each short driver is counted under the cause that
  cost them most: ``driversShortNoConnector``, ``driversShortStation`` and
  ``driversShortVehicle`` add up to ``driversShort``.
* ``jainFairness``: Jain's index ``(sum x)^2 / (n * sum x^2)`` over the constrained sessions
  (those whose limit was, for some time, below what their vehicle could take), ``x`` being each
  one's charging speed as a share of its own: the time its own curve, unlimited, needs for the
  energy it got over the time it took (for a flat curve, its average power over its maximum).
  Raw kW would call a 22 kW van beside a 150 kW bus unfair when both charge at full speed.
  1 is perfectly even; None without any constrained session.
* ``site`` (null unless the scenario has a ``site``): the whole site at the grid connection
  (see :func:`site_figures`): ``connectionLimitKw``, ``peakConnectionKw`` (building - solar +
  charging - battery discharge + battery charge, at the moment a step begins, before anything
  reacts, and once it settled), ``minutesOverLimit`` and ``longestOverLimitSeconds`` (between
  two steps the connection point is taken as linear from one to the next), and
  ``meterIntervalSeconds`` (null when the controller reads no meter) with ``meterPolls``, the
  readings it took.
* ``sitePhases``: the chargers' current on each site phase L1, L2, L3 (AC chargers through
  their wiring, the others as balanced three-phase loads) against the station's
  ``gridCurrentLimit`` (see :func:`phase_figures`): ``limitA`` (null without one), and per
  phase ``peakA``, ``peakAtHours`` and ``minutesOverLimit``; ``limitExceeded``; and
  ``startPeakA``, the highest at the instant a car started, before the controller answered
  (it draws under its TxDefaultProfile for that round trip, the others at their old limits;
  no virtual time passes, a real one lasts milliseconds).
* ``pauses``, ``pausesPerSessionMean``, ``pausesPerSessionMax``: times a charger suspended a
  session (Charging -> SuspendedEVSE after it had drawn power), in all and per plugged-in
  session; ``longestWaitMinutes`` (with ``longestWaitVehicleId``): the longest stretch a
  session drew nothing while it still wanted energy, and ``meanLongestWaitMinutes``, the
  mean over plugged-in sessions of each one's longest such stretch.
* ``profilesSent``: SetChargingProfile calls the controller sent (against a remote controller:
  the ones the simulated chargers received); ``profilesRejected``: how many of them a charger
  did not accept (e.g. a TxProfile for a transaction whose id the charger does not know yet).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from simulators.records import DayRecord, Sample, SessionRecord

__all__ = [
    "GRID_TOLERANCE_KW",
    "SHORT_TOLERANCE_KWH",
    "battery_series",
    "build_report",
    "drivers_short",
    "format_table",
    "jain_index",
    "phase_figures",
    "short_parts",
    "site_figures",
    "speed_share",
]

GRID_TOLERANCE_KW = 0.001
SHORT_TOLERANCE_KWH = 0.05
# Battery energy in the report: one value per this many seconds.
SERIES_STEP_S = 900.0
# Meter registers are whole Wh: the controller's energy and the meter's may differ by this.
ENERGY_TOLERANCE_KWH = 0.001
# Phase currents may exceed their limit by float noise only (A).
CURRENT_TOLERANCE_A = 1e-6
PHASES = ("L1", "L2", "L3")


def jain_index(values: Iterable[float]) -> float | None:
    """Jain's fairness index of non-negative values; None for none, 1.0 when all are 0."""
    xs = list(values)
    if not xs:
        return None
    if any(x < 0 for x in xs):
        raise ValueError("Jain's index is defined for non-negative values")
    total = sum(xs)
    squares = sum(x * x for x in xs)
    if squares == 0:
        return 1.0
    return total * total / (len(xs) * squares)


def speed_share(session: SessionRecord) -> float | None:
    """How fast it charged as a share of its own unlimited speed (0..1): the time its curve
    needs for what it got over the time it took while it still wanted energy; None if it
    never charged."""
    if session.charging_s <= 0 or session.delivered_kwh <= 0:
        return None
    unlimited_s = session.unlimited_s
    if unlimited_s is None:
        unlimited_s = session.delivered_kwh * 3600 / session.max_kw
    return min(1.0, unlimited_s / session.charging_s)


def constrained_sessions(sessions: Iterable[SessionRecord]) -> list[SessionRecord]:
    return [s for s in sessions if s.plugged and s.constrained_s > 0]


# The causes of a shortfall, in the order a tie between them is settled.
NO_CONNECTOR, STATION, VEHICLE = "noConnector", "station", "vehicle"


def short_parts(session: SessionRecord) -> dict[str, float]:
    """A shortfall (requested - delivered) split by cause, in kWh:

    * vehicle: what its own curve could not take over its whole stay, unlimited
      (``requested - achievable``);
    * noConnector: what it lost waiting for a free connector (what it could have taken from
      its arrival minus what it could from its plug-in; all of it if it never plugged in);
    * station: the rest, what the station's limits kept from it once plugged in.
    """
    possible = min(session.requested_kwh, session.achievable_kwh)
    if not session.plugged:
        after_plug = 0.0
    elif session.plugged_achievable_kwh is None:
        after_plug = possible
    else:
        after_plug = min(possible, session.plugged_achievable_kwh)
    return {
        NO_CONNECTOR: possible - after_plug,
        STATION: max(0.0, after_plug - session.delivered_kwh),
        VEHICLE: max(0.0, session.requested_kwh - possible),
    }


def drivers_short(
    sessions: Iterable[SessionRecord], tolerance_kwh: float = SHORT_TOLERANCE_KWH
) -> list[dict[str, Any]]:
    """Every driver who left with less than they asked for, most short first, with the
    shortfall split by cause and the cause that cost them most."""
    short: list[dict[str, Any]] = []
    for s in sessions:
        if s.short_kwh <= tolerance_kwh:
            continue
        parts = short_parts(s)
        cause = max(parts, key=lambda name: parts[name])  # first of equals: dict order
        short.append(
            {
                "vehicleId": s.vehicle_id,
                "chargerId": s.charger_id,
                "connectorId": s.connector_id,
                "plugged": s.plugged,
                "requestedKwh": _r(s.requested_kwh),
                "deliveredKwh": _r(s.delivered_kwh),
                "shortKwh": _r(s.short_kwh),
                "cause": cause,
                "noConnectorShortKwh": _r(parts[NO_CONNECTOR]),
                "stationShortKwh": _r(parts[STATION]),
                "vehicleShortKwh": _r(parts[VEHICLE]),
            }
        )
    short.sort(key=lambda d: (-float(d["shortKwh"]), str(d["vehicleId"])))
    return short


def battery_series(samples: Sequence[Sample], duration_s: float) -> list[list[float]]:
    """``[hour, kWh]`` every SERIES_STEP_S: the battery as the last step before each mark
    left it (the battery's energy is piecewise linear between steps, so this is a sample,
    not an average)."""
    points: list[list[float]] = []
    index = -1
    mark = 0.0
    while mark <= duration_s + 1e-9:
        while index + 1 < len(samples) and samples[index + 1].at <= mark + 1e-9:
            index += 1
        if index >= 0 and samples[index].battery_kwh is not None:
            stored = samples[index].battery_kwh
            assert stored is not None
            points.append([round(mark / 3600, 4), _r(stored)])
        mark += SERIES_STEP_S
    return points


def _seconds_above(start: float, end: float, span: float, limit: float) -> float:
    """How long a quantity going linearly from ``start`` to ``end`` over ``span`` seconds
    stays above ``limit``."""
    if start > limit and end > limit:
        return span
    if start > limit:
        return span * (start - limit) / (start - end)
    if end > limit:
        return span * (end - limit) / (end - start)
    return 0.0


def site_figures(record: DayRecord) -> dict[str, Any] | None:
    """The connection point against its limit over the day; None without a simulated site.

    Each step gives three values: just before its instant, at it as the step found the site
    (the building and the sun at that moment, the vehicles and the battery as the last step
    left them; the two differ where the building's profile steps) and once it settled. The
    peak is the highest of all. From one step's settled value to the next step's first one
    nothing reacts, so the connection point is taken as linear in between (the building's
    profile is, the runner steps at each of its corners; the sun's curve and a tapering
    vehicle only make that err high). Time over the limit is counted on those stretches: a
    value over the limit at a step's instant that the same step corrected (a building step
    that falls on a meter poll) lasted no simulated time, it counts in the peak only."""
    limit = record.connection_limit_kw
    if limit is None:
        return None
    samples = [s for s in record.samples if s.connection_kw is not None]
    threshold = limit + GRID_TOLERANCE_KW
    peak_kw, peak_at = -math.inf, 0.0
    over_s, run_s, longest_s = 0.0, 0.0, 0.0
    for index, sample in enumerate(samples):
        settled = sample.connection_kw
        assert settled is not None
        found = (sample.connection_arriving_kw, sample.connection_before_kw, settled)
        for value in (v for v in found if v is not None):
            if value > peak_kw:
                peak_kw, peak_at = value, sample.at
        if index + 1 == len(samples):
            break
        following = samples[index + 1]
        arriving = following.connection_arriving_kw
        if arriving is None:
            arriving = following.connection_kw
        assert arriving is not None
        span = following.at - sample.at
        above = _seconds_above(settled, arriving, span, threshold)
        over_s += above
        run_s = run_s + above if settled > threshold else above
        longest_s = max(longest_s, run_s)
        if arriving <= threshold:
            run_s = 0.0
    if not samples:
        peak_kw = 0.0
    return {
        "connectionLimitKw": _r(limit),
        "peakConnectionKw": _r(peak_kw),
        "peakConnectionAtHours": _r(peak_at / 3600),
        "connectionLimitExceeded": peak_kw > threshold,
        "minutesOverLimit": _r(over_s / 60),
        "longestOverLimitSeconds": _r(longest_s),
        "meterIntervalSeconds": record.meter_interval_s,
        "meterPolls": record.meter_polls,
    }


def phase_figures(record: DayRecord) -> dict[str, Any]:
    """The chargers' current on each site phase over the day against ``gridCurrentLimit``.
    What a step measured once it settled holds until the next step (a tapering vehicle only
    draws less), so the time over the limit is counted from one step to the next."""
    samples = record.samples
    limit = record.grid_current_limit_a
    peak = dict.fromkeys(PHASES, 0.0)
    peak_at = dict.fromkeys(PHASES, 0.0)
    over_s = dict.fromkeys(PHASES, 0.0)
    for index, sample in enumerate(samples):
        span = samples[index + 1].at - sample.at if index + 1 < len(samples) else 0.0
        for phase, amps in zip(PHASES, sample.phase_a, strict=True):
            if amps > peak[phase]:
                peak[phase], peak_at[phase] = amps, sample.at
            if limit is not None and amps > limit + CURRENT_TOLERANCE_A:
                over_s[phase] += span
    exceeded = limit is not None and any(a > limit + CURRENT_TOLERANCE_A for a in peak.values())
    return {
        "limitA": limit,
        "peakA": {p: _r(peak[p]) for p in PHASES},
        "peakAtHours": {p: _r(peak_at[p] / 3600) for p in PHASES},
        "minutesOverLimit": {p: _r(over_s[p] / 60) for p in PHASES},
        "limitExceeded": exceeded,
        "startPeakA": {p: _r(a) for p, a in zip(PHASES, record.start_peak_a, strict=True)},
    }


def _pauses_and_waits(sessions: Sequence[SessionRecord]) -> dict[str, Any]:
    plugged = [s for s in sessions if s.plugged]
    pauses = [s.pauses for s in plugged]
    longest = max(plugged, key=lambda s: s.longest_wait_s, default=None)
    waited = longest is not None and longest.longest_wait_s > 0
    return {
        "pauses": sum(pauses),
        "pausesPerSessionMean": _r(sum(pauses) / len(pauses)) if pauses else 0.0,
        "pausesPerSessionMax": max(pauses, default=0),
        "longestWaitMinutes": _r(longest.longest_wait_s / 60) if waited and longest else 0.0,
        "longestWaitVehicleId": longest.vehicle_id if waited and longest else None,
        "meanLongestWaitMinutes": (
            _r(sum(s.longest_wait_s for s in plugged) / len(plugged) / 60) if plugged else 0.0
        ),
    }


def build_report(record: DayRecord) -> dict[str, Any]:
    samples = record.samples
    peak = max(samples, key=lambda s: s.grid_kw, default=None)
    plugged = [s for s in record.sessions if s.plugged]
    delivered = sum(s.meter_kwh if s.meter_kwh is not None else s.delivered_kwh for s in plugged)
    requested = sum(s.requested_kwh for s in record.sessions)
    short = drivers_short(record.sessions)
    constrained = constrained_sessions(record.sessions)
    shares = [x for x in map(speed_share, constrained) if x is not None]
    jain = jain_index(shares)
    mismatches = [
        s.vehicle_id
        for s in plugged
        if s.controller_kwh is not None
        and s.meter_kwh is not None
        and abs(s.controller_kwh - s.meter_kwh) > ENERGY_TOLERANCE_KWH
    ]
    stored = [s.battery_kwh for s in samples if s.battery_kwh is not None]
    battery: dict[str, Any] | None = None
    if record.battery_capacity_kwh is not None and stored:
        battery = {
            "initialCapacityKwh": _r(record.battery_capacity_kwh),
            "minKwh": _r(min(stored)),
            "maxKwh": _r(max(stored)),
            "endKwh": _r(stored[-1]),
            "series": battery_series(samples, record.duration_s),
        }
    peak_kw = peak.grid_kw if peak is not None else 0.0
    return {
        "scenario": record.scenario,
        "strategy": record.strategy,
        "variant": record.variant,
        "mode": record.mode,
        "durationHours": _r(record.duration_s / 3600),
        "gridCapacityKw": _r(record.grid_capacity_kw),
        "peakGridPowerKw": _r(peak_kw),
        "peakGridAtHours": None if peak is None else _r(peak.at / 3600),
        "gridCapacityExceeded": peak_kw > record.grid_capacity_kw + GRID_TOLERANCE_KW,
        "peakLoadKw": _r(max((s.load_kw for s in samples), default=0.0)),
        "energyRequestedKwh": _r(requested),
        "energyDeliveredKwh": _r(delivered),
        "energyShortKwh": _r(sum(d["shortKwh"] for d in short)),
        "driversShort": len(short),
        "driversShortNoConnector": sum(1 for d in short if d["cause"] == NO_CONNECTOR),
        "driversShortStation": sum(1 for d in short if d["cause"] == STATION),
        "driversShortVehicle": sum(1 for d in short if d["cause"] == VEHICLE),
        "driversNeverPlugged": sum(1 for s in record.sessions if not s.plugged),
        "driversShortList": short,
        "jainFairness": None if jain is None else round(jain, 4),
        "constrainedSessions": len(constrained),
        "profilesSent": record.profiles_sent,
        "profilesRejected": record.profiles_rejected,
        "vehicles": len(record.sessions),
        "sessions": len(plugged),
        "battery": battery,
        "site": site_figures(record),
        "sitePhases": phase_figures(record),
        **_pauses_and_waits(record.sessions),
        "limitBreaches": len(record.problems),
        "energyMismatches": len(mismatches),
        "steps": record.steps,
        "runtimeSeconds": round(record.runtime_s, 2),
    }


# -- the table ----------------------------------------------------------------------------------


def _r(value: float) -> float:
    """Three decimals: Wh and W resolution, enough for every figure in the report."""
    return float(round(value, 3))


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _battery(report: dict[str, Any], key: str) -> Any:
    battery = report.get("battery")
    return None if battery is None else battery[key]


_ROWS: list[tuple[str, Any]] = [
    ("grid capacity (kW)", lambda r: _num(r["gridCapacityKw"])),
    ("peak grid draw (kW)", lambda r: _num(r["peakGridPowerKw"])),
    ("peak station load (kW)", lambda r: _num(r["peakLoadKw"])),
    ("energy requested (kWh)", lambda r: _num(r["energyRequestedKwh"])),
    ("energy delivered (kWh)", lambda r: _num(r["energyDeliveredKwh"])),
    ("delivered / requested", lambda r: _share(r)),
    ("drivers short", lambda r: _num(r["driversShort"])),
    ("  found no connector", lambda r: _num(r["driversShortNoConnector"])),
    ("  limited by the station", lambda r: _num(r["driversShortStation"])),
    ("  limited by own curve or stay", lambda r: _num(r["driversShortVehicle"])),
    ("energy short (kWh)", lambda r: _num(r["energyShortKwh"])),
    ("constrained sessions", lambda r: _num(r["constrainedSessions"])),
    ("Jain fairness (constrained)", lambda r: _num(r["jainFairness"], 3)),
    ("battery min / end (kWh)", lambda r: _battery_text(r)),
    ("pauses per session (mean / max)", lambda r: _pauses_text(r)),
    ("longest wait with no energy (min)", lambda r: _num(r["longestWaitMinutes"])),
    ("SetChargingProfile sent", lambda r: _num(r["profilesSent"])),
    ("  rejected by the charger", lambda r: _num(r["profilesRejected"])),
    ("sessions", lambda r: _num(r["sessions"])),
    ("limit breaches", lambda r: _num(r["limitBreaches"])),
    ("run time (s)", lambda r: _num(r["runtimeSeconds"])),
]


def _site(report: dict[str, Any], key: str) -> Any:
    site = report.get("site")
    return None if site is None else site[key]


# Shown when any report of the table has a site.
_SITE_ROWS: list[tuple[str, Any]] = [
    ("connection limit (kW)", lambda r: _num(_site(r, "connectionLimitKw"))),
    ("peak at the connection (kW)", lambda r: _num(_site(r, "peakConnectionKw"))),
    ("time over the limit (min)", lambda r: _num(_site(r, "minutesOverLimit"), 2)),
    ("longest over the limit (s)", lambda r: _num(_site(r, "longestOverLimitSeconds"))),
    ("site meter read every (s)", lambda r: _num(_site(r, "meterIntervalSeconds"), 0)),
]


def _per_phase(report: dict[str, Any], key: str) -> str:
    values = report["sitePhases"][key]
    return " / ".join(f"{values[p]:.1f}" for p in PHASES)


# Shown when any report of the table holds the station to a current per phase.
_PHASE_ROWS: list[tuple[str, Any]] = [
    ("phase limit (A)", lambda r: _num(r["sitePhases"]["limitA"])),
    ("peak L1 / L2 / L3 (A)", lambda r: _per_phase(r, "peakA")),
    ("time over, L1 / L2 / L3 (min)", lambda r: _per_phase(r, "minutesOverLimit")),
    ("at a car's start, L1 / L2 / L3 (A)", lambda r: _per_phase(r, "startPeakA")),
]


def _pauses_text(report: dict[str, Any]) -> str:
    return f"{report['pausesPerSessionMean']:.2f} / {report['pausesPerSessionMax']}"


def _share(report: dict[str, Any]) -> str:
    requested = report["energyRequestedKwh"]
    if not requested:
        return "-"
    return f"{100 * report['energyDeliveredKwh'] / requested:.1f} %"


def _battery_text(report: dict[str, Any]) -> str:
    low, end = _battery(report, "minKwh"), _battery(report, "endKwh")
    if low is None:
        return "-"
    return f"{low:.1f} / {end:.1f}"


def format_table(reports: Sequence[dict[str, Any]]) -> str:
    """One column per report (a strategy), one row per figure."""
    if not reports:
        return ""
    first = reports[0]
    title = f"{first['scenario']} ({_num(first['durationHours'])} h, {first['mode']})"
    header = [title] + [str(r.get("variant") or r["strategy"]) for r in reports]
    shown = _ROWS
    if any(r.get("site") is not None for r in reports):
        shown = shown[:2] + _SITE_ROWS + shown[2:]
    if any(r["sitePhases"]["limitA"] is not None for r in reports):
        shown = shown[:2] + _PHASE_ROWS + shown[2:]
    rows = [header] + [[label] + [cell(r) for r in reports] for label, cell in shown]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        label = row[0].ljust(widths[0])
        rest = "  ".join(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))
        lines.append(f"{label}  {rest}".rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)
