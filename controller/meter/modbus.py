"""The site's grid meter read over Modbus TCP (docs/site-meter.md).

:func:`decode` and :func:`encode` turn a meter's registers into a value and back, as a
:class:`~controller.config.RegisterConfig` describes them; they are pure, and the simulated
meter (``simulators/site_meter.py``) uses ``encode`` so that both ends agree by construction.

:class:`ModbusMeterReader` polls the meter every ``interval`` seconds of the station's clock
with pymodbus's async client and hands each complete reading to a callback. It never raises
out: an unreachable meter, a refused connection, a request that times out, a Modbus exception
answer (a register table or address the meter does not have) or a value that does not decode
is logged, rate-limited per meter, and that poll delivers nothing. The station core turns the
silence into the ``stale`` state after ``site.meterTimeout``; the reader just keeps polling
and reconnecting, so a meter that comes back is read again at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from controller.config import ModbusMeterConfig, RegisterConfig, RegisterMap
from controller.throttle import PeerLog
from shell.clock import Clock, sleep_until

__all__ = [
    "MeterValueError",
    "ModbusMeterReader",
    "OnFailure",
    "OnReading",
    "ReadRequest",
    "decode",
    "describe",
    "encode",
    "plan_requests",
    "register_count",
]

log = logging.getLogger(__name__)

# (power kW, import positive; the three phase currents in A, or None)
OnReading = Callable[[float, tuple[float, float, float] | None], None]
# Why a poll delivered nothing, in words (for metrics, or a test waiting for it).
OnFailure = Callable[[str], None]

# Struct codes of the types a map may name, big-endian within the 16-bit words.
_STRUCT: Final = {"float32": ">f", "int32": ">i", "int16": ">h"}
# The longest read the Modbus specification allows in one request (registers).
MAX_REGISTERS_PER_REQUEST: Final = 125
# What a poll may take at most, as a share of the interval: a poll never runs into the next.
POLL_SHARE_OF_INTERVAL: Final = 0.8
MAX_POLL_TIMEOUT: Final = 5.0

# The exception codes of the Modbus application protocol (section 7), in words.
_EXCEPTION_NAMES: Final = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

# What an operator can do about the exceptions a wrong register map causes.
_HINTS: Final = {
    1: "; the meter does not read this register table: check the map's table",
    2: "; check the register map's table and addresses against the meter's documentation",
    3: "; check the register map's addresses and types against the meter's documentation",
}


class MeterValueError(ValueError):
    """Registers that do not make a valid reading (NaN, infinity, too few registers)."""


def register_count(register: RegisterConfig) -> int:
    """How many 16-bit registers the value takes."""
    return 1 if register.type == "int16" else 2


def _words_in_big_order(words: Sequence[int], register: RegisterConfig) -> list[int]:
    ordered = list(words)
    if register.word_order == "little":
        ordered.reverse()
    return ordered


def decode(registers: list[int], register: RegisterConfig) -> float:
    """The value the registers hold, times the register's scale (kW or A).

    Raises :class:`MeterValueError` for a reading that is not one: the wrong number of
    registers, a register outside 0..65535, or a NaN or infinite result (a meter reports
    NaN for a quantity it cannot measure, which must never become a budget)."""
    count = register_count(register)
    if len(registers) != count:
        raise MeterValueError(f"{register.type} needs {count} register(s), got {len(registers)}")
    if any(not 0 <= word <= 0xFFFF for word in registers):
        raise MeterValueError(f"register values out of 0..65535: {registers}")
    raw = b"".join(word.to_bytes(2, "big") for word in _words_in_big_order(registers, register))
    (value,) = struct.unpack(_STRUCT[register.type], raw)
    scaled = float(value) * register.scale
    if not math.isfinite(scaled):
        raise MeterValueError(f"not a number: {value!r} (registers {registers})")
    return scaled


def encode(value: float, register: RegisterConfig) -> list[int]:
    """The registers a meter would hold for ``value`` (kW or A): the inverse of
    :func:`decode`, for the simulated meter. Integer types round to the nearest step of
    the scale; a value the type cannot hold raises ``ValueError``."""
    if not math.isfinite(value):
        raise ValueError(f"cannot encode {value!r}")
    raw_value = value / register.scale
    if register.type == "float32":
        try:
            raw = struct.pack(">f", raw_value)
        except OverflowError:
            raise ValueError(f"{value} does not fit float32 at scale {register.scale}") from None
    else:
        bits = 16 if register.type == "int16" else 32
        whole = round(raw_value)
        if not -(2 ** (bits - 1)) <= whole < 2 ** (bits - 1):
            raise ValueError(f"{value} does not fit {register.type} at scale {register.scale}")
        raw = struct.pack(_STRUCT[register.type], whole)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return _words_in_big_order(words, register)


@dataclass(frozen=True)
class ReadRequest:
    """One read of consecutive registers of one table, and which values it carries."""

    table: str
    address: int
    count: int
    # (index in the map's values: 0 is the power, 1..3 the currents; the register)
    values: tuple[tuple[int, RegisterConfig], ...]

    def describe(self) -> str:
        last = self.address + self.count - 1
        return f"{self.table} registers {self.address}-{last}"


def plan_requests(registers: RegisterMap) -> tuple[ReadRequest, ...]:
    """As few reads as the map allows: values of the same table that follow each other
    without a gap share one request (up to the protocol's 125 registers). Registers in a
    gap are never read, since a meter may answer those with an exception."""
    values: list[tuple[int, RegisterConfig]] = [(0, registers.power)]
    if registers.current is not None:
        values += [(phase + 1, current) for phase, current in enumerate(registers.current)]
    ordered = sorted(values, key=lambda item: (item[1].table, item[1].address))
    requests: list[ReadRequest] = []
    for index, register in ordered:
        size = register_count(register)
        last = requests[-1] if requests else None
        if (
            last is not None
            and last.table == register.table
            and last.address + last.count == register.address
            and last.count + size <= MAX_REGISTERS_PER_REQUEST
        ):
            requests[-1] = ReadRequest(
                last.table, last.address, last.count + size, (*last.values, (index, register))
            )
        else:
            requests.append(
                ReadRequest(register.table, register.address, size, ((index, register),))
            )
    return tuple(requests)


def describe(config: ModbusMeterConfig) -> str:
    """One line for the start-up log."""
    source = config.model if config.model is not None else "explicit register map"
    return (
        f"site meter: Modbus TCP {config.host}:{config.port} unit {config.unit}, "
        f"{source}, every {config.interval:g} s"
    )


def _quiet_pymodbus() -> None:
    """pymodbus logs every failed connect and unanswered request itself, once per poll; our
    own lines say the same once, rate-limited, naming the meter. An operator who sets the
    ``pymodbus`` logger's level keeps it."""
    pymodbus_log = logging.getLogger("pymodbus")
    if pymodbus_log.level == logging.NOTSET:
        pymodbus_log.setLevel(logging.CRITICAL)


class _PollFailed(Exception):
    """One poll delivered nothing; the message says why, for the log."""


class ModbusMeterReader:
    """Polls one Modbus TCP meter on the station's clock (docs/site-meter.md).

    ``on_reading(power_kw, currents)`` is called once per successful poll, on the event
    loop; ``currents`` is None when the map has none; ``on_failure(why)``, when given, once
    per poll that delivered nothing. Nothing it meets on the network or in the registers
    escapes: it is logged and the next poll tries again."""

    def __init__(
        self,
        config: ModbusMeterConfig,
        clock: Clock,
        on_reading: OnReading,
        *,
        on_failure: OnFailure | None = None,
        poll_timeout: float | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_reading = on_reading
        self._on_failure = on_failure
        self._requests = plan_requests(config.register_map)
        self._has_currents = config.register_map.current is not None
        # Real seconds a poll (connecting included) may take; below the interval, so a
        # meter that hangs never makes polls pile up. Injectable for tests.
        self.poll_timeout = (
            poll_timeout
            if poll_timeout is not None
            else min(MAX_POLL_TIMEOUT, POLL_SHARE_OF_INTERVAL * config.interval)
        )
        self._peer = f"site meter {config.host}:{config.port}"
        self._problems = PeerLog(log)
        self._failed_polls = 0
        self._readings = 0
        self.polls = 0  # polls ended
        self._poll_done = asyncio.Condition()
        self._client: AsyncModbusTcpClient | None = None
        self._task: asyncio.Task[None] | None = None
        _quiet_pymodbus()

    @property
    def description(self) -> str:
        return describe(self.config)

    @property
    def requests(self) -> tuple[ReadRequest, ...]:
        """The reads of one poll."""
        return self._requests

    async def start(self) -> None:
        """Start polling: the first poll at once, then every ``interval`` of the clock."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="site meter")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._disconnect()

    async def poll(self) -> bool:
        """One poll; True when it delivered a reading. Never raises (except cancellation)."""
        try:
            return await self._poll()
        finally:
            self.polls += 1
            async with self._poll_done:
                self._poll_done.notify_all()

    async def polled(self, count: int) -> None:
        """Until ``count`` polls have ended, delivered or not (for tests on a manual clock:
        the next tick is due only once the poll before it is over)."""
        async with self._poll_done:
            await self._poll_done.wait_for(lambda: self.polls >= count)

    async def _poll(self) -> bool:
        try:
            power, currents = await asyncio.wait_for(self._read(), self.poll_timeout)
        except _PollFailed as problem:
            self._failed(str(problem))
            return False
        except TimeoutError:
            self._disconnect()  # a late answer must not be taken for the next request's
            self._failed(f"no answer within {self.poll_timeout:g} s")
            return False
        except Exception as error:  # never let a meter stop the controller
            self._disconnect()
            self._failed(f"unexpected {type(error).__name__}: {error}")
            return False
        self._delivered(power, currents)
        return True

    # -- inside --------------------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.config.interval
        origin = self._clock.now()
        tick = 0
        while True:
            await self.poll()
            # The next tick of a fixed grid; ticks a slow poll overran are skipped, not
            # caught up with a burst.
            tick = max(tick + 1, math.floor((self._clock.now() - origin) / interval) + 1)
            await sleep_until(self._clock, origin + tick * interval)

    async def _connected_client(self) -> AsyncModbusTcpClient:
        client = self._client
        if client is not None and client.connected:
            return client
        self._disconnect()
        client = AsyncModbusTcpClient(
            self.config.host,
            port=self.config.port,
            name="site-meter",
            timeout=self.poll_timeout,
            retries=0,
            # We reconnect at the next poll ourselves, on the station's clock.
            reconnect_delay=0,
        )
        self._client = client
        if not await client.connect():
            self._disconnect()
            raise _PollFailed(
                "cannot connect (refused, unreachable or no answer within "
                f"{self.poll_timeout:g} s); trying again every {self.config.interval:g} s"
            )
        return client

    async def _read(self) -> tuple[float, tuple[float, float, float] | None]:
        client = await self._connected_client()
        values: dict[int, float] = {}
        for request in self._requests:
            registers = await self._execute(client, request)
            offset = 0
            for index, register in request.values:
                size = register_count(register)
                words = registers[offset : offset + size]
                offset += size
                try:
                    values[index] = decode(words, register)
                except MeterValueError as error:
                    what = "power" if index == 0 else f"current L{index}"
                    raise _PollFailed(
                        f"{what} at {register.table} register {register.address} "
                        f"({register.type}, {register.word_order} word first) does not "
                        f"decode: {error}"
                    ) from None
        currents = (values[1], values[2], values[3]) if self._has_currents else None
        return values[0], currents

    async def _execute(self, client: AsyncModbusTcpClient, request: ReadRequest) -> list[int]:
        read = (
            client.read_input_registers
            if request.table == "input"
            else client.read_holding_registers
        )
        try:
            response: ModbusPDU = await read(
                request.address, count=request.count, device_id=self.config.unit
            )
        except ModbusException as error:
            self._disconnect()
            raise _PollFailed(f"reading {request.describe()} failed: {error}") from None
        if response.isError():
            code = getattr(response, "exception_code", 0)
            name = _EXCEPTION_NAMES.get(code, "unknown exception")
            raise _PollFailed(
                f"the meter refused to read {request.describe()} of unit {self.config.unit}: "
                f"Modbus exception {code} ({name}){_HINTS.get(code, '')}"
            )
        registers = list(response.registers)
        if len(registers) != request.count:
            raise _PollFailed(
                f"asked {request.count} registers ({request.describe()}), got {len(registers)}"
            )
        return registers

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _failed(self, why: str) -> None:
        self._failed_polls += 1
        self._problems.log(self._peer, self._clock.now(), logging.WARNING, "no reading: %s", why)
        if self._on_failure is not None:
            try:
                self._on_failure(why)
            except Exception:
                log.exception("%s: the failure's receiver failed", self._peer)

    def _delivered(self, power: float, currents: tuple[float, float, float] | None) -> None:
        if self._failed_polls:
            log.warning(
                "%s: reading again after %d failed poll(s): %.3f kW",
                self._peer,
                self._failed_polls,
                power,
            )
            # The next problem is logged at once, not held back by an earlier one's window.
            self._problems = PeerLog(log)
            self._failed_polls = 0
        elif self._readings == 0:
            log.info("%s: first reading %.3f kW", self._peer, power)
        self._readings += 1
        try:
            self._on_reading(power, currents)
        except Exception:
            log.exception("%s: the reading's receiver failed", self._peer)
