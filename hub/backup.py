"""Online backups of the hub's database: `scim-hub db backup PATH`.

SQLite: the sqlite3 online backup API copies the database through an ordinary connection to the
same file the hub uses, in a single step inside one read transaction. In WAL mode that read
transaction is a snapshot: the hub keeps writing meanwhile, and the copy holds exactly the
transactions committed before the snapshot began — every acknowledged write up to that moment,
no half of any later one. The copy is written next to the target, checked with
`PRAGMA integrity_check`, flushed to disk and renamed into place, so PATH is either absent or a
whole, consistent database. Restoring is copying it back while the hub is stopped (README,
"Backup and restore").

PostgreSQL: the tool for a consistent online copy is `pg_dump` (it reads inside one repeatable-read
snapshot). `pg_dump_command` builds the command for the hub's database; the CLI runs it when
`pg_dump` is installed and prints it otherwise. The password, if the URL has one, is passed in the
`PGPASSWORD` environment variable, never on the command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from hub.core.database import sqlite_file


class BackupError(Exception):
    """The backup could not be taken; the message says why and what to do."""


@dataclass(frozen=True)
class SqliteBackup:
    """A finished SQLite backup."""

    path: Path
    size: int
    pages: int


def sqlite_path(database_url: str) -> Path:
    """The file a `sqlite+aiosqlite:///…` URL names.

    Raises:
        BackupError: the URL is not a SQLite file (an in-memory database has nothing to back up).
    """
    path = sqlite_file(database_url)
    if path is None:
        url = make_url(database_url)
        raise BackupError(f"{url.render_as_string(hide_password=True)} is not a SQLite file")
    return path


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def backup_sqlite(
    database_url: str, target: Path, *, busy_timeout_ms: int = 30_000
) -> SqliteBackup:
    """Copy the live SQLite database to `target` (which must not exist) while the hub serves.

    Raises:
        BackupError: no such database, `target` exists or is the database itself, the copy
            failed its integrity check, or `target` cannot be written (its directory cannot be
            made, its name is too long, the disk is full); the message names `target`.
    """
    source_path = sqlite_path(database_url)
    if not source_path.is_file():
        raise BackupError(f"there is no database file at {source_path}")
    target = target.expanduser()
    try:
        return _copy(source_path, target, busy_timeout_ms)
    except (sqlite3.Error, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        # Either file may be at fault ("file is not a database" is the source's): name both.
        raise BackupError(f"the backup of {source_path} to {target} failed: {reason}") from exc


def _copy(source_path: Path, target: Path, busy_timeout_ms: int) -> SqliteBackup:
    if target.exists():
        raise BackupError(_EXISTS.format(target=target))
    if target.resolve() == source_path.resolve():
        raise BackupError("the backup cannot be the database file itself")
    _make_directory(target)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    # An ordinary connection to the hub's own file: it takes part in the WAL protocol (so it
    # reads a snapshot) and only ever reads.
    source = sqlite3.connect(source_path, isolation_level=None)
    try:
        source.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            # pages=-1: one step, one read transaction, one snapshot (a WAL reader never blocks
            # the hub's writer, and the writer never forces a restart of the copy).
            source.backup(copy, pages=-1)
            # A self-contained file: no -wal beside it to forget when copying it around.
            copy.execute("PRAGMA journal_mode = DELETE")
            check = copy.execute("PRAGMA integrity_check").fetchall()
            if check != [("ok",)]:
                raise BackupError(f"the copy failed its integrity check: {check[:5]}")
            pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
        finally:
            copy.close()
        with partial.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        _discard(partial)
        raise
    finally:
        source.close()
    _fsync_directory(target.parent)
    return SqliteBackup(target, target.stat().st_size, pages)


_EXISTS = "{target} exists; choose a new file name (a backup never overwrites)"


def backup_postgres(database_url: str, target: Path) -> PgDump:
    """Run `pg_dump` of the database into `target`, which must not exist; return the command.

    As for SQLite, a backup never overwrites (pg_dump would, an older backup lost) and missing
    directories are made; a file pg_dump left half-written is removed.

    Raises:
        BackupError: `target` exists or cannot be written, or pg_dump failed.
    """
    target = target.expanduser()
    try:
        if target.exists():
            raise BackupError(_EXISTS.format(target=target))
        _make_directory(target)
    except OSError as exc:
        raise BackupError(f"cannot write the backup {target}: {exc.strerror or exc}") from exc
    command = pg_dump_command(database_url, target)
    try:
        run_pg_dump(command)
    except BackupError:
        _discard(target)
        raise
    return command


def _discard(partial: Path) -> None:
    """Remove a half-written copy, if there is one (a name too long to create never was)."""
    with contextlib.suppress(OSError):
        partial.unlink(missing_ok=True)


def _make_directory(target: Path) -> None:
    """Create the missing directories of `target`.

    Raises:
        BackupError: they cannot be made (a file where a directory should be, no permission).
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # mkdir says "File exists" of a file in the way; name it as what it is.
        existing = next((parent for parent in target.parents if parent.exists()), None)
        reason = (
            f"{existing} is not a directory"
            if existing is not None and not existing.is_dir()
            else exc.strerror or str(exc)
        )
        raise BackupError(f"cannot write the backup {target}: {reason}") from exc


@dataclass(frozen=True)
class PgDump:
    """The `pg_dump` invocation for a PostgreSQL database."""

    argv: list[str]
    env: dict[str, str]

    def shell(self) -> str:
        """The command as an operator would type it (the password stays in `PGPASSWORD`)."""
        import shlex

        prefix = "PGPASSWORD=… " if "PGPASSWORD" in self.env else ""
        return prefix + " ".join(shlex.quote(arg) for arg in self.argv)


def pg_dump_command(database_url: str, target: Path) -> PgDump:
    """The `pg_dump` command writing a custom-format archive of the database to `target`.

    Restore it with `pg_restore --clean --if-exists --no-owner --dbname … PATH`.
    """
    url = make_url(database_url)
    argv = [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        "--no-password",
        f"--file={target}",
    ]
    if url.host:
        argv.append(f"--host={url.host}")
    if url.port:
        argv.append(f"--port={url.port}")
    if url.username:
        argv.append(f"--username={url.username}")
    argv.append(f"--dbname={url.database or 'postgres'}")
    env = {"PGPASSWORD": url.password} if url.password else {}
    return PgDump(argv, {k: str(v) for k, v in env.items()})


def run_pg_dump(command: PgDump, *, timeout: float | None = None) -> None:
    """Run `pg_dump`.

    Raises:
        BackupError: `pg_dump` is not installed, or it failed (its message is included).
    """
    program = shutil.which(command.argv[0])
    if program is None:
        raise BackupError(
            "pg_dump is not installed; install the PostgreSQL client tools or run:\n  "
            + command.shell()
        )
    result = subprocess.run(
        [program, *command.argv[1:]],
        env={**os.environ, **command.env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"pg_dump exited {result.returncode}: {result.stderr.strip()}")
