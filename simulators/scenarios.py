"""Scenario files: a station (the controller's own ``config.json`` format) plus the vehicles
that visit it during a simulated day, listed or drawn from a seeded generator.

Validation is pydantic with the controller's error wording: every problem is one line naming
the field path (``arrivals[3].departure: must be after arrival``), and the station block is
validated by :mod:`controller.config` itself, so a scenario's station always loads in the
controller. Generated arrivals are a non-homogeneous Poisson process whose rate is
``vehiclesPerHour[hour of day]``; the same seed always gives the same vehicles.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from controller.config import (
    ACElectrical,
    ModbusMeterConfig,
    StationConfig,
    cross_field_problems,
    validation_problems,
)
from protocol.messages import ChargingRateUnitType
from simulators.charger import AcSupply, ChargerSpec
from simulators.site import Profile, SiteProfile
from simulators.vehicles import ChargingCurve, CurveKind, Vehicle

__all__ = [
    "NOMINAL_VOLTAGE",
    "SCENARIO_DIR",
    "ChargerQuirks",
    "ConnectorPool",
    "GeneratorSpec",
    "PlannedVisit",
    "Scenario",
    "ScenarioError",
    "SiteSpec",
    "SolarSpec",
    "VehicleSpec",
    "VehicleType",
    "charger_specs",
    "load_scenario",
    "parse_scenario",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
# The voltage an AC vehicle's maxCurrent is turned into kW with when maxPowerKw is not given.
NOMINAL_VOLTAGE = 230.0

Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Hour = Annotated[float, Field(ge=0, le=24, allow_inf_nan=False)]
# (hour of the day, kW): linear in between, two points at one hour make a step.
ProfilePoints = tuple[tuple[Hour, NonNegative], ...]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=True
    )


def _invalid(message: str) -> PydanticCustomError:
    # A custom error keeps the message as written ("Value error, ..." otherwise).
    return PydanticCustomError("scenario", message)


def _ordered(pair: tuple[float, float], name: str) -> None:
    if pair[0] > pair[1]:
        raise _invalid(f"{name}: the minimum must not exceed the maximum")


VehiclePhases = Literal[1, 2, 3]


def _vehicle_kw(
    max_power_kw: float | None, phases: int | None, max_current: float | None
) -> float | None:
    """A vehicle's maximum in kW: as given, else what its onboard charger's current allows on
    its phases at the nominal voltage (None: not enough to say)."""
    if max_power_kw is not None:
        return max_power_kw
    if phases is None or max_current is None:
        return None
    return max_current * NOMINAL_VOLTAGE * phases / 1000


class VehicleSpec(_Model):
    """One listed visit. ``chargerId`` absent (or ``"any"``): any free connector;
    ``connector`` is the OCPP connector id (1-based) on that charger."""

    id: str | None = None
    charger_id: str | None = None
    connector: Annotated[int, Field(ge=1)] | None = None
    arrival: Seconds
    departure: Seconds
    battery_kwh: Positive
    soc: Fraction
    target_soc: Fraction = 1.0
    target_energy_kwh: NonNegative | None = None
    max_power_kw: Positive | None = None
    curve: CurveKind = CurveKind.DC
    leave_when_done: bool = False
    # An AC onboard charger: the phases it draws on and its current per phase (A).
    phases: VehiclePhases | None = None
    max_current: Positive | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.departure <= self.arrival:
            raise _invalid("departure must be after arrival")
        if _vehicle_kw(self.max_power_kw, self.phases, self.max_current) is None:
            raise _invalid("give maxPowerKw, or phases and maxCurrent")
        if self.connector is not None and self.charger_id in (None, "any"):
            raise _invalid("a connector needs a chargerId")
        return self


class VehicleType(_Model):
    """A kind of vehicle the generator draws, with probability proportional to ``weight``."""

    name: str
    weight: Positive = 1.0
    battery_kwh: tuple[Positive, Positive]
    max_power_kw: Positive | None = None
    curve: CurveKind = CurveKind.DC
    chargers: tuple[str, ...] = ()  # the chargers it may use; empty: any
    phases: VehiclePhases | None = None
    max_current: Positive | None = None

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        _ordered(self.battery_kwh, "batteryKwh")
        if _vehicle_kw(self.max_power_kw, self.phases, self.max_current) is None:
            raise _invalid("give maxPowerKw, or phases and maxCurrent")
        return self


class GeneratorSpec(_Model):
    seed: int
    vehicles_per_hour: Annotated[tuple[NonNegative, ...], Field(min_length=24, max_length=24)]
    dwell_minutes: tuple[Positive, Positive]
    soc: tuple[Fraction, Fraction] = (0.1, 0.5)
    target_soc: tuple[Fraction, Fraction] = (0.8, 1.0)
    vehicle_types: Annotated[tuple[VehicleType, ...], Field(min_length=1)]
    leave_when_done: bool = False

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        _ordered(self.dwell_minutes, "dwellMinutes")
        _ordered(self.soc, "soc")
        _ordered(self.target_soc, "targetSoc")
        return self


class SolarSpec(_Model):
    """Solar panels behind the connection: a clear day's half sine from ``sunrise`` to
    ``sunset`` (hours) peaking at ``peakKw``, or ``points`` like a building's."""

    peak_kw: Positive | None = None
    sunrise: Hour = 6.0
    sunset: Hour = 20.0
    points: ProfilePoints | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        if (self.peak_kw is None) == (self.points is None):
            raise _invalid("give either peakKw or points, not both")
        if self.sunset <= self.sunrise:
            raise _invalid("sunset must be after sunrise")
        return self


class SiteSpec(_Model):
    """The rest of the site on the station's grid connection (simulators/README.md)."""

    building: ProfilePoints = ()
    solar: SolarSpec | None = None
    # The connection's limit the report holds the site to; default station.gridCapacity.
    connection_limit_kw: Positive | None = None

    def profile(self) -> SiteProfile:
        solar = self.solar
        return SiteProfile(
            building=Profile(self.building),
            solar=None if solar is None or solar.points is None else Profile(solar.points),
            solar_peak_kw=0.0 if solar is None or solar.peak_kw is None else solar.peak_kw,
            sunrise_h=6.0 if solar is None else solar.sunrise,
            sunset_h=20.0 if solar is None else solar.sunset,
        )


class ChargerQuirks(_Model):
    """How a simulated charger departs from the rules (simulator only, not controller config):
    ``belowMinimum`` ``"clamp"`` draws the AC minimum current when sent less, as some hardware
    does, instead of suspending the car."""

    below_minimum: Literal["suspend", "clamp"] = "suspend"


class Scenario(_Model):
    name: str
    description: str = ""
    station: StationConfig
    # The controller's own config when it is not ``station`` (ev-sim --compare kw-only): the
    # chargers, vehicles and the limits the report holds the day to always follow ``station``.
    controller_station: StationConfig | None = None
    charger_quirks: dict[str, ChargerQuirks] = Field(default_factory=dict)
    duration_hours: Annotated[float, Field(gt=0, le=168)] = 24.0
    meter_interval: Annotated[int, Field(ge=1)] = 60
    arrivals: tuple[VehicleSpec, ...] | None = None
    generator: GeneratorSpec | None = None
    site: SiteSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.arrivals is None) == (self.generator is None):
            raise _invalid("give either arrivals or generator, not both")
        return self

    @property
    def duration_s(self) -> float:
        return self.duration_hours * 3600

    def visits(self) -> list[PlannedVisit]:
        """Every visit of the day, in arrival order (ties: listing order)."""
        if self.arrivals is not None:
            planned = [_listed(i, spec) for i, spec in enumerate(self.arrivals)]
        else:
            assert self.generator is not None
            planned = _generate(self.generator, self.duration_s)
        return sorted(planned, key=lambda v: v.vehicle.arrival)

    def with_strategy(self, strategy: str) -> Scenario:
        """The same day with another allocation strategy (for comparisons)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key in ("station", "controllerStation"):
            if key in data:
                data[key].setdefault("allocation", {})["strategy"] = strategy
        return parse_scenario(json.dumps(data))

    @property
    def controller_config(self) -> StationConfig:
        """What the controller runs: ``controllerStation`` if given, else ``station``."""
        return self.station if self.controller_station is None else self.controller_station

    def kw_only(self) -> Scenario:
        """The same day with a controller that knows nothing of amps and phases: its config
        loses every charger's ``electrical``, ``gridCurrentLimit`` and the groups'
        ``maxCurrent`` (a group with only a current limit gets the power that allows on three
        balanced phases), and ``gridCapacity`` becomes at most what ``gridCurrentLimit``
        allows balanced (3 x 230 V x the limit). The chargers, the vehicles and the limits the
        report holds the day to stay those of ``station``."""
        if not self.station.has_electrical_model:
            raise ScenarioError(
                [
                    "station: kw-only needs a station with the electrical model (electrical, "
                    "gridCurrentLimit or a group's maxCurrent)"
                ]
            )
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        controller = data["station"]
        limit = controller.pop("gridCurrentLimit", None)
        if limit is not None:
            balanced = _balanced_kw(limit)
            controller["gridCapacity"] = min(controller["gridCapacity"], balanced)
        for charger in controller["chargers"]:
            electrical = charger.pop("electrical", None)
            if electrical is not None and electrical.get("kind") == "AC":
                charger["phases"] = electrical.get("phases", 3)
                charger["voltage"] = electrical.get("voltage", 230.0)
        _strip_group_currents(controller.get("groups", []))
        data["controllerStation"] = controller
        data["station"] = self.model_dump(mode="json", by_alias=True, exclude_none=True)["station"]
        return parse_scenario(json.dumps(data))

    @property
    def meter(self) -> ModbusMeterConfig | None:
        """The Modbus meter the controller reads, if its station has one."""
        meter = self.controller_config.site.meter
        return meter if isinstance(meter, ModbusMeterConfig) else None

    @property
    def connection_limit_kw(self) -> float | None:
        """The grid connection's limit the site is held to (None: no site is simulated)."""
        if self.site is None:
            return None
        limit = self.site.connection_limit_kw
        return self.station.grid_capacity if limit is None else limit

    def fixed_capacity(self) -> Scenario:
        """The same day without a meter, on the fixed capacity an operator would need to be
        safe without one: the connection's limit minus the building's peak (solar, which a
        cloud takes away, not counted)."""
        limit = self.connection_limit_kw
        if self.site is None or limit is None:
            raise ScenarioError(["site: the scenario has no site to compare with"])
        capacity = limit - self.site.profile().building.peak
        if capacity <= 0:
            raise ScenarioError(
                [
                    f"site.building: peaks at {self.site.profile().building.peak:g} kW, the "
                    f"connection's whole {limit:g} kW: no fixed capacity is left for charging"
                ]
            )
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["station"]["gridCapacity"] = capacity
        data["station"].setdefault("site", {}).pop("meter", None)
        data["site"]["connectionLimitKw"] = limit
        return parse_scenario(json.dumps(data))


def _balanced_kw(amps: float) -> float:
    """kW that ``amps`` per phase carry on three balanced phases at the nominal voltage."""
    return 3 * NOMINAL_VOLTAGE * amps / 1000


def _strip_group_currents(groups: list[dict[str, object]]) -> None:
    for group in groups:
        amps = group.pop("maxCurrent", None)
        if amps is not None and "maxPower" not in group:
            assert isinstance(amps, float | int)
            group["maxPower"] = _balanced_kw(amps)
        children = group.get("groups", [])
        assert isinstance(children, list)
        _strip_group_currents(children)


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    vehicle: Vehicle
    charger_id: str | None = None  # None: any free connector
    connector_id: int | None = None
    chargers: tuple[str, ...] = ()  # restricts "any" to these chargers


class ScenarioError(Exception):
    """The scenario cannot be used; ``problems`` holds one line per field."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def parse_scenario(text: str | bytes) -> Scenario:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScenarioError(
            [f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"]
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(["(root): must be a JSON object"])
    try:
        scenario = Scenario.model_validate_json(text)
    except ValidationError as error:
        raise ScenarioError(validation_problems(error)) from None
    problems = [f"station.{p}" for p in cross_field_problems(scenario.station)]
    if scenario.controller_station is not None:
        problems += [
            f"controllerStation.{p}" for p in cross_field_problems(scenario.controller_station)
        ]
        problems += _controller_station_problems(scenario)
    problems += _reference_problems(scenario)
    problems += _quirk_problems(scenario)
    problems += _site_problems(scenario)
    if problems:
        raise ScenarioError(problems)
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    """A scenario file; a bare name such as ``motorway`` means a shipped scenario."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and (SCENARIO_DIR / f"{path}.json").exists():
        path = SCENARIO_DIR / f"{path}.json"
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ScenarioError([f"{path}: cannot read file ({error.strerror})"]) from None
    return parse_scenario(text)


def _reference_problems(scenario: Scenario) -> list[str]:
    chargers = {c.id: c for c in scenario.station.chargers}
    problems: list[str] = []
    for i, spec in enumerate(scenario.arrivals or ()):
        where = f"arrivals[{i}]"
        if spec.arrival >= scenario.duration_s:
            problems.append(f"{where}.arrival: must be within durationHours")
        if spec.charger_id in (None, "any"):
            continue
        charger = chargers.get(spec.charger_id)
        if charger is None:
            problems.append(f"{where}.chargerId: unknown charger {spec.charger_id!r}")
        elif spec.connector is not None and spec.connector > charger.connectors:
            problems.append(f"{where}.connector: {spec.charger_id} has {charger.connectors}")
    if scenario.generator is not None:
        for i, kind in enumerate(scenario.generator.vehicle_types):
            for j, charger_id in enumerate(kind.chargers):
                if charger_id not in chargers:
                    problems.append(
                        f"generator.vehicleTypes[{i}].chargers[{j}]: unknown charger {charger_id!r}"
                    )
    return problems


def _controller_station_problems(scenario: Scenario) -> list[str]:
    controller = scenario.controller_station
    assert controller is not None
    physical = {c.id: c.connectors for c in scenario.station.chargers}
    if {c.id: c.connectors for c in controller.chargers} != physical:
        return ["controllerStation.chargers: must be the station's chargers and connectors"]
    return []


def _quirk_problems(scenario: Scenario) -> list[str]:
    problems: list[str] = []
    for charger_id in scenario.charger_quirks:
        charger = scenario.station.charger(charger_id)
        if charger is None:
            problems.append(f"chargerQuirks.{charger_id}: unknown charger")
        elif charger.ac is None:
            problems.append(
                f"chargerQuirks.{charger_id}.belowMinimum: only an AC charger (electrical "
                "kind AC) has a minimum current"
            )
    return problems


def _profile_problems(points: ProfilePoints, where: str) -> list[str]:
    problems: list[str] = []
    for i in range(1, len(points)):
        hour, before = points[i][0], points[i - 1][0]
        if hour < before:
            problems.append(f"{where}[{i}]: hour {hour:g} comes before the previous {before:g}")
        elif i >= 2 and hour == before == points[i - 2][0]:
            problems.append(f"{where}[{i}]: a third point at hour {hour:g} (a step takes two)")
    return problems


def _site_problems(scenario: Scenario) -> list[str]:
    problems: list[str] = []
    meter = scenario.station.site.meter
    if meter is not None and meter.type != "modbus":
        problems.append(
            f"station.site.meter.type: ev-sim serves a Modbus TCP meter; {meter.type!r} is "
            "not simulated"
        )
    site = scenario.site
    if site is None:
        return problems
    problems += _profile_problems(site.building, "site.building")
    if site.solar is not None and site.solar.points is not None:
        problems += _profile_problems(site.solar.points, "site.solar.points")
    return problems


def _listed(index: int, spec: VehicleSpec) -> PlannedVisit:
    max_kw = _vehicle_kw(spec.max_power_kw, spec.phases, spec.max_current)
    assert max_kw is not None  # validated
    vehicle = Vehicle(
        vehicle_id=spec.id or f"V{index + 1:04d}",
        arrival=spec.arrival,
        departure=spec.departure,
        battery_kwh=spec.battery_kwh,
        soc=spec.soc,
        curve=ChargingCurve.of(spec.curve, max_kw),
        target_soc=spec.target_soc,
        target_energy_kwh=spec.target_energy_kwh,
        leave_when_done=spec.leave_when_done,
        phases=spec.phases,
        max_current=spec.max_current,
    )
    charger = None if spec.charger_id == "any" else spec.charger_id
    return PlannedVisit(vehicle, charger, spec.connector)


def _arrival_times(rng: random.Random, per_hour: Sequence[float], duration_s: float) -> list[float]:
    """Poisson arrivals with a rate that is constant within each hour of the day. Within an
    hour the gaps are exponential; a gap that crosses the hour restarts at the boundary with the
    next hour's rate (memorylessness makes that exact)."""
    times: list[float] = []
    for hour in range(math.ceil(duration_s / 3600)):
        rate = per_hour[hour % 24] / 3600
        t, end = hour * 3600.0, min((hour + 1) * 3600.0, duration_s)
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= end:
                break
            times.append(float(round(t)))
    return times


def _generate(spec: GeneratorSpec, duration_s: float) -> list[PlannedVisit]:
    rng = random.Random(spec.seed)
    kinds = spec.vehicle_types
    weights = [k.weight for k in kinds]
    visits: list[PlannedVisit] = []
    for index, arrival in enumerate(_arrival_times(rng, spec.vehicles_per_hour, duration_s)):
        kind = rng.choices(kinds, weights)[0]
        soc = round(rng.uniform(*spec.soc), 3)
        target = max(soc, round(rng.uniform(*spec.target_soc), 3))
        dwell = round(rng.uniform(*spec.dwell_minutes) * 60)
        max_kw = _vehicle_kw(kind.max_power_kw, kind.phases, kind.max_current)
        assert max_kw is not None  # validated
        vehicle = Vehicle(
            vehicle_id=f"{kind.name}-{index + 1:04d}",
            arrival=arrival,
            departure=arrival + dwell,
            battery_kwh=round(rng.uniform(*kind.battery_kwh), 1),
            soc=soc,
            curve=ChargingCurve.of(kind.curve, max_kw),
            target_soc=target,
            leave_when_done=spec.leave_when_done,
            phases=kind.phases,
            max_current=kind.max_current,
        )
        visits.append(PlannedVisit(vehicle, chargers=kind.chargers))
    return visits


def charger_specs(
    station: StationConfig, quirks: dict[str, ChargerQuirks] | None = None
) -> list[ChargerSpec]:
    """Simulated hardware for each charger of a station config (kW -> W): an AC charger
    (``electrical`` of kind AC) with its phases, voltage, minimum and maximum current and
    wiring, and the quirks the scenario gives it."""
    quirks = quirks or {}
    specs = []
    for charger in station.chargers:
        ac = charger.ac
        supply = None if ac is None else _ac_supply(charger.max_power, ac, quirks.get(charger.id))
        units = (
            (ChargingRateUnitType.A,)
            if charger.rate_unit == "A"
            else (ChargingRateUnitType.A, ChargingRateUnitType.W)
        )
        specs.append(
            ChargerSpec(
                charge_point_id=charger.id,
                connectors=charger.connectors,
                max_power_w=charger.max_power * 1000,
                voltage=charger.voltage if ac is None else ac.voltage,
                phases=charger.phases if ac is None else ac.phases,
                smart_charging=charger.smart_charging,
                rate_units=units,
                ac=supply,
            )
        )
    return specs


def _ac_supply(max_power_kw: float, ac: ACElectrical, quirks: ChargerQuirks | None) -> AcSupply:
    # maxCurrent defaults to what maxPower allows (docs/configuration.md); maxPower caps the
    # charger's draw either way (ChargerSpec.max_power_w).
    most = max_power_kw * 1000 / (ac.voltage * ac.phases)
    return AcSupply(
        min_current=ac.min_current,
        max_current=most if ac.max_current is None else ac.max_current,
        wiring=ac.site_phases(),
        below_minimum="suspend" if quirks is None else quirks.below_minimum,
    )


class ConnectorPool:
    """Which connectors are taken, and where a driver who takes "any free connector" plugs in:
    a charger with the fewest busy connectors (drivers prefer an idle charger, and it shares
    the charger's power with nobody), ties in config order, then the lowest connector id."""

    def __init__(self, station: StationConfig) -> None:
        self._connectors = {c.id: c.connectors for c in station.chargers}
        self._busy: set[tuple[str, int]] = set()

    def is_free(self, charger_id: str, connector_id: int) -> bool:
        return (charger_id, connector_id) not in self._busy

    def acquire(
        self,
        charger_id: str | None = None,
        connector_id: int | None = None,
        among: Sequence[str] = (),
    ) -> tuple[str, int] | None:
        """Take a connector; None when the wanted one (or every candidate) is busy."""
        choice: tuple[str, int] | None = None
        if charger_id is not None and connector_id is not None:
            if connector_id > self._connectors.get(charger_id, 0):
                raise ValueError(f"no connector {connector_id} on {charger_id!r}")
            if self.is_free(charger_id, connector_id):
                choice = (charger_id, connector_id)
        else:
            names = [charger_id] if charger_id is not None else list(among or self._connectors)
            best = math.inf
            for name in names:
                free = [n for n in range(1, self._connectors[name] + 1) if self.is_free(name, n)]
                busy = self._connectors[name] - len(free)
                if free and busy < best:
                    choice, best = (name, free[0]), busy
        if choice is not None:
            self._busy.add(choice)
        return choice

    def release(self, charger_id: str, connector_id: int) -> None:
        self._busy.discard((charger_id, connector_id))

    @property
    def busy(self) -> int:
        return len(self._busy)
