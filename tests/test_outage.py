"""Database outages (issue 6 point 4): SCIM answers 503 with Retry-After, /readyz fails, and the
hub recovers by itself when the database returns — nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import make_url

from hub.app import create_app
from hub.core import outbox
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
from tests.pg import PostgresCluster, PostgresUnavailable, asyncpg_dsn, create_database

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


class _SessionRelay:
    """A TCP relay between the hub and PostgreSQL that can end every session as the server does.

    `end_sessions` sends each client PostgreSQL's FATAL 57P01 (what `pg_terminate_backend` and a
    failover send) and closes the server side, but holds the client's socket open until
    `close_clients`: the gap between the message and the socket's end, which a loaded machine
    opens by chance (CI met it) and this opens every time. It runs on a thread of its own, since
    the test client blocks the test's event loop while the app answers.
    """

    _FATAL_FIELDS = (
        b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"
    )

    def __init__(self, port: int) -> None:
        self._port = port
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._held: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()  # a loop keeps only weak references
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _accept(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        server_in, server = await asyncio.open_connection("127.0.0.1", self._port)
        self._pairs.append((client, server))
        for source, sink in ((client_in, server), (server_in, client)):
            self._pipes.add(asyncio.ensure_future(self._pipe(source, sink)))

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
        except OSError:
            pass
        finally:
            # One side's end is the other's (asyncpg's close waits for it), unless held open.
            if sink not in self._held:
                sink.close()

    def end_sessions(self) -> int:
        """Send every client the FATAL message and end its server session; return how many."""

        async def end() -> int:
            message = b"E" + struct.pack("!i", 4 + len(self._FATAL_FIELDS)) + self._FATAL_FIELDS
            for client, server in self._pairs:
                self._held.add(client)
                client.write(message)
                server.close()
            return len(self._pairs)

        return int(self._run(end()))

    def close_clients(self) -> None:
        """Close the client sockets the sessions ended under."""

        async def close() -> None:
            for client, _server in self._pairs:
                client.close()

        self._run(close())

    def stop(self) -> None:
        """Close everything and end the thread."""
        self.close_clients()
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def _hub_on(
    cluster: PostgresCluster, tmp_path: Path, relay: _SessionRelay | None = None, **overrides: Any
) -> tuple[Litestar, str]:
    """A migrated database on `cluster` with workspace "acme", the app over it, and its token.

    With `relay`, the app reaches the database through it.
    """
    url = create_database(cluster.url)
    upgrade(url)
    db = open_database(url)
    try:
        tenant = await db.write(init_workspace, workspace="acme", base_url=TEST_BASE_URL)
    finally:
        await db.close()
    if relay is not None:
        url = make_url(url).set(port=relay.port).render_as_string(hide_password=False)
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


async def _background_settled(relayed_url: str, port: int) -> None:
    """Wait, past the relay, until the email is sent and recorded and the request is logged.

    Then neither background writer wants the pool's one connection (the sender sleeps until
    poked, the log writer until a request): the next request meets the pooled session.
    """
    dsn = asyncpg_dsn(make_url(relayed_url).set(port=port))
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(300):
            queued, logged = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM outbox_messages WHERE status <> $1),"
                " (SELECT count(*) FROM activity)",
                outbox.SENT,
            )
            if queued == 0 and logged >= 1:
                await asyncio.sleep(0.1)  # their commits have returned the connection
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the email or the request's log record was never written")
    finally:
        await conn.close()


async def test_a_session_ended_while_pooled_answers_503_and_the_next_request_reconnects(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    """A pooled session the server ends (`pg_terminate_backend`, a failover) whose FATAL message
    asyncpg reads before the socket's end: asyncpg refuses the next BEGIN ("cannot switch to
    state 15"), SQLAlchemy invalidates the connection, and the outbox's rollback listener then
    raised PendingRollbackError over it: the request answered 500 (stop 43's CI, a clean clone)."""
    relay = _SessionRelay(cluster.port)
    try:
        # One connection, and an outbox that does not poll: the next request meets that session.
        app, token = await _hub_on(
            cluster, tmp_path, relay, database_pool_size=1, mail_poll_ms=600_000
        )
        async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as client:
            scim = ScimClient(client, token)
            # A create queues an activation email, which hooks the outbox's rollback listener.
            assert (await scim.post("/Users", user_body("before@example.com"))).status_code == 201
            await _background_settled(app.state.hub.settings.database_url, cluster.port)
            assert relay.end_sessions() >= 1
            try:
                await asyncio.sleep(0.05)  # the FATAL message is read; the socket's end is not
                refused = await scim.post("/Users", user_body("during@example.com"))
            finally:
                # Before anything can fail: the app's shutdown would wait on those sockets.
                relay.close_clients()
            assert_scim_error(refused, 503)
            assert refused.headers["retry-after"]
            created = await scim.post("/Users", user_body("after@example.com"))
            assert created.status_code == 201, created.text
            listed = await scim.get("/Users?sortBy=userName")
            assert [u["userName"] for u in listed.json()["Resources"]] == [
                "after@example.com",
                "before@example.com",
            ]
    finally:
        relay.stop()


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
