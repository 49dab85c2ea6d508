"""Database outages (issue 6 point 4): SCIM answers 503 with Retry-After, /readyz fails, and the
hub recovers by itself when the database returns — nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from hub.app import create_app
from hub.core.database import open_database
from hub.core.tenants import init_workspace
from hub.migrate import upgrade
from hub.settings import load_settings
from tests.conftest import TEST_BASE_URL, ScimClient, assert_scim_error, user_body
from tests.pg import PostgresCluster, PostgresUnavailable, create_database

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


async def test_postgres_outage_is_503_then_recovers(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = create_database(cluster.url)
    upgrade(url)
    db = open_database(url)
    try:
        tenant = await db.write(init_workspace, workspace="acme", base_url=TEST_BASE_URL)
    finally:
        await db.close()
    settings = load_settings(
        environ={}, database_url=url, base_url=TEST_BASE_URL, outbox_dir=str(tmp_path / "outbox")
    )
    app = create_app(settings)
    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as client:
        scim = ScimClient(client, tenant.token)
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
