"""`scim-hub serve --workers N`: a socket per worker, so connections spread over the workers.

Real servers only: `scim-hub serve` processes on free ports, raw TCP connections, and the kernel's
own tables (`/proc/<pid>/fd`, `/proc/net/tcp`) to say which worker holds which connection.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubprocess import HubProcess, child_processes, process_alive
from tests.pg import free_port
from tests.server import STARTUP_TIMEOUT, run_cli

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="SO_REUSEPORT is Linux/BSD only"
)


@contextlib.contextmanager
def _serving(tmp_path: Path, name: str) -> Iterator[tuple[HubProcess, int, list[int]]]:
    """A started two-worker hub, its supervisor's pid and its workers' pids; killed at the end."""
    hub = _sqlite_hub(tmp_path, name)
    hub.start()
    assert hub.process is not None
    try:
        workers = _workers(hub.process.pid)
        assert len(workers) == 2
        yield hub, hub.process.pid, workers
    finally:
        hub.kill()


def _sqlite_hub(tmp_path: Path, name: str, workers: int = 2) -> HubProcess:
    hub = HubProcess(
        f"sqlite+aiosqlite:///{tmp_path / name / 'hub.db'}", tmp_path / name, workers=workers
    )
    hub.prepare()
    return hub


def _workers(supervisor: int) -> list[int]:
    """The worker processes `supervisor` spawned (not multiprocessing's resource tracker)."""
    return child_processes(supervisor, b"spawn_main")


def _established(port: int, state: str = "01") -> set[int]:
    """Socket inodes of the TCP sockets in `state` (01 established, 0A listening) on `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == state:
                    inodes.add(int(fields[9]))
    return inodes


def _held_by(pid: int, inodes: set[int]) -> int:
    """How many of `inodes` process `pid` has open."""
    held = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                    held += 1
    return held


@contextlib.contextmanager
def _connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _wait_listening(port: int, workers: list[int]) -> None:
    """Wait until every worker listens (the server answers as soon as the first one does)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not all(_held_by(pid, _established(port, "0A")) for pid in workers):
        assert time.monotonic() < deadline, "not every worker is listening"
        time.sleep(0.05)


def _spread(hub: HubProcess, workers: list[int], count: int) -> list[int]:
    """Connections each worker holds once all `count` are accepted (waits up to 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        inodes = _established(hub.port)
        held = [_held_by(pid, inodes) for pid in workers]
        if sum(held) >= count or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, list[int]]]:
    """A started two-worker hub and its workers' pids, every worker listening, for the tests that
    leave it as it was (killed at the end of the module)."""
    with _serving(tmp_path_factory.mktemp("serving"), "shared") as (hub, _, workers):
        _wait_listening(hub.port, workers)
        yield hub, workers


def test_connections_opened_together_spread_over_the_workers(
    serving: tuple[HubProcess, list[int]],
) -> None:
    hub, workers = serving
    # 32 connections at once, as an IdP or a load balancer opens its pool: with one socket
    # shared by the workers, the first one to wake accepted all of them.
    with _connections(hub.port, 32):
        held = _spread(hub, workers, 32)
    assert sum(held) == 32
    assert min(held) >= 4, held


def test_a_second_server_on_the_same_port_is_refused(
    serving: tuple[HubProcess, list[int]], tmp_path: Path
) -> None:
    first, _ = serving
    # Another hub, over a database of its own (a copy of the first one's: migrated, without a
    # second `scim-hub db upgrade`), whose workers would share their port with each other
    # (SO_REUSEPORT), not with us.
    (tmp_path / "second").mkdir()
    with (
        contextlib.closing(sqlite3.connect(first.workdir / "hub.db")) as source,
        contextlib.closing(sqlite3.connect(tmp_path / "second" / "hub.db")) as copy,
    ):
        source.backup(copy)
    second = HubProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'second' / 'hub.db'}", tmp_path / "second"
    )
    refused = run_cli(
        ["serve", "--host", "127.0.0.1", "--port", str(first.port), "--workers", "2"],
        second.env,
        timeout=30,
        check=False,
    )
    assert refused.returncode != 0
    assert f"cannot listen on 127.0.0.1:{first.port}" in refused.stderr


def _listening(port: int, workers: list[int]) -> dict[int, bool]:
    """Whether each of `workers` holds a socket listening on `port`."""
    sockets = _established(port, "0A")
    return {pid: _held_by(pid, sockets) > 0 for pid in workers}


def test_a_dead_worker_is_replaced_and_a_stop_ends_them_all(tmp_path: Path) -> None:
    with _serving(tmp_path, "replace") as (hub, supervisor, old):
        # The server answers once one worker listens. Killing that one before the other listens
        # would leave nobody listening for a moment: connections refused, as with one worker.
        _wait_listening(hub.port, old)
        os.kill(old[0], signal.SIGKILL)
        deadline = time.monotonic() + STARTUP_TIMEOUT  # a new worker starting
        while True:
            now = _workers(supervisor)
            # A dying process drops out of the list when its memory goes, before its sockets
            # close: wait until the killed worker has exited whole (a zombie, or reaped).
            if len(now) == 2 and old[0] not in now and not process_alive(old[0]):
                break
            assert time.monotonic() < deadline, f"workers {now} after killing {old[0]}"
            time.sleep(0.1)
        for _ in range(20):  # a new connection each time, to either worker
            try:
                answer = httpx.get(f"{hub.base_url}/readyz", timeout=5)
            except httpx.TransportError as exc:  # say what ran
                assert hub.process is not None
                ended = hub.process.poll()
                workers = _workers(supervisor)
                raise AssertionError(
                    f"{exc!r}; workers now {workers} (listening: "
                    f"{_listening(hub.port, workers)}), supervisor "
                    f"{'running' if ended is None else f'exited {ended}'}\n{hub.stderr_tail()}"
                ) from exc
            assert answer.status_code == 200
        hub.stop(timeout=30)  # SIGTERM: every worker finishes, then the supervisor
        assert hub.process is not None
        assert hub.process.returncode == 0
        assert _workers(supervisor) == []


_BROKEN_APP = """
from contextlib import asynccontextmanager

from litestar import Litestar


@asynccontextmanager
async def lifespan(app):
    raise RuntimeError("the database went away during start-up")
    yield


def create():
    return Litestar(route_handlers=[], lifespan=[lifespan])
"""

_SERVE_BROKEN = """
import sys

from hub.serving import serve_workers

options = {
    "app": "broken_app:create",
    "factory": True,
    "host": "127.0.0.1",
    "port": int(sys.argv[1]),
    "log_level": "warning",
    "lifespan": "on",
}
sys.exit(serve_workers(options, 2))
"""


def test_workers_that_cannot_start_stop_the_server_instead_of_restarting(tmp_path: Path) -> None:
    """A worker whose app fails its start-up stops the server (exit 1), not a restart loop.

    `scim-hub serve` checks what it can before serving (the secret, the outbox, the database's
    version), so the failure here is an app's own start-up, served by the same supervisor.
    """
    (tmp_path / "broken_app.py").write_text(_BROKEN_APP)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    started = time.monotonic()
    failed = subprocess.run(
        [sys.executable, "-c", _SERVE_BROKEN, str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1, failed.stderr
    assert "could not start; stopping" in failed.stderr
    assert "the database went away during start-up" in failed.stderr
    assert time.monotonic() - started < 30


def test_workers_end_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    with _serving(tmp_path, "orphans") as (hub, supervisor, workers):
        os.kill(supervisor, signal.SIGKILL)  # the supervisor alone, no shutdown code
        assert hub.process is not None
        hub.process.wait(10)
        deadline = time.monotonic() + 20
        while any(process_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.05)
