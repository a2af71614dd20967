"""A grid meter served over Modbus TCP on loopback, for tests and ``ev-sim`` (docs/site-meter.md).

It is a real pymodbus server: the controller's :class:`~controller.meter.modbus.ModbusMeterReader`
reads it exactly as it reads a meter in the field. It holds only the registers of its map, in
the map's tables; anything else (another table, another address, a write) is answered with a
Modbus exception, as a real meter answers a wrong register map. Values are set from Python
with :meth:`SiteMeterServer.set` and encoded as the map says (``controller.meter.modbus.encode``,
the inverse of what the reader decodes).

    meter = SiteMeterServer("eastron-sdm630")
    await meter.start()            # 127.0.0.1, a free port: meter.port
    meter.set(42.0, (60.0, 61.0, 59.5))
    ...
    await meter.stop()             # silent; start() again serves on the same port
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from controller.config import ModbusMeterConfig, RegisterConfig, RegisterMap, StationConfig
from controller.meter.modbus import encode, register_count
from controller.meter.presets import PRESETS
from simulators.site import CLOCK_RESOLUTION_S, phase_currents

__all__ = ["SiteMeter", "SiteMeterServer"]

# Modbus function codes the meter answers: read holding (3) and read input registers (4).
_TABLE_OF_FUNCTION: Final = {3: "holding", 4: "input"}
# How long start() waits for the listening socket.
_LISTEN_TIMEOUT: Final = 5.0


class SiteMeterServer:
    """One meter (one unit id) on a loopback TCP port; values in kW and A."""

    def __init__(
        self,
        registers: RegisterMap | str,
        *,
        unit: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.registers = PRESETS[registers] if isinstance(registers, str) else registers
        self.unit = unit
        self.host = host
        # 0: a free port, chosen at start(); the bound one is kept across stop() for a restart.
        self.port = port
        self.requests = 0  # read requests answered with values
        self._values: dict[tuple[str, int], list[int]] = {}
        self._server: ModbusTcpServer | None = None
        self.set(0.0, (0.0, 0.0, 0.0) if self.registers.current is not None else None)

    def _entries(self) -> list[RegisterConfig]:
        entries = [self.registers.power]
        if self.registers.current is not None:
            entries += list(self.registers.current)
        return entries

    def set(self, power_kw: float, currents: tuple[float, float, float] | None = None) -> None:
        """What the meter shows from now on: ``power_kw`` (import positive) and, when its
        map has them, the phase currents in A (left as they were when None)."""
        # Encoded first, stored after: a value the map cannot hold changes nothing.
        power = self.registers.power
        values: dict[tuple[str, int], list[int]] = {
            (power.table, power.address): encode(power_kw, power)
        }
        if currents is not None:
            if self.registers.current is None:
                raise ValueError("this meter's register map has no currents")
            for register, current in zip(self.registers.current, currents, strict=True):
                values[(register.table, register.address)] = encode(current, register)
        self._values.update(values)

    def set_registers(self, table: str, address: int, words: list[int]) -> None:
        """Raw register values for the value the map keeps at (table, address): what a
        faulty meter would hold, e.g. a NaN float."""
        key = (table, address)
        if key not in self._values or len(words) != len(self._values[key]):
            raise ValueError(f"the map has no {len(words)}-register value at {table} {address}")
        self._values[key] = list(words)

    @property
    def serving(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen on ``host``: a free port the first time, the same port after a stop()."""
        if self._server is not None:
            return
        server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        await asyncio.wait_for(server.serve_forever(background=True), _LISTEN_TIMEOUT)
        listener = server.transport
        assert isinstance(listener, asyncio.Server)
        self.port = listener.sockets[0].getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        """Stop answering: the listening socket and every open connection close."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    def _device(self) -> SimDevice:
        blocks: dict[str, list[SimData]] = {"holding": [], "input": []}
        for register in self._entries():
            blocks[register.table].append(
                SimData(
                    register.address,
                    values=[0] * register_count(register),
                    datatype=DataType.REGISTERS,
                )
            )
        # A table the map does not use holds one register nobody may read.
        for entries in blocks.values():
            if not entries:
                entries.append(SimData(0, datatype=DataType.INVALID))
        no_bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            self.unit,
            simdata=(no_bits, list(no_bits), blocks["holding"], blocks["input"]),
            action=self._serve,
        )

    async def _serve(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this on every access, after checking that the addresses exist:
        the current values are copied into the table's registers before they are sent."""
        table = _TABLE_OF_FUNCTION.get(function_code)
        if table is None or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's readings are read-only
        for (value_table, value_address), words in self._values.items():
            if value_table == table:
                offset = value_address - start_address
                registers[offset : offset + len(words)] = words
        self.requests += 1
        return None


class SiteMeter:
    """The grid meter at a simulated site's connection point, served on loopback for the
    in-process controller of ``ev-sim``, and the grid of moments at which it is read. The
    runner sets what it shows just before each poll and has the controller's own reader poll
    it at the configured interval of the station's clock, at a point of a step where nothing
    else is in flight (simulators/README.md, "The rest of the site")."""

    def __init__(self, config: ModbusMeterConfig) -> None:
        self.interval = config.interval
        registers = config.registers if config.registers is not None else config.model
        assert registers is not None
        self.server = SiteMeterServer(registers, unit=config.unit)
        self.next_poll = 0.0  # seconds from the day's start
        self.polls = 0

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def station(self, station: StationConfig) -> StationConfig:
        """The station config with its meter pointed at this server."""
        meter = station.site.meter
        assert isinstance(meter, ModbusMeterConfig)
        served = meter.model_copy(update={"host": self.server.host, "port": self.server.port})
        site = station.site.model_copy(update={"meter": served})
        return station.model_copy(update={"site": site})

    def due(self, at: float) -> bool:
        # The clock counts from the epoch: a tick lands within its resolution (~1e-7 s).
        return at >= self.next_poll - CLOCK_RESOLUTION_S

    def show(self, power_kw: float) -> None:
        """What the meter shows from now on: the connection point's power (import positive)
        and the currents of a balanced three-phase load of it."""
        self.server.set(power_kw, phase_currents(power_kw))

    def polled(self, at: float) -> None:
        """A poll at ``at`` is over: the next is the next tick of the interval's grid (ticks
        already past are skipped, as the reader does on its own)."""
        self.polls += 1
        ticks = math.floor((at + CLOCK_RESOLUTION_S) / self.interval)
        self.next_poll = (ticks + 1) * self.interval
