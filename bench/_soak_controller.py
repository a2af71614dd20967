"""The controller under soak, as an operator runs it: ``python -m controller`` in a subprocess.

It listens on ports 0 of 127.0.0.1; the ports come from the two lines it logs once it is ready.
Its log (stderr) goes on being read into ``controller.log`` next to the database, so that the
pipe never fills and a failed run can be looked into. SIGKILL and a start on the same database
is the crash under test; SIGTERM is the clean stop at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

__all__ = ["ControllerProcess", "StartFailed"]

READY = re.compile(r"(REST API on http|OCPP 1\.6J on ws)://[^:]+:(\d+)")


class StartFailed(Exception):
    pass


class ControllerProcess:
    def __init__(self, workdir: Path, config: Path, database: Path) -> None:
        self.workdir = workdir
        self.config = config
        self.database = database
        self.log_path = workdir / "controller.log"
        self.process: asyncio.subprocess.Process | None = None
        self.rest_port = 0
        self.ocpp_port = 0
        self.starts = 0
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"

    async def start(self, timeout: float = 60.0) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "controller",
            "--config",
            str(self.config),
            "--db",
            str(self.database),
            "--host",
            "127.0.0.1",
            "--rest-port",
            "0",
            "--ocpp-port",
            "0",
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self.starts += 1
        assert self.process.stderr is not None
        ports: dict[str, int] = {}
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts}, pid {self.process.pid}\n".encode())
            async with asyncio.timeout(timeout):
                while len(ports) < 2:
                    line = await self.process.stderr.readline()
                    if not line:
                        raise StartFailed(f"the controller exited before it was ready: {line!r}")
                    log.write(line)
                    match = READY.search(line.decode(errors="replace"))
                    if match:
                        ports[match.group(1)] = int(match.group(2))
        self.rest_port = ports["REST API on http"]
        self.ocpp_port = ports["OCPP 1.6J on ws"]
        self._drain = asyncio.create_task(self._keep_reading(self.process), name="controller-log")

    async def _keep_reading(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        with open(self.log_path, "ab") as log:
            while line := await process.stderr.readline():
                log.write(line)
                log.flush()  # so that what is counted during a run is all there

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 5)
        return code

    async def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not stopped after ``timeout``; the exit status of the
        SIGTERM (None when it had to be killed)."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.wait()
            return None

    def log_errors(self) -> list[str]:
        """The controller's ERROR (and CRITICAL) log lines, without their stack traces."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line]

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def log_count(self, text: str) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(text)
        except OSError:
            return 0

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the controller process so far."""
        if self.process is None or self.process.returncode is not None:
            return None
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                # Fields after the command (which may hold spaces): utime is the 12th, stime 13th.
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int | None:
        """VmRSS of the controller process (kB), None when it is not running."""
        if self.process is None or self.process.returncode is not None:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None
