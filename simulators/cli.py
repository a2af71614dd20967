"""``ev-sim``: run a scenario day against the controller and report what it delivered.

    ev-sim motorway                                  # a shipped scenario, virtual time
    ev-sim my-day.json --strategy even-split --report out.json --plot day.png
    ev-sim --compare fair,even-split depot           # the same arrivals under both strategies
    ev-sim --compare meter,fixed office              # reading the site meter, or a fixed share
    ev-sim --compare electrical,kw-only overbooked-depot  # amps and phases, or kW only
    ev-sim carpark --url ws://127.0.0.1:9000/ocpp    # real time, against a running controller

Exit status: 0 after a run, 1 when the run itself failed (chargers could not connect, the
station did not settle), 2 for a bad command line or scenario (one line per problem).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from allocator import Strategy
from simulators.bound import BoundError, BoundUnavailable, add_bounds, format_bound, require_scipy
from simulators.plot import PlotUnavailable, require_matplotlib, write_plot
from simulators.report import build_report, format_table
from simulators.runner import DayRecord, RunError, run_day
from simulators.scenarios import SCENARIO_DIR, Scenario, ScenarioError, load_scenario

__all__ = ["main"]

PROG = "ev-sim"
STRATEGIES = [s.value for s in Strategy]
# Runs of a scenario with a site, for --compare: the controller reading the site meter as the
# scenario says, or the fixed capacity an operator would need without one (gridCapacity minus
# the building's peak, no meter).
SITE_VARIANTS = ["meter", "fixed"]
# Runs of a scenario with the electrical model: the controller allocating amps per phase as the
# scenario says, or in kW only (no electrical, gridCurrentLimit or maxCurrent in its config) on
# the same chargers, cars and phase limits.
ELECTRICAL_VARIANTS = ["electrical", "kw-only"]
VARIANTS = SITE_VARIANTS + ELECTRICAL_VARIANTS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _shipped() -> str:
    return ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.json")))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Simulate a station day (chargers and vehicles over OCPP) against the "
        "controller and report energy delivered within the grid limit.",
    )
    parser.add_argument(
        "scenario", help=f"a scenario file, or the name of a shipped one ({_shipped()})"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--strategy", choices=STRATEGIES, help="override the scenario's allocation strategy"
    )
    which.add_argument(
        "--compare",
        metavar="S1,S2",
        help="run each strategy on the same arrivals and print them side by side; for a "
        "scenario with a site, 'meter' (the controller reads the site meter) and 'fixed' (no "
        "meter, gridCapacity minus the building's peak) are runs too, and for one with the "
        "electrical model 'electrical' (as the scenario says) and 'kw-only' (the controller "
        "without amps and phases, on the same physics)",
    )
    parser.add_argument(
        "--url",
        help="a running controller's OCPP base (ws://host:9000/ocpp): run in real time; its "
        "config must match the scenario's station",
    )
    parser.add_argument(
        "--rest-url",
        help="with --url: the controller's REST base (http://host:4567), for --announce-vehicles",
    )
    parser.add_argument(
        "--announce-vehicles",
        action="store_true",
        help="tell the controller each vehicle's maximum power as its session starts (REST "
        "power-update, as a backend that knows the car would); plain OCPP 1.6 never carries "
        "it, so by default every session is capped at its charger's maxPower",
    )
    parser.add_argument("--hours", type=float, help="simulate only the first HOURS of the scenario")
    parser.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help="write a PNG of the day (with --compare, one per strategy: PATH-<strategy>.png)",
    )
    parser.add_argument(
        "--bound",
        action="store_true",
        help="also solve the offline upper bound of the energy the station could have "
        "delivered to the same plug-ins (a linear program, scipy's HiGHS) and print it beside "
        "the delivered energy",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the chargers do")
    return parser


def _strategies(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str | None]:
    if args.compare is None:
        return [args.strategy]
    names = [n.strip() for n in args.compare.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES + VARIANTS]
    if unknown or not names:
        parser.error(
            f"--compare: unknown strategy {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(STRATEGIES + VARIANTS)}"
        )
    if len(set(names)) != len(names):
        parser.error("--compare: a strategy is named twice")
    if args.url is not None:
        parser.error("--compare runs the in-process controller; a running one has one strategy")
    return list(names)


def plot_path(path: Path, strategy: str, several: bool) -> Path:
    if not several:
        return path
    suffix = path.suffix or ".png"
    return path.with_name(f"{path.stem}-{strategy}{suffix}")


class _Bar:
    """A progress bar on stderr: tqdm when it is installed, else a plain one."""

    def __init__(self, label: str, hours: float) -> None:
        self.label = label
        self.total = hours
        self._tqdm: Any = None
        self._shown = -1
        try:
            tqdm = importlib.import_module("tqdm").tqdm  # optional, and untyped
        except ImportError:
            return
        self._tqdm = tqdm(total=round(hours, 2), desc=label, unit="h", leave=False, file=sys.stderr)

    def __call__(self, done_s: float, total_s: float) -> None:
        hours = round(done_s / 3600, 2)
        if self._tqdm is not None:
            self._tqdm.update(hours - self._tqdm.n)
            return
        percent = int(100 * done_s / total_s) if total_s else 100
        if percent != self._shown:
            self._shown = percent
            filled = percent * 30 // 100
            sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {percent}%")
            sys.stderr.flush()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._shown >= 0:
            sys.stderr.write("\r" + " " * (len(self.label) + 40) + "\r")
            sys.stderr.flush()


def _variant(scenario: Scenario, name: str | None) -> Scenario:
    """The scenario a run of --strategy or --compare names (ScenarioError if it has none)."""
    if name is None:
        return scenario
    if name == "meter":
        if scenario.meter is None:
            raise ScenarioError(["station.site.meter: --compare meter needs a Modbus site meter"])
        return scenario
    if name == "fixed":
        return scenario.fixed_capacity()
    if name == "electrical":
        if not scenario.station.has_electrical_model:
            raise ScenarioError(
                [
                    "station: --compare electrical needs the electrical model (electrical, "
                    "gridCurrentLimit or a group's maxCurrent)"
                ]
            )
        return scenario
    if name == "kw-only":
        return scenario.kw_only()
    return scenario.with_strategy(name)


async def _run_all(
    days: Sequence[tuple[str | None, Scenario]],
    args: argparse.Namespace,
    bar: Callable[[str, float], _Bar] | None,
) -> list[DayRecord]:
    records = []
    for name, day in days:
        label = f"{day.name} {name if name in VARIANTS else day.station.allocation.strategy}"
        hours = day.duration_hours if args.hours is None else min(args.hours, day.duration_hours)
        progress = None if bar is None else bar(label, hours)
        try:
            records.append(
                await run_day(
                    day,
                    url=args.url,
                    rest_url=args.rest_url,
                    hours=args.hours,
                    announce_vehicles=args.announce_vehicles,
                    progress=progress,
                )
            )
        finally:
            if progress is not None:
                progress.close()
        if name in VARIANTS:
            records[-1].variant = name
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    strategies = _strategies(parser, args)
    if args.hours is not None and not args.hours > 0:
        parser.error("--hours must be greater than 0")
    if args.url is not None and not args.url.startswith(("ws://", "wss://")):
        parser.error("--url must be a ws:// or wss:// URL, e.g. ws://127.0.0.1:9000/ocpp")
    for option, path in (("--report", args.report), ("--plot", args.plot)):
        if path is not None and not path.resolve().parent.is_dir():
            parser.error(f"{option}: no directory {str(path.parent)!r} to write {path.name} in")
    if args.rest_url is not None and args.url is None:
        parser.error("--rest-url goes with --url (the in-process controller needs none)")
    if args.announce_vehicles and args.url is not None and args.rest_url is None:
        parser.error("--announce-vehicles with --url needs --rest-url")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.plot is not None:
            require_matplotlib()
        if args.bound:
            require_scipy()
        scenario = load_scenario(args.scenario)
        days = [(name, _variant(scenario, name)) for name in strategies]
    except ScenarioError as error:
        for problem in error.problems:
            where = "" if problem.startswith(args.scenario) else f"{args.scenario}: "
            print(f"{PROG}: {where}{problem}", file=sys.stderr)
        if not Path(args.scenario).exists():
            print(f"{PROG}: shipped scenarios: {_shipped()}", file=sys.stderr)
        return 2
    except PlotUnavailable as error:
        print(f"{PROG}: --plot: {error}", file=sys.stderr)
        return 2
    except BoundUnavailable as error:
        print(f"{PROG}: --bound: {error}", file=sys.stderr)
        return 2

    bar = None if args.no_progress else _Bar
    try:
        records = asyncio.run(_run_all(days, args, bar))
    except RunError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130

    reports = [build_report(r) for r in records]
    if args.bound:
        try:
            add_bounds([day for _, day in days], records, reports)
        except BoundError as error:
            print(f"{PROG}: --bound: {error}", file=sys.stderr)
            return 1
    table = format_table(reports)
    print(table)
    if args.bound:
        print(format_bound(reports, table))
    for record in records:
        for problem in record.problems[:10]:
            print(f"{PROG}: {record.variant or record.strategy}: {problem}", file=sys.stderr)
    if args.report is not None:
        payload: Any = reports if args.compare is not None else reports[0]
        args.report.write_text(json.dumps(payload, indent=2) + "\n")
    if args.plot is not None:
        for record in records:
            name = record.variant or record.strategy
            write_plot(record, plot_path(args.plot, name, len(records) > 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
