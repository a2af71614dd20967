"""The electrical model over OCPP (docs/electrical.md): limits in amps that real chargers
can follow. Real WebSockets on 127.0.0.1, the real controller, a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from controller.app import ControllerApp
from controller.config import StationConfig, config_from_dict
from protocol.messages import (
    ChargingSchedule,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    SetChargingProfileRequest,
    StartTransactionRequest,
    StopTransactionRequest,
)
from shell.clock import ManualClock
from tests.controller.conftest import ocpp_url
from tests.controller.ocpp_client import FakeCharger, accept_everything

T0 = "2026-01-01T20:00:00Z"
WIRINGS = (["L1", "L2", "L3"], ["L2", "L3", "L1"], ["L3", "L1", "L2"])


def amps_station(chargers: int, grid_current: float, **extra: Any) -> StationConfig:
    return config_from_dict(
        {
            "stationId": "amps",
            "gridCapacity": 200,
            "gridCurrentLimit": grid_current,
            "chargers": [
                {
                    "id": f"AC{i}",
                    "maxPower": 22,
                    "connectors": 1,
                    "electrical": {"kind": "AC", "wiring": WIRINGS[i % 3]},
                }
                for i in range(chargers)
            ],
            **extra,
        }
    )


def schedule(request: SetChargingProfileRequest) -> ChargingSchedule:
    return request.cs_charging_profiles.charging_schedule


def tx_currents(charger: FakeCharger) -> list[float]:
    """Every TxProfile's limit the charger received, in order (A per phase)."""
    out = []
    for request in charger.profiles():
        if request.cs_charging_profiles.charging_profile_purpose == "TxProfile":
            assert schedule(request).charging_rate_unit == "A"
            out.append(schedule(request).charging_schedule_period[0].limit)
    return out


def last_current(charger: FakeCharger) -> float | None:
    limits = tx_currents(charger)
    return limits[-1] if limits else None


async def booted(app: ControllerApp, count: int) -> list[FakeCharger]:
    chargers = []
    for i in range(count):
        charger = await FakeCharger(ocpp_url(app), f"AC{i}").connect()
        await charger.boot()
        chargers.append(charger)
    return chargers


async def start(charger: FakeCharger) -> int:
    answer = await charger.call(
        StartTransactionRequest(connector_id=1, id_tag="T", meter_start=0, timestamp=T0)
    )
    transaction_id: int = answer.transaction_id
    return transaction_id


def meter(transaction_id: int, amps: Sequence[float], energy_wh: float) -> MeterValuesRequest:
    """A reading with a Current.Import per charger phase, as AC chargers send it."""
    samples = [
        SampledValue(value=f"{a:g}", measurand="Current.Import", phase=f"L{k + 1}", unit="A")
        for k, a in enumerate(amps)
    ]
    samples.append(SampledValue(value=f"{energy_wh:g}", unit="Wh"))
    return MeterValuesRequest(
        connector_id=1,
        transaction_id=transaction_id,
        meter_value=[MeterValue(timestamp=T0, sampled_value=samples)],
    )


async def test_limits_are_zero_or_at_least_six_amps_and_a_paused_session_resumes(
    start_controller: Any,
) -> None:
    # 20 A per site phase: three 3-phase cars fit at their 6 A minimum, a fourth does not.
    app: ControllerApp = await start_controller(amps_station(4, 20))
    chargers = await booted(app, 4)
    for charger in chargers:
        # The failsafe default of an AC charger is 0 A: a new car waits for its TxProfile.
        await charger.wait_until(lambda c=charger: bool(c.profiles()))  # type: ignore[misc]
        default = schedule(charger.profiles()[0])
        assert (default.charging_rate_unit, default.charging_schedule_period[0].limit) == ("A", 0)
    transactions = [await start(charger) for charger in chargers]
    await app.wait_settled()

    currents = [last_current(c) or 0.0 for c in chargers]
    running = sorted(a for a in currents if a > 0)
    # Three run, sharing the 20 A fairly up to one 0.1 A step; the fourth waits at 0 A.
    assert len(running) == 3 and running[-1] - running[0] <= 0.1 + 1e-9
    assert 19.8 <= sum(running) <= 20 + 1e-9
    for charger in chargers:
        assert all(limit == 0 or limit >= 6 for limit in tx_currents(charger))
        for request in charger.profiles():
            assert schedule(request).charging_schedule_period[0].number_phases in (None, 3)
    paused = currents.index(0)
    status = {s.session_id: s for s in app.core.active_sessions()}
    assert sum(s.paused_since is not None for s in status.values()) == 1

    # A running car leaves: the paused one runs at once, with the room it left.
    leaving = (paused + 1) % 4
    await chargers[leaving].call(
        StopTransactionRequest(transaction_id=transactions[leaving], meter_stop=1000, timestamp=T0)
    )
    await app.wait_settled()
    assert (last_current(chargers[paused]) or 0) >= 6
    assert all(limit == 0 or limit >= 6 for c in chargers for limit in tx_currents(c))
    for charger in chargers:
        await charger.close()


async def test_rotation_at_a_boundary_runs_the_waiting_session(
    start_controller: Any, clock: ManualClock
) -> None:
    config = amps_station(4, 20, allocation={"rotationPeriod": 900})
    app: ControllerApp = await start_controller(config)
    chargers = await booted(app, 4)
    transactions = [await start(charger) for charger in chargers]
    await app.wait_settled()
    paused = [last_current(c) for c in chargers].index(0)
    # The running cars have taken energy; the waiting one none.
    for i, charger in enumerate(chargers):
        if i != paused:
            await charger.call(meter(transactions[i], [6.6, 6.6, 6.6], 5000 + 100 * i))
    sent = [len(tx_currents(c)) for c in chargers]
    clock.set(clock.now() + 900)
    await app.wait_until(lambda: last_current(chargers[paused]) != 0)
    await app.wait_settled()
    # At the boundary the waiting car runs, and the one with most energy waits instead.
    assert (last_current(chargers[paused]) or 0) >= 6
    most = max((i for i in range(4) if i != paused), key=lambda i: 5000 + 100 * i)
    assert last_current(chargers[most]) == 0
    # Nobody else was switched off (their share may move by a step).
    for i, charger in enumerate(chargers):
        if i not in (paused, most):
            assert all(limit >= 6 for limit in tx_currents(charger)[sent[i] - 1 :])
    for charger in chargers:
        await charger.close()


async def test_sessions_on_chargers_without_electrical_data_keep_kw_profiles(
    start_controller: Any,
) -> None:
    config = config_from_dict(
        {
            "stationId": "mixed",
            "gridCapacity": 100,
            "gridCurrentLimit": 100,
            "chargers": [{"id": "DC0", "maxPower": 50, "connectors": 1}],
        }
    )
    app: ControllerApp = await start_controller(config)
    charger = await FakeCharger(ocpp_url(app), "DC0").connect()
    await charger.boot()
    await start(charger)
    await app.wait_settled()
    assert charger.tx_limits()[-1] == (1, 50_000)  # W, as without the model
    await charger.close()
    await asyncio.sleep(0)


class PhaseTracker:
    """What each car may draw on each site phase, checked whenever a charger receives a
    limit: the larger of its last accepted limit and one on its way, on the phases it uses."""

    def __init__(self, limit: float, one_phase: set[str]) -> None:
        self.limit = limit
        self.one_phase = one_phase
        self.applied: dict[str, float] = {}
        self.highest = dict.fromkeys(("L1", "L2", "L3"), 0.0)
        self.violations: list[dict[str, float]] = []

    def site_load(self, drawing: dict[str, float]) -> dict[str, float]:
        load = dict.fromkeys(("L1", "L2", "L3"), 0.0)
        for charger_id, amps in drawing.items():
            wiring = WIRINGS[int(charger_id[2:]) % 3]
            for phase in wiring[:1] if charger_id in self.one_phase else wiring:
                load[phase] += amps
        return load

    def received(self, charger_id: str, amps: float) -> None:
        # Until the charger has it, it may apply either: count the larger.
        drawing = dict(self.applied)
        drawing[charger_id] = max(amps, drawing.get(charger_id, 0.0))
        load = self.site_load(drawing)
        for phase, amps_on in load.items():
            self.highest[phase] = max(self.highest[phase], amps_on)
        if max(load.values()) > self.limit + 1e-6:
            self.violations.append(load)
        self.applied[charger_id] = amps


async def test_per_phase_currents_stay_within_the_limit_with_rotated_wiring_and_one_phase_cars(
    start_controller: Any,
) -> None:
    # Six 3-phase chargers, wiring rotated; the first three have 1-phase cars, which draw on
    # their charger's first phase only (L1, L2, L3 of the site in turn).
    app: ControllerApp = await start_controller(amps_station(6, 40))
    one_phase = {"AC0", "AC1", "AC2"}
    tracker = PhaseTracker(40, one_phase)

    def policy_for(charger_id: str) -> Any:
        def policy(call: Any) -> Any:
            request = call.request
            if isinstance(request, SetChargingProfileRequest) and request.connector_id > 0:
                tracker.received(charger_id, schedule(request).charging_schedule_period[0].limit)
            return accept_everything(call)

        return policy

    chargers = []
    for i in range(6):
        charger = await FakeCharger(ocpp_url(app), f"AC{i}", policy=policy_for(f"AC{i}")).connect()
        await charger.boot()
        chargers.append(charger)
    transactions = [await start(charger) for charger in chargers]
    await app.wait_settled()
    # Counted on three phases each until known otherwise: six cars at about 40 / 6 A.
    assert all(6.6 <= (last_current(c) or 0) <= 6.7 for c in chargers)

    # The 1-phase cars report what they draw: all on their first phase, twice.
    for _ in range(2):
        for i in range(3):
            amps = last_current(chargers[i]) or 0.0
            await chargers[i].call(meter(transactions[i], [amps, 0, 0], 1000))
    await app.wait_settled()

    sessions = {s.charger_id: s for s in app.core.active_sessions()}
    assert [sessions[f"AC{i}"].phases_in_use for i in range(6)] == [(1,)] * 3 + [None] * 3
    # Max-min fair in kW: a 1-phase car takes three times the current of a 3-phase car (its
    # site phase carries it and the three 3-phase cars), instead of being capped at 6.6 A.
    one = [last_current(c) or 0.0 for c in chargers[:3]]
    three = [last_current(c) or 0.0 for c in chargers[3:]]
    assert min(one) >= 19.5 and max(three) <= 7 and min(three) >= 6
    for i in range(3):
        last = schedule(chargers[i].profiles()[-1]).charging_schedule_period[0]
        assert last.number_phases == 1
    booked = app.core.phase_bookings()
    assert booked is not None and max(booked.values()) <= 40 + 1e-6
    # At no moment could the cars together draw more than 40 A on any site phase.
    assert tracker.violations == []
    assert max(tracker.highest.values()) > 39  # the limit was used
    assert all(limit == 0 or limit >= 6 for c in chargers for limit in tx_currents(c))
    for charger in chargers:
        await charger.close()


async def test_a_new_car_that_does_not_fit_waits_for_the_boundary(
    start_controller: Any, clock: ManualClock
) -> None:
    """Between boundaries a new session does not push out one that runs, even one that has
    taken more energy: it waits for the next boundary (docs/electrical.md, "Rotation")."""
    app: ControllerApp = await start_controller(amps_station(4, 20))
    chargers = await booted(app, 4)
    transactions = [await start(charger) for charger in chargers[:3]]
    await app.wait_settled()
    for i in range(3):
        await chargers[i].call(meter(transactions[i], [6.6, 6.6, 6.6], 5000))
    clock.set(clock.now() + 60)
    await start(chargers[3])
    await app.wait_settled()
    assert all((last_current(c) or 0) >= 6 for c in chargers[:3])
    assert last_current(chargers[3]) == 0
    waiting = next(s for s in app.core.active_sessions() if s.charger_id == "AC3")
    assert waiting.paused_since == waiting.started_at
    for charger in chargers:
        await charger.close()
