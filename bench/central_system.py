"""The controller as an OCPP central system: ``python bench/central_system.py`` prints figures
(not part of pytest).

Three measurements of the controller's OCPP 1.6J side, loopback only, each against a station
config the benchmark generates (with the controller's database in a fresh temporary folder). The
server under test always runs alone in its own process (``multiprocessing`` spawn;
``ControllerApp`` on ports 0 with logging at WARNING) and the chargers in other processes, on a
bare RFC 6455 client (``bench/_rawws.py``) with pre-encoded frames, so that the load generator
costs far less than the server: the CPU share of both is printed, and the server's CPU time per
message. Every process raises its soft descriptor limit to the hard limit (``ulimit -n``). The
header prints the load average and a pure-Python speed figure, since this is wall-clock work on
a machine that may be shared and figures only compare within one run or across similar machines.

(1) Throughput. N chargers (default 200; a station of 22 kW chargers with a battery) connect,
    boot, start one transaction each and answer the controller's GetConfiguration and
    SetChargingProfile calls; once the server has sent nothing for 0.5 s, every charger sends
    MeterValues (a power and an energy register sampled value; unique ids) as fast as they are
    answered, one outstanding CALL each as OCPP-J 4.1.1 requires. After a warm-up, answers are
    counted over a fixed window: MeterValues answered per second. In the same run the same load
    goes to (a) a minimal central system on the mobilityhouse ``ocpp`` package
    (``bench/_ocpp_baseline.py``, its schema validation inline, the faster of its two modes):
    the ratio is printed; and (b) a ``websockets`` server that
    answers canned CALLRESULTs without any OCPP work (``start_echo`` in
    ``bench/_ocpp_servers.py``): the most any server on ``websockets``' asyncio API can do on this
    machine. Targets: about 10,000/s and at least 2.5x the baseline.

(2) Latency. 1,000 chargers of 2 connectors (22-150 kW, grid at 30 % of their sum, so every
    session is constrained) connect and boot; sessions start on 85 % of the connectors. Then,
    up to 100 times, a charger starts a transaction on a connector that was free (a fresh one
    each time) and the clock runs from the StartTransaction sent to the last SetChargingProfile
    that changed a connector's limit, received by any charger. "Last": the started connector has
    its own profile and then no CALL at all arrived for a quiet period (default 0.25 s, not
    counted). Before each start the controller is idle: quiet, and a Heartbeat answered with no
    CALL in between. Printed: p50 and p99, and how many profiles each start caused. The starts
    share a time budget (default 120 s) so that a slow controller still gives a bounded run; the
    count measured is printed. Target: p99 under 200 ms.

(3) Memory. VmRSS of the controller process (``/proc/<pid>/status``) right after it started,
    then with 5,000 chargers connected and booted, each with its failsafe default profile
    installed, and idle. Target: under 500 MB.

(4) Handshakes. 1,000 chargers connect (TCP, TLS with ``--tls``, WebSocket upgrade) and boot,
    100 at a time, as fast as the controller lets them: chargers per second, and the server's
    CPU time per charger.

``--tls`` runs every part over TLS: a CA and a server certificate for 127.0.0.1 are made at run
time with ``trustme`` (in the ``test`` extra), the controller gets them as ``server.tls`` and the
baseline and floor servers the same certificate; the chargers trust the CA. Comparing a run with
and without it gives the cost of TLS (throughput, CPU per message, memory per connection,
handshakes per second).

``--quick`` is a short smoke run (smaller sizes, shorter windows); ``--only PART`` runs one part;
``--profile DIR`` writes cProfile statistics of the controller over the throughput window and
the latency starts (py-spy on the server's pid gives the same picture with less distortion).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Run as a script: the repository root goes first on sys.path, so that ``bench`` is a package.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._ocpp_load import (  # noqa: E402
    handshake_clients,
    idle_clients,
    latency_clients,
    throughput_clients,
)
from bench._ocpp_servers import (  # noqa: E402
    BASELINE,
    CONTROLLER,
    ECHO,
    raise_fd_limit,
    rss_kib,
    server_main,
)

HOST = "127.0.0.1"
OCPP_PATH = "/ocpp"
FD_MARGIN = 256
# Below this share of a core for the server under test, the machine is busy with other work.
BUSY_MACHINE_CPU = 0.9
_SPAWN = multiprocessing.get_context("spawn")


class BenchError(Exception):
    pass


# -- station configs ---------------------------------------------------------------------------


def charger_ids(n: int) -> list[str]:
    return [f"CP{i:05d}" for i in range(1, n + 1)]


def station_config(
    n: int, *, powers: tuple[float, ...], grid_share: float, battery: bool, seed: int
) -> dict[str, Any]:
    rnd = random.Random(seed)
    powers_kw = [rnd.choice(powers) for _ in range(n)]
    chargers = [
        {"id": cid, "maxPower": kw, "connectors": 2}
        for cid, kw in zip(charger_ids(n), powers_kw, strict=True)
    ]
    config: dict[str, Any] = {
        "stationId": f"BENCH_{n}",
        "gridCapacity": round(sum(powers_kw) * grid_share),
        "chargers": chargers,
        "server": {"ocppPath": OCPP_PATH},
        # The benchmark measures what the server can do, not the per-charger rate limit.
        "ocpp": {"maxMessagesPerSecond": 10_000},
    }
    if battery:
        config["battery"] = {"initialCapacity": 200, "power": 100}
    return config


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: str


def make_tls_files(folder: Path) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1, made now (``--tls``)."""
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(str(folder / "server.crt"), str(folder / "server.key"), str(folder / "ca.crt"))
    Path(files.cert).write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
    server.private_key_pem.write_to_path(files.key)
    ca.cert_pem.write_to_path(files.ca)
    return files


def client_ca(args: argparse.Namespace) -> str | None:
    """The CA file the chargers trust with ``--tls``; None for plain ws."""
    files: TlsFiles | None = args.tls_files
    return None if files is None else files.ca


def write_config(folder: Path, name: str, config: dict[str, Any], tls: TlsFiles | None) -> str:
    """The config file, with the controller's database in ``folder`` (fresh for every part)
    and the certificate with ``--tls``."""
    config = {**config, "database": {"path": str(folder / f"{name}.db")}}
    if tls is not None:
        config["server"] = {**config["server"], "tls": {"cert": tls.cert, "key": tls.key}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    return str(path)


# -- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    pid: int
    port: int


@contextmanager
def server_process(
    kind: str, config_path: str | None, tls: TlsFiles | None, profile_path: str | None = None
) -> Iterator[Server]:
    parent, child = _SPAWN.Pipe()
    process = _SPAWN.Process(
        target=server_main,
        args=(kind, config_path, child, profile_path, None if tls is None else (tls.cert, tls.key)),
        name=f"bench-{kind}",
        daemon=True,
    )
    process.start()
    try:
        if not parent.poll(120):
            raise BenchError(f"{kind} did not start")
        _, port = parent.recv()
        assert process.pid is not None
        yield Server(process.pid, port)
    finally:
        process.terminate()
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()


@contextmanager
def client_process(target: Callable[..., None], *args: Any) -> Iterator[Connection]:
    parent, child = _SPAWN.Pipe()
    process = _SPAWN.Process(target=target, args=(child, *args), name="bench-chargers", daemon=True)
    process.start()
    try:
        yield parent
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()


def receive(conn: Connection, expected: str, timeout: float) -> dict[str, Any]:
    if not conn.poll(timeout):
        raise BenchError(f"no {expected!r} from the load generator within {timeout:.0f} s")
    kind, body = conn.recv()
    if kind == "error":
        raise BenchError(f"load generator failed:\n{body}")
    if kind != expected:
        raise BenchError(f"expected {expected!r}, got {kind!r}")
    result: dict[str, Any] = body
    return result


# -- (1) throughput ----------------------------------------------------------------------------


def bench_throughput(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    n = args.chargers
    config = station_config(
        n, powers=(22,), grid_share=0.6, battery=not args.no_battery, seed=args.seed
    )
    path = write_config(folder, "throughput", config, args.tls_files)
    print(
        f"(1) throughput: {n} chargers, one transaction each, MeterValues as fast as answered;"
        f" {'no battery' if args.no_battery else 'with a battery'};"
        f" warm-up {args.warmup:g} s, window {args.window:g} s"
    )
    rates: dict[str, float] = {}
    cpu_us: dict[str, float] = {}
    busy: list[str] = []
    for kind, label in (
        (CONTROLLER, "controller"),
        (BASELINE, "ocpp package baseline"),
        (ECHO, "websockets floor"),
    ):
        profile = _profile_path(args, f"{kind}-throughput") if kind == CONTROLLER else None
        with (
            server_process(kind, path, args.tls_files, profile) as server,
            client_process(
                throughput_clients,
                HOST,
                server.port,
                OCPP_PATH,
                charger_ids(n),
                args.warmup,
                args.window,
                server.pid,
                profile is not None,
                client_ca(args),
            ) as conn,
        ):
            result = receive(conn, "result", 120 + args.warmup + args.window)
        if result["errors"]:
            raise BenchError(
                f"{label}: {result['errors']} MeterValues not answered with a CALLRESULT"
            )
        rates[kind] = result["rate"]
        per_message = result["server_cpu"] / result["rate"] * 1e6
        cpu_us[kind] = per_message
        print(
            f"    {label:<22} {result['rate']:>7,.0f} msg/s  ({result['answered']:,} in"
            f" {result['seconds']:.1f} s; round trip {n / result['rate'] * 1000:.0f} ms;"
            f" CPU: server {result['server_cpu']:.0%} = {per_message:.0f} us/msg,"
            f" load generator {result['client_cpu']:.0%})"
        )
        if result["server_cpu"] < BUSY_MACHINE_CPU:
            busy.append(label)
        _print_profile(profile)
    if busy:
        print(
            f"    note: {', '.join(busy)} got less than {BUSY_MACHINE_CPU:.0%} of a core: other"
            " work shares this machine, so rates are low; CPU per message is the steadier"
            " figure"
        )
    ratio = rates[CONTROLLER] / rates[BASELINE]
    print(
        f"    ratio controller / baseline: {ratio:.2f}x; controller / websockets floor:"
        f" {rates[CONTROLLER] / rates[ECHO]:.0%} (the floor answers canned frames, no OCPP)"
    )
    print(
        f"    server CPU per message: controller {cpu_us[CONTROLLER]:.0f} us, baseline"
        f" {cpu_us[BASELINE]:.0f} us ({cpu_us[BASELINE] / cpu_us[CONTROLLER]:.2f}x),"
        f" websockets floor {cpu_us[ECHO]:.0f} us"
    )
    return {
        "controller": rates[CONTROLLER],
        "baseline": rates[BASELINE],
        "ratio": ratio,
        "floor": rates[ECHO],
        "cpu_controller": cpu_us[CONTROLLER],
        "cpu_baseline": cpu_us[BASELINE],
        "cpu_floor": cpu_us[ECHO],
    }


# -- (2) latency -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def bench_latency(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    n, starts = args.latency_chargers, args.starts
    config = station_config(
        n, powers=(22, 50, 75, 100, 150), grid_share=0.3, battery=False, seed=args.seed
    )
    path = write_config(folder, "latency", config, args.tls_files)
    rnd = random.Random(args.seed)
    connectors = [(i, c) for i in range(n) for c in (1, 2)]
    rnd.shuffle(connectors)
    busy = round(len(connectors) * args.busy)
    if busy + starts > len(connectors):
        raise BenchError("not enough free connectors for the starts; lower --busy")
    initial, measured = connectors[:busy], connectors[busy : busy + starts]
    print(
        f"(2) latency: {n} chargers x 2 connectors, {config['gridCapacity']:,} kW grid for"
        f" {sum(c['maxPower'] for c in config['chargers']):,} kW of chargers;"
        f" {busy} sessions, then {starts} starts on free connectors; quiet period"
        f" {args.quiet * 1000:.0f} ms"
    )
    profile = _profile_path(args, "controller-latency")
    with (
        server_process(CONTROLLER, path, args.tls_files, profile) as server,
        client_process(
            latency_clients,
            HOST,
            server.port,
            OCPP_PATH,
            charger_ids(n),
            initial,
            measured,
            args.quiet,
            args.latency_budget,
            server.pid,
            profile is not None,
            client_ca(args),
        ) as conn,
    ):
        result = receive(conn, "result", 900 + args.latency_budget)
    samples = result["samples"]
    if not samples:
        raise BenchError("no start produced a profile")
    ms = [s["latency"] * 1000 for s in samples]
    profiles = [s["profiles"] for s in samples]
    changed = [s["changed"] for s in samples]
    answer = [s["answer"] * 1000 for s in samples]
    own = [s["own"] * 1000 for s in samples]
    print(
        f"    setup: connect+boot {result['connect_s']:.1f} s, {busy} sessions"
        f" {result['sessions_s']:.1f} s; starts measured over {result['measuring_s']:.1f} s"
    )
    cut = len(samples) + result["failures"] < starts
    print(
        f"    start -> last changed profile: p50 {percentile(ms, 50):.1f} ms,"
        f" p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms"
        f" ({len(samples)} starts, {result['failures']} without a profile"
        + (f"; the {args.latency_budget:g} s budget ended the run before {starts})" if cut else ")")
    )
    print(
        f"    start -> its answer p50 {percentile(answer, 50):.1f} ms;"
        f" -> its own profile p50 {percentile(own, 50):.1f} ms"
    )
    print(
        f"    profiles per start: median {statistics.median(profiles):g}, min {min(profiles)},"
        f" max {max(profiles)} (changed: median {statistics.median(changed):g});"
        f" chargers reached per start: median"
        f" {statistics.median(s['chargers'] for s in samples):g}"
    )
    _print_profile(profile)
    return {
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "profiles": statistics.median(profiles),
        "failures": result["failures"],
        "measured": len(samples),
    }


# -- (3) memory --------------------------------------------------------------------------------


def bench_memory(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    n = args.memory_chargers
    config = station_config(n, powers=(22,), grid_share=0.5, battery=False, seed=args.seed)
    path = write_config(folder, "memory", config, args.tls_files)
    ids = charger_ids(n)
    per_process = max(1, raise_fd_limit() - FD_MARGIN)
    groups = [ids[i : i + per_process] for i in range(0, n, per_process)]
    print(
        f"(3) memory: {n} idle chargers connected and booted"
        f" ({len(groups)} load-generator process{'es' if len(groups) > 1 else ''})"
    )
    with server_process(CONTROLLER, path, args.tls_files) as server:
        time.sleep(0.5)
        before = rss_kib(server.pid)
        with _many_clients(groups, server.port, client_ca(args)) as conns:
            t = time.perf_counter()
            for conn in conns:
                receive(conn, "ready", 900)
            connected_s = time.perf_counter() - t
            time.sleep(2.0)  # let the last answers and timers settle
            after = rss_kib(server.pid)
            for conn in conns:
                conn.send(("close", None))
            for conn in conns:
                receive(conn, "result", 120)
    mb_before, mb_after = before["VmRSS"] * 1024 / 1e6, after["VmRSS"] * 1024 / 1e6
    per_charger = (after["VmRSS"] - before["VmRSS"]) / n
    print(
        f"    controller RSS before connecting {mb_before:.1f} MB; with {n} chargers"
        f" {mb_after:.1f} MB (peak {after['VmHWM'] * 1024 / 1e6:.1f} MB),"
        f" {per_charger:.1f} KiB per charger; connect+boot took {connected_s:.1f} s"
    )
    return {"before": mb_before, "after": mb_after, "per_charger_kib": per_charger}


@contextmanager
def _many_clients(groups: list[list[str]], port: int, ca: str | None) -> Iterator[list[Connection]]:
    processes, conns = [], []
    try:
        first = 0
        for group in groups:
            parent, child = _SPAWN.Pipe()
            process = _SPAWN.Process(
                target=idle_clients,
                args=(child, HOST, port, OCPP_PATH, group, first, ca),
                name="bench-chargers",
                daemon=True,
            )
            process.start()
            processes.append(process)
            conns.append(parent)
            first += len(group)
        yield conns
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()


# -- (4) handshakes -----------------------------------------------------------------------------


def bench_handshakes(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    n = args.handshake_chargers
    config = station_config(n, powers=(22,), grid_share=0.5, battery=False, seed=args.seed)
    path = write_config(folder, "handshakes", config, args.tls_files)
    print(
        f"(4) handshakes: {n} chargers connect ({'TCP + TLS' if args.tls else 'TCP'} + WebSocket"
        " upgrade) and boot, 100 at a time"
    )
    with (
        server_process(CONTROLLER, path, args.tls_files) as server,
        client_process(
            handshake_clients,
            HOST,
            server.port,
            OCPP_PATH,
            charger_ids(n),
            server.pid,
            client_ca(args),
        ) as conn,
    ):
        result = receive(conn, "result", 600)
    per_charger_ms = result["server_cpu_s"] / n * 1000
    print(
        f"    {result['rate']:,.0f} chargers/s ({n} in {result['seconds']:.1f} s); server CPU"
        f" {per_charger_ms:.2f} ms per charger; load generator CPU {result['client_cpu']:.0%}"
    )
    return {"rate": result["rate"], "cpu_ms": per_charger_ms}


# -- profiles ----------------------------------------------------------------------------------


def _profile_path(args: argparse.Namespace, name: str) -> str | None:
    if args.profile is None:
        return None
    folder = Path(args.profile)
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{name}.pstats")


def _print_profile(path: str | None, top: int = 15) -> None:
    if path is None or not Path(path).exists():
        return
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(path, stream=out).sort_stats("tottime").print_stats(top)
    print(f"    cProfile of the controller -> {path}; top {top} by own time:")
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    for line in lines[start : start + top + 1]:
        print(f"      {line}")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run, small sizes")
    parser.add_argument(
        "--only",
        action="append",
        choices=("throughput", "latency", "memory", "handshakes"),
        help="run only this part (repeatable)",
    )
    parser.add_argument("--chargers", type=int, help="(1) chargers sending MeterValues [200]")
    parser.add_argument("--warmup", type=float, help="(1) seconds before counting [3]")
    parser.add_argument("--window", type=float, help="(1) seconds counted [10]")
    parser.add_argument(
        "--no-battery",
        action="store_true",
        help="(1) a station without a battery (skips the battery's bookkeeping)",
    )
    parser.add_argument("--latency-chargers", type=int, help="(2) chargers [1000]")
    parser.add_argument("--starts", type=int, help="(2) measured starts [100]")
    parser.add_argument(
        "--busy",
        type=float,
        default=0.85,
        help="(2) share of connectors with a session before the starts [0.85]",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.25,
        help="(2) seconds without a CALL that end a start [0.25]",
    )
    parser.add_argument(
        "--latency-budget",
        type=float,
        help="(2) seconds at most for the starts; fewer are measured when the"
        " controller is slower [120]",
    )
    parser.add_argument("--memory-chargers", type=int, help="(3) idle chargers [5000]")
    parser.add_argument(
        "--handshake-chargers", type=int, help="(4) chargers that connect and boot [1000]"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="every part over TLS (wss), with certificates made at run time by trustme",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="write cProfile stats of the controller's measured parts to DIR",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "chargers": 200,
        "warmup": 1.0 if quick else 3.0,
        "window": 3.0 if quick else 10.0,
        "latency_chargers": 200 if quick else 1000,
        "starts": 20 if quick else 100,
        "latency_budget": 30.0 if quick else 120.0,
        "memory_chargers": 500 if quick else 5000,
        "handshake_chargers": 200 if quick else 1000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = args.only or ["throughput", "latency", "memory", "handshakes"]
    soft = raise_fd_limit()
    print(
        f"OCPP benchmark: python {sys.version.split()[0]}, {multiprocessing.cpu_count()} cores,"
        f" open files limit {soft}{', quick run' if args.quick else ''}"
        f"{', over TLS (certificates made by trustme)' if args.tls else ''}"
    )
    needed = max(args.chargers, args.latency_chargers, args.memory_chargers) + FD_MARGIN
    if soft < needed:
        print(
            f"note: {needed} open files needed for the largest part but the hard limit allows"
            f" {soft}; raise it (ulimit -Hn) or expect refused connections"
        )
    print(f"code: {source_revision()}")
    print(
        f"machine: load average {os.getloadavg()[0]:.2f} before the run; a pure-Python loop"
        f" of 10^6 additions takes {python_loop_ms():.0f} ms here (compare across machines)"
    )
    started = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ocpp-") as tmp:
        folder = Path(tmp)
        args.tls_files = make_tls_files(folder) if args.tls else None
        runners = {
            "throughput": bench_throughput,
            "latency": bench_latency,
            "memory": bench_memory,
            "handshakes": bench_handshakes,
        }
        for part in parts:
            results[part] = runners[part](args, folder)
            print()
    print_summary(args, results)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


def source_revision() -> str:
    """The commit measured, and whether the work tree differs from it."""
    root = ROOT
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "(not a git checkout)"
    changed = len(dirty.stdout.splitlines())
    return head.stdout.strip() + (f" with {changed} changed files" if changed else "")


def python_loop_ms() -> float:
    """A rough speed figure for this machine's Python, best of 3."""
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return best * 1000


def print_summary(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> None:
    rows: list[tuple[str, str, str, str]] = []
    if "throughput" in results:
        r = results["throughput"]
        rows += [
            (
                f"(1) MeterValues/s, controller, {args.chargers} chargers",
                f"{r['controller']:,.0f}",
                "~10,000",
                _verdict(r["controller"] >= 10_000),
            ),
            ("(1) MeterValues/s, ocpp package baseline", f"{r['baseline']:,.0f}", "", ""),
            ("(1) MeterValues/s, websockets floor (no OCPP)", f"{r['floor']:,.0f}", "", ""),
            (
                "(1) controller / baseline",
                f"{r['ratio']:.2f}x",
                ">= 2.5x",
                _verdict(r["ratio"] >= 2.5),
            ),
            ("(1) server CPU per message: controller", f"{r['cpu_controller']:.0f} us", "", ""),
            (
                "(1) server CPU per message: baseline / floor",
                f"{r['cpu_baseline']:.0f} / {r['cpu_floor']:.0f} us",
                "",
                "",
            ),
        ]
    if "latency" in results:
        r = results["latency"]
        rows += [
            (
                f"(2) start -> last profile p50, {args.latency_chargers} chargers,"
                f" {r['measured']:.0f} starts",
                f"{r['p50']:.1f} ms",
                "",
                "",
            ),
            (
                "(2) start -> last profile p99",
                f"{r['p99']:.1f} ms",
                "< 200 ms",
                _verdict(r["p99"] < 200 and not r["failures"]),
            ),
            ("(2) profiles per start (median)", f"{r['profiles']:g}", "", ""),
        ]
    if "memory" in results:
        r = results["memory"]
        rows += [
            ("(3) controller RSS before connecting", f"{r['before']:.1f} MB", "", ""),
            (
                f"(3) controller RSS, {args.memory_chargers} idle chargers",
                f"{r['after']:.1f} MB",
                "< 500 MB",
                _verdict(r["after"] < 500),
            ),
        ]
    if "handshakes" in results:
        r = results["handshakes"]
        rows += [
            (
                f"(4) chargers connected and booted per second{' (TLS)' if args.tls else ''}",
                f"{r['rate']:,.0f}",
                "",
                "",
            ),
            ("(4) server CPU per charger connected", f"{r['cpu_ms']:.2f} ms", "", ""),
        ]
    width = max(len(row[0]) for row in rows)
    print(f"{'summary':<{width}}  {'measured':>12}  {'target':>10}")
    for name, value, target, verdict in rows:
        print(f"{name:<{width}}  {value:>12}  {target:>10}  {verdict}".rstrip())


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
