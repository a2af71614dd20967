"""Station state without any server: sessions, load, and the battery they drive."""

from __future__ import annotations

import pytest

from controller.sessions import Origin
from controller.station import Station
from tests.controller.conftest import example_config

T0 = 1_000_000.0


def test_a_raised_limit_counts_in_the_load_until_the_next_reading() -> None:
    station = Station(example_config(), now=T0)
    a = station.start_session(
        charger_id="CP001", connector_id=0, vehicle_max_power=None, now=T0, origin=Origin.OCPP
    )
    b = station.start_session(
        charger_id="CP001", connector_id=1, vehicle_max_power=None, now=T0 + 1, origin=Origin.OCPP
    )
    assert (a.allocated_power, b.allocated_power) == (100, 100)
    station.update_session(a.session_id, now=T0 + 2, consumed_power=95.0)
    station.update_session(b.session_id, now=T0 + 2, consumed_power=99.0)
    assert station.load() == pytest.approx(194)
    station.stop_session(b.session_id, now=T0 + 3)
    # a may take 200 kW at once: until it says what it draws, it counts at 200.
    assert a.allocated_power == 200
    assert station.load() == pytest.approx(200)
    station.update_session(a.session_id, now=T0 + 4, consumed_power=180.0)
    assert station.load() == pytest.approx(180)


def test_a_lowered_limit_keeps_the_reading() -> None:
    station = Station(example_config(), now=T0)
    a = station.start_session(
        charger_id="CP001", connector_id=0, vehicle_max_power=None, now=T0, origin=Origin.OCPP
    )
    station.update_session(a.session_id, now=T0 + 1, consumed_power=150.0)
    station.start_session(
        charger_id="CP001", connector_id=1, vehicle_max_power=None, now=T0 + 2, origin=Origin.OCPP
    )
    assert a.allocated_power == 100
    assert station.load() == pytest.approx(150 + 100)  # its reading, the other's limit
