"""A token's `last_used` time: refreshed by reads in the background, once a minute, not per request.

The database itself counts the refreshes: a trigger (installed by the test, on SQLite and
PostgreSQL) logs every update of `tokens.last_used`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import ScimClient, create_workspace, user_body
from tests.pg import asyncpg_dsn, run_coroutine

_SQLITE_LOG = (
    "CREATE TABLE touch_log (at INTEGER)",
    "CREATE TRIGGER touch_logged AFTER UPDATE OF last_used ON tokens "
    "BEGIN INSERT INTO touch_log VALUES (NEW.last_used); END",
)
_POSTGRES_LOG = (
    "CREATE TABLE touch_log (at BIGINT)",
    "CREATE FUNCTION log_touch() RETURNS trigger AS $$ BEGIN "
    "INSERT INTO touch_log VALUES (NEW.last_used); RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER touch_logged AFTER UPDATE OF last_used ON tokens "
    "FOR EACH ROW EXECUTE FUNCTION log_touch()",
)


def _run_sql(db_url: str, statements: tuple[str, ...]) -> list[Any]:
    """Run `statements` in one transaction; return the last one's rows."""
    if db_url.startswith("sqlite"):
        path = make_url(db_url).database
        assert path
        conn = sqlite3.connect(path, timeout=30)
        try:
            with conn:
                rows: list[Any] = []
                for statement in statements:
                    rows = conn.execute(statement).fetchall()
                return rows
        finally:
            conn.close()

    async def on_postgres() -> list[Any]:
        pg = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            async with pg.transaction():
                rows: list[Any] = []
                for statement in statements:
                    rows = list(await pg.fetch(statement))
                return [tuple(row) for row in rows]
        finally:
            await pg.close()

    return run_coroutine(on_postgres)


async def _refreshes(db_url: str, settled: int = 1) -> list[Any]:
    """The logged refreshes, once at least `settled` are there and no more arrive for 0.3 s."""
    rows: list[Any] = []
    for _ in range(100):
        await asyncio.sleep(0.1)
        now = await asyncio.to_thread(_run_sql, db_url, ("SELECT at FROM touch_log",))
        if len(now) >= settled and now == rows:
            return rows
        rows = now
    return rows


@contextlib.asynccontextmanager
async def _write_locked(db_url: str) -> AsyncIterator[None]:
    """Another connection holds the write lock (SQLite) or the token row (PostgreSQL) meanwhile.

    Reads go on; the hub's refresh of `last_used` waits, as it does while another worker
    process is writing.
    """
    if db_url.startswith("sqlite"):
        path = make_url(db_url).database
        assert path
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
            conn.close()
        return
    pg = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        async with pg.transaction():
            await pg.execute("SELECT pk FROM tokens FOR UPDATE")
            yield
    finally:
        await pg.close()


async def test_a_burst_of_reads_refreshes_last_used_once(
    client: httpx.AsyncClient, db_url: str
) -> None:
    """Reads by a token whose refresh has not committed yet queue no refresh of their own."""
    workspace = await create_workspace(db_url, "burst")
    scim = ScimClient(client, workspace.token)
    created = await scim.post("/Users", user_body("burst.reader"))
    assert created.status_code == 201, created.text
    # The create refreshed last_used in its own transaction; make the token look unused again.
    _run_sql(db_url, ("UPDATE tokens SET last_used = NULL",))
    log = _POSTGRES_LOG if db_url.startswith("postgresql") else _SQLITE_LOG
    _run_sql(db_url, log)

    path = f"/Users/{created.json()['id']}"
    async with _write_locked(db_url):
        answers = [await scim.get(path) for _ in range(20)]
    assert [a.status_code for a in answers] == [200] * 20
    refreshes = await _refreshes(db_url)
    assert len(refreshes) == 1, refreshes
    stored = _run_sql(db_url, ("SELECT last_used FROM tokens",))
    assert stored == [(refreshes[0][0],)]

    # Within the minute, more reads refresh nothing.
    again = [await scim.get(path) for _ in range(5)]
    assert [a.status_code for a in again] == [200] * 5
    assert len(await _refreshes(db_url)) == 1


@pytest.mark.parametrize("reads", [1, 3])
async def test_reads_refresh_a_never_used_token(
    client: httpx.AsyncClient, db_url: str, reads: int
) -> None:
    """Reads alone (no write ever) still record that the token was used."""
    workspace = await create_workspace(db_url, "reader")
    scim = ScimClient(client, workspace.token)
    assert _run_sql(db_url, ("SELECT last_used FROM tokens",)) == [(None,)]
    for _ in range(reads):
        listed = await scim.get("/Users")
        assert listed.status_code == 200, listed.text
    for _ in range(50):
        await asyncio.sleep(0.05)
        if _run_sql(db_url, ("SELECT last_used FROM tokens",)) != [(None,)]:
            break
    (stored,) = _run_sql(db_url, ("SELECT last_used FROM tokens",))
    assert stored[0] is not None


async def test_a_token_revoked_or_switched_off_elsewhere_fails_the_very_next_request(
    client: httpx.AsyncClient, db_url: str
) -> None:
    """Reads and writes may answer a token from the connection's memory (SQLite), but only while
    nothing it depends on changed: a revocation, a disabled connector or a deactivated admin
    committed by another process (the CLI, another worker) is refused at the next GET, by id and
    by filter, and at the next PATCH, and the token works again once restored."""
    workspace = await create_workspace(db_url, "revoked.elsewhere")
    scim = ScimClient(client, workspace.token)
    created = await scim.post("/Users", user_body("kept.reader"))
    assert created.status_code == 201, created.text
    by_id, by_filter = f"/Users/{created.json()['id']}", '/Users?filter=userName eq "kept.reader"'
    rename = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Kept"}],
    }

    async def statuses() -> list[int]:
        reads = [(await scim.get(path)).status_code for path in (by_id, by_filter, by_id)]
        writes = [(await scim.patch(by_id, rename)).status_code for _ in range(2)]
        return reads + writes

    assert await statuses() == [200] * 5
    for off, on in (
        ("UPDATE tokens SET revoked = 1", "UPDATE tokens SET revoked = NULL"),
        ("UPDATE connectors SET enabled = false", "UPDATE connectors SET enabled = true"),
        ("UPDATE admins SET active = false", "UPDATE admins SET active = true"),
    ):
        _run_sql(db_url, (off,))
        assert await statuses() == [401] * 5, off
        _run_sql(db_url, (on,))
        assert await statuses() == [200] * 5, on
