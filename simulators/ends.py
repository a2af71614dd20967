"""The controller end of a simulated day: what the runner needs from the controller it drives.

* :class:`LocalController`: a :class:`controller.app.ControllerApp` in this process on the
  runner's virtual clock, with a throwaway database. Its battery, allocations, session energy
  and profile count are read directly.
* :class:`RemoteController`: a running controller seen only through the chargers; its battery
  is modelled locally from the measured load with the controller's own
  :class:`controller.core.battery.Battery` (the peak-shaving rule of docs/allocation.md,
  "The battery").
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

import aiohttp

from controller.app import ControllerApp
from controller.config import DatabaseConfig, StationConfig
from controller.core.battery import Battery
from shell.clock import Clock

REST_TIMEOUT = 30.0  # real seconds for one REST call
SITE_POLL_TIMEOUT = 30.0  # real seconds for one read of the simulated site meter

P = ParamSpec("P")
T = TypeVar("T")

__all__ = [
    "BatteryReading",
    "ControllerEnd",
    "ControllerRest",
    "InlineExecutor",
    "LocalController",
    "RemoteController",
    "RunError",
]


class RunError(Exception):
    """The day could not be run (chargers could not connect, the station did not settle)."""


@dataclass(frozen=True, slots=True)
class BatteryReading:
    stored_kwh: float
    power_kw: float  # positive discharging, negative charging


class ControllerEnd(Protocol):
    """What the runner needs from the controller it drives."""

    @property
    def url(self) -> str: ...

    @property
    def profiles_sent(self) -> int | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def wait_ready(self) -> None:
        """Return once every charger that came online is fully set up (failsafe installed)."""
        ...

    async def finish(self) -> None:
        """Return once everything the controller started is over: its commits written and
        their outcomes handled, its calls to the chargers answered."""
        ...

    def reallocate(self) -> bool:
        """Run the reallocation the controller holds, if one is due (True if so)."""
        ...

    async def settle(self) -> None:
        """Return once the controller has nothing left to do (nothing pending, limits held)
        or a reallocation is due."""
        ...

    def settled(self) -> bool: ...

    def advance(self, now: float, load_kw: float) -> None:
        """Bring the controller's time-driven state (its battery) up to ``now``."""
        ...

    def next_wakeup(self) -> float | None: ...

    def battery(self) -> BatteryReading | None: ...

    def allocated_kw(self, transaction_id: int) -> float | None: ...

    def total_allocated_kw(self) -> float | None: ...

    def consumed_energy_kwh(self, transaction_id: int) -> float | None: ...

    async def announce_vehicle(self, transaction_id: int, max_kw: float) -> None:
        """Tell the controller what the vehicle of a transaction can take (REST)."""
        ...

    async def read_site_meter(self) -> bool:
        """Have the controller read its site meter once, now (True: it got a reading)."""
        ...


class ControllerRest:
    """The controller's REST API, for what OCPP does not carry.

    * :meth:`announce`: a vehicle's maximum power (``POST /sessions/{id}/power-update``), as a
      backend that knows the car would. OCPP 1.6 never carries it, so without this every OCPP
      session is capped at its charger's maxPower.
    * :meth:`station_differences`: how a running controller's station differs from the
      scenario's (``GET /station/status``)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                raise_for_status=True, timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT)
            )
        return self._http

    async def announce(self, transaction_id: int, max_kw: float) -> None:
        http = self._client()
        async with http.get(f"{self.base_url}/sessions", params={"status": "active"}) as answer:
            sessions = await answer.json()
        ids = [s["sessionId"] for s in sessions if s.get("transactionId") == transaction_id]
        if not ids:
            return  # already stopped
        async with http.post(
            f"{self.base_url}/sessions/{ids[0]}/power-update", json={"vehicleMaxPower": max_kw}
        ):
            pass

    async def station_differences(self, station: StationConfig) -> list[str]:
        async with self._client().get(f"{self.base_url}/station/status") as answer:
            status = await answer.json()
        differences = []
        if status["gridCapacity"] != station.grid_capacity:
            differences.append(
                f"gridCapacity {status['gridCapacity']} (scenario: {station.grid_capacity:g})"
            )
        if status.get("strategy") != str(station.allocation.strategy):
            differences.append(
                f"strategy {status.get('strategy')} (scenario: {station.allocation.strategy})"
            )
        running = {
            c["id"]: (float(c["maxPower"]), int(c["connectors"])) for c in status["chargers"]
        }
        wanted = {c.id: (c.max_power, c.connectors) for c in station.chargers}
        for charger_id in sorted(running.keys() | wanted.keys()):
            have, want = running.get(charger_id), wanted.get(charger_id)
            if have != want:
                differences.append(
                    f"charger {charger_id}: {_charger(have)} (scenario: {_charger(want)})"
                )
        battery = status.get("battery")
        have_battery = None if battery is None else (battery["initialCapacity"], battery["power"])
        want_battery = (
            None
            if station.battery is None
            else (station.battery.initial_capacity, station.battery.power)
        )
        if have_battery != want_battery:
            differences.append(f"battery {have_battery} (scenario: {want_battery})")
        return differences

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _charger(spec: tuple[float, int] | None) -> str:
    return "absent" if spec is None else f"{spec[0]:g} kW, {spec[1]} connector(s)"


class InlineExecutor(Executor):
    """Runs each call at once, on the caller's thread (the event loop's): a commit written
    this way comes back at the same point among the other events in every run."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future


class LocalController:
    """The controller in this process, on the runner's virtual clock, with a throwaway
    database. Nothing in it may depend on real time, or two runs of one scenario differ
    (they did: 196 against 200 profiles, up to 5 in 200 on a busy machine):

    * It reallocates when the runner has seen every charger's messages answered and
      everything the controller started is over (:meth:`reallocate`), not
      ``COALESCE_WINDOW`` of real time after the first event that asks for it as a
      deployed controller does: which of one step's messages fell inside that window
      depended on the machine's speed.
    * Its database writes run inline on the event loop (:class:`InlineExecutor`), not on the
      repository's thread: a commit's outcome (a start answered, a raise sent) came back
      whenever the thread was done, between whichever charger messages were being handled
      then, and the batch cut next carried a refresh that reallocates at once when one is
      due, outside the hold.
    * No periodic write-behind: it ran every second of real time, cut a batch wherever it
      fell in the day, and that batch's refresh reallocated too. What is written behind
      goes with the next commit of a proposal, and at the end.
    """

    def __init__(self, station: StationConfig, clock: Clock, workdir: Path) -> None:
        database = DatabaseConfig(path=str(workdir / "controller.db"), synchronous="NORMAL")
        self.config = station.model_copy(update={"database": database})
        self.app = ControllerApp(
            self.config,
            clock=clock,
            host="127.0.0.1",
            rest_port=0,
            ocpp_port=0,
            db_path=workdir / "controller.db",
            flush_interval=None,
            commit_executor=InlineExecutor(),
            # The runner polls the site meter itself where nothing else is in flight: a poll
            # racing the chargers' messages would reach the core before or after them.
            poll_site_meter=False,
        )
        self._rest: ControllerRest | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.app.ocpp_port}{self.config.server.ocpp_path}"

    @property
    def profiles_sent(self) -> int:
        return self.app.core.profiles_sent

    async def start(self) -> None:
        await self.app.start()
        self.app.driver.hold_reallocations()
        self._rest = ControllerRest(f"http://127.0.0.1:{self.app.rest_port}")

    async def stop(self) -> None:
        if self._rest is not None:
            await self._rest.close()
        await self.app.stop()

    async def announce_vehicle(self, transaction_id: int, max_kw: float) -> None:
        assert self._rest is not None, "start() first"
        await self._rest.announce(transaction_id, max_kw)

    async def read_site_meter(self) -> bool:
        reader = self.app.site_meter
        if reader is None:
            raise RunError("the controller has no Modbus site meter to read")
        # Virtual time: how long the loopback meter takes in real time does not matter, and
        # a poll given up on a busy machine would make two runs differ.
        reader.poll_timeout = SITE_POLL_TIMEOUT
        return await reader.poll()

    async def wait_ready(self) -> None:
        """Until every charger that takes profiles has its failsafe default installed."""
        core = self.app.core
        await self.app.wait_until(
            lambda: all(
                core.ready(charger_id)
                for charger_id, charger in core.chargers.items()
                if charger.smart_charging
            )
        )

    async def finish(self) -> None:
        writer = self.app.driver.writer
        while True:
            await writer.wait_idle()
            if not self._waiting():
                if writer.idle:  # a commit's outcome may have cut another batch
                    return
                continue
            await self.app.wait_until(lambda: not self._waiting())

    def _waiting(self) -> bool:
        """A proposal being committed, or a call out to a charger (a limit, its failsafe
        default, its configuration) not answered yet."""
        core = self.app.core
        return bool(core.pending_proposals) or any(
            charger.busy is not None or charger.waiting_for is not None
            for charger in core.chargers.values()
            if charger.connected
        )

    def reallocate(self) -> bool:
        """The runner calls this once every charger's messages are answered and
        :meth:`finish` returned: the reallocation they asked for runs now, for all of them
        at once."""
        driver = self.app.driver
        if not driver.reallocation_due:
            return False
        driver.run_held_reallocation()
        return True

    async def settle(self) -> None:
        driver = self.app.driver
        await self.app.wait_until(lambda: driver.reallocation_due or self.app.core.settled())

    def settled(self) -> bool:
        """Nothing left to do now. A limit waiting for its retry counts as settled: the
        retry is a timer on the shared clock, which the runner jumps to like any other."""
        return not self.app.driver.reallocation_due and self.app.core.settled()

    def advance(self, now: float, load_kw: float) -> None:
        self.app.driver.tick()

    def next_wakeup(self) -> float | None:
        return self.app.core.next_wakeup()

    def battery(self) -> BatteryReading | None:
        battery = self.app.core.battery
        if battery is None:
            return None
        return BatteryReading(battery.stored_energy, battery.flow().power)

    def allocated_kw(self, transaction_id: int) -> float | None:
        session = self.app.core.session_by_transaction(transaction_id)
        return None if session is None else float(session.allocated_power)

    def total_allocated_kw(self) -> float:
        return float(self.app.core.allocated_power())

    def consumed_energy_kwh(self, transaction_id: int) -> float | None:
        session = self.app.core.session_by_transaction(transaction_id)
        if session is None:
            # Stopped: the stop was committed before the charger got its answer.
            session = self.app.repository.session_by_transaction(transaction_id)
        return None if session is None else session.consumed_energy


class RemoteController:
    """A controller elsewhere, seen only through the chargers: its battery is modelled
    locally from the measured load (the station's peak-shaving rule, docs/allocation.md)."""

    def __init__(
        self, url: str, station: StationConfig, now: float, rest_url: str | None = None
    ) -> None:
        self._url = url
        self._station = station
        self._rest = None if rest_url is None else ControllerRest(rest_url)
        self._battery = (
            None
            if station.battery is None
            else Battery(
                initial_capacity=station.battery.initial_capacity,
                power=station.battery.power,
                grid_capacity=station.grid_capacity,
                now=now,
            )
        )

    @property
    def url(self) -> str:
        return self._url

    @property
    def profiles_sent(self) -> None:
        return None

    async def start(self) -> None:
        """With the REST URL, refuse to run against a station unlike the scenario's."""
        if self._rest is None:
            return
        try:
            differences = await self._rest.station_differences(self._station)
        except (aiohttp.ClientError, KeyError, TypeError, ValueError) as error:
            await self._rest.close()
            raise RunError(f"cannot read {self._rest.base_url}/station/status: {error}") from None
        if differences:
            await self._rest.close()
            raise RunError(
                "the running controller's station is not the scenario's: " + "; ".join(differences)
            )

    async def stop(self) -> None:
        if self._rest is not None:
            await self._rest.close()

    async def wait_ready(self) -> None:
        return None

    async def finish(self) -> None:
        return None

    def reallocate(self) -> bool:
        return False

    async def settle(self) -> None:
        return None

    async def announce_vehicle(self, transaction_id: int, max_kw: float) -> None:
        if self._rest is None:
            raise RunError("announcing vehicles to a running controller needs its REST URL")
        await self._rest.announce(transaction_id, max_kw)

    def settled(self) -> bool:
        return True

    async def read_site_meter(self) -> bool:
        raise RunError("a running controller reads its own meter; ev-sim cannot poll it")

    def advance(self, now: float, load_kw: float) -> None:
        if self._battery is not None:
            self._battery.set_load(load_kw, now)

    def next_wakeup(self) -> float | None:
        return None

    def battery(self) -> BatteryReading | None:
        if self._battery is None:
            return None
        return BatteryReading(self._battery.stored_energy, self._battery.flow().power)

    def allocated_kw(self, transaction_id: int) -> float | None:
        return None

    def total_allocated_kw(self) -> float | None:
        return None

    def consumed_energy_kwh(self, transaction_id: int) -> float | None:
        return None
