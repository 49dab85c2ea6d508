"""PostgreSQL connection pool: requests beyond the pool wait for its connections, for a while.

A server process keeps `SCIM_HUB_DATABASE_POOL_SIZE` connections and opens no more: more requests
in flight than connections queue for one, instead of each opening (and, on check-in, closing) a
session of its own — a new server process on PostgreSQL's side and every statement prepared again.
Counted by PostgreSQL itself (`pg_stat_database.sessions`) around bursts of GETs sent to a real
`scim-hub serve`. A unit that cannot get a connection within the pool's wait answers 503.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import Connection, text

from hub.core.database import PostgresDatabase
from hub.core.errors import Unavailable
from tests.conftest import SCIM_JSON, user_body
from tests.hubprocess import HubProcess
from tests.pg import asyncpg_dsn, database_url

pytestmark = pytest.mark.postgres

POOL = 3
IN_FLIGHT = 40
BURSTS = 3


async def sessions_opened(server: str, database: str) -> int:
    """How many sessions were ever opened to `database`, read once every one of them has ended.

    PostgreSQL (14 and later) counts them in `pg_stat_database.sessions`; a session's count is
    flushed when it ends, so wait until none is left and the count holds still.
    """
    conn = await asyncpg.connect(asyncpg_dsn(database_url(server, "postgres")))
    try:
        for _ in range(1000):
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
            )
            if left == 0:
                break
            await asyncio.sleep(0.01)
        count, settled = -1, 0
        for _ in range(500):
            await asyncio.sleep(0.02)
            now = await conn.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = $1", database
            )
            settled = settled + 1 if now == count else 0
            count = now
            if settled == 5:
                return int(count)
        raise AssertionError(f"the session count of {database} never settled")
    finally:
        await conn.close()


async def test_requests_beyond_the_pool_wait_for_its_connections(
    fresh_postgres_url: str, postgres_server_url: str, tmp_path: Path
) -> None:
    hub = HubProcess(fresh_postgres_url, tmp_path / "hub", database_pool_size=str(POOL))
    hub.prepare()
    database = fresh_postgres_url.rsplit("/", 1)[1]
    before = await sessions_opened(postgres_server_url, database)
    hub.start()
    try:
        headers = {"Authorization": f"Bearer {hub.token}", "Accept": SCIM_JSON}
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:
            created = await http.post(
                f"{hub.tenant_url}/Users",
                json=user_body("pool.user@example.com"),
                headers={"Content-Type": SCIM_JSON},
            )
            assert created.status_code == 201, created.text
            url = f"{hub.tenant_url}/Users/{created.json()['id']}"
            for _ in range(BURSTS):
                answers = await asyncio.gather(*(http.get(url) for _ in range(IN_FLIGHT)))
                assert [a.status_code for a in answers] == [200] * IN_FLIGHT
    finally:
        hub.stop()
    opened = await sessions_opened(postgres_server_url, database) - before

    # The pool's few sessions served every burst: none was opened (and closed) per request. One
    # more: `scim-hub serve` checks that the schema is current before it starts serving.
    assert 1 <= opened <= POOL + 1, f"{opened} sessions for a pool of {POOL}"


async def test_a_unit_that_waits_too_long_for_a_connection_is_unavailable(
    fresh_postgres_url: str,
) -> None:
    db = PostgresDatabase(fresh_postgres_url, pool_size=1, pool_wait_s=0.3)

    def hold(conn: Connection) -> int:
        return int(conn.execute(text("SELECT 1 FROM pg_sleep(1.5)")).scalar_one())

    def quick(conn: Connection) -> int:
        return int(conn.execute(text("SELECT 2")).scalar_one())

    try:
        holder = asyncio.create_task(db.read(hold))
        await asyncio.sleep(0.2)  # the holder has the only connection
        with pytest.raises(Unavailable, match="every database connection is busy"):
            await db.read(quick)
        assert await holder == 1
        assert await db.read(quick) == 2  # the connection is back in the pool
    finally:
        await db.close()
