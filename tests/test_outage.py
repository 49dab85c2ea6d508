"""Database outages (issue 6 point 4): SCIM answers 503 with Retry-After, /readyz fails, and the
hub recovers by itself when the database returns — nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import AsyncTestClient

from hub.app import create_app
from hub.core.database import open_database
from hub.core.tenants import init_workspace
from hub.migrate import upgrade
from hub.settings import load_settings
from tests.conftest import (
    ONLY_POSTGRESQL,
    TEST_BASE_URL,
    ScimClient,
    assert_scim_error,
    user_body,
)
from tests.pg import PostgresCluster, PostgresUnavailable, create_database

if TYPE_CHECKING:
    from litestar import Litestar

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, so it can be taken down and brought back."""
    try:
        own = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        own.start()
        yield own
    finally:
        own.stop()


async def _hub_on(
    cluster: PostgresCluster, tmp_path: Path, **overrides: Any
) -> tuple[Litestar, str]:
    """A migrated database on `cluster` with workspace "acme", the app over it, and its token."""
    url = create_database(cluster.url)
    upgrade(url)
    db = open_database(url)
    try:
        tenant = await db.write(init_workspace, workspace="acme", base_url=TEST_BASE_URL)
    finally:
        await db.close()
    settings = load_settings(
        environ={},
        database_url=url,
        base_url=TEST_BASE_URL,
        outbox_dir=str(tmp_path / "outbox"),
        **overrides,
    )
    return create_app(settings), tenant.token


async def test_postgres_outage_is_503_then_recovers(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    app, token = await _hub_on(cluster, tmp_path)
    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as client:
        scim = ScimClient(client, token)
        before = await scim.post("/Users", user_body("kept@example.com"))
        assert before.status_code == 201
        assert (await client.get("/readyz")).status_code == 200

        cluster.pause()
        down = await scim.post("/Users", user_body("during@example.com"))
        assert_scim_error(down, 503)
        assert int(down.headers["retry-after"]) >= 1
        assert_scim_error(await scim.get("/Users"), 503)
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["retry-after"]

        cluster.resume()
        for _ in range(50):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.2)
        listed = await scim.get("/Users")
        assert listed.status_code == 200
        assert [u["userName"] for u in listed.json()["Resources"]] == ["kept@example.com"]
        assert (await scim.post("/Users", user_body("after@example.com"))).status_code == 201


async def test_postgres_restart_while_idle_costs_no_request(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    """Connections the server closed while they sat in the pool are replaced at checkout.

    The hub does not ping a connection before each use (a round trip per unit of work); a
    connection asyncpg has seen closed must still never reach a request. Nothing else may touch
    the pool during the restart (that would find the dead connection first and reset the pool):
    the activity log is flushed before it, and the outbox sender polls rarely.
    """
    app, token = await _hub_on(cluster, tmp_path, mail_poll_ms=600_000)
    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as client:
        scim = ScimClient(client, token)
        listed = await asyncio.gather(*(scim.get("/Users") for _ in range(6)))
        assert {r.status_code for r in listed} == {200}
        await asyncio.sleep(1.0)  # the activity log writer has flushed those requests

        # In threads, so the event loop runs meanwhile and asyncpg sees its sockets closed.
        await asyncio.to_thread(cluster.pause)
        await asyncio.to_thread(cluster.resume)
        await asyncio.sleep(0.2)

        for _ in range(8):
            after = await scim.get("/Users")
            assert after.status_code == 200, after.text
        created = await scim.post("/Users", user_body("after@example.com"))
        assert created.status_code == 201, created.text
        assert (await client.get("/readyz")).status_code == 200


@ONLY_POSTGRESQL
async def test_a_read_only_postgresql_refuses_writes_with_503_and_serves_reads(
    db_url: str, scim: ScimClient
) -> None:
    """A database made read-only (a standby after a failover, `default_transaction_read_only`)
    refuses every write with SQLSTATE 25006; the hub answered 500 as for a bug of its own."""
    existing = await scim.post("/Users", user_body("before@example.com"))
    assert existing.status_code == 201
    name = db_url.rsplit("/", 1)[1]
    admin = open_database(db_url)
    try:
        await admin.write(
            lambda conn: conn.exec_driver_sql(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
            )
        )
        # Sessions take the setting when they start: end the hub's, as a failover would.
        await admin.read(
            lambda conn: conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).all()
        )
    finally:
        await admin.close()
    statuses = set()
    for attempt in range(3):  # the first may meet a connection the server just ended
        refused = await scim.post("/Users", user_body(f"during-{attempt}@example.com"))
        statuses.add(refused.status_code)
    assert statuses == {503}
    body = assert_scim_error(refused, 503)
    assert "cannot take writes" in body["detail"]
    assert refused.headers["retry-after"]
    listed = await scim.get("/Users")
    assert listed.status_code == 200
    assert [u["userName"] for u in listed.json()["Resources"]] == ["before@example.com"]
