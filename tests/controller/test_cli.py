"""The command line: a bad config stops start-up with exit status 2 and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from controller.cli import config_path, main


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_invalid_config_exits_2_naming_every_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "stationId": "S",
                "gridCapacity": 0,
                "chargers": [
                    {"id": "A", "maxPower": 5, "connectors": 1},
                    {"id": "B", "maxPower": -1, "connectors": 1},
                ],
            }
        )
    )
    result = run("--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "gridCapacity: must be greater than 0" in result.stderr
    assert "chargers[1].maxPower: must be greater than 0" in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    assert main(["--config", str(tmp_path / "nope.json")]) == 2


def test_config_path_precedence(tmp_path: Path) -> None:
    os.environ.pop("EV_CONTROLLER_CONFIG", None)
    assert config_path(None) == Path("config.json")
    os.environ["EV_CONTROLLER_CONFIG"] = str(tmp_path / "env.json")
    try:
        assert config_path(None) == tmp_path / "env.json"
        assert config_path(Path("flag.json")) == Path("flag.json")
    finally:
        del os.environ["EV_CONTROLLER_CONFIG"]


def test_the_environment_variable_names_the_config(tmp_path: Path) -> None:
    bad = tmp_path / "from-env.json"
    bad.write_text("{}")
    result = run(env={"EV_CONTROLLER_CONFIG": str(bad)})
    assert result.returncode == 2
    assert "from-env.json" in result.stderr
    assert "stationId: is required" in result.stderr
