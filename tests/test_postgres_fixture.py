"""The PostgreSQL fixtures: a cluster starts, hands out fresh migrated databases, and goes away.

A migrated database a test has used is emptied and handed out again only when nothing but its
rows changed (`tests.pg_pool`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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
from tests.pg_pool import DatabasePool

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


async def test_a_server_without_the_icu_collation_is_refused_by_name(
    fresh_postgres_url: str,
) -> None:
    """Filters lower text under `und-x-icu`: a server without it stops `db upgrade` with a
    message naming it, instead of failing every case-insensitive filter later."""
    from hub.migrate import upgrade

    upgrade(fresh_postgres_url, "0019")
    await _fetch(fresh_postgres_url, 'DROP COLLATION "und-x-icu"')
    with pytest.raises(RuntimeError, match="und-x-icu"):
        upgrade(fresh_postgres_url)
    [version] = await _fetch(fresh_postgres_url, "SELECT version_num FROM alembic_version")
    assert version[0] == "0019"


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


# --------------------------------------------------------------------------- the database pool


@pytest.fixture
def pool(postgres_server_url: str, migrated_postgres_template: str) -> Iterator[DatabasePool]:
    """A pool of its own over the session's template; what it still holds is dropped after."""
    own = DatabasePool(postgres_server_url, migrated_postgres_template)
    yield own
    own.close()


async def _exists(server: str, name: str) -> bool:
    rows = await _fetch(server + "/postgres", "SELECT datname FROM pg_database")
    return name in {row["datname"] for row in rows}


async def _assert_dropped(pool: DatabasePool, url: str) -> None:
    """`url`'s database was not kept for reuse, and no longer exists."""
    assert pool.free == []
    assert not await _exists(pool.server, url.rsplit("/", 1)[1])


async def test_a_used_database_comes_back_empty_with_its_sequences_restarted(
    pool: DatabasePool,
) -> None:
    from tests.conftest import create_workspace

    url = pool.take()
    await create_workspace(url, "acme")
    await create_workspace(url, "globex")
    pks = "SELECT pk FROM workspaces ORDER BY pk"
    assert [row[0] for row in await _fetch(url, pks)] == [1, 2]
    pool.give_back(url)
    assert pool.free == [url.rsplit("/", 1)[1]]

    assert pool.take() == url
    counts = await _fetch(
        url,
        "SELECT (SELECT count(*) FROM workspaces) + (SELECT count(*) FROM tokens)"
        " + (SELECT count(*) FROM admins) + (SELECT count(*) FROM connectors)",
    )
    assert counts[0][0] == 0
    await create_workspace(url, "acme")
    assert [row[0] for row in await _fetch(url, pks)] == [1]  # the sequence starts over
    pool.give_back(url)
    pool.close()
    assert not await _exists(pool.server, url.rsplit("/", 1)[1])


@pytest.mark.parametrize(
    "change",
    [
        "CREATE TABLE only_here (x int)",
        "DROP INDEX ix_users_workspace_external",
        "UPDATE alembic_version SET version_num = '0001' WHERE version_num = '0023'",
    ],
    ids=["table-added", "index-dropped", "migrated-down"],
)
async def test_a_database_whose_schema_changed_is_dropped_not_reused(
    pool: DatabasePool, change: str
) -> None:
    url = pool.take()
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await conn.execute(change) != "UPDATE 0"
    finally:
        await conn.close()
    pool.give_back(url)
    await _assert_dropped(pool, url)


async def test_a_database_grown_past_the_bound_is_dropped(pool: DatabasePool) -> None:
    from tests.conftest import create_workspace

    pool.max_growth = 0  # any page written is growth
    url = pool.take()
    await create_workspace(url, "acme")
    pool.give_back(url)
    await _assert_dropped(pool, url)


async def test_a_session_left_connected_is_ended_before_the_database_is_reused(
    pool: DatabasePool,
) -> None:
    url = pool.take()
    left = await asyncpg.connect(asyncpg_dsn(url))
    await left.execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    pool.give_back(url)  # would wait on the lock for ever if the session were kept
    assert pool.free == [url.rsplit("/", 1)[1]]
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
        await left.fetchval("SELECT 1")
    left.terminate()
