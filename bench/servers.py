"""Starting, watching and stopping the server processes under test.

Every server is a real process (own session, so Ctrl-C in the terminal reaches only the harness,
which then stops it), listening on a free port of 127.0.0.1, with its output in a log file. Its CPU
use is read from ``/proc/<pid>/stat`` (utime + stime) summed over the process and its live
descendants, plus what reaped children left in cutime + cstime.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
#: A server under callgrind (`bench.callgrind`) starts ~5x slower.
WRAPPED_START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0

SERVER_NAMES = ("hub", "peer", "floor")
#: What names the hub's `.eml` writer child on its command line (`hub.core.writer_child`).
MAIL_WRITER = b"hub.core.writer_child"
FS_PROBE_FILES = 200
#: A file creation slower than this (µs) means the file system is in its slow state.
FS_SLOW_US = 150.0


class ServerError(RuntimeError):
    """A server would not start; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _own_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of one process, in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    # Fields after "(comm)": state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])


def _family(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    tree = _children()
    family, stack = [], [pid]
    while stack:
        current = stack.pop()
        family.append(current)
        stack.extend(tree.get(current, ()))
    return family


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and all its live descendants."""
    return sum(_own_ticks(p) for p in _family(pid)) / CLK_TCK


def _is_mail_writer(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return MAIL_WRITER in f.read()
    except OSError:
        return False


def mail_writer_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by the hub's `.eml` file writer processes under ``pid``."""
    return sum(_own_ticks(p) for p in _family(pid) if _is_mail_writer(p)) / CLK_TCK


def file_create_us(directory: Path, files: int = FS_PROBE_FILES) -> float:
    """Microseconds to create one small file in ``directory`` as the hub's `.eml` writer does.

    On ext4 without a journal, creating a file scans the inodes freed in the last minutes (the
    kernel's `recently_deleted`): after a mass deletion (a previous run's work directory, a pip
    install) it costs 10-20x more, in the hub's file writer, for up to six minutes. The probe's
    files are left in place: deleting them would slow the very run that follows.
    """
    from hub.core.writer_child import write_file

    directory.mkdir(parents=True, exist_ok=True)
    data = b"x" * 3000
    started = time.perf_counter()
    for i in range(files):
        write_file(str(directory / f"fs-probe-{i:05d}.eml"), data)
    return round((time.perf_counter() - started) / files * 1e6, 1)


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@dataclass
class Tenant:
    """A workspace made for the benchmark, and the token of its connector."""

    workspace: str
    token: str


@dataclass
class Server:
    """A running server: where to send requests, how, and its process."""

    name: str
    base_url: str
    token: str | None
    process: subprocess.Popen[bytes]
    log_path: Path
    notes: list[str] = field(default_factory=list)
    tenants: list[Tenant] = field(default_factory=list)
    seed: dict[str, object] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def mail_writer_cpu_seconds(self) -> float:
        return mail_writer_cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return sum(_rss_bytes(p) for p in _family(self.pid))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it lingers."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _spawn(cmd: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(server: Server, path: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Poll ``path`` until the server answers with any HTTP status (bounded in time)."""
    try:
        _poll_ready(server, path, timeout_s)
    except BaseException:
        server.stop()  # also on Ctrl-C while waiting
        raise


def _poll_ready(server: Server, path: str, timeout_s: float) -> None:
    url = f"http://{HOST}:{urlsplit(server.base_url).port}{path}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"{server.name} not ready after {timeout_s:.0f}s:\n{server.log_tail()}")


def _uvicorn(app: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _ready_timeout(wrapper: Sequence[str]) -> float:
    return WRAPPED_START_TIMEOUT_S if wrapper else START_TIMEOUT_S


def start_floor(workdir: Path, wrapper: Sequence[str] = ()) -> Server:
    port = free_port()
    env = _base_env()
    env["BENCH_FLOOR_DB"] = str(workdir / "floor.db")
    log_path = workdir / "floor.log"
    with log_path.open("wb") as log:
        process = _spawn([*wrapper, *_uvicorn("bench.floor:app", port)], env, log)
    server = Server("floor", f"http://{HOST}:{port}/scim/v2", None, process, log_path)
    _wait_ready(server, "/healthz", _ready_timeout(wrapper))
    server.notes.append("raw sqlite3, WAL, synchronous=NORMAL, one connection on the event loop")
    return server


def start_peer(workdir: Path, wrapper: Sequence[str] = ()) -> Server:
    port = free_port()
    log_path = workdir / "peer.log"
    with log_path.open("wb") as log:
        process = _spawn([*wrapper, *_uvicorn("bench.peer:app", port)], _base_env(), log)
    server = Server("peer", f"http://{HOST}:{port}/v2", None, process, log_path)
    _wait_ready(server, "/v2/ServiceProviderConfig", _ready_timeout(wrapper))
    server.notes.append("scim2-server ASGI app, AsyncInMemoryStorage (not durable)")
    return server


def _hub_cli() -> list[str]:
    script = Path(sys.executable).parent / "scim-hub"
    if script.exists():
        return [str(script)]
    found = shutil.which("scim-hub")
    if found is None:
        raise ServerError("the scim-hub command is not installed (pip install -e .)")
    return [found]


def _create_tenants(database_url: str, names: list[str], idp: str, base_url: str) -> list[Tenant]:
    """Create workspaces (admin, connector, token) straight in the database, in one process."""
    import asyncio

    from hub.core.database import open_database
    from hub.core.tenants import init_workspace

    async def go() -> list[Tenant]:
        db = open_database(database_url)
        try:
            made = []
            for name in names:
                result = await db.write(init_workspace, workspace=name, base_url=base_url, idp=idp)
                made.append(Tenant(name, result.token))
            return made
        finally:
            await db.close()

    return asyncio.run(go())


def hub_env(
    workdir: Path,
    database_url: str | None,
    port: int,
    log_level: str = "warning",
    settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The hub's environment: the harness's settings, then `settings` (`--hub-setting`)."""
    # A developer's own SCIM_HUB_* settings must not leak into the benchmark.
    env = {k: v for k, v in _base_env().items() if not k.startswith("SCIM_HUB_")}
    env["SCIM_HUB_DATABASE_URL"] = database_url or f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
    env["SCIM_HUB_BASE_URL"] = f"http://{HOST}:{port}"
    env["SCIM_HUB_LOG_LEVEL"] = log_level
    env["SCIM_HUB_LOG_FORMAT"] = "json"
    env["SCIM_HUB_OUTBOX_DIR"] = str(workdir / "outbox")  # activation emails as .eml files
    for name, value in (settings or {}).items():
        env[f"SCIM_HUB_{name.upper()}"] = value
    return env


def run_hub_cli(args: list[str], env: dict[str, str], timeout_s: float = 120) -> str:
    done = subprocess.run(
        [*_hub_cli(), *args], cwd=REPO, env=env, capture_output=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise ServerError(
            f"scim-hub {' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stdout.decode(errors='replace')}\n{done.stderr.decode(errors='replace')}"
        )
    return done.stdout.decode()


def start_hub(
    workdir: Path,
    database_url: str | None = None,
    workers: int = 1,
    *,
    tenants: int = 1,
    idp: str = "generic_scim",
    seed_users: int = 0,
    seed_timeout_s: float = 1800,
    log_level: str = "warning",
    wrapper: Sequence[str] = (),
    settings: Mapping[str, str] | None = None,
) -> Server:
    """Migrate a fresh database, create workspace(s) + token(s), optionally seed, then serve.

    Migration and workspaces (`hub.migrate.upgrade`, `tenants.init_workspace`, as `scim-hub db
    upgrade` and `scim-hub init` do) run in this process; with `seed_users`, `scim-hub seed` loads
    that many users into the first workspace (`server.seed` holds its report). `wrapper` goes
    before the serving command (`bench.callgrind.command`); `settings` are hub settings by name
    (`--hub-setting`).
    """
    port = free_port()
    env = hub_env(workdir, database_url, port, log_level, settings)
    # A workspace of its own, so that a reused database (PostgreSQL) can be benched again.
    stamp = f"bench-{int(time.time())}-{os.getpid()}"
    # Migrate and create the workspaces in this process: two `scim-hub` starts fewer per run.
    from hub.migrate import upgrade

    upgrade(env["SCIM_HUB_DATABASE_URL"])
    names = [stamp] + [f"{stamp}-t{i:03d}" for i in range(1, tenants)]
    made = _create_tenants(env["SCIM_HUB_DATABASE_URL"], names, idp, env["SCIM_HUB_BASE_URL"])
    seed: dict[str, object] | None = None
    if seed_users:
        args = ["seed", "--workspace", stamp, "--users", str(seed_users), "--json"]
        seed = _last_json_object(run_hub_cli(args, env, timeout_s=seed_timeout_s))
    tenant_path = "/scim/v2"
    log_path = workdir / "hub.log"
    cmd = [*wrapper, *_hub_cli(), "serve", "--host", HOST, "--port", str(port)]
    if workers != 1:
        cmd += ["--workers", str(workers)]
    with log_path.open("wb") as log:
        process = _spawn(cmd, env, log)
    server = Server("hub", f"http://{HOST}:{port}{tenant_path}", made[0].token, process, log_path)
    server.tenants = made
    server.seed = seed
    _wait_ready(server, "/healthz", _ready_timeout(wrapper))
    kind = "PostgreSQL" if database_url and database_url.startswith("postgres") else "SQLite"
    server.notes.append(f"scim-hub on {kind}, {workers} worker(s)")
    return server


def _last_json_object(text: str) -> dict[str, object]:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    value = json.loads(text)  # pretty-printed over several lines
    if not isinstance(value, dict):
        raise ServerError(f"scim-hub init --json printed no JSON object:\n{text}")
    return value


def start(
    name: str,
    workdir: Path,
    database_url: str | None = None,
    workers: int = 1,
    hub_log_level: str = "warning",
    wrapper: Sequence[str] = (),
    hub_settings: Mapping[str, str] | None = None,
) -> Server:
    if name == "hub":
        return start_hub(
            workdir,
            database_url,
            workers,
            log_level=hub_log_level,
            wrapper=wrapper,
            settings=hub_settings,
        )
    if name == "peer":
        return start_peer(workdir, wrapper)
    if name == "floor":
        return start_floor(workdir, wrapper)
    raise ValueError(f"unknown server {name!r}; expected one of {', '.join(SERVER_NAMES)}")
