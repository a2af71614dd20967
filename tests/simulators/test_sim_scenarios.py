"""Scenario files: validation naming the field, deterministic generation, shipped scenarios."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from controller.config import config_from_dict
from protocol.messages import ChargingRateUnitType
from simulators.scenarios import (
    SCENARIO_DIR,
    ConnectorPool,
    ScenarioError,
    charger_specs,
    load_scenario,
    parse_scenario,
)

ROOT = Path(__file__).resolve().parents[2]
STATION = json.loads((ROOT / "config.json").read_text())


def listed(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "t",
        "station": copy.deepcopy(STATION),
        "durationHours": 2,
        "arrivals": [
            {"arrival": 0, "departure": 600, "batteryKwh": 60, "soc": 0.2, "maxPowerKw": 100},
            {
                "id": "bay",
                "chargerId": "CP003",
                "connector": 2,
                "arrival": 60,
                "departure": 3600,
                "batteryKwh": 80,
                "soc": 0.5,
                "targetEnergyKwh": 20,
                "maxPowerKw": 50,
                "curve": "ac",
            },
        ],
    }
    data.update(changes)
    return data


def generated(**changes: Any) -> dict[str, Any]:
    generator: dict[str, Any] = {
        "seed": 1,
        "vehiclesPerHour": [4] * 24,
        "dwellMinutes": [10, 60],
        "vehicleTypes": [
            {"name": "car", "weight": 3, "batteryKwh": [40, 80], "maxPowerKw": 150},
            {"name": "van", "batteryKwh": [60, 90], "maxPowerKw": 50, "chargers": ["CP001"]},
        ],
    }
    generator.update(changes)
    return {"name": "g", "station": copy.deepcopy(STATION), "generator": generator}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(json.dumps(data))
    return info.value.problems


def test_listed_arrivals_become_vehicles_in_arrival_order() -> None:
    scenario = parse_scenario(json.dumps(listed()))
    first, bay = scenario.visits()
    assert (first.vehicle.vehicle_id, first.charger_id, first.connector_id) == ("V0001", None, None)
    assert (bay.vehicle.vehicle_id, bay.charger_id, bay.connector_id) == ("bay", "CP003", 2)
    assert bay.vehicle.requested_kwh == 20
    assert bay.vehicle.curve.taper_from_soc == 0.95  # the AC shape
    assert scenario.meter_interval == 60 and scenario.duration_s == 7200


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"durationHours": 0}, "durationHours: must be greater than 0"),
        (
            {"station": {**STATION, "gridCapacity": -1}},
            "station.gridCapacity: must be greater than 0",
        ),
        (
            {"generator": generated()["generator"]},
            "(root): give either arrivals or generator, not both",
        ),
        ({"arrivals": None}, "(root): give either arrivals or generator, not both"),
        ({"extra": 1}, "extra: is not a known field"),
    ],
)
def test_errors_name_the_field(change: dict[str, Any], expected: str) -> None:
    assert expected in problems(listed(**change))


def test_vehicle_errors_name_the_vehicle() -> None:
    data = listed()
    data["arrivals"][0]["departure"] = 0
    data["arrivals"][1]["soc"] = 1.5
    found = problems(data)
    assert "arrivals[0]: departure must be after arrival" in found
    assert "arrivals[1].soc: must be at most 1" in found


def test_references_are_checked() -> None:
    data = listed()
    data["arrivals"][1]["chargerId"] = "CP009"
    data["arrivals"][0].update(arrival=7200, departure=7300)
    found = problems(data)
    assert "arrivals[1].chargerId: unknown charger 'CP009'" in found
    assert "arrivals[0].arrival: must be within durationHours" in found
    data = listed()
    data["arrivals"][1]["connector"] = 3
    assert problems(data) == ["arrivals[1].connector: CP003 has 2"]
    unknown_type = generated()
    unknown_type["generator"]["vehicleTypes"][1]["chargers"] = ["NOPE"]
    assert problems(unknown_type) == [
        "generator.vehicleTypes[1].chargers[0]: unknown charger 'NOPE'"
    ]


def test_station_rules_of_the_controller_apply() -> None:
    station = {**STATION, "groups": [{"id": "g", "maxPower": 10, "chargers": ["CPX"]}]}
    assert problems(listed(station=station)) == [
        "station.groups[0].chargers[0]: unknown charger 'CPX'"
    ]


def test_generator_ranges_and_hours_are_checked() -> None:
    found = problems(generated(vehiclesPerHour=[1] * 23, dwellMinutes=[60, 10]))
    assert "generator.vehiclesPerHour: must have at least 24 item(s)" in found
    found = problems(generated(dwellMinutes=[60, 10]))
    assert found == ["generator: dwellMinutes: the minimum must not exceed the maximum"]


def test_same_seed_same_day_other_seed_other_day() -> None:
    def day(seed: int) -> list[tuple[str, float, float, float, float]]:
        scenario = parse_scenario(json.dumps(generated(seed=seed)))
        return [
            (
                v.vehicle.vehicle_id,
                v.vehicle.arrival,
                v.vehicle.departure,
                v.vehicle.battery_kwh,
                v.vehicle.soc,
            )
            for v in scenario.visits()
        ]

    assert day(1) == day(1)
    assert day(1) != day(2)


def test_generated_day_follows_the_hourly_shape() -> None:
    rates = [0.0] * 24
    rates[12] = 30.0
    scenario = parse_scenario(json.dumps(generated(vehiclesPerHour=rates)))
    visits = scenario.visits()
    assert 10 <= len(visits) <= 60
    assert all(12 * 3600 <= v.vehicle.arrival < 13 * 3600 for v in visits)
    assert all(600 <= v.vehicle.departure - v.vehicle.arrival <= 3600 for v in visits)
    vans = [v for v in visits if v.vehicle.vehicle_id.startswith("van")]
    assert vans and all(v.chargers == ("CP001",) for v in vans)


@pytest.mark.parametrize("name", ["motorway", "depot", "carpark"])
def test_shipped_scenarios_load_and_their_station_loads_in_the_controller(name: str) -> None:
    scenario = load_scenario(name)
    assert load_scenario(SCENARIO_DIR / f"{name}.json") == scenario
    raw = json.loads((SCENARIO_DIR / f"{name}.json").read_text())
    assert config_from_dict(raw["station"]) == scenario.station
    visits = scenario.visits()
    assert visits and all(v.vehicle.arrival < scenario.duration_s for v in visits)


def test_the_motorway_scenario_is_the_original_station() -> None:
    scenario = load_scenario("motorway")
    assert scenario.station.chargers == config_from_dict(STATION).chargers
    assert scenario.station.battery == config_from_dict(STATION).battery


def test_with_strategy_keeps_the_day() -> None:
    fair = load_scenario("carpark")
    even = fair.with_strategy("even-split")
    assert even.station.allocation.strategy.value == "even-split"
    assert [v.vehicle for v in even.visits()] == [v.vehicle for v in fair.visits()]


def test_missing_file_and_bad_json() -> None:
    with pytest.raises(ScenarioError, match="cannot read file"):
        load_scenario("/nonexistent/scenario.json")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        parse_scenario("{")


def test_connector_pool_prefers_idle_chargers() -> None:
    pool = ConnectorPool(config_from_dict(STATION))
    assert pool.acquire() == ("CP001", 1)
    assert pool.acquire() == ("CP002", 1)  # an idle charger beats CP001's second connector
    assert pool.acquire() == ("CP003", 1)
    assert pool.acquire() == ("CP001", 2)
    assert pool.acquire("CP003", 1) is None  # taken
    assert pool.acquire("CP003") == ("CP003", 2)
    assert pool.acquire(among=["CP001", "CP003"]) is None
    pool.release("CP001", 2)
    assert pool.acquire(among=["CP001", "CP003"]) == ("CP001", 2)
    assert pool.busy == 5
    with pytest.raises(ValueError):
        pool.acquire("CP001", 3)


def test_charger_specs_follow_the_station() -> None:
    depot = load_scenario("depot")
    specs = {s.charge_point_id: s for s in charger_specs(depot.station)}
    assert specs["BUS01"].max_power_w == 150_000
    assert specs["BUS01"].rate_units == (ChargingRateUnitType.A, ChargingRateUnitType.W)
    assert specs["VAN01"].rate_units == (ChargingRateUnitType.A,)
    assert specs["VAN01"].connectors == 1
