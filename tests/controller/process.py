"""The controller as operators start it, for the tests that run it as a process of its own
(a SIGKILL, SIGHUP, its log on stderr, schemathesis from another thread of control)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

# The start-up lines that say where each port listens (plain ports; 0 asked for a free one).
READY = re.compile(r"(REST API on http|OCPP 1\.6J on ws)://[^:]+:(\d+)")


def controller_command(config: Path, db: Path, *extra: str) -> list[str]:
    """``python -m controller`` on loopback with free ports, this config and database."""
    return [
        sys.executable,
        "-m",
        "controller",
        *("--config", str(config), "--db", str(db)),
        *("--host", "127.0.0.1", "--rest-port", "0", "--ocpp-port", "0"),
        *extra,
    ]
