"""Okta provisioning replayed over HTTP against an `okta` connector.

Each replay also runs through an `any_scim` connector (the `make run` demo's dialect).

Request bodies are the ones Okta documents:

* [OKTA-REF] Okta developer documentation, "SCIM 2.0 protocol reference" (Okta as the SCIM
  client): connection test ``GET /Users?startIndex=1&count=2``, "Determine if the user already
  exists" (``filter=userName eq "…"&startIndex=1&count=100``), "Create the user" (with
  ``password``, ``groups``, ``locale``), "Retrieve the user", "Update a specific user (PUT)",
  "Update a specific user (PATCH)" deactivation, and the Group Push operations (create, rename by
  PATCH and PUT, add/remove members, delete).
* [OKTA-BUILD] Okta developer documentation, "Build a SCIM provisioning integration": custom
  attributes in an extension namespace, users deactivated rather than deleted.

Runs on SQLite and PostgreSQL (`db_url`).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ScimClient, create_workspace
from tests.conftest import patch_op as patch

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
CUSTOM = "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User"


@pytest.fixture(params=["okta", "any_scim"])
async def okta(
    client: httpx.AsyncClient, db_url: str, request: pytest.FixtureRequest
) -> ScimClient:
    """SCIM calls as Okta (workspace "initech").

    Through an `okta` connector, and through the tolerant `any_scim` one the `make run` demo gets.
    """
    workspace = await create_workspace(db_url, "initech", idp=request.param)
    return ScimClient(client, workspace.token)


def okta_user(user_name: str | None = None) -> dict[str, Any]:
    """[OKTA-REF] "Create the user" request body."""
    name = user_name or f"test.user.{uuid.uuid4().hex[:8]}@okta.local"
    return {
        "schemas": [USER],
        "userName": name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }


def listing(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [LIST]
    assert body["itemsPerPage"] == len(body["Resources"])
    return body


async def test_connection_test(okta: ScimClient) -> None:
    """[OKTA-REF] "Test connector configuration": a list with startIndex and count, 200."""
    body = listing(await okta.get("/Users", params={"startIndex": "1", "count": "2"}))
    assert (body["totalResults"], body["startIndex"], body["Resources"]) == (0, 1, [])
    groups = listing(await okta.get("/Groups", params={"startIndex": "1", "count": "100"}))
    assert groups["totalResults"] == 0


async def test_user_cycle(okta: ScimClient) -> None:
    """[OKTA-REF] the user lifecycle, in order."""
    body = okta_user()
    lookup = {"filter": f'userName eq "{body["userName"]}"', "startIndex": "1", "count": "100"}
    assert listing(await okta.get("/Users", params=lookup))["totalResults"] == 0

    created = await okta.post("/Users", body)
    assert created.status_code == 201, created.text
    user = created.json()
    uid = user["id"]
    assert user["active"] is True
    assert user["userName"] == body["userName"]
    assert user["locale"] == "en-US"
    assert "password" not in user  # accepted, never stored or returned

    found = listing(await okta.get("/Users", params=lookup))
    assert found["totalResults"] == 1
    assert found["Resources"][0]["id"] == uid
    assert "password" not in found["Resources"][0]

    got = await okta.get(f"/Users/{uid}")
    assert got.status_code == 200
    assert "password" not in got.json()

    # Profile update: PUT of the whole user, echoing id, meta, groups and password.
    put_body = {**okta_user(body["userName"]), "id": uid, "meta": user["meta"]}
    put_body["name"] = {"givenName": "Another", "familyName": "User"}
    put_body["displayName"] = "Another User"
    replaced = await okta.put(f"/Users/{uid}", put_body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == {"givenName": "Another", "familyName": "User"}
    assert replaced.json()["displayName"] == "Another User"
    assert "password" not in replaced.json()

    # Deactivation: PATCH replace with a path-less value.
    deactivate = patch({"op": "replace", "value": {"active": False}})
    response = await okta.patch(f"/Users/{uid}", deactivate)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is False

    # Okta never deletes: the deactivated user stays readable and findable by userName.
    got = await okta.get(f"/Users/{uid}")
    assert got.status_code == 200
    assert got.json()["active"] is False
    found = listing(await okta.get("/Users", params=lookup))
    assert [(r["id"], r["active"]) for r in found["Resources"]] == [(uid, False)]

    # Reactivation.
    response = await okta.patch(
        f"/Users/{uid}", patch({"op": "replace", "value": {"active": True}})
    )
    assert response.json()["active"] is True


async def test_pagination_of_lookups(okta: ScimClient) -> None:
    """[OKTA-REF] Okta imports users page by page with startIndex/count."""
    for _ in range(5):
        assert (await okta.post("/Users", okta_user())).status_code == 201
    first = listing(await okta.get("/Users", params={"startIndex": "1", "count": "2"}))
    second = listing(await okta.get("/Users", params={"startIndex": "3", "count": "2"}))
    last = listing(await okta.get("/Users", params={"startIndex": "5", "count": "2"}))
    assert (first["totalResults"], second["totalResults"], last["totalResults"]) == (5, 5, 5)
    assert (second["startIndex"], len(second["Resources"]), len(last["Resources"])) == (3, 2, 1)
    ids = [r["id"] for r in first["Resources"] + second["Resources"] + last["Resources"]]
    assert len(set(ids)) == 5


async def test_custom_attribute_extension(okta: ScimClient) -> None:
    """[OKTA-BUILD] custom attributes arrive in the admin's namespace, listed or not in schemas."""
    body = okta_user()
    body[CUSTOM] = {"costCenter": "CC-42", "badge": "B-7"}
    created = await okta.post("/Users", body)  # schemas lists only the core URN
    assert created.status_code == 201, created.text
    user = created.json()
    assert user[CUSTOM] == {"costCenter": "CC-42", "badge": "B-7"}
    assert CUSTOM in user["schemas"]
    response = await okta.patch(
        f"/Users/{user['id']}",
        patch({"op": "replace", "path": f"{CUSTOM}:costCenter", "value": "CC-43"}),
    )
    assert response.status_code == 200, response.text
    assert response.json()[CUSTOM]["costCenter"] == "CC-43"


async def test_group_push(okta: ScimClient) -> None:
    """[OKTA-REF] Group Push: create, rename by PATCH and PUT, members in batches, delete."""
    users = []
    for _ in range(3):
        created = await okta.post("/Users", okta_user())
        users.append((created.json()["id"], created.json()["userName"]))

    response = await okta.post(
        "/Groups", {"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []}
    )
    assert response.status_code == 201, response.text
    gid = response.json()["id"]
    assert response.json()["displayName"] == "Test SCIMv2"

    listed = listing(await okta.get("/Groups", params={"startIndex": "1", "count": "100"}))
    assert [g["id"] for g in listed["Resources"]] == [gid]
    by_name = listing(await okta.get("/Groups", params={"filter": 'displayName eq "Test SCIMv2"'}))
    assert [g["id"] for g in by_name["Resources"]] == [gid]

    # Rename by PATCH: Okta echoes the group's id inside the path-less value.
    rename = patch({"op": "replace", "value": {"id": gid, "displayName": "Test SCIMv2 renamed"}})
    response = await okta.patch(f"/Groups/{gid}", rename)
    assert response.status_code in (200, 204), response.text
    assert (await okta.get(f"/Groups/{gid}")).json()["displayName"] == "Test SCIMv2 renamed"

    # Members added with their display, then removed by value filter.
    add = patch(
        {"op": "add", "path": "members", "value": [{"value": u, "display": n} for u, n in users]}
    )
    assert (await okta.patch(f"/Groups/{gid}", add)).status_code in (200, 204)
    group = (await okta.get(f"/Groups/{gid}")).json()
    assert {m["value"] for m in group["members"]} == {u for u, _ in users}
    remove = patch({"op": "remove", "path": f'members[value eq "{users[0][0]}"]'})
    assert (await okta.patch(f"/Groups/{gid}", remove)).status_code in (200, 204)
    group = (await okta.get(f"/Groups/{gid}")).json()
    assert {m["value"] for m in group["members"]} == {u for u, _ in users[1:]}

    # Rename and set members by PUT of the whole group.
    put_body = {
        "schemas": [GROUP],
        "id": gid,
        "displayName": "Test SCIMv2 put",
        "members": [{"value": users[0][0], "display": users[0][1]}],
    }
    response = await okta.put(f"/Groups/{gid}", put_body)
    assert response.status_code == 200, response.text
    assert response.json()["displayName"] == "Test SCIMv2 put"
    assert [m["value"] for m in response.json()["members"]] == [users[0][0]]

    assert (await okta.delete(f"/Groups/{gid}")).status_code == 204
    assert (await okta.get(f"/Groups/{gid}")).status_code == 404


async def test_group_push_batches_of_hundreds(okta: ScimClient, db_url: str) -> None:
    """[OKTA-REF] Group Push sends member changes in batches (a few hundred per PATCH)."""
    from hub.core.database import open_database
    from hub.core.tenants import find_workspace
    from hub.core.tokens import authenticate, digest
    from hub.core.users import create

    assert okta.token is not None
    token = okta.token
    db = open_database(db_url)

    def make_users(conn: Any) -> list[str]:
        caller = authenticate(conn, digest(token))
        assert caller is not None
        assert find_workspace(conn, "initech") is not None
        return [
            create(
                conn, caller, okta_user(f"bulk{i}@okta.local"), "http://testserver.local/scim/v2"
            ).resource["id"]
            for i in range(300)
        ]

    try:
        ids = await db.write(make_users)
    finally:
        await db.close()
    gid = (await okta.post("/Groups", {"schemas": [GROUP], "displayName": "Everyone"})).json()["id"]
    add = patch({"op": "add", "path": "members", "value": [{"value": u} for u in ids]})
    assert (await okta.patch(f"/Groups/{gid}", add)).status_code in (200, 204)
    group = (await okta.get(f"/Groups/{gid}")).json()
    assert len(group["members"]) == 300
    remove = patch(*({"op": "remove", "path": f'members[value eq "{u}"]'} for u in ids[:250]))
    assert (await okta.patch(f"/Groups/{gid}", remove)).status_code in (200, 204)
    group = (await okta.get(f"/Groups/{gid}")).json()
    assert {m["value"] for m in group["members"]} == set(ids[250:])
