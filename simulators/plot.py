"""A picture of a simulated day: grid draw against ``gridCapacity``, the battery's energy (or,
for a station without a battery that has a ``gridCurrentLimit``, the current on each site
phase against it), and each session's power. matplotlib is optional
(``pip install 'ev-station-controller[sim]'``); it is imported only here, and only when a plot
is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from simulators.records import DayRecord

__all__ = ["PlotUnavailable", "require_matplotlib", "write_plot"]

INSTALL_HINT = "pip install 'ev-station-controller[sim]' (or: pip install matplotlib)"


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise PlotUnavailable(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None


def write_plot(record: DayRecord, path: Path | str) -> None:
    """Write the day as a PNG (three panels over the hours of the day)."""
    require_matplotlib()
    # The object API with the Agg canvas: no pyplot state, no display needed.
    from matplotlib.figure import Figure

    hours = [s.at / 3600 for s in record.samples]
    end_h = record.duration_s / 3600
    figure = Figure(figsize=(11, 9), layout="constrained")
    grid_ax, battery_ax, sessions_ax = figure.subplots(3, 1, sharex=True)
    run = f"strategy {record.strategy}" + (f", {record.variant}" if record.variant else "")
    figure.suptitle(f"{record.scenario}: {run}, {len(record.sessions)} vehicles")

    grid_ax.step(
        hours,
        [s.load_kw for s in record.samples],
        where="post",
        color="0.6",
        linewidth=0.8,
        label="station load (vehicles)",
    )
    grid_ax.step(
        hours,
        [s.grid_kw for s in record.samples],
        where="post",
        color="tab:blue",
        linewidth=1.2,
        label="grid draw",
    )
    grid_ax.axhline(
        record.grid_capacity_kw,
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"gridCapacity {record.grid_capacity_kw:g} kW",
    )
    limit = record.connection_limit_kw
    if limit is not None:
        # The whole site at the connection point (building - solar + grid draw).
        grid_ax.plot(
            hours,
            [s.connection_kw for s in record.samples],
            color="tab:purple",
            linewidth=1.0,
            label="connection point (with the building and solar)",
        )
        grid_ax.axhline(
            limit,
            color="tab:purple",
            linestyle=":",
            linewidth=1,
            label=f"connection limit {limit:g} kW",
        )
    grid_ax.set_ylabel("kW")
    exported = [c for s in record.samples if (c := s.connection_kw) is not None and c < 0]
    grid_ax.set_ylim(bottom=min([0.0, *exported]) * 1.05)
    grid_ax.legend(loc="upper left", fontsize="small")
    grid_ax.set_title("Grid draw and station load", loc="left", fontsize="medium")

    stored = [s.battery_kwh for s in record.samples]
    phase_limit = record.grid_current_limit_a
    if record.battery_capacity_kwh is None and phase_limit is not None:
        for index, (phase, colour) in enumerate(
            zip(("L1", "L2", "L3"), ("tab:brown", "0.2", "tab:gray"), strict=True)
        ):
            battery_ax.step(
                hours,
                [s.phase_a[index] for s in record.samples],
                where="post",
                color=colour,
                linewidth=1.0,
                label=phase,
            )
        battery_ax.axhline(
            phase_limit,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"gridCurrentLimit {phase_limit:g} A",
        )
        battery_ax.set_ylim(bottom=0)
        battery_ax.legend(loc="upper left", fontsize="small")
        battery_ax.set_ylabel("A")
        battery_ax.set_title("Current per site phase", loc="left", fontsize="medium")
    elif record.battery_capacity_kwh is not None and all(v is not None for v in stored):
        battery_ax.plot(hours, stored, color="tab:green", linewidth=1.2, label="stored energy")
        battery_ax.axhline(
            record.battery_capacity_kwh,
            color="tab:green",
            linestyle=":",
            linewidth=1,
            label=f"initialCapacity {record.battery_capacity_kwh:g} kWh",
        )
        battery_ax.set_ylim(0, record.battery_capacity_kwh * 1.08)
        battery_ax.legend(loc="lower left", fontsize="small")
    else:
        battery_ax.text(
            0.5, 0.5, "no battery", ha="center", va="center", transform=battery_ax.transAxes
        )
    if phase_limit is None or record.battery_capacity_kwh is not None:
        battery_ax.set_ylabel("kWh")
        battery_ax.set_title("Battery energy", loc="left", fontsize="medium")

    for session in record.sessions:
        if not session.power:
            continue
        xs = [at / 3600 for at, _ in session.power]
        ys = [kw for _, kw in session.power]
        if session.left_at is not None:
            xs.append(session.left_at / 3600)
            ys.append(0.0)
        sessions_ax.step(xs, ys, where="post", linewidth=0.8, alpha=0.85)
    sessions_ax.set_ylabel("kW")
    sessions_ax.set_ylim(bottom=0)
    sessions_ax.set_xlabel("hour of the day")
    sessions_ax.set_title("Power per session", loc="left", fontsize="medium")
    sessions_ax.set_xlim(0, end_h)
    step = 1 if end_h <= 12 else 2 if end_h <= 36 else 6
    sessions_ax.set_xticks([h for h in range(0, int(end_h) + 1, step)])
    for ax in (grid_ax, battery_ax, sessions_ax):
        ax.grid(True, linewidth=0.3, alpha=0.6)
    figure.savefig(path, dpi=110)
