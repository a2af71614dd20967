"""Pushing limits (docs/ocpp.md, "Limits to the charger") with chargers that hold back,
reject or rush their answers.

A tracker watches every SetChargingProfile as chargers receive it and checks,
at each of those moments, that the limits chargers may be applying (the last
accepted TxProfile, or any one still unanswered, whichever is higher) never
add up to more than the root limit.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from controller.app import ControllerApp
from controller.config import config_from_dict
from protocol import CallReceived
from protocol.messages import (
    ChargingProfileStatus,
    SetChargingProfileRequest,
    SetChargingProfileResponse,
    StartTransactionRequest,
)
from protocol.messages.base import OcppModel
from shell.clock import ManualClock
from tests.controller.conftest import many_chargers, ocpp_url
from tests.controller.ocpp_client import FakeCharger, Received, accept_everything

T0 = "2026-01-01T10:00:00Z"
ACCEPTED = SetChargingProfileResponse(status=ChargingProfileStatus.ACCEPTED)
REJECTED = SetChargingProfileResponse(status=ChargingProfileStatus.REJECTED)


def tx_limit_kw(item: Received) -> tuple[int, float] | None:
    request = item.call.request
    if not isinstance(request, SetChargingProfileRequest):
        return None
    profile = request.cs_charging_profiles
    if profile.charging_profile_purpose != "TxProfile":
        return None
    return request.connector_id, profile.charging_schedule.charging_schedule_period[0].limit / 1000


@dataclass
class Tracker:
    root_kw: float
    chargers: list[FakeCharger] = field(default_factory=list)
    highest: float = 0.0
    violations: list[float] = field(default_factory=list)
    # The TxProfile limit of each received call, parsed once.
    _limits: dict[int, Any] = field(default_factory=dict)

    def may_apply(self, charger: FakeCharger) -> float:
        by_connector: dict[int, float] = {}
        for item in charger.received:
            found = self._limits.get(id(item), ())
            if found == ():
                found = self._limits[id(item)] = tx_limit_kw(item)
            if found is None:
                continue
            connector, kw = found
            if item.answered and getattr(item.response, "status", None) == "Accepted":
                # Accepted: from now on this is the limit; anything still pending stays possible.
                by_connector[connector] = kw
            elif not item.answered:
                by_connector[connector] = max(by_connector.get(connector, 0.0), kw)
        return sum(by_connector.values())

    def check(self) -> None:
        total = sum(self.may_apply(c) for c in self.chargers)
        self.highest = max(self.highest, total)
        if total > self.root_kw:
            self.violations.append(total)

    def policy(self, decide: Any = None) -> Any:
        def answer(call: CallReceived) -> OcppModel | None:
            response = decide(call) if decide is not None else accept_everything(call)
            # Checked with the new profile counted as pending, before it is answered.
            self.check()
            return response

        return answer


async def start_tx(charger: FakeCharger, connector: int) -> int:
    answer = await charger.call(
        StartTransactionRequest(connector_id=connector, id_tag="T", meter_start=0, timestamp=T0)
    )
    return int(answer.transaction_id)


def last_limit(charger: FakeCharger, connector: int) -> float | None:
    limits = [kw for c, kw in charger.tx_limits() if c == connector]
    return limits[-1] if limits else None


async def limit_received(
    charger: FakeCharger, connector: int, limit: float | None, *, timeout: float = 10
) -> None:
    """Until the charger's last TxProfile on ``connector`` is ``limit`` (None: any)."""
    if limit is None:
        await charger.wait_until(lambda: last_limit(charger, connector) is not None, timeout)
    else:
        await charger.wait_until(lambda: last_limit(charger, connector) == limit, timeout)


async def profiles_received(charger: FakeCharger, count: int) -> None:
    await charger.wait_until(lambda: len(charger.profiles()) == count)


async def test_raise_waits_for_lowerings_to_be_accepted(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()  # root 500 = 400 grid + 100 battery
    tracker = Tracker(root_kw=500)
    holding = {"CP001": False, "CP002": False}

    def hold_when_asked(charger_id: str) -> Any:
        def decide(call: CallReceived) -> OcppModel | None:
            if (
                isinstance(call.request, SetChargingProfileRequest)
                and holding[charger_id]
                and (call.request.connector_id > 0)
            ):
                return None  # held: the test answers later
            return accept_everything(call)

        return decide

    a = FakeCharger(ocpp_url(app), "CP001")
    b = FakeCharger(ocpp_url(app), "CP002")
    c = FakeCharger(ocpp_url(app), "CP003")
    a.policy = tracker.policy(hold_when_asked("CP001"))
    b.policy = tracker.policy(hold_when_asked("CP002"))
    c.policy = tracker.policy()
    tracker.chargers = [a, b, c]
    for charger in (a, b, c):
        await charger.connect()
        await charger.boot()
    # Sessions start a second apart: earlier ones hold the extra kW of a tie.
    await start_tx(a, 1)
    await a.wait_until(lambda: last_limit(a, 1) == 200_000)
    clock.advance(1)
    await start_tx(b, 1)
    await b.wait_until(lambda: last_limit(b, 1) == 200_000)

    holding.update(CP001=True, CP002=True)
    clock.advance(1)
    await start_tx(c, 1)
    await a.wait_until(lambda: len(a.pending()) == 1)
    await b.wait_until(lambda: len(b.pending()) == 1)
    # Lowerings go to the fair targets; C gets only what nobody may still be using.
    assert tx_limit_kw(a.pending()[0]) == (1, 167)
    assert tx_limit_kw(b.pending()[0]) == (1, 167)
    await c.wait_until(lambda: last_limit(c, 1) == 100_000)
    sessions = {s.charger_id: s.allocated_power for s in app.core.active_sessions()}
    assert sessions == {"CP001": 200, "CP002": 200, "CP003": 100}

    await a.answer(a.pending()[0], ACCEPTED)
    await c.wait_until(lambda: last_limit(c, 1) == 133_000)
    await b.answer(b.pending()[0], ACCEPTED)
    await c.wait_until(lambda: last_limit(c, 1) == 166_000)
    assert tracker.violations == []
    assert tracker.highest <= 500
    sessions = {s.charger_id: s.allocated_power for s in app.core.active_sessions()}
    assert sessions == {"CP001": 167, "CP002": 167, "CP003": 166}


async def test_rejected_lowering_keeps_the_power_reserved(
    start_controller: Any, clock: ManualClock
) -> None:
    app: ControllerApp = await start_controller()
    tracker = Tracker(root_kw=500)
    rejecting = {"on": False}

    def reject_lowerings(call: CallReceived) -> OcppModel | None:
        if (
            isinstance(call.request, SetChargingProfileRequest)
            and rejecting["on"]
            and (call.request.connector_id > 0)
        ):
            return REJECTED
        return accept_everything(call)

    a = FakeCharger(ocpp_url(app), "CP003", policy=tracker.policy(reject_lowerings))
    b = FakeCharger(ocpp_url(app), "CP002", policy=tracker.policy())
    c = FakeCharger(ocpp_url(app), "CP001", policy=tracker.policy())
    tracker.chargers = [a, b, c]
    for charger in (a, b, c):
        await charger.connect()
        await charger.boot()
    await start_tx(a, 1)
    await start_tx(a, 2)
    await a.wait_until(lambda: last_limit(a, 1) == 150_000 and last_limit(a, 2) == 150_000)
    await start_tx(c, 1)
    await c.wait_until(lambda: last_limit(c, 1) == 200_000)

    # A session on CP002 needs power: CP003 (300) and CP001 (200) must come down to 125 each.
    rejecting["on"] = True
    await start_tx(b, 1)
    await a.wait_until(lambda: any(i.response == REJECTED for i in a.received))
    await c.wait_until(lambda: last_limit(c, 1) == 125_000)
    await b.wait_until(lambda: last_limit(b, 1) == 75_000)
    status = app.status()
    by_id = {ch["id"]: ch for ch in status["chargers"]}
    assert by_id["CP003"]["limitsConfirmed"] is False
    assert by_id["CP003"]["allocatedPower"] == 300  # what it may still draw stays booked
    assert by_id["CP002"]["allocatedPower"] == 500 - 300 - 125
    assert status["allocatedPower"] <= status["availablePower"]
    # The retry (after back-off, on the clock) is accepted and the power moves on to CP002.
    rejecting["on"] = False
    clock.advance(1)  # one refusal so far: the retry is due 1 s later
    await b.wait_until(lambda: last_limit(b, 1) == 125_000)
    assert tracker.violations == []
    await asyncio.wait_for(
        app.wait_until(lambda: all(app.core.limits_confirmed(c) for c in app.core.chargers)),
        10,
    )
    status = app.status()
    assert all(ch["limitsConfirmed"] for ch in status["chargers"])


async def test_a_burst_of_starts_is_one_or_a_few_reallocations(start_controller: Any) -> None:
    app: ControllerApp = await start_controller(config_from_dict(many_chargers(50, grid=400)))
    tracker = Tracker(root_kw=400)
    chargers = [FakeCharger(ocpp_url(app), f"C{i:03d}") for i in range(50)]
    for charger in chargers:
        charger.policy = tracker.policy()
    tracker.chargers = chargers
    await asyncio.gather(*(c.connect() for c in chargers))
    await asyncio.gather(*(c.boot() for c in chargers))
    await asyncio.gather(*(profiles_received(c, 1) for c in chargers))
    before = app.core.reallocations

    await asyncio.gather(*(start_tx(c, 1) for c in chargers))
    await asyncio.gather(*(limit_received(c, 1, 8000) for c in chargers))
    await asyncio.wait_for(app.wait_settled(), 10)
    assert all(app.core.limits_confirmed(c) for c in app.core.chargers)
    reallocations = app.core.reallocations - before
    assert reallocations <= 6, reallocations
    for charger in chargers:
        limits = [kw for _, kw in charger.tx_limits()]
        # Only changes are sent: never the same limit twice in a row.
        assert all(x != y for x, y in itertools.pairwise(limits)), limits
        assert len(limits) <= 3, limits
    assert tracker.violations == []


async def test_a_transaction_id_is_known_to_the_charger_before_its_first_profile(
    start_controller: Any,
) -> None:
    # The StartTransaction.conf waits for the commit; the first TxProfile must wait for
    # it too, or the charger rejects a profile naming a transaction it does not know.
    app: ControllerApp = await start_controller(config_from_dict(many_chargers(30, grid=400)))
    chargers = [FakeCharger(ocpp_url(app), f"C{i:03d}") for i in range(30)]
    await asyncio.gather(*(c.connect() for c in chargers))
    await asyncio.gather(*(c.boot() for c in chargers))
    await asyncio.gather(*(start_tx(c, 1) for c in chargers))
    await asyncio.wait_for(app.wait_settled(), 10)
    for charger in chargers:
        start_answer = charger.arrivals.index(("answer", "StartTransaction"))
        profiles = [
            i
            for i, (kind, action) in enumerate(charger.arrivals)
            if (kind, action) == ("call", "SetChargingProfile")
        ]
        # The first profile is the failsafe default; every later one follows the answer.
        assert all(i > start_answer for i in profiles[1:]), charger.arrivals
        assert len(charger.tx_limits()) >= 1
