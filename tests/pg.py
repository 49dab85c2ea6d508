"""A throwaway PostgreSQL cluster for the test suite, and fresh databases on any server.

`PostgresCluster` runs `initdb` into a temporary directory, starts the server on a free
127.0.0.1 port with trust authentication, and removes everything on `stop()`. PostgreSQL refuses
to run as root, so when the suite runs as root (CI) every server command runs as the `postgres`
user through `runuser`, in a directory that user owns under /tmp (whose parents it can traverse).

`create_database` / `drop_database` work on any server, the throwaway one or the one named by
`SCIM_HUB_TEST_POSTGRES_URL`, through an asyncpg admin connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import URL, make_url

T = TypeVar("T")

#: Where Debian (and the CI image) put the server binaries; `SCIM_HUB_TEST_PG_BINDIR` wins.
BINDIR_CANDIDATES = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin")
HOW_TO_GET_POSTGRES = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with "
    "`apt-get install postgresql-15` (or set SCIM_HUB_TEST_PG_BINDIR to their directory), "
    "or point SCIM_HUB_TEST_POSTGRES_URL at a server "
    "(postgresql+asyncpg://user:password@host:port) that may create databases"
)
SERVICE_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No server binaries, or no way to run them; the message says how to fix it."""


def find_bindir() -> Path | None:
    """Find a directory holding `initdb` and `pg_ctl`, newest major version first."""
    explicit = os.environ.get("SCIM_HUB_TEST_PG_BINDIR")
    candidates: list[Path] = [Path(explicit)] if explicit else []
    for pattern in BINDIR_CANDIDATES:
        if "*" in pattern:
            root, _, rest = pattern.partition("*")
            found = sorted(
                Path(root).glob("*" + rest),
                key=lambda p: _version_key(p.parent.name),
                reverse=True,
            )
            candidates.extend(found)
        else:
            candidates.append(Path(pattern))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port() -> int:
    """Ask the kernel for a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private event loop in a private thread.

    Fixtures call this whether or not an event loop is already running in the test's thread.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="pg-admin") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def asyncpg_dsn(url: str | URL) -> str:
    """Turn a SQLAlchemy `postgresql+asyncpg://` URL into a DSN asyncpg accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_url(url: str) -> str:
    """The URL of the server itself (no database), as the fixtures hand it out."""
    return make_url(url).set(database=None).render_as_string(hide_password=False)


def database_url(server: str, name: str) -> str:
    """The SQLAlchemy URL of database `name` on `server`."""
    return make_url(server).set(database=name).render_as_string(hide_password=False)


_counter = itertools.count(1)


def unique_database_name(prefix: str = "scimhub_test") -> str:
    """A database name no other test (in this or a concurrent run) will pick."""
    return f"{prefix}_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:8]}"


async def _admin_execute(server: str, statement: str, maintenance_db: str) -> None:
    """Run one statement on an admin connection (CREATE/DROP DATABASE refuse transactions)."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url(server, maintenance_db)), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _maintenance_db(server: str) -> str:
    return make_url(server).database or "postgres"


def create_database(server: str, name: str | None = None, template: str | None = None) -> str:
    """CREATE DATABASE on `server` (optionally as a copy of `template`); return its URL."""
    name = name or unique_database_name()
    maintenance = _maintenance_db(server)
    copy = f' TEMPLATE "{template}"' if template else ""
    run_coroutine(lambda: _admin_execute(server, f'CREATE DATABASE "{name}"{copy}', maintenance))
    return database_url(server, name)


def drop_database(server: str, name: str) -> None:
    """DROP DATABASE on `server`, disconnecting whoever is still connected (PostgreSQL 13+)."""
    maintenance = _maintenance_db(server)
    run_coroutine(
        lambda: _admin_execute(
            server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', maintenance
        )
    )


class PostgresCluster:
    """One throwaway cluster: `start()` it, use `.url`, `stop()` it (idempotent, removes files)."""

    def __init__(self, bindir: Path | None = None, *, base_dir: str | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable(HOW_TO_GET_POSTGRES)
        self.bindir = found
        self.run_as: str | None = None
        if os.geteuid() == 0:
            # initdb refuses to run as root; CI runs as root.
            try:
                pwd.getpwnam(SERVICE_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no {SERVICE_USER!r} user to run PostgreSQL as: "
                    "`apt-get install postgresql-15` creates it, or run the tests as another user"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root and `runuser` is missing (util-linux)")
            self.run_as = SERVICE_USER
        # Under /tmp (mode 1777) so the service user can reach it; pytest's own temp dirs are 0700.
        self.root = Path(tempfile.mkdtemp(prefix="scim-hub-pg-", dir=base_dir or "/tmp"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = 0
        self.started = False
        self.options = ""
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)

    @property
    def url(self) -> str:
        """`postgresql+asyncpg://postgres@127.0.0.1:PORT` — the server, no database named."""
        return f"postgresql+asyncpg://{SERVICE_USER}@127.0.0.1:{self.port}"

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        if self.run_as is not None:
            return ["runuser", "-u", self.run_as, "--", *command]
        return command

    def _run(self, command: Sequence[str], *, timeout: float = 60) -> None:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"},
        )
        if result.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nserver log:\n{log}"
            )

    #: initdb flags beyond the data directory, user, auth, locale and encoding.
    initdb_extra: tuple[str, ...] = ("--no-sync",)
    #: Server settings: durability off, since the cluster lives for one test session.
    server_settings: tuple[str, ...] = (
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=200",
    )

    def start(self, attempts: int = 3) -> str:
        """initdb, then start on a free port (retrying if the port was taken); return `.url`."""
        self._run(
            self._command(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                SERVICE_USER,
                "--auth=trust",
                "--locale=C.UTF-8",
                "--encoding=UTF8",
                *self.initdb_extra,
            )
        )
        for attempt in range(attempts):
            self.port = free_port()
            options = " ".join(
                (
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={self.root}",
                    *(f"-c {setting}" for setting in self.server_settings),
                )
            )
            try:
                self._pg_ctl_start(options)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                continue
            self.options = options
            self.started = True
            return self.url
        raise AssertionError("unreachable")

    def _pg_ctl_start(self, options: str) -> None:
        self._run(
            self._command(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "30",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                options,
            )
        )

    def pause(self) -> None:
        """Stop the server but keep its files (an outage); `resume()` brings it back.

        A fast shutdown, not a crash: the throwaway cluster runs without fsync, so a crash would
        lose commits that a real server keeps.
        """
        self._run(
            self._command("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.datadir)),
            timeout=30,
        )

    def resume(self) -> None:
        """Start the paused server again on the same port."""
        self._pg_ctl_start(self.options)

    def is_running(self) -> bool:
        """Say whether `pg_ctl status` finds the server running."""
        if not self.datadir.exists():
            return False
        result = subprocess.run(
            self._command("pg_ctl", "status", "-D", str(self.datadir)),
            capture_output=True,
            check=False,
            cwd=self.root,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """Stop the server (fast, then immediate) and delete its directory. Safe to call twice."""
        if self.started or self.is_running():
            for mode in ("fast", "immediate"):
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._run(
                        self._command("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.datadir)),
                        timeout=30,
                    )
                    break
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
