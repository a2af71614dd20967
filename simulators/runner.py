"""Drive a whole station day: a scenario's vehicles on simulated chargers against a controller.

Two ways to run:

* **Virtual time** (default): an in-process :class:`controller.app.ControllerApp` and every
  charger share one :class:`shell.clock.ManualClock`. The runner jumps from event to
  event: the next arrival or departure, the next timer of any charger (meter samples,
  heartbeats), the controller's next wakeup (a battery threshold, an offline charger). After
  each jump it waits until both ends are quiet (every charger's outbox answered, no
  reallocation pending, every limit held) before it measures and jumps again, so no simulated
  time passes while messages are on the wire. A 24 h day takes a few minutes or less.
* **Real time** (``url``): the chargers connect to a running controller and the day plays
  out on the wall clock; the station config comes from the scenario and must match the
  controller's. The report is built from what the simulated chargers measured; the battery is
  then a local model of the station's peak shaving fed with the measured load.

Physics lives in the chargers (:class:`simulators.charger.ChargerModel`): between two instants
each vehicle draws ``min(limit, curve(soc))`` and its energy goes into the meter. What the
runner measures at each step, after things are quiet, holds until the next step except that a
tapering vehicle only draws less: the highest grid draw over the day is the highest one seen
at a step. Grid draw is the vehicles' actual load minus the battery's discharge plus its charge.

A scenario's ``site`` (a building, solar) adds to the grid draw at the connection point. When
the station reads a site meter, :func:`run_day` serves it on loopback
(:class:`simulators.site_meter.SiteMeter`) and the runner steps to every tick of the meter's
interval, where the controller reads it once the step is quiet (simulators/README.md, "The
rest of the site").

Drivers: an arriving driver takes a free connector (their own if the scenario names one, else
the one :class:`simulators.scenarios.ConnectorPool` picks); when none is free they wait in
line until one frees up or until their departure time. They leave at their departure time,
or as soon as they reach their target when ``leaveWhenDone`` is set (seen at the next step,
at most one meter interval later). Whoever is still plugged in when the day ends is stopped
then.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.messages import Reason
from shell.clock import Clock, ManualClock, SystemClock
from simulators.chargepoint import ChargePoint
from simulators.charger import SITE_PHASES, LocalTransaction
from simulators.ends import ControllerEnd, LocalController, RemoteController, RunError
from simulators.records import DayRecord, Sample, SessionRecord
from simulators.scenarios import ConnectorPool, PlannedVisit, Scenario, charger_specs
from simulators.site import CLOCK_RESOLUTION_S
from simulators.site_meter import SiteMeter
from simulators.vehicles import Vehicle

__all__ = ["DayRecord", "Progress", "RunError", "Sample", "SessionRecord", "StationDay", "run_day"]

# Real seconds that one settling of the station may take before the run is called stuck
# (a safety net against a wedged peer, never a timing assumption).
SETTLE_TIMEOUT = 60.0
STARTUP_TIMEOUT = 10.0
# Real time: how often the runner measures when nothing else happens (seconds).
REALTIME_SAMPLE = 5.0
# The chargers send a MeterValues sample as soon as a new limit moves a draw by this much (W):
# the controller's battery follows the reported load, so a raise it has not heard of yet would
# otherwise be drawn from the grid until the next periodic sample.
METER_ON_CHANGE_W = 1.0
# Virtual time between two drivers who would plug in at the same instant (seconds).
START_STAGGER_S = 0.001
# A vehicle counts as held back when its limit is this much below what it could take (kW).
CONSTRAINED_MARGIN_KW = 0.05
# A charger without AC phases counts as a balanced three-phase load at this voltage.
BALANCED_VOLTAGE = 230.0
# Draws may exceed limits by float noise only (W).
LIMIT_TOLERANCE_W = 1e-6
# A site the controller does not read is measured at least this often (seconds), so that the
# connection point's series shows the building and the sun between other events.
SITE_SAMPLE_S = 60.0

Progress = Callable[[float, float], None]  # (simulated seconds done, seconds in the day)


@dataclass(slots=True)
class _Visit:
    planned: PlannedVisit
    record: SessionRecord
    charge_point: ChargePoint | None = None
    connector_id: int | None = None
    transaction: LocalTransaction | None = None
    held_back: bool = False  # limit below demand over the interval that starts now
    announced: bool = False
    idle_since: float | None = None  # drawing nothing while it wants energy, since then

    @property
    def id_tag(self) -> str:
        return self.record.vehicle_id[:20]


class StationDay:
    """One scenario day: chargers, drivers and the measurements, against one controller."""

    def __init__(
        self,
        scenario: Scenario,
        controller: ControllerEnd,
        clock: Clock,
        *,
        virtual: bool,
        hours: float | None = None,
        progress: Progress | None = None,
        announce_vehicles: bool = False,
        meter_on_change_w: float | None = METER_ON_CHANGE_W,
        site_meter: SiteMeter | None = None,
    ) -> None:
        self.scenario = scenario
        self.site = None if scenario.site is None else scenario.site.profile()
        self.site_meter = site_meter
        self.announce_vehicles = announce_vehicles
        self.meter_on_change_w = meter_on_change_w
        self.station = scenario.station
        self.controller = controller
        self.clock = clock
        self.virtual = virtual
        self.progress = progress
        self.duration_s = scenario.duration_s if hours is None else min(hours * 3600, 168 * 3600)
        self.pool = ConnectorPool(self.station)
        self.charge_points: dict[str, ChargePoint] = {}
        self.visits: list[_Visit] = []
        self.upcoming: deque[_Visit] = deque()
        self.waiting: list[_Visit] = []
        self.plugged: list[_Visit] = []
        self.origin = 0.0
        battery = self.station.battery
        self.record = DayRecord(
            scenario=scenario.name,
            strategy=str(scenario.controller_config.allocation.strategy),
            mode="virtual" if virtual else "realtime",
            duration_s=self.duration_s,
            grid_capacity_kw=self.station.grid_capacity,
            battery_capacity_kwh=None if battery is None else battery.initial_capacity,
            connection_limit_kw=scenario.connection_limit_kw,
            grid_current_limit_a=self.station.grid_current_limit,
            meter_interval_s=None if site_meter is None else site_meter.interval,
        )
        self.corners: deque[float] = deque(
            [] if self.site is None else self.site.corners(self.duration_s)
        )
        for planned in scenario.visits():
            vehicle = planned.vehicle
            if vehicle.arrival >= self.duration_s:
                continue
            record = SessionRecord(
                vehicle_id=vehicle.vehicle_id,
                arrival=vehicle.arrival,
                departure=vehicle.departure,
                max_kw=vehicle.max_kw,
                requested_kwh=vehicle.requested_kwh,
                achievable_kwh=_achievable_kwh(vehicle, vehicle.arrival, self._until(vehicle)),
            )
            self.record.sessions.append(record)
            visit = _Visit(planned, record)
            self.visits.append(visit)
            self.upcoming.append(visit)

    def _until(self, vehicle: Vehicle) -> float:
        """When the vehicle's stay ends at the latest: its departure or the end of the day."""
        return min(vehicle.departure, self.duration_s)

    # -- set-up ---------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.controller.start()
        for spec in charger_specs(self.station, self.scenario.charger_quirks):
            spec = dataclasses.replace(spec, meter_interval=self.scenario.meter_interval)
            config = self.station.charger(spec.charge_point_id)
            self.charge_points[spec.charge_point_id] = ChargePoint(
                self.controller.url,
                spec,
                clock=self.clock,
                password=None if config is None else config.password,
                reconnect_delay=0.05,
                meter_on_change_w=self.meter_on_change_w,
            )
        for cp in self.charge_points.values():
            await cp.start()
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                for cp in self.charge_points.values():
                    await cp.wait_online()
                await self.controller.wait_ready()
        except TimeoutError:
            failures: dict[str, list[str]] = {}
            for cp in self.charge_points.values():
                if not cp.online:
                    reason = str(cp.last_error or "no answer")
                    failures.setdefault(reason, []).append(cp.spec.charge_point_id)
            detail = "; ".join(f"{', '.join(ids)}: {why}" for why, ids in failures.items())
            raise RunError(
                f"chargers not set up at {self.controller.url} within {STARTUP_TIMEOUT:g} s "
                f"({detail or 'failsafe limits never installed'}); is the controller running, "
                "and does its config list the scenario's chargers?"
            ) from None
        await self.quiet()
        self.origin = self.clock.now()

    async def close(self) -> None:
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                for cp in self.charge_points.values():
                    await cp.stop()
        except TimeoutError:
            raise RunError(f"the chargers did not stop within {SETTLE_TIMEOUT:g} s") from None
        finally:
            await self.controller.stop()

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> DayRecord:
        started = time.perf_counter()
        await self.open()
        try:
            await self._step(0.0)
            while True:
                now = self.clock.now() - self.origin
                if now >= self.duration_s:
                    break
                target = min(self.duration_s, self._next_event(now))
                await self._move_to(target)
                await self._step(target)
            await self._end_of_day()
        finally:
            await self.close()
        self.record.runtime_s = time.perf_counter() - started
        sent = self.controller.profiles_sent
        if sent is None:
            sent = sum(len(cp.profile_log) for cp in self.charge_points.values())
        self.record.profiles_sent = sent
        self.record.profiles_rejected = sum(
            not entry.accepted for cp in self.charge_points.values() for entry in cp.profile_log
        )
        return self.record

    def _next_event(self, now: float) -> float:
        """Seconds from the start of the day of the next thing that can change something."""
        moments: list[float] = []
        if self.upcoming:
            moments.append(self.upcoming[0].planned.vehicle.arrival)
        moments += [v.planned.vehicle.departure for v in self.waiting]
        moments += [v.planned.vehicle.departure for v in self.plugged]
        # The clock counts from the epoch: a moment of the day lands within its resolution.
        while self.corners and self.corners[0] <= now + CLOCK_RESOLUTION_S:
            self.corners.popleft()
        if self.corners:
            moments.append(self.corners[0])
        if self.site_meter is not None:
            moments.append(self.site_meter.next_poll)
        elif self.site is not None:
            ticks = math.floor((now + CLOCK_RESOLUTION_S) / SITE_SAMPLE_S)
            moments.append((ticks + 1) * SITE_SAMPLE_S)
        if self.virtual:
            assert isinstance(self.clock, ManualClock)
            for wakeup in (self.clock.next_wakeup(), self.controller.next_wakeup()):
                if wakeup is not None:
                    moments.append(wakeup - self.origin)
        else:
            moments.append(now + REALTIME_SAMPLE)
        later = [m for m in moments if m > now]
        return min(later) if later else self.duration_s

    async def _move_to(self, at: float) -> None:
        if self.virtual:
            assert isinstance(self.clock, ManualClock)
            self.clock.set(max(self.clock.now(), self.origin + at))
        else:
            await self.clock.sleep(self.origin + at - self.clock.now())

    async def _step(self, at: float) -> None:
        """Everything due at ``at``: integrate, let drivers come and go, settle, measure."""
        now = self.clock.now()
        previous = self.record.samples[-1].at if self.record.samples else at
        for cp in self.charge_points.values():
            cp.advance()
        for visit in self.plugged:
            if visit.held_back:
                visit.record.constrained_s += at - previous
        self.controller.advance(now, self._load_kw())
        # The connection point as the step finds it: just before this instant (a step of
        # the building's profile here not taken yet), and at it, before anyone reacts.
        arriving = self._connection_kw(at, left=True)
        before = self._connection_kw(at)
        await self._drivers(at)
        await self._start_arrivals(at)
        await self.quiet()
        if self.announce_vehicles and await self._announce():
            await self.quiet()
        at = self._elapsed()  # later than planned if plug-ins were staggered
        if self.site_meter is not None and self.site_meter.due(at):
            await self._read_site_meter(at)
        self._measure(at, before, arriving)
        if self.progress is not None:
            self.progress(min(at, self.duration_s), self.duration_s)

    def _elapsed(self) -> float:
        return self.clock.now() - self.origin

    async def _drivers(self, at: float) -> None:
        for visit in list(self.plugged):
            vehicle = visit.planned.vehicle
            if vehicle.done and visit.record.done_at is None:
                visit.record.done_at = at
            if vehicle.wants_to_leave(at):
                await self._leave(visit, at)
        self.waiting = [v for v in self.waiting if v.planned.vehicle.departure > at]
        while self.upcoming and self.upcoming[0].planned.vehicle.arrival <= at:
            self.waiting.append(self.upcoming.popleft())

    async def _leave(self, visit: _Visit, at: float) -> None:
        cp, connector_id = visit.charge_point, visit.connector_id
        assert cp is not None and connector_id is not None
        if cp.transaction(connector_id) is not None:
            await cp.stop_transaction(connector_id, Reason.LOCAL)
        await cp.unplug(connector_id)
        self.pool.release(cp.spec.charge_point_id, connector_id)
        visit.record.left_at = at
        self._idle(visit, at, idle=False)
        if visit.transaction is not None:
            visit.record.pauses = visit.transaction.pauses
        vehicle = visit.planned.vehicle
        visit.record.delivered_kwh = vehicle.delivered_kwh
        visit.record.unlimited_s = vehicle.unlimited_seconds(vehicle.delivered_kwh)
        self.plugged.remove(visit)

    async def _start_arrivals(self, at: float) -> None:
        """Plug in whoever waits and finds a free connector. In virtual time, drivers who would
        plug in at the same instant do so START_STAGGER_S apart, each once the last start has
        settled: the allocation breaks ties by start time, then by session id, and the
        controller's session ids are random, so simultaneous starts would make runs differ."""
        still_waiting: list[_Visit] = []
        started = 0
        for visit in self.waiting:
            planned = visit.planned
            place = self.pool.acquire(planned.charger_id, planned.connector_id, planned.chargers)
            if place is None:
                still_waiting.append(visit)
                continue
            if started and self.virtual:
                await self.quiet()
                await self._move_to(self._elapsed() + START_STAGGER_S)
                self.controller.advance(self.clock.now(), self._load_kw())
            started += 1
            at = self._elapsed()
            charger_id, connector_id = place
            cp = self.charge_points[charger_id]
            visit.charge_point, visit.connector_id = cp, connector_id
            visit.record.charger_id, visit.record.connector_id = charger_id, connector_id
            visit.record.plugged_at = at
            visit.record.plugged_achievable_kwh = _achievable_kwh(
                planned.vehicle, at, self._until(planned.vehicle)
            )
            await cp.plug_in(connector_id, planned.vehicle)
            visit.transaction = await cp.start_transaction(connector_id, visit.id_tag)
            self.plugged.append(visit)
            # The instant before the controller hears of it: the new car under its
            # TxDefaultProfile, every other at its old limit.
            self.record.start_peak_a = _highest(self.record.start_peak_a, self._site_phase_a())
        self.waiting = still_waiting

    async def _announce(self) -> bool:
        """Tell the controller what each newly started vehicle can take; True if any."""
        told = False
        for visit in self.plugged:
            tx = visit.transaction
            if visit.announced or tx is None or tx.transaction_id is None:
                continue
            visit.announced = True
            await self.controller.announce_vehicle(tx.transaction_id, visit.record.max_kw)
            told = True
        return told

    async def quiet(self) -> None:
        """Until both ends are quiet: every charger's messages answered, the controller with
        nothing pending and every limit held, at the same moment. A held reallocation runs
        only when everything before it is over (the chargers' messages answered, the
        controller's commits written and its calls answered), so what it starts from does
        not depend on how fast any of that went."""
        # The tasks the clock just woke (meter samples, heartbeats) queue their messages first.
        await asyncio.sleep(0)
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT):
                while True:
                    for cp in self.charge_points.values():
                        await cp.wait_delivered()
                    await self.controller.finish()
                    if any(cp.pending_messages for cp in self.charge_points.values()):
                        continue  # one spoke up meanwhile: all of them answered first
                    if self.controller.reallocate():
                        continue  # what it sends and commits is over first
                    await self.controller.settle()
                    if self.controller.settled() and not any(
                        cp.pending_messages for cp in self.charge_points.values()
                    ):
                        return
        except TimeoutError:
            waiting = [
                f"{cp.spec.charge_point_id} ({cp.pending_messages} unanswered)"
                for cp in self.charge_points.values()
                if cp.pending_messages
            ]
            raise RunError(
                f"the station did not settle within {SETTLE_TIMEOUT:g} s at "
                f"{_clock_text(self.clock.now() - self.origin)}: "
                f"{', '.join(waiting) or 'the controller still had limits to push'}"
            ) from None

    def _load_kw(self) -> float:
        return (
            sum(
                connector.power_w
                for cp in self.charge_points.values()
                for connector in cp.model.connectors.values()
            )
            / 1000
        )

    def _connection_kw(self, at: float, *, left: bool = False) -> float | None:
        """What the whole site takes at the connection point now: the rest of the site plus
        the vehicles' draw, minus the battery's discharge (plus its charge); None without a
        simulated site."""
        if self.site is None:
            return None
        load = self._load_kw()
        self.controller.advance(self.clock.now(), load)
        battery = self.controller.battery()
        flow = 0.0 if battery is None else battery.power_kw
        return self._site_kw(at, left=left) + load - flow

    def _site_kw(self, at: float, *, left: bool = False) -> float:
        """The rest of the site at ``at``, to the clock's resolution: the clock counts from
        the epoch, so a step of the profile at 180.6 s is reached at 180.5999999."""
        assert self.site is not None
        return self.site.net_kw(round(at, 6), left=left)

    async def _read_site_meter(self, at: float) -> None:
        """The controller reads the meter once, now that the step is quiet: the meter shows
        the connection point as it is at this instant, and whatever the reading changes
        settles before the clock moves on."""
        meter = self.site_meter
        assert meter is not None
        power = self._connection_kw(at)
        assert power is not None
        meter.show(power)
        if not await self.controller.read_site_meter():
            raise RunError(
                f"the controller could not read the simulated site meter on port "
                f"{meter.server.port} at {_clock_text(at)} (see the log)"
            )
        meter.polled(at)
        self.record.meter_polls = meter.polls
        await self.quiet()

    def _measure(
        self, at: float, before: float | None = None, arriving: float | None = None
    ) -> None:
        load = self._load_kw()
        self.controller.advance(self.clock.now(), load)
        battery = self.controller.battery()
        flow = 0.0 if battery is None else battery.power_kw
        site_kw = None if self.site is None else self._site_kw(at)
        self.record.samples.append(
            Sample(
                at=at,
                load_kw=load,
                grid_kw=load - flow,
                battery_kwh=None if battery is None else battery.stored_kwh,
                battery_kw=flow,
                allocated_kw=self.controller.total_allocated_kw(),
                site_kw=site_kw,
                connection_before_kw=before,
                connection_arriving_kw=arriving,
                phase_a=self._site_phase_a(),
            )
        )
        self.record.steps += 1
        for visit in self.plugged:
            self._check(visit, at)

    def _site_phase_a(self) -> tuple[float, float, float]:
        """The chargers' current on each site phase: an AC charger's per phase of its own
        through its wiring; any other charger as a balanced three-phase load at 230 V
        (docs/electrical-allocation.md)."""
        amps = dict.fromkeys(SITE_PHASES, 0.0)
        for cp in self.charge_points.values():
            ac = cp.spec.ac
            for connector in cp.model.connectors.values():
                if ac is None:
                    for phase in SITE_PHASES:
                        amps[phase] += connector.power_w / (3 * BALANCED_VOLTAGE)
                    continue
                for site_phase, current in zip(ac.wiring, connector.phase_a, strict=False):
                    amps[site_phase] += current
        return amps["L1"], amps["L2"], amps["L3"]

    def _idle(self, visit: _Visit, at: float, *, idle: bool) -> None:
        """Track the stretches a session draws nothing while it wants energy; the state seen
        at a step holds until the next one."""
        if idle:
            if visit.idle_since is None:
                visit.idle_since = at
            return
        if visit.idle_since is not None:
            waited = at - visit.idle_since
            visit.record.longest_wait_s = max(visit.record.longest_wait_s, waited)
            visit.idle_since = None

    def _check(self, visit: _Visit, at: float) -> None:
        cp, connector_id, tx = visit.charge_point, visit.connector_id, visit.transaction
        assert cp is not None and connector_id is not None
        connector = cp.model.connector(connector_id)
        draw_w = connector.power_w
        limit_w = cp.applied_limit_w(connector_id)
        vehicle = visit.planned.vehicle
        visit.record.power.append((at, draw_w / 1000))
        wants = connector.transaction is not None and vehicle.demand_kw() > 0
        self._idle(visit, at, idle=wants and draw_w <= 0)
        visit.held_back = (
            connector.transaction is not None
            and limit_w / 1000 < vehicle.demand_kw() - CONSTRAINED_MARGIN_KW
        )
        where = f"{_clock_text(at)} {cp.spec.charge_point_id}/{connector_id}"
        if draw_w > limit_w + LIMIT_TOLERANCE_W:
            self.record.problems.append(
                f"{where}: draws {draw_w / 1000:.3f} kW above its applied limit "
                f"{limit_w / 1000:.3f} kW"
            )
        if tx is not None and tx.transaction_id is not None and tx.stopped_at is None:
            visit.record.transaction_id = tx.transaction_id
            allocated = self.controller.allocated_kw(tx.transaction_id)
            if allocated is not None and draw_w > allocated * 1000 + LIMIT_TOLERANCE_W:
                self.record.problems.append(
                    f"{where}: draws {draw_w / 1000:.3f} kW above its allocation {allocated} kW"
                )

    async def _end_of_day(self) -> None:
        at = self.duration_s
        for visit in list(self.plugged):
            await self._leave(visit, at)
        await self.quiet()
        self._measure(at, self._connection_kw(at), self._connection_kw(at, left=True))
        for visit in self.visits:
            tx = visit.transaction
            if tx is None or tx.meter_stop is None:
                continue
            visit.record.meter_kwh = (tx.meter_stop - tx.meter_start) / 1000
            if tx.transaction_id is not None:
                visit.record.transaction_id = tx.transaction_id
                visit.record.controller_kwh = self.controller.consumed_energy_kwh(tx.transaction_id)


def _highest(
    a: tuple[float, float, float], b: tuple[float, float, float]
) -> tuple[float, float, float]:
    return max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2])


def _achievable_kwh(vehicle: Vehicle, since: float, until: float) -> float:
    """What the vehicle's own curve takes, unlimited, from ``since`` to ``until``, starting
    from its state of charge now (it has not charged before it plugs in)."""
    probe = dataclasses.replace(vehicle)
    return probe.charge(max(0.0, until - since), math.inf)


def _clock_text(at: float) -> str:
    seconds = round(at)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


async def run_day(
    scenario: Scenario,
    *,
    url: str | None = None,
    rest_url: str | None = None,
    hours: float | None = None,
    progress: Progress | None = None,
    announce_vehicles: bool = False,
) -> DayRecord:
    """Run one day of ``scenario``: in virtual time against an in-process controller, or in
    real time against the controller at ``url`` (its OCPP base, e.g. ws://host:9000/ocpp;
    ``rest_url``, e.g. http://host:4567, is needed only to announce vehicles).

    With ``announce_vehicles`` the controller is told each vehicle's maximum power as its
    session starts (see :class:`simulators.ends.VehicleAnnouncer`)."""

    def day(
        controller: ControllerEnd, clock: Clock, virtual: bool, site_meter: SiteMeter | None = None
    ) -> StationDay:
        return StationDay(
            scenario,
            controller,
            clock,
            virtual=virtual,
            hours=hours,
            progress=progress,
            announce_vehicles=announce_vehicles,
            site_meter=site_meter,
        )

    if url is not None:
        if scenario.meter is not None:
            raise RunError(
                "the scenario's station reads a site meter: ev-sim serves it only to the "
                "in-process controller (run without --url)"
            )
        clock = SystemClock()
        remote = RemoteController(url, scenario.controller_config, clock.now(), rest_url)
        return await day(remote, clock, virtual=False).run()
    meter = None if scenario.meter is None else SiteMeter(scenario.meter)
    station = scenario.controller_config
    with tempfile.TemporaryDirectory(prefix="ev-sim-") as workdir:
        try:
            if meter is not None:
                await meter.start()
                station = meter.station(station)
            virtual = ManualClock()
            local = LocalController(station, virtual, Path(workdir))
            return await day(local, virtual, virtual=True, site_meter=meter).run()
        finally:
            if meter is not None:
                await meter.stop()
