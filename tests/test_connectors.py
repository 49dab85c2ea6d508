"""Connectors per workspace over the admin API: IdPs, enable/disable/delete, tokens, overrides.

Real HTTP against the app on SQLite and PostgreSQL; SCIM calls use the tokens the API hands out.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from hub.core.tenants import InitResult
from tests.conftest import ScimClient, assert_scim_error, group_body, user_body

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CUSTOM = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class Admin:
    """Admin API calls for one workspace."""

    def __init__(self, http: httpx.AsyncClient, workspace: str, key: str) -> None:
        self.http = http
        self.base = f"/api/v1/workspaces/{workspace}"
        self.headers = {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.http.request(method, self.base + path, json=body, headers=self.headers)

    async def token(self, connector: str) -> str:
        response = await self.call("POST", f"/connectors/{connector}/tokens")
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token


@pytest.fixture
async def admin(client: httpx.AsyncClient, db_url: str, tenant: InitResult) -> Admin:
    from hub.core.admins import create_key
    from hub.core.database import open_database
    from hub.core.tenants import first_admin_pk, require_workspace

    db = open_database(db_url)

    def make_key(conn: Any) -> str:
        ws = require_workspace(conn, tenant.workspace)
        return create_key(conn, admin_pk=first_admin_pk(conn, ws.pk))

    try:
        key = await db.write(make_key)
    finally:
        await db.close()
    return Admin(client, tenant.workspace, key)


async def test_installed_idps(admin: Admin) -> None:
    response = await admin.call("GET", "/idps")
    assert response.status_code == 200
    idps = {i["name"]: i for i in response.json()["idps"]}
    assert {"azure_ad", "okta", "generic_scim"} <= set(idps)
    assert idps["azure_ad"]["displayName"] == "Microsoft Entra ID"
    assert "photo_url" not in idps["azure_ad"]["mapping"]
    assert idps["azure_ad"]["unmanaged"] == ["photos"]
    assert idps["generic_scim"]["mapping"]["photo_url"] == 'photos[type eq "photo"].value'


async def test_admin_api_needs_an_admin_key(client: httpx.AsyncClient, tenant: InitResult) -> None:
    response = await client.get(f"/api/v1/workspaces/{tenant.workspace}/connectors")
    assert_scim_error(response, 401)
    bad = {"Authorization": f"Bearer {tenant.token}"}  # a SCIM token is no admin key
    response = await client.get(f"/api/v1/workspaces/{tenant.workspace}/connectors", headers=bad)
    assert_scim_error(response, 401)


async def test_enable_disable_reenable_delete(admin: Admin, scim: ScimClient) -> None:
    created = await admin.call("POST", "/connectors", {"name": "Entra EU", "idp": "azure_ad"})
    assert created.status_code == 201, created.text
    info = created.json()
    assert (info["name"], info["idp"], info["enabled"], info["idpInstalled"]) == (
        "Entra EU",
        "azure_ad",
        True,
        True,
    )
    assert_scim_error(
        await admin.call("POST", "/connectors", {"name": "Entra EU", "idp": "okta"}), 409
    )
    assert_scim_error(
        await admin.call("POST", "/connectors", {"name": "X", "idp": "nope"}), 400, "invalidValue"
    )
    assert_scim_error(await admin.call("POST", "/connectors", {"name": "X"}), 400, "invalidValue")

    entra = scim.with_token(await admin.token("Entra EU"))
    uid = (await entra.post("/Users", user_body("eu@example.com"))).json()["id"]

    disabled = await admin.call("PATCH", f"/connectors/{info['id']}", {"enabled": False})
    assert disabled.json()["enabled"] is False
    assert_scim_error(await entra.get("/Users"), 401)
    listed = (await admin.call("GET", "/connectors/Entra EU/tokens")).json()["tokens"]
    assert [t["alive"] for t in listed] == [False]
    assert (await admin.call("PATCH", "/connectors/Entra EU", {"enabled": True})).json()["enabled"]
    assert (await entra.get("/Users")).status_code == 200

    names = [c["name"] for c in (await admin.call("GET", "/connectors")).json()["connectors"]]
    assert names == ["generic_scim", "Entra EU"]
    assert (await admin.call("GET", "/connectors/Entra EU")).json()["users"] == 1

    assert (await admin.call("DELETE", "/connectors/Entra EU")).status_code == 204
    assert_scim_error(await entra.get("/Users"), 401)  # its tokens died
    assert_scim_error(await admin.call("GET", "/connectors/Entra EU"), 404)
    names = [c["name"] for c in (await admin.call("GET", "/connectors")).json()["connectors"]]
    assert names == ["generic_scim"]
    # Its users stay, marked with their source: a clash names the deleted connector.
    user = await scim.get(f"/Users/{uid}")
    assert user.status_code == 200
    clash = assert_scim_error(
        await scim.post("/Users", user_body("eu@example.com")), 409, "uniqueness"
    )
    assert "Entra EU (deleted" in clash["detail"]
    # The name is free again.
    again = await admin.call("POST", "/connectors", {"name": "Entra EU", "idp": "azure_ad"})
    assert again.status_code == 201


async def test_tokens_generate_regenerate_list_revoke(admin: Admin, scim: ScimClient) -> None:
    await admin.call("POST", "/connectors", {"name": "Okta", "idp": "okta"})
    first = await admin.token("Okta")
    second = await admin.token("Okta")
    okta_a, okta_b = scim.with_token(first), scim.with_token(second)
    assert (await okta_a.post("/Users", user_body())).status_code == 201  # a write records use
    tokens = (await admin.call("GET", "/connectors/Okta/tokens")).json()["tokens"]
    assert len(tokens) == 2
    assert all(t["createdBy"].startswith("admin@") for t in tokens)
    used = [t for t in tokens if t["hint"] == f"…{first[-4:]}"]
    assert used[0]["lastUsed"] is not None

    revoked = await admin.call("DELETE", f"/connectors/Okta/tokens/{tokens[1]['id']}")
    assert revoked.status_code == 204
    assert_scim_error(await okta_b.get("/Users"), 401)
    assert (await okta_a.get("/Users")).status_code == 200
    assert_scim_error(await admin.call("DELETE", f"/connectors/Okta/tokens/{tokens[1]['id']}"), 404)

    regenerated = await admin.call("POST", "/connectors/Okta/tokens/regenerate")
    assert regenerated.status_code == 201
    assert_scim_error(await okta_a.get("/Users"), 401)  # the old one died
    fresh = scim.with_token(regenerated.json()["token"])
    assert (await fresh.get("/Users")).status_code == 200
    assert len((await admin.call("GET", "/connectors/Okta/tokens")).json()["tokens"]) == 1


async def test_this_hubs_own_changes_are_refused_at_the_very_next_write(
    admin: Admin, scim: ScimClient
) -> None:
    """A write may find its token's caller in the connection's memory (SQLite): a disabled
    connector or a revoked token, committed by this very hub's admin API, is refused at the next
    write, a group's PUT (run on the writer thread, where the admin API writes) as a user's POST
    (on the event loop's connection), and a re-enabled connector's token writes again at once."""
    await admin.call("POST", "/connectors", {"name": "Okta", "idp": "okta"})
    okta = scim.with_token(await admin.token("Okta"))
    group = await okta.post("/Groups", group_body("Staff"))
    assert group.status_code == 201, group.text
    path = f"/Groups/{group.json()['id']}"

    async def writes() -> list[int]:
        put = await okta.put(path, group_body("Staff"))
        post = await okta.post("/Users", user_body(f"{uuid.uuid4().hex}@example.com"))
        return [put.status_code, post.status_code]

    assert await writes() == [200, 201]
    assert (await admin.call("PATCH", "/connectors/Okta", {"enabled": False})).status_code == 200
    assert await writes() == [401, 401]
    assert (await admin.call("PATCH", "/connectors/Okta", {"enabled": True})).status_code == 200
    assert await writes() == [200, 201]
    (listed,) = (await admin.call("GET", "/connectors/Okta/tokens")).json()["tokens"]
    revoked = await admin.call("DELETE", f"/connectors/Okta/tokens/{listed['id']}")
    assert revoked.status_code == 204
    assert await writes() == [401, 401]
    assert (await scim.get("/Users")).json()["totalResults"] == 2


async def test_second_connector_gets_409_naming_the_owner(admin: Admin, scim: ScimClient) -> None:
    await admin.call("POST", "/connectors", {"name": "Okta staff", "idp": "okta"})
    okta = scim.with_token(await admin.token("Okta staff"))
    assert (await scim.post("/Users", user_body("shared@example.com"))).status_code == 201
    body = assert_scim_error(
        await okta.post("/Users", user_body("SHARED@example.com")), 409, "uniqueness"
    )
    assert "generic_scim" in body["detail"]


async def test_overrides_are_validated_on_save(admin: Admin) -> None:
    await admin.call("POST", "/connectors", {"name": "Entra", "idp": "azure_ad"})
    for bad, word in (
        ({"drop": ["nope"]}, "nope"),
        ({"drop": ['emails[type eq "work"']}, "emails"),
        ({"drop": [f"{CUSTOM}:company"]}, "extensions"),
        ({"map": {"shoe_size": "title"}}, "shoe_size"),
        (
            {"map": {"company_name": f"{ENTERPRISE}:nope"}},
            "nope",
        ),
        ({"extensions": ["not-a-urn"]}, "not-a-urn"),
        # Deprovisioning and every create depend on these; the hub alone sets the others.
        ({"drop": ["active"]}, "deprovisioning"),
        ({"drop": [f"{USER}:userName"]}, "userName"),
        ({"drop": ["id"]}, "the hub sets it"),
        ({"drop": ["meta"]}, "the hub sets it"),
        ({"drop": ["groups"]}, "group memberships"),
        ({"unknown": 1}, "unknown"),
    ):
        body = assert_scim_error(
            await admin.call("PUT", "/connectors/Entra/mapping", bad), 400, "invalidValue"
        )
        assert word in body["detail"], body
    good = {
        "drop": ["title", "phoneNumbers"],
        "map": {"company_name": f"{CUSTOM}:company"},
        "extensions": [CUSTOM],
    }
    saved = await admin.call("PUT", "/connectors/Entra/mapping", good)
    assert saved.status_code == 200, saved.text
    mapping = saved.json()
    assert mapping["effective"]["company_name"] == f"{CUSTOM}:company"
    assert "job_title" not in mapping["effective"]
    assert "office_phone" not in mapping["effective"]
    assert mapping["ignored"] == ["photos", "title", "phoneNumbers"]
    assert (await admin.call("GET", "/connectors/Entra/mapping")).json() == mapping


async def test_dropped_attributes_are_ignored_in_requests(admin: Admin, scim: ScimClient) -> None:
    """An admin drops `title` and `phoneNumbers` for an Entra connector: the hub ignores them."""
    await admin.call("POST", "/connectors", {"name": "Entra", "idp": "azure_ad"})
    saved = await admin.call(
        "PUT",
        "/connectors/Entra/mapping",
        {"drop": ["title", "phoneNumbers", "name.middleName", f"{ENTERPRISE}:costCenter"]},
    )
    assert saved.status_code == 200, saved.text
    entra = scim.with_token(await admin.token("Entra"))
    body = user_body(
        title="Ignored",
        displayName="Kept",
        phoneNumbers=[{"type": "work", "value": "1"}],
        name={"givenName": "A", "middleName": "M"},
    )
    body["schemas"].append(ENTERPRISE)
    body[ENTERPRISE] = {"costCenter": "X", "department": "Kept"}
    created = (await entra.post("/Users", body)).json()
    assert "title" not in created
    assert "phoneNumbers" not in created
    assert created["displayName"] == "Kept"
    assert created["name"] == {"givenName": "A"}
    assert created[ENTERPRISE] == {"department": "Kept"}
    uid = created["id"]
    # The generic connector (no overrides) sets a title; Entra can neither change nor clear it.
    await scim.patch(
        f"/Users/{uid}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "CEO"}]},
    )
    for operations in (
        [{"op": "Replace", "path": "title", "value": "Intern"}],
        [{"op": "Remove", "path": "title"}],
        [{"op": "replace", "value": {"title": "Intern", "displayName": "New"}}],
    ):
        response = await entra.patch(
            f"/Users/{uid}", {"schemas": [PATCH_OP], "Operations": operations}
        )
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "CEO"
    assert response.json()["displayName"] == "New"
    put = await entra.put(f"/Users/{uid}", {**body, "displayName": "Put"})
    assert put.status_code == 200
    assert put.json()["title"] == "CEO"
    assert put.json()["displayName"] == "Put"


async def test_discovery_shows_what_a_connector_does_not_manage_as_read_only(
    admin: Admin, scim: ScimClient
) -> None:
    """Attributes a connector's requests cannot change (its IdP's unmanaged ones, its admin's
    `drop`) are `readOnly` in the Schemas it is shown (RFC 7643 §7), as they behave for it."""
    await admin.call("POST", "/connectors", {"name": "Entra", "idp": "azure_ad"})
    entra = scim.with_token(await admin.token("Entra"))

    def mutability(doc: dict[str, Any], *path: str) -> str:
        found: Any = {"subAttributes": doc["attributes"]}
        for name in path:
            found = next(a for a in found["subAttributes"] if a["name"] == name)
        return str(found["mutability"])

    async def user_schemas(client: ScimClient) -> tuple[dict[str, Any], dict[str, Any]]:
        listed = (await client.get("/Schemas")).json()["Resources"]
        one = (await client.get(f"/Schemas/{USER}")).json()
        assert one == next(doc for doc in listed if doc["id"] == USER)
        return one, next(doc for doc in listed if doc["id"] == ENTERPRISE)

    core, _ = await user_schemas(entra)
    assert mutability(core, "photos") == mutability(core, "photos", "value") == "readOnly"
    assert mutability(core, "title") == "readWrite"
    drop = {"drop": ["title", "name.middleName", f"{ENTERPRISE}:costCenter", "externalId"]}
    saved = await admin.call("PUT", "/connectors/Entra/mapping", drop)
    assert saved.status_code == 200, saved.text
    core, enterprise = await user_schemas(entra)
    assert mutability(core, "title") == "readOnly"
    assert mutability(core, "externalId") == "readOnly"  # a common attribute the schema lists
    assert mutability(core, "name", "middleName") == "readOnly"
    assert mutability(core, "name", "givenName") == "readWrite"
    assert mutability(enterprise, "costCenter") == "readOnly"
    assert mutability(enterprise, "department") == "readWrite"
    # A connector that manages everything is shown the schemas as they are.
    core, enterprise = await user_schemas(scim)
    assert mutability(core, "photos") == mutability(core, "title") == "readWrite"
    assert mutability(core, "externalId") == "readWrite"
    assert mutability(enterprise, "costCenter") == "readWrite"


async def test_discovery_shows_a_dropped_custom_attribute_as_read_only(
    admin: Admin, scim: ScimClient
) -> None:
    """A custom extension's attribute the connector's admin dropped is `readOnly` for it."""
    await admin.call("POST", "/connectors", {"name": "Entra", "idp": "azure_ad"})
    entra = scim.with_token(await admin.token("Entra"))
    body = user_body(schemas=[USER, CUSTOM], **{CUSTOM: {"costCode": "CC", "site": "P"}})
    assert (await entra.post("/Users", body)).status_code == 201
    drop = {"drop": [f"{CUSTOM}:costCode"], "extensions": [CUSTOM]}
    saved = await admin.call("PUT", "/connectors/Entra/mapping", drop)
    assert saved.status_code == 200, saved.text

    async def mutability(client: ScimClient) -> dict[str, str]:
        doc = (await client.get(f"/Schemas/{CUSTOM}")).json()
        return {a["name"]: a["mutability"] for a in doc["attributes"]}

    assert await mutability(entra) == {"costCode": "readOnly", "site": "readWrite"}
    assert await mutability(scim) == {"costCode": "readWrite", "site": "readWrite"}


def test_cli_connector_commands(db_url: str, tenant: InitResult) -> None:
    """`scim-hub connector …`, as an operator runs it: `hub.cli.main` with the process's
    arguments and environment (tests/test_cli.py runs the installed script itself)."""
    import os
    import subprocess

    from tests.conftest import main_in_thread

    env = {**os.environ, "SCIM_HUB_DATABASE_URL": db_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return main_in_thread(["connector", *args, "--workspace", "acme"], env, check=False)

    assert run("create", "Okta EU", "--idp", "okta").returncode == 0
    assert run("disable", "Okta EU").returncode == 0
    listing = run("list")
    assert listing.returncode == 0
    assert "Okta EU  idp=okta  disabled" in listing.stdout
    assert run("delete", "Okta EU").returncode == 0
    assert "Okta EU" not in run("list").stdout
    refused = run("create", "X", "--idp", "nope")
    assert refused.returncode == 2
    assert "not an installed IdP" in refused.stderr
