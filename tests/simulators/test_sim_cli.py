"""``ev-sim`` on the command line: clear errors with exit status 2, and the files it writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from simulators.cli import main, plot_path

STATION = {
    "stationId": "CLI",
    "gridCapacity": 60,
    "chargers": [{"id": "CP1", "maxPower": 50, "connectors": 2}],
    "battery": {"initialCapacity": 10, "power": 20},
}


def write_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "day.json"
    arrivals = [
        {"arrival": 60, "departure": 1500, "batteryKwh": 50, "soc": 0.2, "maxPowerKw": 50},
        {"arrival": 120, "departure": 1700, "batteryKwh": 50, "soc": 0.3, "maxPowerKw": 30},
    ]
    scenario = {"name": "cli", "durationHours": 0.5, "station": STATION, "arrivals": arrivals}
    path.write_text(json.dumps(scenario))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main([*argv, "--no-progress"])
    except SystemExit as exit_:  # argparse's own errors
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_missing_scenario_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "no/such/day.json")
    assert status == 2
    assert out == ""
    assert "no/such/day.json: cannot read file" in err
    assert "shipped scenarios: carpark, depot, motorway, office" in err
    assert "Traceback" not in err


def test_an_invalid_scenario_names_each_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    visit = {"arrival": 100, "departure": 50, "batteryKwh": 50, "soc": 0.2, "maxPowerKw": 50}
    station = {**STATION, "gridCapacity": 0}
    path.write_text(json.dumps({"name": "bad", "station": station, "arrivals": [visit]}))
    status, out, err = run(capsys, str(path))
    assert status == 2
    assert out == ""
    assert err.splitlines() == [
        f"ev-sim: {path}: station.gridCapacity: must be greater than 0",
        f"ev-sim: {path}: arrivals[0]: departure must be after arrival",
    ]


def test_not_json_at_all(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{")
    status, _, err = run(capsys, str(path))
    assert status == 2
    assert "not valid JSON" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["motorway", "--compare", "fair,fastest"], "unknown strategy fastest"),
        (["motorway", "--compare", "fair,fair"], "named twice"),
        (["motorway", "--compare", "fair", "--strategy", "fair"], "not allowed with"),
        (["motorway", "--strategy", "greedy"], "invalid choice"),
        (["motorway", "--hours", "0"], "--hours must be greater than 0"),
        (["motorway", "--hours", "soon"], "invalid float value"),
        (["motorway", "--url", "http://x:9000/ocpp"], "must be a ws:// or wss:// URL"),
        (
            ["motorway", "--url", "ws://x:9000/ocpp", "--compare", "fair,even-split"],
            "a running one has one strategy",
        ),
        (["motorway", "--rest-url", "http://x:4567"], "--rest-url goes with --url"),
        (["motorway", "--url", "ws://x/ocpp", "--announce-vehicles"], "needs --rest-url"),
        (["motorway", "--report", "no/such/dir/r.json"], "--report: no directory 'no/such/dir'"),
        (["motorway", "--plot", "no/such/dir/p.png"], "--plot: no directory 'no/such/dir'"),
        ([], "required: scenario"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_plot_without_matplotlib_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    status, out, err = run(capsys, str(write_scenario(tmp_path)), "--plot", str(tmp_path / "p.png"))
    assert status == 2
    assert out == ""
    assert "--plot: plotting needs matplotlib" in err
    assert "pip install 'ev-station-controller[sim]'" in err
    assert not (tmp_path / "p.png").exists()


def test_compare_writes_a_list_of_reports_a_plot_per_strategy_and_a_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    report, plot = tmp_path / "report.json", tmp_path / "day.png"
    status, out, err = run(
        capsys,
        "--compare",
        "fair,even-split",
        str(write_scenario(tmp_path)),
        "--report",
        str(report),
        "--plot",
        str(plot),
    )
    assert status == 0, err
    header = out.splitlines()[0]
    for row in ("found no connector", "limited by the station", "limited by own curve or stay"):
        assert any(line.startswith(f"  {row}") for line in out.splitlines()), out
    assert header.startswith("cli (0.5 h, virtual)")
    assert header.split()[-2:] == ["fair", "even-split"]
    reports = json.loads(report.read_text())
    assert [r["strategy"] for r in reports] == ["fair", "even-split"]
    for r in reports:
        assert {
            "strategy",
            "gridCapacityKw",
            "peakGridPowerKw",
            "energyRequestedKwh",
            "energyDeliveredKwh",
            "driversShort",
            "driversShortList",
            "driversShortNoConnector",
            "driversShortStation",
            "driversShortVehicle",
            "jainFairness",
            "profilesSent",
            "battery",
            "sessions",
            "runtimeSeconds",
        } <= set(r)
        assert r["gridCapacityKw"] == 60
        assert r["peakGridPowerKw"] <= 60.001
        assert r["sessions"] == 2
        assert {"minKwh", "maxKwh", "endKwh", "series"} <= set(r["battery"])
    for strategy in ("fair", "even-split"):
        png = tmp_path / f"day-{strategy}.png"
        assert png.read_bytes().startswith(b"\x89PNG")


def test_a_shipped_scenario_by_name_with_one_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    report = tmp_path / "r.json"
    status, out, err = run(
        capsys, "carpark", "--strategy", "even-split", "--hours", "0.25", "--report", str(report)
    )
    assert status == 0, err
    assert out.startswith("carpark (0.2 h, virtual)")
    single = json.loads(report.read_text())
    assert single["strategy"] == "even-split"
    assert single["durationHours"] == 0.25


def test_plot_path_per_strategy() -> None:
    assert plot_path(Path("out/day.png"), "fair", several=False) == Path("out/day.png")
    assert plot_path(Path("out/day.png"), "fair", several=True) == Path("out/day-fair.png")
    assert plot_path(Path("out/day"), "even-split", several=True) == Path("out/day-even-split.png")
