"""Audit trail (issue 6 point 8): every SCIM and admin change leaves a queryable record."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from hub.core.tenants import InitResult
from tests.conftest import ScimClient, group_body, patch_op, user_body
from tests.test_cards import Admin, make_admin_key

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def records(admin: Admin, **params: str) -> list[dict[str, Any]]:
    response = await admin.call("GET", "/audit", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["records"]
    return found


async def test_scim_changes_are_audited_with_request_ids(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    created = await scim.post("/Users", user_body("audit@example.com", password="S3cret-pass!"))
    uid = created.json()["id"]
    patched = await scim.patch(
        f"/Users/{uid}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]},
    )
    group = await scim.post("/Groups", group_body("Board", members=[{"value": uid}]))
    deleted = await scim.delete(f"/Users/{uid}")
    assert deleted.status_code == 204

    trail = await records(admin, resource=uid)
    assert [r["action"] for r in trail] == ["delete", "patch", "create"]
    assert {r["actor_kind"] for r in trail} == {"connector"}
    assert {r["actor_id"] for r in trail} == {tenant.connector_id}
    assert trail[1]["changes"] == {"attributes": ["title"]}
    assert trail[1]["request_id"] == patched.headers["x-request-id"]
    assert trail[2]["request_id"] == created.headers["x-request-id"]
    assert "password" not in trail[2]["changes"]["attributes"]
    assert "S3cret" not in json.dumps(trail)

    group_trail = await records(admin, resource=group.json()["id"])
    assert group_trail[0]["action"] == "create"
    assert group_trail[0]["changes"]["members_added"] == [uid]


async def test_a_put_that_changes_nothing_is_not_written(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    # Okta pushes a user's whole profile with PUT, changed or not.
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    body = user_body("same@example.com", title="Engineer", active=True)
    created = await scim.post("/Users", body)
    uid = created.json()["id"]

    again = await scim.put(f"/Users/{uid}", {**body, "id": uid})
    assert again.status_code == 200, again.text
    assert again.headers["etag"] == created.headers["etag"]
    assert again.json()["meta"] == created.json()["meta"]
    assert [r["action"] for r in await records(admin, resource=uid)] == ["create"]

    changed = await scim.put(f"/Users/{uid}", {**body, "title": "Lead"})
    assert changed.status_code == 200, changed.text
    assert changed.headers["etag"] != created.headers["etag"]
    trail = await records(admin, resource=uid)
    assert [r["action"] for r in trail] == ["replace", "create"]
    assert trail[0]["changes"] == {"attributes": ["title"]}


async def test_a_group_write_that_changes_nothing_is_not_written(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    # An IdP restarting its sync re-adds every member it knows of and retries removals.
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    a, b, c = [(await scim.post("/Users", user_body())).json()["id"] for _ in range(3)]
    created = await scim.post("/Groups", group_body("Crew", members=[{"value": a}]))
    gid = created.json()["id"]

    def member_patch(*operations: dict[str, Any]) -> Any:
        return scim.patch(f"/Groups/{gid}", patch_op(*operations))

    for operations in (
        [{"op": "add", "path": "members", "value": [{"value": a}]}],
        [{"op": "remove", "path": "members", "value": [{"value": b}]}],
        [{"op": "remove", "path": f'members[value eq "{c}"]'}],
        [
            {"op": "add", "path": "members", "value": [{"value": a}, {"value": a}]},
            {"op": "remove", "path": "members", "value": [{"value": "no-such-user"}]},
        ],
        # Okta's push of a group's name, unchanged.
        [{"op": "replace", "value": {"id": gid, "displayName": "Crew"}}],
    ):
        unchanged = await member_patch(*operations)
        assert unchanged.status_code in (200, 204), (operations, unchanged.text)
        assert unchanged.headers["etag"] == created.headers["etag"], operations
    # Okta's push of the whole group by PUT, unchanged.
    same = {**group_body("Crew", members=[{"value": a}]), "id": gid}
    put = await scim.put(f"/Groups/{gid}", same)
    assert put.status_code == 200, put.text
    assert put.json() == created.json()
    group = (await scim.get(f"/Groups/{gid}")).json()
    assert group["meta"] == created.json()["meta"]
    assert [r["action"] for r in await records(admin, resource=gid)] == ["create"]

    # A PATCH naming members and non-members records only what it changed.
    added = await member_patch(
        {"op": "add", "path": "members", "value": [{"value": a}, {"value": b}]}
    )
    assert added.headers["etag"] == 'W/"2"'
    removed = await member_patch(
        {"op": "remove", "path": f'members[value eq "{a}" or value eq "{c}"]'}
    )
    assert removed.headers["etag"] == 'W/"3"'
    emptied = await member_patch({"op": "remove", "path": "members"})
    assert emptied.headers["etag"] == 'W/"4"'
    again = await member_patch({"op": "remove", "path": "members"})
    assert again.headers["etag"] == 'W/"4"'
    trail = await records(admin, resource=gid)
    assert [r["changes"] for r in trail[:3]] == [
        {"members_removed": ["*"]},
        {"members_removed": [a]},
        {"members_added": [b]},
    ]
    assert "members" not in (await scim.get(f"/Groups/{gid}")).json()
    # A PUT that changes the members is written, once.
    assert (await scim.put(f"/Groups/{gid}", same)).headers["etag"] == 'W/"5"'
    assert (await scim.put(f"/Groups/{gid}", same)).headers["etag"] == 'W/"5"'
    assert [r["action"] for r in (await records(admin, resource=gid))[:2]] == ["replace", "patch"]


async def test_admin_changes_are_audited(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    changed = await admin.call("PUT", "/settings", {"send_activation_email": False})
    assert changed.status_code == 200, changed.text
    latest = (await records(admin))[0]
    assert latest["actor_kind"] == "admin"
    assert latest["actor_id"] == tenant.admin_id
    assert latest["changes"] == {"fields": ["send_activation_email"]}
    assert latest["action"].startswith("PUT ")
    assert latest["request_id"] == changed.headers["x-request-id"]


async def test_a_card_field_change_is_audited_with_the_fields_name(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    """The record of an edit, lock, unlock or relink names the field, not the body's keys."""
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    user = (await scim.post("/Users", user_body("fields@example.com", title="Eng"))).json()
    card = f"/cards/{user['id']}/fields/job_title"
    for method, path, body in (
        ("PATCH", card, {"value": "Boss"}),
        ("POST", f"{card}/lock", None),
        ("POST", f"{card}/unlock", None),
        ("POST", f"{card}/relink", None),
    ):
        done = await admin.call(method, path, body)
        assert done.status_code == 200, done.text
        latest = (await records(admin))[0]
        assert latest["changes"] == {"fields": ["job_title"]}, path


async def test_failed_changes_leave_no_record(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    assert (await scim.post("/Users", user_body("dup@example.com"))).status_code == 201
    assert (await scim.post("/Users", user_body("dup@example.com"))).status_code == 409
    assert len(await records(admin)) == 1


async def test_audit_is_per_workspace(
    scim: ScimClient,
    client: httpx.AsyncClient,
    db_url: str,
    tenant: InitResult,
    other_tenant: InitResult,
) -> None:
    await scim.post("/Users", user_body())
    other = Admin(client, other_tenant.workspace, await make_admin_key(db_url, other_tenant))
    assert await records(other) == []
    cross = Admin(client, tenant.workspace, other.key)
    assert (await cross.call("GET", "/audit")).status_code == 404
    assert (await Admin(client, tenant.workspace, None).call("GET", "/audit")).status_code == 401


async def test_any_integer_pages_the_trail_without_reaching_the_database_unchecked(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    # Found by schemathesis: a `before` beyond the 32-bit key column (PostgreSQL) or beyond 64
    # bits (SQLite) reached the driver, whose overflow answered 500. A bound above every key is
    # no bound; one at or below the first key leaves nothing.
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    await scim.post("/Users", user_body("paged@example.com"))
    for _ in range(100):  # the provisioning log is written in the background
        if (await admin.ok("GET", "/activity"))["records"]:
            break
        await asyncio.sleep(0.05)
    for route in ("/audit", "/activity"):
        everything = (await admin.ok("GET", route))["records"]
        for huge in (2**31, 2**63, 2**100):
            assert (await admin.ok("GET", route, params={"before": str(huge)}))["records"] == (
                everything
            ), (route, huge)
        for tiny in (1, 0, -(2**31) - 1, -(2**63) - 1, -(2**100)):
            assert (await admin.ok("GET", route, params={"before": str(tiny)}))["records"] == [], (
                route,
                tiny,
            )
        huge_limit = await admin.ok("GET", route, params={"limit": str(2**70), "before": "-5"})
        assert huge_limit == {"records": [], "next_before": None}


async def test_a_members_replace_records_who_joined_and_left(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    """Okta pushes a group's whole membership (PUT, or a `members` replace), changed or not.

    The record listed every member sent: a push of a group of 20,000 in which one user changed
    wrote 20,000 ids (~900 KB) into the trail. It lists the users who joined, left, or whose
    `display` changed.
    """
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    ids = [(await scim.post("/Users", user_body())).json()["id"] for _ in range(7)]
    stay, leaving, joining = ids[:5], ids[5], ids[6]
    made = await scim.post("/Groups", group_body("Push", members=[{"value": u} for u in ids[:6]]))
    gid = made.json()["id"]

    put = await scim.put(
        f"/Groups/{gid}", group_body("Push", members=[{"value": u} for u in [*stay, joining]])
    )
    assert put.status_code == 200, put.text
    members = [{"value": u} for u in [*stay, leaving]]
    members[0]["display"] = "First"
    replace = patch_op({"op": "replace", "path": "members", "value": members})
    assert (await scim.patch(f"/Groups/{gid}", replace)).status_code == 204

    trail = await records(admin, resource=gid)
    assert [r["action"] for r in trail] == ["patch", "replace", "create"]
    assert trail[0]["changes"] == {
        "members_added": [leaving],
        "members_removed": [joining],
        "members_redisplayed": [stay[0]],
    }
    assert trail[1]["changes"] == {
        "attributes": [],
        "members_added": [joining],
        "members_removed": [leaving],
    }
    shown = (await scim.get(f"/Groups/{gid}")).json()["members"]
    assert {m["value"]: m.get("display") for m in shown} == {
        **dict.fromkeys([*stay[1:], leaving]),
        stay[0]: "First",
    }
