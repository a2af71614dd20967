"""The simulated grid meter (simulators/site_meter.py) seen from a plain pymodbus client: it
serves exactly the registers of its map, encoded as the map says, and refuses the rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from controller.config import RegisterConfig, RegisterMap
from controller.meter.modbus import encode
from controller.meter.presets import PRESETS
from simulators.site_meter import SiteMeterServer

WAIT = 5.0


@pytest.fixture
async def em24() -> AsyncIterator[SiteMeterServer]:
    server = SiteMeterServer("carlo-gavazzi-em24", unit=2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def connect(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=WAIT, retries=0)
    assert await asyncio.wait_for(client.connect(), WAIT)
    return client


async def test_it_serves_its_values_encoded_as_the_map_says(em24: SiteMeterServer) -> None:
    assert em24.port > 0
    em24.set(12.5, (16.0, 0.25, 31.5))
    client = await connect(em24.port)
    try:
        power = await client.read_holding_registers(0x28, count=2, device_id=2)
        # 12.5 kW is 125000 tenths of a watt = 0x0001E848, least significant word first.
        assert power.registers == [0xE848, 0x0001]
        currents = await client.read_holding_registers(0x0C, count=6, device_id=2)
        # 16 A, 0.25 A, 31.5 A in mA, each least significant word first.
        assert currents.registers == [16000, 0, 250, 0, 31500, 0]

        em24.set(-3.0)  # export; the currents stay as they were
        power = await client.read_holding_registers(0x28, count=2, device_id=2)
        assert power.registers == encode(-3.0, PRESETS["carlo-gavazzi-em24"].power)
        assert power.registers == [0x8AD0, 0xFFFF]  # -30000 in two's complement
    finally:
        client.close()


async def test_it_refuses_other_tables_other_addresses_and_writes(em24: SiteMeterServer) -> None:
    client = await connect(em24.port)
    try:
        for response in [
            await client.read_input_registers(0x28, count=2, device_id=2),
            await client.read_holding_registers(0x100, count=2, device_id=2),
            # Half inside the map, half outside.
            await client.read_holding_registers(0x28, count=4, device_id=2),
        ]:
            assert response.isError()
            assert response.exception_code == 2  # illegal data address
        written = await client.write_register(0x28, 7, device_id=2)
        assert written.isError()
        assert written.exception_code == 1  # illegal function: a meter's readings are read-only
        assert em24.requests == 0
    finally:
        client.close()


async def test_a_stopped_meter_is_silent_and_restarts_on_its_port(em24: SiteMeterServer) -> None:
    em24.set(7.0, (1.0, 2.0, 3.0))
    port = em24.port
    await em24.stop()
    assert not em24.serving
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=WAIT, retries=0)
    assert not await asyncio.wait_for(client.connect(), WAIT)  # refused
    client.close()

    await em24.start()
    assert em24.port == port
    client = await connect(port)
    try:
        power = await client.read_holding_registers(0x28, count=2, device_id=2)
        assert power.registers == encode(7.0, PRESETS["carlo-gavazzi-em24"].power)
    finally:
        client.close()


async def test_values_it_cannot_hold_are_refused_and_change_nothing() -> None:
    small = RegisterMap(power=RegisterConfig(address=0, table="holding", type="int16", scale=0.1))
    server = SiteMeterServer(small)
    server.set(12.3)
    with pytest.raises(ValueError, match="does not fit int16"):
        server.set(5000.0)
    with pytest.raises(ValueError, match="has no currents"):
        server.set(1.0, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="no 2-register value at holding 0"):
        server.set_registers("holding", 0, [0, 0])
    await server.start()
    client = await connect(server.port)
    try:
        power = await client.read_holding_registers(0, count=1, device_id=1)
        assert power.registers == [123]
    finally:
        client.close()
        await server.stop()


async def test_two_meters_serve_side_by_side() -> None:
    first, second = SiteMeterServer("eastron-sdm630"), SiteMeterServer("janitza-umg96pa")
    await first.start()
    await second.start()
    try:
        assert first.port != second.port
        first.set(1.0)
        second.set(2.0)
        for server, address, table in [(first, 52, "input"), (second, 19026, "holding")]:
            client = await connect(server.port)
            try:
                read = (
                    client.read_input_registers
                    if table == "input"
                    else client.read_holding_registers
                )
                response = await read(address, count=2, device_id=1)
                assert response.registers == encode(
                    1.0 if server is first else 2.0, server.registers.power
                )
            finally:
                client.close()
    finally:
        await first.stop()
        await second.stop()
