"""AC charging as the simulated hardware does it: a current per phase, the 6 A minimum (suspend,
or clamp as a quirk), the car's own phases and current, per-phase MeterValues.

The pure charger model first, then a charge point over loopback against the test central system
with hand-built profiles (W and A), as the controller sends them.
"""

from __future__ import annotations

import asyncio

import pytest

from protocol import messages as m
from protocol.messages import ChargePointStatus as S
from shell.clock import ManualClock
from simulators import messages
from simulators.chargepoint import ChargePoint
from simulators.charger import AcSupply, ChargerModel, ChargerSpec
from simulators.connector import ConnectorEvent
from simulators.vehicles import ChargingCurve, CurveKind, Vehicle
from tests.simulators.sim_central import CentralSystem

T0 = 1_767_225_600.0
CP = "AC01"
W, A = m.ChargingRateUnitType.W, m.ChargingRateUnitType.A


def ac_car(phases: int, max_current: float, vehicle_id: str = "EV1") -> Vehicle:
    """A car whose onboard charger takes ``max_current`` A on ``phases`` phases at 230 V."""
    kw = max_current * 230 * phases / 1000
    return Vehicle(
        vehicle_id,
        0,
        36_000,
        60.0,
        0.2,
        ChargingCurve.of(CurveKind.AC, kw),
        phases=phases,
        max_current=max_current,
    )


def tx_profile(
    limit: float, unit: m.ChargingRateUnitType = W, number_phases: int | None = None
) -> m.ChargingProfile:
    return m.ChargingProfile(
        charging_profile_id=1,
        stack_level=1,
        charging_profile_purpose=m.ChargingProfilePurposeType.TX_PROFILE,
        charging_profile_kind=m.ChargingProfileKindType.RELATIVE,
        charging_schedule=m.ChargingSchedule(
            charging_rate_unit=unit,
            charging_schedule_period=[
                m.ChargingSchedulePeriod(start_period=0, limit=limit, number_phases=number_phases)
            ],
        ),
    )


def ac_spec(
    phases: int = 3,
    below_minimum: str = "suspend",
    max_current: float | None = 16.0,
    wiring: tuple[str, ...] = ("L1", "L2", "L3"),
) -> ChargerSpec:
    return ChargerSpec(
        CP,
        connectors=1,
        max_power_w=11_000.0 if phases == 3 else 3_680.0,
        phases=phases,
        ac=AcSupply(max_current=max_current, wiring=wiring, below_minimum=below_minimum),
    )


def charging_model(spec: ChargerSpec, vehicle: Vehicle) -> ChargerModel:
    model = ChargerModel(spec, T0)
    model.fire(1, ConnectorEvent.PLUG_IN)
    model.connector(1).vehicle = vehicle
    tx = model.begin_transaction(1, "TAG", T0)
    model.confirm_transaction(tx, 7, T0)
    return model


def limit(model: ChargerModel, value: float, unit: m.ChargingRateUnitType = W, **kw: int) -> None:
    status = model.set_charging_profile(1, tx_profile(value, unit, **kw), T0)
    assert status is m.ChargingProfileStatus.ACCEPTED


# -- the pure model -----------------------------------------------------------------------------


def test_a_watt_limit_is_shared_by_the_phases_the_car_uses() -> None:
    model = charging_model(ac_spec(), ac_car(3, 16))
    limit(model, 6_900)  # 10 A on each of three phases
    connector = model.connector(1)
    assert connector.power_w == pytest.approx(6_900)
    assert connector.phase_a == pytest.approx((10, 10, 10))
    assert connector.status is S.CHARGING


def test_a_one_phase_car_draws_on_the_chargers_first_phase_only() -> None:
    model = charging_model(ac_spec(), ac_car(1, 16))
    limit(model, 11_000)  # whatever the watts, its onboard charger takes 16 A on one phase
    connector = model.connector(1)
    assert connector.phase_a == pytest.approx((16, 0, 0))
    assert connector.power_w == pytest.approx(16 * 230)
    limit(model, 2_300)  # 10 A on its one phase: above the minimum, it charges
    assert connector.phase_a == pytest.approx((10, 0, 0))


def test_an_amp_limit_is_per_phase_and_number_phases_is_respected() -> None:
    model = charging_model(ac_spec(), ac_car(3, 16))
    limit(model, 8, A)
    assert model.connector(1).phase_a == pytest.approx((8, 8, 8))
    limit(model, 8, A, number_phases=1)  # the charger switches to one phase
    assert model.connector(1).phase_a == pytest.approx((8, 0, 0))
    assert model.connector(1).power_w == pytest.approx(8 * 230)
    limit(model, 40, A)  # the hardware's 16 A (11 kW: 15.9 A) holds
    assert model.connector(1).power_w == pytest.approx(11_000)


def test_below_six_amps_the_charger_suspends_the_car() -> None:
    model = charging_model(ac_spec(), ac_car(3, 16))
    limit(model, 8, A)
    limit(model, 5.9, A)
    connector = model.connector(1)
    assert (connector.power_w, connector.phase_a) == (0.0, (0.0, 0.0, 0.0))
    assert connector.status is S.SUSPENDED_EVSE
    assert connector.transaction is not None and connector.transaction.pauses == 1
    limit(model, 4_000)  # 5.8 A per phase in watts: still below the minimum
    assert connector.power_w == 0.0
    model.advance(T0 + 600)
    assert connector.vehicle is not None and connector.vehicle.delivered_kwh == 0.0
    limit(model, 6, A)  # the minimum itself charges
    assert connector.phase_a == pytest.approx((6, 6, 6))
    assert model.connector(1).status is S.CHARGING
    limit(model, 0, A)
    assert connector.transaction.pauses == 2


def test_the_clamp_quirk_draws_the_minimum_above_the_limit() -> None:
    model = charging_model(ac_spec(below_minimum="clamp"), ac_car(3, 16))
    limit(model, 2.8, A)
    connector = model.connector(1)
    assert connector.phase_a == pytest.approx((6, 6, 6))
    assert connector.power_w > model.applied_limit_w(1, T0)  # above what it was sent
    assert connector.status is S.CHARGING
    limit(model, 0, A)  # 0 still stops it
    assert connector.power_w == 0.0 and model.connector(1).status is S.SUSPENDED_EVSE


def test_a_three_phase_car_on_a_one_phase_charger_draws_on_one() -> None:
    model = charging_model(ac_spec(phases=1, wiring=("L2",)), ac_car(3, 32))
    assert model.connector(1).phase_a == pytest.approx((16,))
    assert model.connector(1).power_w == pytest.approx(3_680)


def test_a_charger_without_ac_follows_any_limit_as_before() -> None:
    spec = ChargerSpec(CP, connectors=1, max_power_w=11_000.0)
    model = charging_model(spec, ac_car(3, 16))
    limit(model, 1_000)  # 1.4 A per phase: no minimum without the electrical model
    assert model.connector(1).power_w == pytest.approx(1_000)
    assert model.connector(1).phase_a == ()


@pytest.mark.parametrize(("phases", "watts"), [(3, 7_123.4), (2, 5_000.0), (1, 2_999.9)])
def test_meter_values_per_phase_add_up_to_the_power(phases: int, watts: float) -> None:
    model = charging_model(ac_spec(), ac_car(phases, 16))
    limit(model, watts)
    sample = messages.meter_sample(model.connector(1), m.ReadingContext.SAMPLE_PERIODIC, T0)
    by_measurand: dict[m.Measurand | None, list[m.SampledValue]] = {}
    for value in sample.sampled_value:
        by_measurand.setdefault(value.measurand, []).append(value)
    [power] = by_measurand[m.Measurand.POWER_ACTIVE_IMPORT]
    currents = by_measurand[m.Measurand.CURRENT_IMPORT]
    assert [c.phase for c in currents] == [m.Phase.L1, m.Phase.L2, m.Phase.L3]
    assert [float(c.value) > 0 for c in currents] == [k < phases for k in range(3)]
    total = sum(float(c.value) for c in currents) * 230
    assert total == pytest.approx(float(power.value), abs=3 * 0.005 * 230)
    assert float(power.value) == pytest.approx(watts, abs=0.1)


def test_a_charger_without_ac_reports_no_current() -> None:
    model = charging_model(ChargerSpec(CP, connectors=1), ac_car(3, 16))
    sample = messages.meter_sample(model.connector(1), m.ReadingContext.SAMPLE_PERIODIC, T0)
    assert m.Measurand.CURRENT_IMPORT not in {v.measurand for v in sample.sampled_value}


def test_the_charger_offers_current_import_in_its_sampled_data() -> None:
    assert (
        "Current.Import" in ChargerModel(ac_spec(), T0).configuration["MeterValuesSampledData"][0]
    )
    plain = ChargerModel(ChargerSpec(CP), T0).configuration["MeterValuesSampledData"][0]
    assert "Current.Import" not in plain


def test_wiring_must_cover_the_chargers_phases() -> None:
    with pytest.raises(ValueError, match="wiring"):
        ChargerSpec(CP, phases=3, ac=AcSupply(wiring=("L1",)))
    with pytest.raises(ValueError, match="below_minimum"):
        AcSupply(below_minimum="trip")


# -- over loopback ------------------------------------------------------------------------------


async def test_over_ocpp_the_charger_suspends_reports_and_resumes() -> None:
    clock = ManualClock()
    async with (
        asyncio.timeout(10),
        CentralSystem() as cs,
        ChargePoint(cs.url, ac_spec(), clock=clock, reconnect_delay=0.0) as cp,
    ):
        await cp.wait_online()
        await cp.plug_in(1, ac_car(1, 32))
        await cp.start_transaction(1, "TAG1")
        transaction_id = await cp.wait_transaction_id(1)
        set_10a = m.SetChargingProfileRequest(
            connector_id=1,
            cs_charging_profiles=tx_profile(10, A, number_phases=1).model_copy(
                update={"transaction_id": transaction_id}
            ),
        )
        assert (await cs.call(CP, set_10a)).status is m.ChargingProfileStatus.ACCEPTED

        clock.advance(60)
        await cs.wait_for(lambda: len(cs.of("MeterValues")) == 1)
        [sample] = cs.of("MeterValues")[0].meter_value
        power = next(
            float(v.value)
            for v in sample.sampled_value
            if v.measurand is m.Measurand.POWER_ACTIVE_IMPORT
        )
        currents = {
            v.phase: float(v.value)
            for v in sample.sampled_value
            if v.measurand is m.Measurand.CURRENT_IMPORT
        }
        assert all(
            v.location is m.Location.OUTLET and v.unit is m.UnitOfMeasure.A
            for v in sample.sampled_value
            if v.measurand is m.Measurand.CURRENT_IMPORT
        )
        assert currents == {m.Phase.L1: 10.0, m.Phase.L2: 0.0, m.Phase.L3: 0.0}
        assert sum(currents.values()) * 230 == pytest.approx(power, abs=0.1)

        pause = set_10a.model_copy(
            update={
                "cs_charging_profiles": tx_profile(3, A, number_phases=1).model_copy(
                    update={"transaction_id": transaction_id}
                )
            }
        )
        await cs.call(CP, pause)
        await cs.wait_for(lambda: cs.of("StatusNotification")[-1].status == S.SUSPENDED_EVSE)
        assert cp.power_w(1) == 0.0
        await cs.call(CP, set_10a)
        await cs.wait_for(lambda: cs.of("StatusNotification")[-1].status == S.CHARGING)
        assert cp.power_w(1) == pytest.approx(2_300)
        tx = cp.transaction(1)
        assert tx is not None and tx.pauses == 1
