"""Database migrations (Alembic), callable from the CLI and the tests."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

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
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
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
