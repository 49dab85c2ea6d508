"""A `scim-hub serve` process over any database, that tests can kill and start again.

`tests.server.running_server` serves a fresh SQLite file with one worker and stops politely.
`HubProcess` adds what the reliability tests need: any database URL (PostgreSQL included), any
number of workers, a stable port across restarts, and `kill()` — SIGKILL to the whole process
group, so uvicorn's worker processes die with their supervisor, as in a machine crash.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.pg import free_port
from tests.server import STARTUP_TIMEOUT, cli_command, hub_environ, migrate_and_init, run_cli


class HubProcess:
    """One hub server: `prepare()` (migrate + init), then `start()`, `kill()`, `stop()`."""

    def __init__(self, database_url: str, workdir: Path, *, workers: int = 1, **settings: str):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workers = workers
        settings.setdefault("outbox_dir", str(workdir / "outbox"))
        self.env = hub_environ(database_url, self.base_url, **settings)
        self.process: subprocess.Popen[bytes] | None = None
        self.init: dict[str, Any] = {}
        self.starts = 0

    @property
    def token(self) -> str:
        """The connector token `prepare` made."""
        return str(self.init["token"])

    @property
    def tenant_url(self) -> str:
        """The SCIM base URL (`…/scim/v2`)."""
        return str(self.init["tenant_url"])

    @property
    def stderr_path(self) -> Path:
        """Where the server's stderr (its structlog lines) goes, across every start."""
        return self.workdir / "server.stderr"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `scim-hub ARGS` with this server's settings."""
        return run_cli(list(args), self.env)

    def prepare(self, workspace: str = "live") -> dict[str, Any]:
        """Migrate the database and create a workspace; return `init --json`'s answer."""
        self.init = migrate_and_init(self.env, workspace)
        return self.init

    def start(self) -> None:
        """Start serving and wait until `/healthz` answers."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with (
            self.stderr_path.open("ab") as stderr,
            (self.workdir / "server.stdout").open("ab") as stdout,
        ):
            self.process = subprocess.Popen(
                [
                    *cli_command(),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: kill() reaches the workers
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT * 2
        last = "no answer yet"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"scim-hub serve exited {self.process.returncode}\n{self.stderr_tail()}"
                    )
                try:
                    response = client.get(f"{self.base_url}/readyz")
                except httpx.TransportError as exc:
                    last = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last = f"/readyz answered {response.status_code}"
                time.sleep(0.05)
        raise AssertionError(f"scim-hub serve not ready ({last})\n{self.stderr_tail()}")

    def stderr_tail(self, size: int = 20_000) -> str:
        """The end of the server's stderr, for failure messages."""
        try:
            return self.stderr_path.read_text(errors="replace")[-size:]
        except OSError:
            return "(no stderr)"

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the server and every worker at once; no shutdown code runs."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(10)
        # Workers are reparented when the supervisor dies; wait until the group is gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL after `timeout` seconds."""
        if self.process is None or self.process.poll() is not None:
            self.kill()
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        self.kill()


def child_processes(parent: int, marker: bytes) -> list[int]:
    """The live (not zombie) children of `parent` whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z" and marker in cmdline:
            found.append(int(entry))
    return sorted(found)


def process_alive(pid: int) -> bool:
    """Whether `pid` is running (an exited process not yet reaped, a zombie, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
