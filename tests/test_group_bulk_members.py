"""Membership writes naming hundreds of users at once: the exact members, versions and audit.

On PostgreSQL, such writes (past `groups.SHORT_UNIT_MEMBERS` removals, past one addition,
touch or display) are one statement over arrays of user pks each, where SQLite keeps one
statement per member; these tests hold both to the same results. RFC 7644 §3.5.1 (PUT),
§3.5.2 (PATCH), §3.14 (a user's version changes with its `groups`).
"""

from __future__ import annotations

from typing import Any

import httpx

from hub.core.database import open_database
from hub.core.seed import seed_users
from hub.core.tenants import InitResult
from tests.conftest import ScimClient, group_body, patch_op
from tests.test_audit import records
from tests.test_cards import Admin, make_admin_key

#: users seeded: enough that each kind of change names more than `SHORT_UNIT_MEMBERS` of them
_USERS = 400


async def _seeded(db_url: str, tenant: InitResult, scim: ScimClient) -> list[str]:
    db = open_database(db_url)
    try:
        await seed_users(db, tenant.workspace, _USERS, cards=False)
    finally:
        await db.close()
    return sorted(_versions(await _users(scim)))


async def _users(scim: ScimClient) -> list[dict[str, Any]]:
    listed = await scim.get("/Users", params={"count": "1000", "attributes": "meta"})
    assert listed.status_code == 200, listed.text
    resources: list[dict[str, Any]] = listed.json()["Resources"]
    assert len(resources) == _USERS
    return resources


def _versions(resources: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {r["id"]: (r["meta"]["version"], r["meta"]["lastModified"]) for r in resources}


def _changed(before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]) -> set[str]:
    """The users whose version changed; their lastModified must have moved with it."""
    changed = {uid for uid in before if after[uid][0] != before[uid][0]}
    assert all(after[uid][1] > before[uid][1] for uid in changed)
    assert all(after[uid][1] == before[uid][1] for uid in set(before) - changed)
    return changed


async def _members(scim: ScimClient, gid: str) -> dict[str, str | None]:
    got = await scim.get(f"/Groups/{gid}")
    assert got.status_code == 200, got.text
    return {m["value"]: m.get("display") for m in got.json().get("members", [])}


async def test_a_put_that_adds_removes_and_redisplays_hundreds_of_members(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    ids = await _seeded(db_url, tenant, scim)
    leaving, staying, redisplayed, joining = ids[:150], ids[150:230], ids[230:250], ids[250:]
    first = [{"value": u, "display": "old"} for u in [*leaving, *staying, *redisplayed]]
    made = await scim.post("/Groups", group_body("Push", members=first))
    assert made.status_code == 201, made.text
    gid = made.json()["id"]
    before = _versions(await _users(scim))

    sent = [
        *({"value": u, "display": "old"} for u in staying),
        *({"value": u, "display": "new"} for u in redisplayed),
        *({"value": u, "display": f"j{i}"} for i, u in enumerate(joining)),
    ]
    put = await scim.put(f"/Groups/{gid}", group_body("Push", members=sent))
    assert put.status_code == 200, put.text

    assert await _members(scim, gid) == {m["value"]: m["display"] for m in sent}
    assert _changed(before, _versions(await _users(scim))) == {*leaving, *joining}
    (trail, *_) = await records(admin, resource=gid)
    assert trail["action"] == "replace"
    changes = trail["changes"]
    assert changes["members_added"] == joining
    assert sorted(changes["members_removed"]) == leaving
    assert sorted(changes["members_redisplayed"]) == redisplayed


async def test_a_patch_adding_and_removing_hundreds_of_members(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    ids = await _seeded(db_url, tenant, scim)
    made = await scim.post("/Groups", group_body("Okta", members=[{"value": u} for u in ids[:200]]))
    gid = made.json()["id"]
    before = _versions(await _users(scim))

    # Adds 150 of which 50 are members already; removes 120 members and 30 users who are not.
    added = ids[150:300]
    removed = [*ids[:120], *ids[300:330]]
    body = patch_op(
        {"op": "add", "path": "members", "value": [{"value": u, "display": "d"} for u in added]},
        {"op": "remove", "path": "members", "value": [{"value": u} for u in removed]},
    )
    patched = await scim.patch(f"/Groups/{gid}", body)
    assert patched.status_code in (200, 204), patched.text

    expected = {**dict.fromkeys(ids[120:200]), **dict.fromkeys(ids[200:300], "d")}
    assert await _members(scim, gid) == expected
    assert _changed(before, _versions(await _users(scim))) == {*ids[:120], *ids[200:300]}
    (trail, *_) = await records(admin, resource=gid)
    assert trail["changes"] == {"members_added": ids[200:300], "members_removed": ids[:120]}

    # Every member left at once, then the group deleted: each leaver touched once.
    before = _versions(await _users(scim))
    gone = await scim.patch(f"/Groups/{gid}", patch_op({"op": "remove", "path": "members"}))
    assert gone.status_code in (200, 204), gone.text
    assert await _members(scim, gid) == {}
    assert _changed(before, _versions(await _users(scim))) == set(expected)
