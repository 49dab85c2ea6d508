"""The credentials' stamp (migration 0023) and the token callers remembered by it.

On SQLite a connection remembers a token's caller with the random stamp that triggers renew on
every write to `tokens`, `connectors`, `admins` and `workspaces`
(`hub.core.tokens.authenticate_cached`). These tests run that function on one real connection,
so what it remembered is what the next call finds; `test_token_use.py` and `test_connectors.py`
check the same through HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from hub.core.models import admins, auth_stamp, connectors, tokens, workspaces
from hub.core.tenants import InitResult
from hub.core.tokens import authenticate_cached, digest
from hub.migrate import alembic_config, upgrade
from tests.conftest import ONLY_POSTGRESQL, ONLY_SQLITE, create_workspace


@pytest.fixture
def sync_conn(db_url: str) -> Iterator[Connection]:
    """One connection to `db_url` (SQLite): whatever it remembers, it remembers across calls."""
    engine = sa.create_engine(f"sqlite:///{make_url(db_url).database}")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _stamp(conn: Connection) -> Any:
    with conn.begin():
        return conn.execute(sa.select(auth_stamp.c.stamp)).scalar()


def _second(conn: Connection) -> int:
    pk: int = conn.execute(sa.select(workspaces.c.pk).where(workspaces.c.name == "second")).scalar()
    return pk


def _authenticated(conn: Connection, token: str) -> bool:
    with conn.begin():
        return authenticate_cached(conn, digest(token)) is not None


@ONLY_SQLITE
async def test_every_write_to_what_a_token_depends_on_renews_the_stamp(
    db_url: str, sync_conn: Connection, tenant: InitResult
) -> None:
    """Inserts, updates and deletes of the four tables, by any connection, renew the stamp."""
    conn = sync_conn
    seen = {_stamp(conn)}
    assert len(next(iter(seen))) == 16
    await create_workspace(db_url, "second")  # inserts a row into each of the four tables
    seen.add(_stamp(conn))
    for table in (tokens, connectors, admins, workspaces):
        with conn.begin():
            assert conn.execute(sa.update(table).values(pk=table.c.pk)).rowcount > 0
        seen.add(_stamp(conn))
    with conn.begin():  # the second workspace's tokens, then the workspace, deleted directly
        conn.execute(sa.delete(tokens).where(tokens.c.workspace_pk == _second(conn)))
        conn.execute(sa.delete(workspaces).where(workspaces.c.name == "second"))
    seen.add(_stamp(conn))
    assert len(seen) == 7, "each write gave a new stamp"


@ONLY_SQLITE
async def test_a_change_this_connection_commits_is_seen_by_its_next_call(
    sync_conn: Connection, tenant: InitResult
) -> None:
    """The connection that remembered a caller sees its own revocation at once (SQLite's
    `PRAGMA data_version` only moves for other connections' commits), and its own restore."""
    conn = sync_conn
    assert _authenticated(conn, tenant.token)
    for revoked, works in ((1, False), (None, True)):
        with conn.begin():
            conn.execute(sa.update(tokens).values(revoked=revoked))
        assert _authenticated(conn, tenant.token) is works


@ONLY_SQLITE
async def test_a_caller_remembered_in_a_rolled_back_transaction_is_not_trusted_after(
    sync_conn: Connection, tenant: InitResult, other_tenant: InitResult
) -> None:
    """A transaction that renewed the stamp and then rolled back leaves no stamp behind that a
    later change could take again (a counter would): the caller it remembered never matches."""
    conn = sync_conn
    assert _authenticated(conn, other_tenant.token)
    transaction = conn.begin()
    conn.execute(
        sa.update(tokens).where(tokens.c.digest == digest(tenant.token)).values(hint="edit")
    )
    assert authenticate_cached(conn, digest(other_tenant.token)) is not None
    transaction.rollback()
    with conn.begin():  # one change, committed: the other tenant's token is revoked
        revoked = sa.update(tokens).where(tokens.c.digest == digest(other_tenant.token))
        conn.execute(revoked.values(revoked=1))
    assert not _authenticated(conn, other_tenant.token)
    assert _authenticated(conn, tenant.token)


@ONLY_SQLITE
async def test_without_a_stamp_nothing_is_remembered(
    sync_conn: Connection, tenant: InitResult
) -> None:
    """A database whose stamp row is gone authenticates every call from the token's rows."""
    conn = sync_conn
    with conn.begin():
        conn.execute(sa.delete(auth_stamp))
    assert _authenticated(conn, tenant.token)
    with conn.begin():
        # Straight into the table with the triggers dropped: nothing renews any stamp now.
        for (name,) in conn.execute(
            sa.text("SELECT name FROM sqlite_master WHERE name LIKE 'auth_stamp_%'")
        ).all():
            conn.execute(sa.text(f"DROP TRIGGER {name}"))
        conn.execute(sa.update(tokens).values(revoked=1))
    assert not _authenticated(conn, tenant.token)


@ONLY_SQLITE
async def test_a_database_migrated_down_before_the_stamp_remembers_nothing(
    db_url: str, sync_conn: Connection, tenant: InitResult
) -> None:
    """Below revision 0023 there is no stamp to trust: every call reads the token's rows, so a
    revocation still counts at once; upgraded again, callers are remembered again."""
    conn = sync_conn
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0022")
    assert _authenticated(conn, tenant.token)
    with conn.begin():
        conn.execute(sa.update(tokens).values(revoked=1))
    assert not _authenticated(conn, tenant.token)
    with conn.begin():
        conn.execute(sa.update(tokens).values(revoked=None))
    assert not conn.info.get("hub.tokens.authenticated")
    await asyncio.to_thread(upgrade, db_url)
    assert _authenticated(conn, tenant.token)
    assert len(conn.info["hub.tokens.authenticated"]) == 1


@ONLY_POSTGRESQL
async def test_postgresql_keeps_no_stamp(db_url: str, tenant: InitResult) -> None:
    """PostgreSQL reads the token's rows on every request: its stamp table stays empty."""
    from hub.core.database import open_database

    db = open_database(db_url)
    try:
        rows = await db.read(lambda conn: conn.execute(sa.select(auth_stamp)).all())
    finally:
        await db.close()
    assert rows == []
