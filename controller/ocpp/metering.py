"""MeterValues -> kW, kWh, SoC and amps per phase (docs/ocpp.md, "Meter values"; OCPP 1.6
sections 7.32, 7.43).

Pure. Power, energy and current are read at the outlet only (what the vehicle draws): a
``location`` of Inlet, EV, Cable or Body measures something else. The state of charge is the
vehicle's own measure, so it is read whatever location the charger names (``EV`` is the usual
one). Power comes as a total or per phase (summed when no total is given); without either, the
per-phase ``Current.Import`` times the charger's voltage, summed over phases. Units: W or kW for
power, Wh or kWh for the energy register (the spec's default unit), A for current. Values are
strings on the wire; one that is not a number is skipped rather than failing the whole message,
which must be answered anyway. A number of 2**53 or more in magnitude (a double no longer holds
every integer there, and no meter reads that much) is out of range: the whole message is
refused with a PropertyConstraintViolation (docs/security-input.md), before anything of it
counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from controller.core.phases import PhaseCurrents
from protocol import PropertyConstraintViolation
from protocol.messages import (
    Location,
    Measurand,
    MeterValue,
    Phase,
    SampledValue,
    UnitOfMeasure,
    ValueFormat,
)
from protocol.messages.base import METER_MAX

# The charger's phase (0-based) a sample is about: a phase and its phase-to-neutral reading are
# the same phase. N (neutral) and line-to-line readings (L1-L2 ...) describe no separate flow.
_PHASE_INDEX: Final[dict[Phase | None, int]] = {
    Phase.L1: 0,
    Phase.L1_N: 0,
    Phase.L2: 1,
    Phase.L2_N: 1,
    Phase.L3: 2,
    Phase.L3_N: 2,
}

# Looked up once: an enum member read from its class costs more than the rest of a sample's
# handling, and this runs for every sample of every MeterValues.
_OUTLET: Final = Location.OUTLET
_POWER: Final = Measurand.POWER_ACTIVE_IMPORT
_ENERGY: Final = Measurand.ENERGY_ACTIVE_IMPORT_REGISTER
_SOC: Final = Measurand.SOC
_CURRENT: Final = Measurand.CURRENT_IMPORT
_AMPS: Final = UnitOfMeasure.A


@dataclass(frozen=True, slots=True)
class MeterReading:
    power_kw: float | None = None
    energy_register_kwh: float | None = None
    soc_percent: float | None = None
    # Of the last meter value in the message that had any per-phase Current.Import; the
    # phases of one meter value only, never mixed across timestamps.
    phase_currents: PhaseCurrents | None = None


def _number(sample: SampledValue) -> float | None:
    if sample.format is ValueFormat.SIGNED_DATA:
        return None
    try:
        value = float(sample.value)
    except ValueError:
        return None
    if -METER_MAX <= value <= METER_MAX:
        return value
    if math.isnan(value):
        return None
    raise PropertyConstraintViolation(
        f"sampledValue.value: must be below 2**53 in magnitude, got {value:.3g}"
    )


def _power_kw(unit: UnitOfMeasure | None, value: float) -> float | None:
    if unit is None or unit is UnitOfMeasure.W:
        return value / 1000.0
    if unit is UnitOfMeasure.KW:
        return value
    return None


def _energy_kwh(unit: UnitOfMeasure | None, value: float) -> float | None:
    if unit is None or unit is UnitOfMeasure.WH:  # the spec's default unit
        return value / 1000.0
    if unit is UnitOfMeasure.KWH:
        return value
    return None


def read_meter_values(meter_values: Iterable[MeterValue], voltage: float | None) -> MeterReading:
    """The latest power, energy register, SoC and phase currents found in the samples, in the
    order given. ``voltage`` (V, phase to neutral) turns phase currents into power when a meter
    value reports no power; None where that means nothing (a DC charger): the currents are
    still returned, but give no power.

    Runs for every MeterValues, so the spec defaults are applied inline (an absent
    measurand is the energy register, an absent location the outlet).
    """
    power: float | None = None
    energy: float | None = None
    soc: float | None = None
    currents: PhaseCurrents | None = None
    for meter_value in meter_values:
        total_power: float | None = None
        phase_power: list[float | None] | None = None
        phase_current: list[float | None] | None = None
        for sample in meter_value.sampled_value:
            measurand = sample.measurand or _ENERGY
            location = sample.location
            if (
                location is not None
                and location is not _OUTLET
                and measurand is not _SOC  # the vehicle's own measure
            ):
                continue
            value = _number(sample)
            if value is None:
                continue
            if measurand is _POWER:
                kw = _power_kw(sample.unit, value)
                if kw is None:
                    continue
                if sample.phase is None:
                    total_power = kw
                elif (index := _PHASE_INDEX.get(sample.phase)) is not None:
                    if phase_power is None:
                        phase_power = [None, None, None]
                    phase_power[index] = kw
            elif measurand is _ENERGY and sample.phase is None:
                kwh = _energy_kwh(sample.unit, value)
                if kwh is not None:
                    energy = kwh
            elif measurand is _SOC:
                soc = min(max(value, 0.0), 100.0)
            elif measurand is _CURRENT:
                # A is the only unit of current; an absent unit is taken as A (the spec's
                # default, Wh, cannot be meant). A current without a phase says nothing of
                # which phases carry it, so it is not read.
                index = _PHASE_INDEX.get(sample.phase)
                unit = sample.unit
                if index is None or (unit is not None and unit is not _AMPS):
                    continue
                if phase_current is None:
                    phase_current = [None, None, None]
                phase_current[index] = value if value > 0.0 else 0.0
        if total_power is not None:
            power = total_power
        elif phase_power is not None:
            power = sum(kw for kw in phase_power if kw is not None)
        elif phase_current is not None and voltage is not None:
            amps = sum(a for a in phase_current if a is not None)
            power = amps * voltage / 1000.0
        if phase_current is not None:
            currents = (phase_current[0], phase_current[1], phase_current[2])
    if power is not None:
        power = max(power, 0.0)
    return MeterReading(
        power_kw=power, energy_register_kwh=energy, soc_percent=soc, phase_currents=currents
    )
