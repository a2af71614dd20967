"""Configuration loading (docs/configuration.md): every problem named by its field path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from allocator.electrical_types import ACCharger
from controller.config import ConfigError, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE: dict[str, Any] = {
    "stationId": "EV_STATION_PARIS_15",
    "gridCapacity": 400,
    "chargers": [
        {"id": "CP001", "maxPower": 200, "connectors": 2},
        {"id": "CP002", "maxPower": 200, "connectors": 2},
        {"id": "CP003", "maxPower": 300, "connectors": 2},
    ],
    "battery": {"initialCapacity": 200, "power": 100},
}


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    return caught.value.problems


def test_shipped_config_is_the_spec_example() -> None:
    config = load_config(ROOT / "config.json")
    assert json.loads((ROOT / "config.json").read_text()) == EXAMPLE
    assert config.station_id == "EV_STATION_PARIS_15"
    assert config.grid_capacity == 400
    assert [c.id for c in config.chargers] == ["CP001", "CP002", "CP003"]
    assert config.battery is not None and config.battery.initial_capacity == 200
    assert config.allocation.strategy == "fair"
    assert config.server.rest_port == 4567 and config.server.ocpp_port == 9000


def test_battery_is_optional() -> None:
    data = {k: v for k, v in EXAMPLE.items() if k != "battery"}
    assert config_from_dict(data).battery is None


def test_groups_and_strategy_extensions() -> None:
    data = {
        **EXAMPLE,
        "groups": [
            {
                "id": "feeder-A",
                "maxPower": 300,
                "chargers": ["CP001"],
                "groups": [{"id": "cable-1", "maxPower": 150, "chargers": ["CP002"]}],
            }
        ],
        "allocation": {"strategy": "even-split"},
    }
    config = config_from_dict(data)
    tree = config.tree()
    assert tree.groups[0].id == "feeder-A"
    assert tree.groups[0].groups[0].chargers == ("CP002",)
    assert config.allocation.strategy == "even-split"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"gridCapacity": 0}, "gridCapacity: must be greater than 0"),
        ({"gridCapacity": "400"}, "gridCapacity: must be a number"),
        ({"gridCapacity": True}, "gridCapacity: must be a number"),
        ({"gridCapacity": 1e300}, "gridCapacity: must be at most 1000000"),
        ({"stationId": ""}, "stationId: must have at least 1 character(s)"),
        ({"chargers": []}, "chargers: must list at least one charger"),
        (
            {"battery": {"initialCapacity": -1, "power": 5}},
            "battery.initialCapacity: must be at least 0",
        ),
        ({"battery": {"initialCapacity": 1, "power": -5}}, "battery.power: must be at least 0"),
        ({"battery": {"initialCapacity": 1}}, "battery.power: is required"),
        (
            {"allocation": {"strategy": "greedy"}},
            "allocation.strategy: must be one of 'fair' or 'even-split'",
        ),
        ({"gridCapcity": 400}, "gridCapcity: is not a known field"),
    ],
)
def test_invalid_top_level_fields(change: dict[str, Any], expected: str) -> None:
    assert expected in problems({**EXAMPLE, **change})


@pytest.mark.parametrize(
    ("charger", "expected"),
    [
        (
            {"id": "X", "maxPower": 0, "connectors": 1},
            "chargers[1].maxPower: must be greater than 0",
        ),
        (
            {"id": "X", "maxPower": -3, "connectors": 1},
            "chargers[1].maxPower: must be greater than 0",
        ),
        (
            {"id": "X", "maxPower": 50, "connectors": 0},
            "chargers[1].connectors: must be at least 1",
        ),
        (
            {"id": "X", "maxPower": 50, "connectors": 1.5},
            "chargers[1].connectors: must be an integer",
        ),
        (
            {"id": "", "maxPower": 50, "connectors": 1},
            "chargers[1].id: must have at least 1 character(s)",
        ),
        ({"maxPower": 50, "connectors": 1}, "chargers[1].id: is required"),
        (
            {"id": "CP001", "maxPower": 50, "connectors": 1},
            "chargers[1].id: duplicate charger id 'CP001'",
        ),
    ],
)
def test_invalid_charger_fields(charger: dict[str, Any], expected: str) -> None:
    data = {**EXAMPLE, "chargers": [EXAMPLE["chargers"][0], charger]}
    assert expected in problems(data)


def test_every_problem_is_reported_at_once() -> None:
    data = {
        **EXAMPLE,
        "gridCapacity": -1,
        "chargers": [{"id": "A", "maxPower": 0, "connectors": 0}],
    }
    assert problems(data) == [
        "gridCapacity: must be greater than 0",
        "chargers[0].maxPower: must be greater than 0",
        "chargers[0].connectors: must be at least 1",
    ]


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (
            [{"id": "g", "maxPower": 10, "chargers": ["NOPE"]}],
            "groups[0].chargers[0]: unknown charger 'NOPE'",
        ),
        (
            [
                {"id": "g", "maxPower": 10, "chargers": ["CP001"]},
                {"id": "h", "maxPower": 10, "chargers": ["CP001"]},
            ],
            "groups[1].chargers[0]: charger 'CP001' already belongs to group 'g'",
        ),
        (
            [{"id": "g", "maxPower": 10, "groups": [{"id": "g", "maxPower": 5}]}],
            "groups[0].groups[0].id: duplicate id 'g'",
        ),
        ([{"id": "g", "maxPower": 0}], "groups[0].maxPower: must be greater than 0"),
        (
            [{"id": "station", "maxPower": 10}],
            "groups[0].id: 'station' is reserved, choose another id",
        ),
    ],
)
def test_invalid_groups(groups: list[dict[str, Any]], expected: str) -> None:
    assert expected in problems({**EXAMPLE, "groups": groups})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.problems[0].startswith(f"{bad}: not valid JSON (line 1, column 2")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.json")
    assert "cannot read file" in caught.value.problems[0]


def test_root_must_be_an_object(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.problems == ["(root): must be a JSON object"]


# -- the site's meter (docs/site.md) -------------------------------------------------------


def test_a_site_without_a_meter_keeps_the_fixed_grid_capacity() -> None:
    config = config_from_dict(EXAMPLE)
    assert config.site.meter is None
    assert config.site_margin == pytest.approx(8)  # 2 % of 400 kW
    # Every connector at its failsafe limit: 6 connectors of 66 kW.
    assert config.site_fallback_power == pytest.approx(396)


def test_a_modbus_meter_by_preset_or_by_register_map() -> None:
    preset = config_from_dict(
        {
            **EXAMPLE,
            "site": {"meter": {"type": "modbus", "host": "10.0.0.5", "model": "eastron-sdm630"}},
        }
    )
    meter = preset.site.meter
    assert meter is not None and meter.type == "modbus"
    assert meter.register_map.power.scale == 0.001
    explicit = config_from_dict(
        {
            **EXAMPLE,
            "site": {
                "meter": {
                    "type": "modbus",
                    "host": "meter",
                    "registers": {"power": {"address": 12, "table": "holding", "type": "int32"}},
                },
                "holdSeconds": 30,
                "margin": 5,
            },
        }
    )
    meter = explicit.site.meter
    assert meter is not None and meter.type == "modbus"
    assert meter.register_map.power.table == "holding"
    assert explicit.site_margin == 5


@pytest.mark.parametrize(
    ("meter", "expected"),
    [
        ({"type": "modbus", "host": "h"}, "give either model (a preset) or registers"),
        ({"type": "modbus", "host": "h", "model": "acme"}, "unknown meter 'acme'; presets: "),
        ({"type": "serial"}, "site.meter: type: must be one of 'modbus', 'push'"),
        ({"host": "h"}, "site.meter: needs a 'type'"),
        (
            {"type": "modbus", "host": "h", "registers": {"power": {"address": 1, "scale": 0}}},
            "site.meter.modbus.registers.power.scale: must not be 0",
        ),
        (
            {"type": "modbus", "host": "h", "registers": {"power": {"address": 70000}}},
            "registers.power.address: must be at most 65535",
        ),
    ],
)
def test_invalid_meters_are_named(meter: dict[str, Any], expected: str) -> None:
    found = problems({**EXAMPLE, "site": {"meter": meter}})
    assert any(expected in problem for problem in found), found


AC = {"kind": "AC"}


def electrical_station(**change: Any) -> dict[str, Any]:
    return {
        "stationId": "depot",
        "gridCapacity": 100,
        "chargers": [
            {"id": "AC1", "maxPower": 22, "connectors": 1, "electrical": AC},
            {"id": "AC2", "maxPower": 11, "connectors": 1, "electrical": {**AC, "phases": 1}},
            {"id": "DC1", "maxPower": 50, "connectors": 1},
        ],
        **change,
    }


def test_without_electrical_keys_the_model_is_off() -> None:
    assert not config_from_dict(EXAMPLE).has_electrical_model


def test_electrical_keys_and_their_defaults() -> None:
    config = config_from_dict(
        electrical_station(
            gridCurrentLimit=63,
            groups=[{"id": "feeder", "maxCurrent": 40, "chargers": ["AC1", "AC2"]}],
            allocation={"rotationPeriod": 600},
        )
    )
    assert config.has_electrical_model
    station = config.electrical_station()
    ac1, ac2 = station.chargers["AC1"], station.chargers["AC2"]
    assert isinstance(ac1, ACCharger) and isinstance(ac2, ACCharger)
    assert (ac1.phases, ac1.min_current, ac1.current_step, ac1.site_phases()) == (
        3,
        6.0,
        0.1,
        ("L1", "L2", "L3"),
    )
    assert ac2.site_phases() == ("L1",)
    assert "DC1" not in station.chargers  # counts as DC with no minimum
    assert station.grid_current_limit == 63 and station.group_max_current == {"feeder": 40}
    assert config.allocation.pause_limit == 1200  # twice the period by default
    # An AC charger's failsafe default is 0 A unless the operator sets one.
    assert config.failsafe_power_per_connector(config.chargers[0]) == 0
    assert config.failsafe_power_per_connector(config.chargers[2]) == 33


def test_a_group_current_limit_alone_turns_the_model_on() -> None:
    data = {**EXAMPLE, "groups": [{"id": "cable", "maxCurrent": 100, "chargers": ["CP001"]}]}
    assert config_from_dict(data).has_electrical_model


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"groups": [{"id": "g", "chargers": ["AC1"]}]},
            "groups[0]: needs maxPower, maxCurrent or both",
        ),
        (
            {"ocpp": {"failsafePower": 2}},
            "ocpp.failsafePower: 2 kW is 2.8 A per phase on charger 'AC1', "
            "between 0 and its minCurrent 6 A",
        ),
        (
            {"allocation": {"rotationPeriod": 0}},
            "allocation.rotationPeriod: must be greater than 0",
        ),
        ({"allocation": {"maxPause": -1}}, "allocation.maxPause: must be at least 0"),
    ],
)
def test_invalid_electrical_station(change: dict[str, Any], expected: str) -> None:
    assert expected in problems(electrical_station(**change))


@pytest.mark.parametrize(
    ("charger", "expected"),
    [
        (
            {"electrical": {**AC, "wiring": ["L1", "L1", "L2"]}},
            "chargers[0].electrical.wiring: must name 3 different site phase(s)",
        ),
        (
            {"electrical": {**AC, "phases": 1, "wiring": ["L2", "L3"]}},
            "chargers[0].electrical.wiring: must name 1 different site phase(s)",
        ),
        ({"electrical": {**AC, "wiring": ["L4"]}}, "chargers[0].electrical.AC.wiring[0]"),
        ({"electrical": {"kind": "EV"}}, "chargers[0].electrical"),
        (
            {"maxPower": 3, "electrical": AC},
            "chargers[0].electrical.minCurrent: above the 4.34783 A per phase its maxPower allows",
        ),
        (
            {"electrical": {**AC, "minCurrent": 10, "maxCurrent": 8}},
            "chargers[0].electrical.minCurrent: above the 8 A per phase its maxCurrent allows",
        ),
        (
            {"electrical": {"kind": "DC", "minPower": 30}},
            "chargers[0].electrical.minPower: must be at most maxPower",
        ),
        (
            {"rateUnit": "W", "electrical": AC},
            "chargers[0].rateUnit: an AC charger (electrical) gets its limits in A",
        ),
        (
            {"phases": 1, "electrical": AC},
            "chargers[0].phases: differs from electrical.phases",
        ),
        ({"electrical": {**AC, "currentStep": 0}}, "currentStep: must be greater than 0"),
    ],
)
def test_invalid_electrical_chargers(charger: dict[str, Any], expected: str) -> None:
    data = {**EXAMPLE, "chargers": [{"id": "X", "maxPower": 22, "connectors": 1, **charger}]}
    found = problems(data)
    assert any(expected in p for p in found), found
