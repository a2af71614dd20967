"""MeterValues -> kW and kWh (docs/ocpp.md, "Meter values"; OCPP 1.6 sections 7.32, 7.43).

Pure. Only the outlet's active import is read (what the vehicle draws): a
``location`` of Inlet or EV measures something else. Power comes as a total
or per phase (summed when no total is given); units W or kW for power, Wh or
kWh for the energy register, the spec defaults being the energy register in
Wh. Values are strings on the wire; one that is not a number is skipped
rather than failing the whole message, which must be answered anyway. A number
of 2**53 or more in magnitude (a double no longer holds every integer there,
and no meter reads that much) is out of range: the whole message is refused
with a PropertyConstraintViolation (docs/security-input.md), before anything
of it counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from protocol import PropertyConstraintViolation
from protocol.messages import (
    Location,
    Measurand,
    MeterValue,
    SampledValue,
    UnitOfMeasure,
    ValueFormat,
)
from protocol.messages.base import METER_MAX

# Phase-to-neutral and phase readings both count; N (neutral) and line-to-line
# voltages' phases (L1-L2 ...) describe no separate power flow.
_SUMMED_PHASES = {"L1", "L2", "L3", "L1-N", "L2-N", "L3-N"}


@dataclass(frozen=True, slots=True)
class MeterReading:
    power_kw: float | None = None
    energy_register_kwh: float | None = None
    soc_percent: float | None = None


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


def read_meter_values(meter_values: Iterable[MeterValue]) -> MeterReading:
    """The latest power, energy register and SoC found in the samples, in order given.

    Runs for every MeterValues, so the spec defaults are applied inline (an absent
    measurand is the energy register, an absent location the outlet).
    """
    power: float | None = None
    energy: float | None = None
    soc: float | None = None
    for meter_value in meter_values:
        total_power: float | None = None
        phase_power: dict[str, float] = {}
        for sample in meter_value.sampled_value:
            location = sample.location
            if location is not None and location is not Location.OUTLET:
                continue
            value = _number(sample)
            if value is None:
                continue
            measurand = sample.measurand or Measurand.ENERGY_ACTIVE_IMPORT_REGISTER
            if measurand is Measurand.POWER_ACTIVE_IMPORT:
                kw = _power_kw(sample.unit, value)
                if kw is None:
                    continue
                if sample.phase is None:
                    total_power = kw
                elif sample.phase.value in _SUMMED_PHASES:
                    phase_power[sample.phase.value] = kw
            elif measurand is Measurand.ENERGY_ACTIVE_IMPORT_REGISTER and sample.phase is None:
                kwh = _energy_kwh(sample.unit, value)
                if kwh is not None:
                    energy = kwh
            elif measurand is Measurand.SOC:
                soc = min(max(value, 0.0), 100.0)
        if total_power is not None:
            power = total_power
        elif phase_power:
            power = sum(phase_power.values())
    if power is not None:
        power = max(power, 0.0)
    return MeterReading(power_kw=power, energy_register_kwh=energy, soc_percent=soc)
