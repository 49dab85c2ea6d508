"""Database migrations (Alembic), callable from the CLI and the tests."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

from hub.core.database import sqlite_file

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """Build an Alembic configuration for `database_url` without an .ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Migrate the database at `database_url` to `revision` (creating the SQLite file if needed).

    Alembic's async environment calls `asyncio.run`, so when an event loop is already running in
    this thread (tests, the server) the migration runs on a short-lived thread of its own.
    """
    path = sqlite_file(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    errors: list[BaseException] = []

    def _run() -> None:
        try:
            command.upgrade(alembic_config(database_url), revision)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=_run, name="hub-migrate")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def is_current(database_url: str) -> bool:
    """Say whether the database is migrated to every head revision.

    Raises:
        Exception: the database could not be opened or read (the driver's or SQLAlchemy's
            error), which says nothing about its revision.
    """
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import create_async_engine

    wanted = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())

    def heads(conn: Connection) -> set[str]:
        return set(MigrationContext.configure(conn).get_current_heads())

    async def current() -> set[str]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(heads)
        finally:
            await engine.dispose()

    found: list[set[str]] = []
    errors: list[BaseException] = []

    def _run() -> None:
        try:
            found.append(asyncio.run(current()))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=_run, name="hub-migrate-check")
    worker.start()
    worker.join()
    if errors:  # e.g. the database is unreachable: the caller says so, not "not migrated"
        raise errors[0]
    return found[0] == wanted
