"""The Enterprise User manager's `$ref` (RFC 7643 §4.3), written with the manager: both databases.

RFC 7643 §4.3 makes manager's `$ref` "The URI of the SCIM resource representing the User's
manager. REQUIRED."; the hub derives it from `manager.value` in the relative form of the RFC's
own example (§8.3, ``"$ref": "../Users/26118915-…"``) whenever a manager is written, and a
revision writes it into the users stored before.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from alembic import command
from litestar import Litestar
from sqlalchemy import Connection, update

from hub.core.database import open_database
from hub.core.models import users
from hub.core.tenants import InitResult
from hub.migrate import alembic_config, upgrade
from tests.conftest import (
    ScimClient,
    create_workspace,
    patch_op,
    serving,
    user_body,
)

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MANAGER = f"{ENTERPRISE}:manager"


def managed_by(manager: Any, **extension: Any) -> dict[str, Any]:
    """A User body whose Enterprise extension holds `manager` (and `extension`)."""
    return user_body(schemas=[USER, ENTERPRISE], **{ENTERPRISE: {**extension, "manager": manager}})


def reference(manager_id: str) -> dict[str, str]:
    """The manager the hub stores for `manager_id`: its id and the relative URI of RFC 7643 §8.3."""
    return {"value": manager_id, "$ref": f"../Users/{manager_id}"}


async def created(scim: ScimClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await scim.post("/Users", body)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def manager_of(scim: ScimClient, user_id: str) -> Any:
    """The manager a GET and a filtered list show for the user (they must agree)."""
    got = (await scim.get(f"/Users/{user_id}")).json()
    listed = (await scim.get("/Users", params={"filter": f'id eq "{user_id}"'})).json()
    assert listed["Resources"] == [got]
    return got.get(ENTERPRISE, {}).get("manager")


async def test_a_created_manager_has_its_ref(scim: ScimClient) -> None:
    """POST: `$ref` made from `value`; one naming another resource replaced, one naming the
    manager kept as sent; displayName ignored (readOnly)."""
    boss = await created(scim, user_body())
    boss_id, boss_location = boss["id"], boss["meta"]["location"]
    user = await created(scim, managed_by({"value": boss_id}, department="Tours"))
    assert user[ENTERPRISE] == {"department": "Tours", "manager": reference(boss_id)}
    assert await manager_of(scim, user["id"]) == reference(boss_id)
    # It resolves, against the user's location, to the manager's (RFC 3986 §5.2).
    location = user["meta"]["location"]
    assert urljoin(location, user[ENTERPRISE]["manager"]["$ref"]) == boss_location
    for other in (
        "https://elsewhere.example/Users/x",
        f"https://elsewhere.example/scim/v2/Users/{boss_id}",  # another host: another resource
        f"http://localhost/scim/Users/{boss_id}",  # Entra's tutorial, Example 5
        "../Users/x",
    ):
        sent = {"value": boss_id, "$ref": other, "displayName": "B"}
        user = await created(scim, managed_by(sent))
        assert await manager_of(scim, user["id"]) == reference(boss_id), other
    for same in (boss_location, urlsplit(boss_location).path):  # what scim2-tester sends
        user = await created(scim, managed_by({"value": boss_id, "$ref": same}))
        assert await manager_of(scim, user["id"]) == {"value": boss_id, "$ref": same}
    # An id that is no URI path segment as it is: percent-encoded (RFC 3986 §2.1).
    user = await created(scim, managed_by({"value": "a b/c"}))
    assert user[ENTERPRISE]["manager"] == {"value": "a b/c", "$ref": "../Users/a%20b%2Fc"}


@pytest.mark.parametrize(
    "manager",
    [{"value": ""}, {"$ref": "../Users/x"}, {"value": "", "$ref": "x", "displayName": "B"}],
)
async def test_a_manager_without_an_id_is_none(scim: ScimClient, manager: Any) -> None:
    """No `value`, no `$ref`: a `$ref` alone or an empty id names no manager the hub stores."""
    user = await created(scim, managed_by(manager, department="Tours"))
    assert user[ENTERPRISE] == {"department": "Tours"}
    assert await manager_of(scim, user["id"]) is None


async def test_a_patch_writes_the_ref_with_the_manager(scim: ScimClient) -> None:
    """Entra's bare id, the object form, `manager.value`, then removal: `$ref` follows."""
    first, second, third = [(await created(scim, user_body()))["id"] for _ in range(3)]
    uid = (await created(scim, user_body()))["id"]
    steps: list[tuple[dict[str, Any], dict[str, str] | None]] = [
        ({"op": "Replace", "path": MANAGER, "value": first}, reference(first)),
        ({"op": "replace", "path": MANAGER, "value": {"value": second}}, reference(second)),
        ({"op": "replace", "path": f"{MANAGER}.value", "value": third}, reference(third)),
        ({"op": "add", "path": f"{MANAGER}.$ref", "value": "../Users/x"}, reference(third)),
        (
            {"op": "replace", "path": f"{MANAGER}.$ref", "value": f"/scim/v2/Users/{third}"},
            {"value": third, "$ref": f"/scim/v2/Users/{third}"},  # the same user: as sent
        ),
        ({"op": "replace", "path": f"{MANAGER}.value", "value": first}, reference(first)),
        ({"op": "remove", "path": f"{MANAGER}.value"}, None),
        ({"op": "add", "path": MANAGER, "value": {"value": first}}, reference(first)),
        ({"op": "remove", "path": MANAGER}, None),
        ({"op": "replace", "value": {MANAGER: second}}, reference(second)),
        ({"op": "Replace", "path": MANAGER, "value": ""}, None),
    ]
    for operation, expected in steps:
        response = await scim.patch(f"/Users/{uid}", patch_op(operation))
        assert response.status_code == 200, (operation, response.text)
        assert response.json().get(ENTERPRISE, {}).get("manager") == expected, operation
        assert await manager_of(scim, uid) == expected, operation


async def test_an_entra_patch_of_the_manager_writes_its_ref(
    client: Any, db_url: str, scim: ScimClient
) -> None:
    """Through an `azure_ad` connector: the bare id on the URN path, and "" removing it."""
    workspace = await create_workspace(db_url, "contoso", idp="azure_ad")
    entra = ScimClient(client, workspace.token)
    boss, uid = [(await created(entra, user_body()))["id"] for _ in range(2)]
    replace = {"op": "Replace", "path": MANAGER, "value": boss}
    response = await entra.patch(f"/Users/{uid}", patch_op(replace))
    assert response.status_code == 200, response.text
    assert response.json()[ENTERPRISE]["manager"] == reference(boss)
    assert await manager_of(entra, uid) == reference(boss)
    body = {**user_body(), ENTERPRISE: {"manager": boss}}  # Entra's POST: the bare id again
    assert (await created(entra, body))[ENTERPRISE]["manager"] == reference(boss)
    removed = await entra.patch(f"/Users/{uid}", patch_op({**replace, "value": ""}))
    assert ENTERPRISE not in removed.json()


async def test_a_put_writes_the_ref_and_a_put_without_a_manager_removes_it(
    scim: ScimClient,
) -> None:
    boss = (await created(scim, user_body()))["id"]
    user = await created(scim, user_body())
    name = {"userName": user["userName"]}
    put = await scim.put(f"/Users/{user['id']}", managed_by({"value": boss}) | name)
    assert put.status_code == 200, put.text
    assert put.json()[ENTERPRISE]["manager"] == reference(boss)
    assert await manager_of(scim, user["id"]) == reference(boss)
    again = await scim.put(f"/Users/{user['id']}", managed_by(reference(boss)) | name)
    assert again.json()["meta"]["version"] == put.json()["meta"]["version"]  # nothing changed
    gone = await scim.put(f"/Users/{user['id']}", managed_by(None, department="D") | name)
    assert gone.json()[ENTERPRISE] == {"department": "D"}
    assert await manager_of(scim, user["id"]) is None


async def test_filters_on_the_manager_still_find_the_user(scim: ScimClient) -> None:
    boss = (await created(scim, user_body()))["id"]
    uid = (await created(scim, managed_by({"value": boss})))["id"]
    for text in (
        f'{MANAGER}.value eq "{boss}"',
        f'{MANAGER}.$ref eq "../Users/{boss}"',
        f"{ENTERPRISE}:manager pr",
    ):
        found = (await scim.get("/Users", params={"filter": text})).json()
        assert [r["id"] for r in found["Resources"]] == [uid], text


async def test_the_migration_writes_the_ref_of_managers_stored_before(
    app: Litestar, db_url: str, tenant: InitResult
) -> None:
    """Revision 0022 on users stored before it: the derived `$ref` added, one sent replaced or
    dropped, an empty id no manager; no version moves. Its downgrade takes the derived out."""
    async with serving(app, tenant) as scim:
        boss = (await created(scim, user_body()))["id"]
        managed = await created(scim, managed_by({"value": boss}, department="Tours"))
        other = await created(scim, managed_by({"value": "m-1", "reportsDirectly": True}))
        plain = await created(scim, user_body())
        sent = [await created(scim, user_body()) for _ in range(3)]
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0021")
    as_sent = (  # what versions before 0022 stored as the client sent it
        {"manager": {"value": boss, "$ref": "https://elsewhere.example/Users/x"}},
        {"manager": {"$ref": "../Users/x"}, "department": "D"},
        {"manager": {"value": ""}},
    )

    def store_as_before(conn: Connection) -> None:
        for user, extension in zip(sent, as_sent, strict=True):
            doc = {"schemas": [USER, ENTERPRISE], "userName": user["userName"]}
            conn.execute(
                update(users)
                .where(users.c.id == user["id"])
                .values(data=doc | {ENTERPRISE: extension})
            )

    db = open_database(db_url)
    try:
        await db.write(store_as_before)
    finally:
        await db.close()
    async with serving(app, tenant) as scim:
        assert await manager_of(scim, managed["id"]) == {"value": boss}
        assert await manager_of(scim, other["id"]) == {"value": "m-1", "reportsDirectly": True}
        assert await manager_of(scim, sent[1]["id"]) == {"$ref": "../Users/x"}
    await asyncio.to_thread(upgrade, db_url)
    async with serving(app, tenant) as scim:
        for user in (managed, other, plain):
            assert (await scim.get(f"/Users/{user['id']}")).json() == user
        after = [(await scim.get(f"/Users/{user['id']}")).json() for user in sent]
    assert after[0][ENTERPRISE] == {"manager": reference(boss)}
    assert after[1][ENTERPRISE] == {"department": "D"}
    assert ENTERPRISE not in after[2]
    assert [u["meta"]["version"] for u in after] == [u["meta"]["version"] for u in sent]
