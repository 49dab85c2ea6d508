"""A throwaway PostgreSQL cluster for the benchmark, with durable commits.

It reuses the test suite's helper (`tests/pg.py`: initdb into a temporary directory, a free
127.0.0.1 port, trust authentication, `runuser postgres` when run as root, everything removed on
`stop()`), but starts the server with PostgreSQL's default durability — `fsync=on`,
`synchronous_commit=on`, `full_page_writes=on` — where the tests turn all three off: every 2xx the
hub answers on PostgreSQL is on disk, as on SQLite (WAL, synchronous=NORMAL: survives a crash of
the process; PostgreSQL here also survives power loss).
"""

from __future__ import annotations

from tests.pg import PostgresCluster, PostgresUnavailable, create_database

__all__ = ["BenchCluster", "PostgresUnavailable", "create_database"]


class BenchCluster(PostgresCluster):
    """`tests.pg.PostgresCluster` with durable settings and room for several hub workers."""

    initdb_extra = ()
    server_settings = ("max_connections=200", "shared_buffers=256MB")


def duplicate_users(database_url: str) -> dict[str, int]:
    """Users sharing a (workspace, userName key), and how many users the database holds."""
    import asyncio

    import asyncpg

    from tests.pg import asyncpg_dsn

    async def go() -> dict[str, int]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
        try:
            dupes = await conn.fetchval(
                "SELECT count(*) FROM (SELECT workspace_pk, user_name_key FROM users"
                " GROUP BY workspace_pk, user_name_key HAVING count(*) > 1) AS d"
            )
            total = await conn.fetchval("SELECT count(*) FROM users")
            dup_rows = await conn.fetchval(
                "SELECT count(*) FROM users WHERE user_name_key LIKE 'dup-%'"
            )
        finally:
            await conn.close()
        return {"duplicate_keys": int(dupes), "users": int(total), "dupes_phase_users": dup_rows}

    return asyncio.run(go())
