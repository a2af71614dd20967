"""Independent checks of properties 1-4 of docs/electrical-allocation.md, in plain Python.

Nothing here uses the allocator's arrays: the station is walked again from
its dataclasses, every session's draw is worked out per node and per site
phase, and each property is checked literally (the pause check by adding the
paused session's minimum to the minimums of those ahead of it).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from allocator import GroupNode
from allocator.electrical_types import (
    SITE_PHASES,
    TOLERANCE,
    ACCharger,
    DCCharger,
    ElectricalDemand,
    ElectricalLimit,
)
from tests.allocator.electrical_strategies import ElectricalCase

Key = tuple[str, str]  # (node, "kW" | "L1" | "L2" | "L3")


@dataclass(frozen=True)
class Info:
    ac: bool
    phases: tuple[str, ...]
    voltage: float
    step_kw: float
    step_a: float
    min_kw: float
    cap_kw: float
    pinned_kw: float | None


class Model:
    def __init__(self, case: ElectricalCase) -> None:
        station = case.station
        self.case = case
        self.limit: dict[Key, float] = {}
        self.above: dict[str, list[str]] = {}
        root = "station"
        self.limit[root, "kW"] = (
            math.inf if case.root_limit == math.inf else max(0, math.floor(case.root_limit))
        )
        for p in SITE_PHASES:
            if station.grid_current_limit is not None:
                self.limit[root, p] = station.grid_current_limit

        def walk(group: GroupNode, path: list[str]) -> None:
            self.limit[group.id, "kW"] = math.floor(group.max_power)
            if group.id in station.group_max_current:
                for p in SITE_PHASES:
                    self.limit[group.id, p] = station.group_max_current[group.id]
            for charger_id in group.chargers:
                self.above[charger_id] = ["charger:" + charger_id, group.id, *path]
            for sub in group.groups:
                walk(sub, [group.id, *path])

        for group in station.tree.groups:
            walk(group, [root])
        self.charger_kw: dict[str, int] = {}
        for charger in station.tree.chargers:
            key = "charger:" + charger.id
            self.charger_kw[charger.id] = math.floor(charger.max_power)
            self.limit[key, "kW"] = math.floor(charger.max_power)
            data = station.chargers.get(charger.id)
            if isinstance(data, ACCharger) and data.max_current is not None:
                for p in SITE_PHASES:
                    self.limit[key, p] = data.max_current
            self.above.setdefault(charger.id, [key, root])
        self.info = {d.session_id: self._info(d) for d in case.demands}
        self.demand = {d.session_id: d for d in case.demands}

    def _info(self, d: ElectricalDemand) -> Info:
        data = self.case.station.chargers.get(d.charger_id)
        charger_kw = self.charger_kw[d.charger_id]
        if isinstance(data, ACCharger):
            wiring = data.wiring or SITE_PHASES[: data.phases]
            if d.phases is None:
                used = list(range(1, data.phases + 1))
            elif isinstance(d.phases, int):
                used = list(range(1, d.phases + 1))
            else:
                used = list(d.phases)
            phases = tuple(sorted(wiring[k - 1] for k in used))
            n = len(phases)
            kw_per_a = data.voltage * n / 1000
            step = data.current_step
            min_steps = math.ceil(data.min_current / step - 1e-9)
            amps = [charger_kw / kw_per_a]
            if data.max_current is not None:
                amps.append(data.max_current)
            if d.vehicle_max_current is not None:
                amps.append(d.vehicle_max_current)
            if d.vehicle_max_power is not None:
                amps.append(max(0.0, d.vehicle_max_power / kw_per_a))
            cap_steps = max(min_steps, math.floor(min(amps) / step + 1e-9))
            return Info(
                True,
                phases,
                data.voltage,
                step * kw_per_a,
                step,
                min_steps * step * kw_per_a,
                cap_steps * step * kw_per_a,
                None if d.fixed is None else d.fixed * kw_per_a,
            )
        minimum = math.ceil(data.min_power) if isinstance(data, DCCharger) else 0
        cap = charger_kw
        if d.vehicle_max_power is not None:
            cap = min(cap, max(0, math.floor(d.vehicle_max_power)))
        return Info(False, SITE_PHASES, 230.0, 1.0, 0.0, minimum, max(cap, minimum), d.fixed)

    def draw(self, sid: str, kw: float) -> dict[Key, float]:
        """What a session at ``kw`` counts on each constraint it is on."""
        info = self.info[sid]
        amps = kw * 1000 / (info.voltage * len(info.phases))
        out: dict[Key, float] = {}
        for node in self.above[self.demand[sid].charger_id]:
            out[node, "kW"] = kw
            for p in info.phases:
                out[node, p] = amps
        return {k: v for k, v in out.items() if k in self.limit}

    def usage(self, powers: dict[str, float]) -> dict[Key, float]:
        total: dict[Key, float] = defaultdict(float)
        for sid, kw in powers.items():
            for key, amount in self.draw(sid, kw).items():
                total[key] += amount
        return total

    def pinned(self) -> dict[str, float]:
        return {s: i.pinned_kw for s, i in self.info.items() if i.pinned_kw is not None}

    def order(self) -> list[str]:
        named = list(dict.fromkeys(self.case.order or []))
        rest = sorted(
            (d for d in self.case.demands if d.session_id not in named),
            key=lambda d: (d.started_at, d.session_id),
        )
        return named + [d.session_id for d in rest]


def fits(model: Model, powers: dict[str, float]) -> bool:
    used = model.usage(powers)
    return all(used[k] <= model.limit[k] + TOLERANCE for k in used)


def check_feasible(model: Model, limits: dict[str, ElectricalLimit]) -> None:
    """Property 1, and the shape of each limit (steps, booked power, phases)."""
    assert set(limits) == set(model.info)
    powers = {sid: limit.power for sid, limit in limits.items()}
    pinned = model.pinned()
    for sid, limit in limits.items():
        info = model.info[sid]
        assert limit.phases == info.phases, sid
        if info.pinned_kw is not None:
            assert limit.bound == "pinned" and math.isclose(limit.power, info.pinned_kw)
            continue
        if info.ac:
            assert limit.current is not None
            steps = limit.current / info.step_a
            assert abs(steps - round(steps)) < 1e-6, (sid, limit)
            assert math.isclose(
                limit.power, limit.current * info.voltage * len(info.phases) / 1000, abs_tol=1e-6
            ), (sid, limit)
        else:
            assert limit.current is None
            assert limit.power == int(limit.power), (sid, limit)
        assert limit.power <= info.cap_kw + TOLERANCE, (sid, limit, info)
    used = model.usage(powers)
    pinned_used = model.usage(pinned)
    for key, amount in used.items():
        if pinned_used[key] > model.limit[key] + TOLERANCE:
            # Pinned sessions alone overfill it: nobody else below it draws.
            assert math.isclose(amount, pinned_used[key], abs_tol=1e-6), key
        else:
            assert amount <= model.limit[key] + TOLERANCE, (key, amount, model.limit[key])


def check_minimum_or_nothing(model: Model, limits: dict[str, ElectricalLimit]) -> None:
    """Property 2."""
    for sid, limit in limits.items():
        info = model.info[sid]
        if info.pinned_kw is not None:
            continue
        if limit.running:
            assert limit.power >= info.min_kw - 1e-9, (sid, limit, info)
        else:
            assert limit.power == 0 and (limit.current in (None, 0.0)), (sid, limit)
            assert info.min_kw > 0, (sid, limit)


def check_pause_only_when_needed(model: Model, limits: dict[str, ElectricalLimit]) -> None:
    """Property 3: each paused session's minimum does not fit with the minimums
    of the running sessions ahead of it in the rotation order (so not with all
    the running either)."""
    minimums = dict(model.pinned())
    running_all = {
        sid: model.info[sid].min_kw
        for sid, limit in limits.items()
        if limit.running and model.info[sid].pinned_kw is None
    }
    for sid in model.order():
        if model.info[sid].pinned_kw is not None:
            continue
        if limits[sid].running:
            minimums[sid] = model.info[sid].min_kw
            continue
        trial = {**minimums, sid: model.info[sid].min_kw}
        assert not fits(model, trial), sid
        assert not fits(model, {**model.pinned(), **running_all, **trial}), sid


def check_fair(model: Model, limits: dict[str, ElectricalLimit]) -> None:
    """Property 4, as docs/electrical-allocation.md words it.

    Work-conserving: no running session above its minimum and below its own
    cap could take one more step (every constraint it is on has room for it).
    Fair: every such session has a saturated constraint (its slack is less
    than one step of each running session on it, added up: what rounding
    everyone down may leave) on which no running session above its own minimum
    has more power than it, up to one step of each (and the room the lower
    one could not use, less than one of its steps). A session at its minimum
    is exempt (its fair share is below it), and so is any session within one
    step of its minimum on the other side.
    """
    powers = {sid: limit.power for sid, limit in limits.items()}
    used = model.usage(powers)
    free = [
        sid for sid, limit in limits.items() if limit.running and model.info[sid].pinned_kw is None
    ]
    on: dict[Key, list[str]] = defaultdict(list)
    steps: dict[Key, float] = defaultdict(float)
    for sid in free:
        for key, amount in model.draw(sid, model.info[sid].step_kw).items():
            on[key].append(sid)
            steps[key] += amount
    for sid in free:
        info = model.info[sid]
        power = powers[sid]
        if power + info.step_kw > info.cap_kw + 1e-9 or 0 < info.min_kw >= power - 1e-9:
            continue
        step_draw = model.draw(sid, info.step_kw)
        blocked = [k for k, a in step_draw.items() if used[k] + a > model.limit[k] + TOLERANCE]
        assert blocked, ("could take one more step", sid, limits[sid])
        saturated = [k for k in step_draw if used[k] + steps[k] > model.limit[k] + TOLERANCE]
        # "One step of each": sid may have been rounded down by one of its
        # steps, and the room it could not use (less than one of its steps)
        # may have gone to o, in o's steps. A step of sid is worth to o what
        # it uses on the shared constraint (step_draw[k] / o's draw per kW:
        # more with a lower voltage).
        fair_on = [
            k
            for k in saturated
            if all(
                powers[o]
                <= power
                + 2 * max(info.step_kw, step_draw[k] / model.draw(o, 1.0)[k])
                + model.info[o].step_kw
                + 1e-6
                # Held at its minimum (up to the one step a top-up may add).
                or powers[o] <= model.info[o].min_kw + model.info[o].step_kw + 1e-9
                for o in on[k]
            )
        ]
        assert fair_on, (sid, limits[sid], saturated)


def check_all(model: Model, limits: dict[str, ElectricalLimit]) -> None:
    check_feasible(model, limits)
    check_minimum_or_nothing(model, limits)
    check_pause_only_when_needed(model, limits)
    check_fair(model, limits)
