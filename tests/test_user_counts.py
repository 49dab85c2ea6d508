"""`totalResults` of unfiltered user lists comes from trigger-kept counts, not `count(*)`.

The counts must follow every write path — create, delete, revive, rows written by other code
(seeding, restores) — and stay per workspace, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio

from alembic import command
from litestar import Litestar
from sqlalchemy import Connection, func, insert, select, update

from hub.core.database import open_database
from hub.core.models import user_counts, users
from hub.core.tenants import InitResult
from hub.migrate import alembic_config, upgrade
from tests.conftest import ScimClient, serving, user_body


async def _total(scim: ScimClient, **params: str) -> int:
    # count=1 keeps the first page full, so the total is not just the page's length.
    response = await scim.get("/Users", params={"count": "1", **params})
    assert response.status_code == 200, response.text
    return int(response.json()["totalResults"])


async def test_total_follows_creates_deletes_and_revivals(
    scim: ScimClient, other_scim: ScimClient
) -> None:
    ids = []
    for i in range(5):
        response = await scim.post("/Users", user_body(f"count-{i}@example.com"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    assert (await other_scim.post("/Users", user_body("elsewhere@example.com"))).status_code == 201
    assert await _total(scim) == 5
    assert await _total(scim, startIndex="4") == 5
    assert (await scim.delete(f"/Users/{ids[0]}")).status_code == 204
    assert (await scim.delete(f"/Users/{ids[1]}")).status_code == 204
    assert await _total(scim) == 3
    # Creating a deleted userName again brings that user back: counted once more.
    assert (await scim.post("/Users", user_body("count-0@example.com"))).status_code == 201
    assert await _total(scim) == 4
    # A filtered list still counts its matches; the cursor walk reports the same total.
    assert await _total(scim, filter='userName sw "count-"') == 4
    assert await _total(scim, cursor="") == 4
    assert await _total(other_scim) == 1


async def test_total_counts_rows_written_outside_the_scim_path(
    scim: ScimClient, db_url: str
) -> None:
    for i in range(3):
        assert (await scim.post("/Users", user_body(f"path-{i}@example.com"))).status_code == 201

    def write_directly(conn: Connection) -> int:
        ws = conn.execute(select(users.c.workspace_pk).limit(1)).scalar_one()
        conn.execute(
            insert(users),
            [
                {
                    "id": f"direct-{i}",
                    "workspace_pk": ws,
                    "user_name": f"direct-{i}",
                    "user_name_key": f"direct-{i}",
                    "active": True,
                    "deleted": i == 0,
                    "data": {"userName": f"direct-{i}"},
                    "version": 1,
                    "created": 1,
                    "modified": 1,
                }
                for i in range(4)
            ],
        )
        conn.execute(update(users).where(users.c.id == "direct-1").values(deleted=True))
        return int(
            conn.execute(
                select(func.count())
                .select_from(user_counts)
                .where(user_counts.c.workspace_pk == ws)
            ).scalar_one()
        )

    database = open_database(db_url)
    try:
        shards = await database.write(write_directly)
    finally:
        await database.close()
    assert await _total(scim) == 3 + 2
    assert 1 <= shards <= 8


async def test_migration_fills_the_counts_of_existing_users(
    app: Litestar, db_url: str, tenant: InitResult
) -> None:
    async with serving(app, tenant) as scim:
        for i in range(4):
            assert (await scim.post("/Users", user_body(f"old-{i}@example.com"))).status_code == 201
        listed = await scim.get("/Users", params={"count": "1"})
        user_id = listed.json()["Resources"][0]["id"]
        assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
    # The server stopped, as for any migration: its background writers (the provisioning log)
    # would otherwise hold locks a schema change waits for. Take the counts away as a database
    # from before migration 0011 would be, then upgrade.
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0011-1")
    upgrade(db_url)
    async with serving(app, tenant) as scim:
        assert await _total(scim) == 3
        assert (await scim.post("/Users", user_body("new@example.com"))).status_code == 201
        assert await _total(scim) == 4
