"""The site meter read over Modbus TCP (docs/site-meter.md): decoding, the presets, and the
reader against a real pymodbus server on loopback (simulators/site_meter.py), its polls driven
by a manual clock."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import ModbusMeterConfig, RegisterConfig, RegisterMap, SiteConfig
from controller.meter.modbus import (
    MeterValueError,
    ModbusMeterReader,
    decode,
    encode,
    plan_requests,
)
from controller.meter.presets import PRESETS
from shell.clock import ManualClock
from simulators.site_meter import SiteMeterServer

# Bounds every wait on the network; a passing test takes milliseconds.
WAIT = 5.0
# Real seconds a poll may take in these tests, so a silent meter costs little.
POLL_TIMEOUT = 0.5
LOGGER = "controller.meter.modbus"

CURRENTS = (61.5, 58.25, 60.0)


# -- decode / encode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("register", "words", "value"),
    [
        # IEEE 754 1.0 is 0x3F800000: high word first, or low word first.
        (RegisterConfig(address=0, type="float32"), [0x3F80, 0x0000], 1.0),
        (RegisterConfig(address=0, type="float32", word_order="little"), [0x0000, 0x3F80], 1.0),
        (RegisterConfig(address=0, type="float32", scale=0.001), [0xC2C8, 0x0000], -0.1),
        (RegisterConfig(address=0, type="int32"), [0xFFFF, 0xFFFE], -2.0),
        (RegisterConfig(address=0, type="int32", word_order="little"), [0x0001, 0x0002], 131073.0),
        (RegisterConfig(address=0, type="int32", scale=0.0001), [0x0000, 0x2710], 1.0),
        (RegisterConfig(address=0, type="int16"), [0xFFFF], -1.0),
        (RegisterConfig(address=0, type="int16", scale=0.1), [0x7FFF], 3276.7),
    ],
)
def test_decode_reads_the_documented_layouts(
    register: RegisterConfig, words: list[int], value: float
) -> None:
    assert decode(words, register) == pytest.approx(value)
    assert decode(encode(value, register), register) == pytest.approx(value)


SCALES = st.sampled_from([1.0, 0.001, 0.1, 0.0001, -1.0, 10.0])


@st.composite
def registers_and_values(draw: st.DrawFn) -> tuple[RegisterConfig, float]:
    kind = draw(st.sampled_from(["float32", "int32", "int16"]))
    register = RegisterConfig.model_validate(
        {
            "address": draw(st.integers(0, 65534)),
            "type": kind,
            "scale": draw(SCALES),
            "wordOrder": draw(st.sampled_from(["big", "little"])),
        }
    )
    if kind == "float32":
        # Far from float32's limits, where value / scale could round past them.
        raw = draw(st.floats(-(2.0**100), 2.0**100, width=32))
    else:
        bits = 16 if kind == "int16" else 32
        raw = float(draw(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)))
    return register, raw * register.scale


@given(registers_and_values())
def test_decode_is_the_inverse_of_encode_for_every_type_and_word_order(
    case: tuple[RegisterConfig, float],
) -> None:
    register, value = case
    words = encode(value, register)
    assert len(words) == (1 if register.type == "int16" else 2)
    assert all(0 <= word <= 0xFFFF for word in words)
    assert decode(words, register) == pytest.approx(value, rel=1e-6, abs=1e-9)


def test_decode_refuses_what_is_not_a_reading() -> None:
    single = RegisterConfig(address=0, type="float32")
    nan = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    infinity = list(struct.unpack(">HH", struct.pack(">f", math.inf)))
    for words, message in [
        (nan, "not a number"),
        (infinity, "not a number"),
        ([0x3F80], "needs 2 register(s), got 1"),
        ([0x3F80, 0x10000], "out of 0..65535"),
    ]:
        with pytest.raises(MeterValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            decode(words, single)
    with pytest.raises(ValueError, match="does not fit int16"):
        encode(4000.0, RegisterConfig(address=0, type="int16", scale=0.1))
    with pytest.raises(ValueError, match="does not fit float32"):
        encode(1e40, single)


def test_one_poll_reads_each_run_of_consecutive_registers_at_once() -> None:
    requests = plan_requests(PRESETS["eastron-sdm630"])
    assert [(r.table, r.address, r.count) for r in requests] == [("input", 6, 6), ("input", 52, 2)]
    # Registers of another table, or with a gap between them, are never read together.
    mixed = RegisterMap(
        power=RegisterConfig(address=10, table="holding", type="int16"),
        current=(
            RegisterConfig(address=11, table="input", type="int16"),
            RegisterConfig(address=12, table="input", type="int16"),
            RegisterConfig(address=14, table="input", type="int16"),
        ),
    )
    assert [(r.table, r.address, r.count) for r in plan_requests(mixed)] == [
        ("holding", 10, 1),
        ("input", 11, 2),
        ("input", 14, 1),
    ]


# -- the reader against a real server ----------------------------------------------------------


class Meter:
    """A served meter, a reader of it on a manual clock, and what the reader delivered."""

    def __init__(self, server: SiteMeterServer, config: ModbusMeterConfig) -> None:
        self.server = server
        self.clock = ManualClock()
        self.readings: asyncio.Queue[tuple[float, tuple[float, float, float] | None]] = (
            asyncio.Queue()
        )
        self.failures: asyncio.Queue[str] = asyncio.Queue()
        self.reader = ModbusMeterReader(
            config,
            self.clock,
            lambda power, currents: self.readings.put_nowait((power, currents)),
            on_failure=self.failures.put_nowait,
            poll_timeout=POLL_TIMEOUT,
        )

    async def reading(self) -> tuple[float, tuple[float, float, float] | None]:
        return await asyncio.wait_for(self.readings.get(), WAIT)

    async def failure(self) -> str:
        return await asyncio.wait_for(self.failures.get(), WAIT)

    def next_poll(self) -> None:
        self.clock.advance(self.reader.config.interval)


def meter_config(port: int, **fields: Any) -> ModbusMeterConfig:
    fields.setdefault("model", None if "registers" in fields else "eastron-sdm630")
    return ModbusMeterConfig(type="modbus", host="127.0.0.1", port=port, **fields)


@pytest.fixture
async def sdm630() -> AsyncIterator[SiteMeterServer]:
    server = SiteMeterServer("eastron-sdm630")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def started(meter: Meter) -> Meter:
    await meter.reader.start()
    return meter


@pytest.fixture
async def meter(sdm630: SiteMeterServer) -> AsyncIterator[Meter]:
    meter = Meter(sdm630, meter_config(sdm630.port, interval=1.0))
    try:
        yield meter
    finally:
        await meter.reader.close()


@pytest.mark.parametrize("model", sorted(PRESETS))
async def test_each_preset_is_read_back_as_served(model: str) -> None:
    server = SiteMeterServer(model)
    await server.start()
    meter = Meter(server, meter_config(server.port, model=model))
    try:
        for power in (37.25, -12.5):  # import, then export (solar)
            server.set(power, CURRENTS)
            assert await meter.reader.poll()
            got_power, got_currents = await meter.reading()
            assert got_power == pytest.approx(power, abs=1e-4)
            assert got_currents == pytest.approx(CURRENTS, abs=1e-3)
        # One request per run of consecutive registers, nothing more.
        assert server.requests == 2 * len(meter.reader.requests)
    finally:
        await meter.reader.close()
        await server.stop()


async def test_a_load_step_up_and_down_is_seen_at_the_next_poll(meter: Meter) -> None:
    meter.server.set(20.0, CURRENTS)
    await started(meter)
    power, currents = await meter.reading()
    assert power == pytest.approx(20.0)
    assert currents == pytest.approx(CURRENTS)

    meter.server.set(80.0, (120.0, 118.0, 119.0))
    meter.next_poll()
    power, currents = await meter.reading()
    assert power == pytest.approx(80.0)
    assert currents == pytest.approx((120.0, 118.0, 119.0))

    meter.server.set(15.0, CURRENTS)
    meter.next_poll()
    assert (await meter.reading())[0] == pytest.approx(15.0)

    # The clock, not the wall, decides when to poll: without it moving, nothing more is read.
    requests = meter.server.requests
    await asyncio.sleep(0)
    assert meter.readings.empty()
    assert meter.server.requests == requests


async def test_a_map_without_currents_delivers_none(sdm630: SiteMeterServer) -> None:
    sdm630.set(5.5, CURRENTS)
    power_only = {"power": {"address": 52, "table": "input", "type": "float32", "scale": 0.001}}
    meter = Meter(sdm630, meter_config(sdm630.port, registers=power_only))
    try:
        assert await meter.reader.poll()
        power, currents = await meter.reading()
        assert power == pytest.approx(5.5)
        assert currents is None
        assert [(r.address, r.count) for r in meter.reader.requests] == [(52, 2)]
    finally:
        await meter.reader.close()


@pytest.mark.parametrize(
    ("registers", "refused"),
    [
        # The SDM630 keeps its power in input registers; this map asks the holding table.
        ({"power": {"address": 52, "table": "holding"}}, "holding registers 52-53"),
        # An address the meter does not have.
        ({"power": {"address": 1000, "table": "input"}}, "input registers 1000-1001"),
    ],
)
async def test_a_wrong_register_map_is_logged_clearly_and_delivers_nothing(
    sdm630: SiteMeterServer,
    caplog: pytest.LogCaptureFixture,
    registers: dict[str, Any],
    refused: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    meter = await started(Meter(sdm630, meter_config(sdm630.port, registers=registers)))
    try:
        why = await meter.failure()
        assert refused in why
        assert "Modbus exception 2 (illegal data address)" in why
        assert "check the register map's table and addresses" in why
        lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert lines == [f"site meter 127.0.0.1:{sdm630.port}: no reading: {why}"]
        # Polling goes on, and the same complaint is not repeated every second.
        for _ in range(3):
            meter.next_poll()
            assert refused in await meter.failure()
        assert len([r for r in caplog.records if r.name == LOGGER]) == 1
        assert meter.readings.empty()
    finally:
        await meter.reader.close()


async def test_a_reading_that_does_not_decode_is_dropped(
    meter: Meter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    meter.server.set_registers("input", 52, [0x7FC0, 0x0000])  # NaN: a meter that cannot measure
    assert not await meter.reader.poll()
    why = await meter.failure()
    assert "power at input register 52 (float32, big word first) does not decode" in why
    assert "not a number" in why
    assert meter.readings.empty()
    meter.server.set(3.0, CURRENTS)
    assert await meter.reader.poll()
    assert (await meter.reading())[0] == pytest.approx(3.0)


async def test_an_unreachable_meter_at_start_up_is_logged_and_read_once_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = SiteMeterServer("eastron-sdm630")
    await server.start()
    await server.stop()  # its port is now closed: connecting is refused
    meter = await started(Meter(server, meter_config(server.port)))
    try:
        why = await meter.failure()
        assert why.startswith("cannot connect")
        meter.next_poll()
        await meter.failure()
        assert meter.readings.empty()
        assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
            f"site meter 127.0.0.1:{server.port}: no reading: {why}"
        ]

        server.set(12.0, CURRENTS)
        await server.start()
        meter.next_poll()
        assert (await meter.reading())[0] == pytest.approx(12.0)
        assert (
            f"site meter 127.0.0.1:{server.port}: reading again after 2 failed poll(s): 12.000 kW"
            in caplog.messages
        )
    finally:
        await meter.reader.close()
        await server.stop()


async def test_a_meter_that_falls_silent_is_read_again_when_it_returns(
    meter: Meter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    meter.server.set(30.0, CURRENTS)
    await started(meter)
    assert (await meter.reading())[0] == pytest.approx(30.0)

    await meter.server.stop()
    for _ in range(3):
        meter.next_poll()
        await meter.failure()
    assert meter.readings.empty()

    meter.server.set(45.0, CURRENTS)
    await meter.server.start()
    meter.next_poll()
    assert (await meter.reading())[0] == pytest.approx(45.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the first failure, then the return; the rest held back
    assert "no reading" in warnings[0]
    assert "reading again after 3 failed poll(s): 45.000 kW" in warnings[1]

    # A new problem after the return is reported at once, not held back by the old one's.
    await meter.server.stop()
    meter.next_poll()
    await meter.failure()
    assert "no reading" in caplog.records[-1].getMessage()


async def test_close_stops_polling_and_can_be_repeated(meter: Meter) -> None:
    await started(meter)
    await meter.reading()
    await meter.reader.close()
    requests = meter.server.requests
    meter.next_poll()
    await asyncio.sleep(0)
    assert meter.server.requests == requests
    await meter.reader.close()


async def test_a_failing_receiver_does_not_stop_the_polls(
    meter: Meter, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    def receiver(power: float, currents: tuple[float, float, float] | None) -> None:
        calls.append(power)
        raise RuntimeError("boom")

    reader = ModbusMeterReader(meter.reader.config, meter.clock, receiver, poll_timeout=0.5)
    try:
        assert await reader.poll()
        assert await reader.poll()
        assert len(calls) == 2
        assert "the reading's receiver failed" in caplog.text
    finally:
        await reader.close()


def test_the_start_up_line_names_the_meter() -> None:
    reader = ModbusMeterReader(
        ModbusMeterConfig(type="modbus", host="10.0.0.5", model="eastron-sdm630"),
        ManualClock(),
        lambda power, currents: None,
    )
    assert reader.description == (
        "site meter: Modbus TCP 10.0.0.5:502 unit 1, eastron-sdm630, every 1 s"
    )
    explicit = ModbusMeterConfig(
        type="modbus",
        host="meter.local",
        port=1502,
        unit=3,
        interval=0.5,
        registers=RegisterMap.model_validate({"power": {"address": 0}}),
    )
    described = ModbusMeterReader(explicit, ManualClock(), lambda power, currents: None)
    assert described.description == (
        "site meter: Modbus TCP meter.local:1502 unit 3, explicit register map, every 0.5 s"
    )
    # Each poll fits in its interval.
    assert described.poll_timeout < explicit.interval


def test_the_documented_examples_are_valid_and_the_map_is_the_em24_preset() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "site-meter.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    meters = [
        SiteConfig.model_validate_json(json.dumps(json.loads("{" + block + "}")["site"]))
        for block in blocks
    ]
    by_model, explicit = (site.meter for site in meters)
    assert isinstance(by_model, ModbusMeterConfig)
    assert by_model.model == "eastron-sdm630"
    assert isinstance(explicit, ModbusMeterConfig)
    assert explicit.register_map == PRESETS["carlo-gavazzi-em24"]
