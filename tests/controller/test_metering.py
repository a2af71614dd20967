"""What the controller reads from a charger's messages, over a real WebSocket (docs/ocpp.md,
"Meter values" and "Transactions")."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.app import ControllerApp
from controller.core.events import MeterReading as CoreMeterReading
from controller.core.phases import PhaseCurrents
from controller.ocpp.metering import MeterReading, read_meter_values
from protocol.messages import Location, MeterValue, MeterValuesRequest, Phase, SampledValue
from tests.controller.ocpp_client import FakeCharger
from tests.controller.test_ocpp_messages import T0, booted, start_tx

LEAP = "2026-12-31T23:59:60Z"


async def raw_call(charger: FakeCharger, unique_id: str, action: str, body: Any) -> list[Any]:
    """Send a CALL written as the charger writes it (no model in between to normalise its
    timestamps); the controller's answer to it, skipping the controller's own CALLs."""
    await charger.send_raw(json.dumps([2, unique_id, action, body]))
    while True:
        message: list[Any] = json.loads(await charger.next_raw())
        if message[0] in (3, 4) and message[1] == unique_id:
            return message


async def test_a_leap_second_timestamp_gets_normal_answers(start_controller: Any) -> None:
    app: ControllerApp = await start_controller()
    charger = await booted(app)
    start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": LEAP}
    started = await raw_call(charger, "s1", "StartTransaction", start)
    assert started[0] == 3 and started[2]["idTagInfo"]["status"] == "Accepted"
    tx = started[2]["transactionId"]
    # A resend with the same leap second is the same transaction.
    again = await raw_call(charger, "s2", "StartTransaction", start)
    assert again == [3, "s2", started[2]]

    status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": LEAP}
    assert await raw_call(charger, "n1", "StatusNotification", status) == [3, "n1", {}]
    assert app.core.connectors[("CP001", 1)].status == "Charging"

    sampled = [{"value": "22", "measurand": "Power.Active.Import", "unit": "kW"}]
    meter = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": LEAP, "sampledValue": sampled}],
    }
    assert await raw_call(charger, "m1", "MeterValues", meter) == [3, "m1", {}]
    session = app.core.session_by_transaction(tx)
    assert session is not None and session.consumed_power == 22

    stop = {"transactionId": tx, "meterStop": 6000, "timestamp": LEAP, "idTag": "TAG1"}
    stopped = await raw_call(charger, "t1", "StopTransaction", stop)
    assert stopped == [3, "t1", {"idTagInfo": {"status": "Accepted"}}]
    assert not session.active and session.consumed_energy == pytest.approx(5)


# -- the reader (controller/ocpp/metering.py) -----------------------------------------------

VOLTS = 230.0


def at(*samples: SampledValue) -> MeterValue:
    return MeterValue(timestamp=T0, sampled_value=list(samples))


def amps(value: str, phase: str, **fields: Any) -> SampledValue:
    return SampledValue(value=value, measurand="Current.Import", phase=phase, unit="A", **fields)


def test_soc_is_read_wherever_the_vehicle_measures_it() -> None:
    # Before, only an outlet SoC counted, and chargers report it with location EV.
    for location in ("EV", "Outlet", None, "Body"):
        soc = SampledValue(value="80", measurand="SoC", location=location, unit="Percent")
        assert read_meter_values([at(soc)], VOLTS).soc_percent == 80
    # Power and energy measured elsewhere than at the outlet still do not count.
    ev = [
        SampledValue(value="7000", measurand="Power.Active.Import", location="EV"),
        SampledValue(value="9000", location="Inlet"),
        amps("16", "L1", location="EV"),
        SampledValue(value="55", measurand="SoC", location="EV"),
    ]
    assert read_meter_values([at(*ev)], VOLTS) == MeterReading(soc_percent=55)


def test_phase_currents_give_the_power_when_no_power_is_reported() -> None:
    reading = read_meter_values([at(amps("16", "L1"), amps("15.5", "L2-N"))], VOLTS)
    assert reading.phase_currents == (16, 15.5, None)
    assert reading.power_kw == pytest.approx((16 + 15.5) * 230 / 1000)
    # On a 400 V phase-to-neutral charger, the same currents are more power.
    assert read_meter_values([at(amps("16", "L1"))], 400).power_kw == pytest.approx(6.4)
    # Without a voltage (a DC charger) the currents are read but give no power.
    assert read_meter_values([at(amps("16", "L1"))], None) == MeterReading(
        phase_currents=(16, None, None)
    )


def test_reported_power_wins_over_currents() -> None:
    total = SampledValue(value="11", measurand="Power.Active.Import", unit="kW")
    one_phase = SampledValue(value="3", measurand="Power.Active.Import", unit="kW", phase="L1")
    currents = (amps("16", "L1"), amps("16", "L2"), amps("16", "L3"))
    assert read_meter_values([at(total, *currents)], VOLTS).power_kw == 11
    reading = read_meter_values([at(*currents, one_phase)], VOLTS)
    assert reading.power_kw == 3
    assert reading.phase_currents == (16, 16, 16)


def test_a_phase_and_its_phase_to_neutral_reading_are_one_phase() -> None:
    # Counted once (the last one), not summed as two phases.
    reading = read_meter_values([at(amps("10", "L1"), amps("12", "L1-N"))], VOLTS)
    assert reading.phase_currents == (12, None, None)
    power = [
        SampledValue(value="2", measurand="Power.Active.Import", unit="kW", phase=phase)
        for phase in ("L2", "L2-N")
    ]
    assert read_meter_values([at(*power)], VOLTS).power_kw == 2


def test_only_currents_on_a_phase_in_amps_at_the_outlet_count() -> None:
    ignored = [
        SampledValue(value="16", measurand="Current.Import", unit="A"),  # no phase: which one?
        amps("16", "N"),  # the neutral
        amps("16", "L1-L2"),  # line to line
        amps("16", "L1", location="Inlet"),
        SampledValue(value="16", measurand="Current.Import", phase="L1", unit="W"),
        SampledValue(value="16", measurand="Current.Offered", phase="L1", unit="A"),
        SampledValue(value="16", measurand="Current.Export", phase="L1", unit="A"),
        amps("lots", "L1"),
    ]
    assert read_meter_values([at(*ignored)], VOLTS) == MeterReading()
    no_unit = SampledValue(value="16", measurand="Current.Import", phase="L3")
    negative = amps("-2", "L2")
    reading = read_meter_values([at(no_unit, negative)], VOLTS)
    assert reading.phase_currents == (None, 0, 16)
    assert reading.power_kw == pytest.approx(16 * 0.23)


def test_the_currents_are_those_of_the_last_meter_value_that_has_them() -> None:
    energy = SampledValue(value="1500", unit="Wh")
    reading = read_meter_values(
        [at(amps("16", "L1"), amps("16", "L2"), amps("16", "L3")), at(amps("8", "L2")), at(energy)],
        VOLTS,
    )
    assert reading.phase_currents == (None, 8, None)  # never mixed across timestamps
    assert reading.power_kw == pytest.approx(8 * 0.23)
    assert reading.energy_register_kwh == 1.5


# Random sample lists: every measurand, phase, location and unit the reader may meet.
numbers = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(repr),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(["", "x", "nan", "1e3"]),
)
MEASURANDS = [
    None,
    "Power.Active.Import",
    "Energy.Active.Import.Register",
    "SoC",
    "Current.Import",
    "Current.Offered",
    "Voltage",
]
samples = st.builds(
    SampledValue,
    value=numbers,
    measurand=st.sampled_from(MEASURANDS),
    phase=st.sampled_from([None, *Phase]),
    location=st.sampled_from([None, *Location]),
    unit=st.sampled_from([None, "W", "kW", "Wh", "kWh", "A", "V", "Percent"]),
    format=st.sampled_from([None, "Raw", "SignedData"]),
)
meter_values = st.lists(
    st.lists(samples, min_size=1, max_size=8).map(lambda s: at(*s)), min_size=1, max_size=4
)
voltages = st.floats(min_value=1, max_value=1000)


def _outlet(sample: SampledValue) -> bool:
    return sample.location in (None, Location.OUTLET)


def _expected_currents(values: list[MeterValue]) -> PhaseCurrents | None:
    """Written apart from the reader: the per-phase amps of the last meter value with any."""
    found: PhaseCurrents | None = None
    for meter_value in values:
        per_phase: dict[int, float] = {}
        for s in meter_value.sampled_value:
            if (
                s.measurand == "Current.Import"
                and _outlet(s)
                and s.unit in (None, "A")
                and s.format != "SignedData"
                and s.phase is not None
                and s.phase.value[:2] in ("L1", "L2", "L3")
                and s.phase.value[2:] in ("", "-N")
            ):
                try:
                    value = float(s.value)
                except ValueError:
                    continue
                if not math.isnan(value):
                    per_phase[int(s.phase.value[1]) - 1] = max(value, 0.0)
        if per_phase:
            found = (per_phase.get(0), per_phase.get(1), per_phase.get(2))
    return found


@given(values=meter_values, voltage=voltages)
def test_random_readings_keep_their_invariants(values: list[MeterValue], voltage: float) -> None:
    reading = read_meter_values(values, voltage)
    assert reading.power_kw is None or reading.power_kw >= 0
    assert reading.soc_percent is None or 0 <= reading.soc_percent <= 100
    assert reading.phase_currents == _expected_currents(values)
    reported_power = any(
        s.measurand == "Power.Active.Import" and _outlet(s) for v in values for s in v.sampled_value
    )
    if not reported_power:
        # Then the power is the currents' alone, and comes with them.
        if reading.phase_currents is None:
            assert reading.power_kw is None
        else:
            total = sum(a for a in reading.phase_currents if a is not None)
            assert reading.power_kw == pytest.approx(total * voltage / 1000)


@given(values=meter_values, voltage=voltages, data=st.data())
def test_where_a_sample_was_measured_matters_only_as_documented(
    values: list[MeterValue], voltage: float, data: st.DataObject
) -> None:
    # SoC counts from any location; nothing else counts from elsewhere than the outlet.
    elsewhere = st.sampled_from([Location.INLET, Location.EV, Location.CABLE, Location.BODY])
    moved = [
        at(
            *(
                s.model_copy(update={"location": data.draw(elsewhere)})
                if s.measurand == "SoC" or not _outlet(s)
                else s
                for s in v.sampled_value
            )
        )
        for v in values
    ]
    assert read_meter_values(moved, voltage) == read_meter_values(values, voltage)
    outlet_only = [
        at(*(s for s in v.sampled_value if _outlet(s) and s.measurand != "SoC"))
        for v in values
        if any(_outlet(s) and s.measurand != "SoC" for s in v.sampled_value)
    ]
    without_soc = replace(read_meter_values(values, voltage), soc_percent=None)
    assert read_meter_values(outlet_only, voltage) == without_soc


# -- over the wire ----------------------------------------------------------------------------


async def test_soc_from_the_ev_and_power_from_phase_currents_over_ocpp(
    start_controller: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app: ControllerApp = await start_controller()
    seen: list[CoreMeterReading] = []
    handle = app.core.handle

    def recording(event: Any) -> Any:  # the real core, its MeterReadings noted on the way
        if isinstance(event, CoreMeterReading):
            seen.append(event)
        return handle(event)

    monkeypatch.setattr(app.core, "handle", recording)
    charger = await booted(app)
    tx = await start_tx(charger, 1)
    session = app.core.session_by_transaction(tx)
    assert session is not None
    await charger.call(
        MeterValuesRequest(
            connector_id=1,
            transaction_id=tx,
            meter_value=[
                at(
                    amps("16", "L1"),
                    amps("16", "L2"),
                    amps("0.4", "L3"),
                    SampledValue(value="64", measurand="SoC", location="EV", unit="Percent"),
                )
            ],
        )
    )
    assert session.state_of_charge == 64
    assert session.consumed_power == pytest.approx(32.4 * 230 / 1000)  # config.json: 230 V
    assert seen[-1].phase_currents == (16, 16, 0.4)
    # A message without per-phase currents says nothing of the phases.
    power = SampledValue(value="7", measurand="Power.Active.Import", unit="kW")
    await charger.call(
        MeterValuesRequest(connector_id=1, transaction_id=tx, meter_value=[at(power)])
    )
    assert session.consumed_power == 7
    assert seen[-1].phase_currents is None
