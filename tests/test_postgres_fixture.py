"""The PostgreSQL fixtures: a cluster starts, hands out fresh migrated databases, and goes away."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from tests.pg import (
    PostgresCluster,
    PostgresUnavailable,
    asyncpg_dsn,
    create_database,
    drop_database,
    find_bindir,
    server_url,
)

pytestmark = pytest.mark.postgres

EXPECTED_TABLES = {
    "alembic_version",
    "workspaces",
    "admins",
    "connectors",
    "tokens",
    "users",
    "groups",
    "memberships",
}


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def test_fresh_database_is_empty_then_migrated(fresh_postgres_url: str) -> None:
    from hub.migrate import upgrade

    tables = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    assert await _fetch(fresh_postgres_url, tables) == []

    upgrade(fresh_postgres_url)

    names = {row["tablename"] for row in await _fetch(fresh_postgres_url, tables)}
    assert names >= EXPECTED_TABLES
    [encoding] = await _fetch(fresh_postgres_url, "SHOW server_encoding")
    assert encoding[0] == "UTF8"


async def test_each_database_is_independent(
    fresh_postgres_url: str, postgres_server_url: str
) -> None:
    other = create_database(postgres_server_url)
    try:
        assert other != fresh_postgres_url
        conn = await asyncpg.connect(asyncpg_dsn(fresh_postgres_url))
        try:
            await conn.execute("CREATE TABLE only_here (x int)")
        finally:
            await conn.close()
        rows = await _fetch(other, "SELECT 1 FROM pg_tables WHERE tablename = 'only_here'")
        assert rows == []
    finally:
        drop_database(postgres_server_url, other.rsplit("/", 1)[1])
    databases = await _fetch(
        fresh_postgres_url, "SELECT datname FROM pg_database WHERE NOT datistemplate"
    )
    assert other.rsplit("/", 1)[1] not in {row["datname"] for row in databases}


def test_server_url_is_exported_for_the_session(postgres_server_url: str) -> None:
    exported = os.environ.get("SCIM_HUB_TEST_POSTGRES_URL")
    assert exported is not None
    assert server_url(exported) == postgres_server_url
    assert postgres_server_url.startswith("postgresql+asyncpg://")


async def test_a_cluster_starts_and_is_torn_down() -> None:
    """A second, short-lived cluster goes through the same start/stop the session fixture uses."""
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        url = cluster.start()
        rows = await _fetch(url + "/postgres", "SELECT current_setting('port')")
        assert int(rows[0][0]) == cluster.port
        assert cluster.is_running()
    finally:
        cluster.stop()
    assert not cluster.is_running()
    assert not cluster.root.exists()
    with pytest.raises(OSError):
        await asyncpg.connect(asyncpg_dsn(url + "/postgres"), timeout=5)
    cluster.stop()  # idempotent


def test_missing_binaries_say_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tests.pg

    monkeypatch.setattr(tests.pg, "BINDIR_CANDIDATES", ())
    monkeypatch.setenv("SCIM_HUB_TEST_PG_BINDIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_bindir() is None
    with pytest.raises(PostgresUnavailable, match=r"apt-get install postgresql-15"):
        PostgresCluster()
