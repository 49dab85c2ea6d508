"""Index pages deep in a long list (RFC 7644 §3.4.2.4) hold exactly what a walk from the start does.

A page past the middle is read from the far end of the list, in the opposite order, with the
trigger-kept count of live users: these tests compare such pages, in both sort orders, with the
same window of a cursor walk (RFC 9865, which reads `pk` ranges and never an OFFSET), before and
after users are deleted, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.database import open_database
from hub.core.seed import seed_users
from hub.core.tenants import InitResult
from tests.conftest import ScimClient

USERS = 1_250


async def walk(scim: ScimClient) -> list[str]:
    """Every live user's id, in list order, by cursor pages."""
    ids: list[str] = []
    cursor = ""
    while cursor is not None:
        body = (await scim.get("/Users", params={"cursor": cursor, "count": "500"})).json()
        ids += [user["id"] for user in body["Resources"]]
        cursor = body.get("nextCursor")
    return ids


async def page(scim: ScimClient, start: int, count: int, **params: str) -> dict[str, Any]:
    query = {"startIndex": str(start), "count": str(count), "attributes": "id", **params}
    response = await scim.get("/Users", params=query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def seeded(db_url: str, tenant: InitResult) -> None:
    db = open_database(db_url)
    try:
        await seed_users(db, tenant.workspace, USERS, cards=False)
    finally:
        await db.close()


@pytest.mark.usefixtures("seeded")
async def test_deep_pages_match_a_walk_from_the_start(scim: ScimClient) -> None:
    ids = await walk(scim)
    assert len(ids) == USERS
    starts = [1_001, 1_002, 1_100, 1_150, 1_200, 1_243, 1_249, 1_250, 1_251, 1_400]
    for deleted in (0, 3):
        for start in starts:
            for count in (1, 7, 100):
                ascending = await page(scim, start, count)
                assert [u["id"] for u in ascending["Resources"]] == ids[start - 1 :][:count], (
                    start,
                    count,
                )
                assert ascending["totalResults"] == len(ids)
                assert ascending["startIndex"] == start
                backwards = ids[::-1]
                descending = await page(scim, start, count, sortOrder="descending")
                got = [u["id"] for u in descending["Resources"]]
                assert got == backwards[start - 1 :][:count], (start, count, "descending")
        if not deleted:
            # Deleted users leave the list and its count: the windows move with them.
            for user_id in (ids[5], ids[1_200], ids[-1]):
                assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
            ids = await walk(scim)
            assert len(ids) == USERS - 3
