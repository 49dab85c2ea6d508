"""The any_scim dialect: the RFCs as generic_scim reads them, plus Entra ID's and Okta's quirks.

It is what the demo workspace of `make run` gets, so whatever calls the demo first (Entra ID
without the ``aadOptscim062020`` flag, Okta, Microsoft's SCIM Validator, a conformance suite) is
read as it means. Sources are those of the azure_ad and okta dialects. Runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import pytest

from tests.conftest import ScimClient, assert_scim_error, create_workspace, user_body
from tests.conftest import patch_op as patch

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CUSTOM = "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User"
MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


@pytest.fixture
async def anyone(client: httpx.AsyncClient, db_url: str) -> ScimClient:
    """SCIM calls through an `any_scim` connector."""
    workspace = await create_workspace(db_url, "demo", idp="any_scim")
    return ScimClient(client, workspace.token)


async def test_entra_default_forms_are_read_as_entra_means_them(anyone: ScimClient) -> None:
    """Entra without the flag: "False" disables, "True" in a path filter, a bare manager id."""
    body = user_body(emails=[{"value": "a@contoso.example", "type": "work", "primary": "True"}])
    body[ENTERPRISE] = {"department": "Sales", "manager": "m-1"}
    body["schemas"] = [*body["schemas"], ENTERPRISE]
    created = await anyone.post("/Users", body)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["emails"][0]["primary"] is True
    assert user[ENTERPRISE]["manager"] == {"value": "m-1", "$ref": "../Users/m-1"}
    uid = user["id"]
    disable = patch({"op": "Replace", "path": "active", "value": "False"})
    disabled = await anyone.patch(f"/Users/{uid}", disable)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["active"] is False
    role = patch(
        {"op": "Add", "path": 'roles[primary eq "True"].display', "value": "Admin"},
        {"op": "Add", "path": "nickName", "value": [{"value": "Babs"}]},
    )
    added = await anyone.patch(f"/Users/{uid}", role)
    assert added.status_code == 200, added.text
    assert added.json()["roles"] == [{"primary": True, "display": "Admin"}]
    assert added.json()["nickName"] == "Babs"


async def test_okta_unlisted_extension_is_stored(anyone: ScimClient) -> None:
    """Okta's custom attributes under a namespace its body's ``schemas`` does not list."""
    body = user_body(password="s3cret!", groups=[], locale="en-US")
    body[CUSTOM] = {"costCenterCode": "CC-7"}
    created = await anyone.post("/Users", body)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user[CUSTOM] == {"costCenterCode": "CC-7"}
    assert CUSTOM in user["schemas"]
    assert "password" not in user


async def test_rfc_requests_read_as_generic_scim_reads_them(anyone: ScimClient) -> None:
    """Photos are managed (a conformance suite sets and reads them); bad values still fail."""
    photo = [{"type": "photo", "value": "https://cdn.example.com/a.jpg"}]
    created = await anyone.post("/Users", user_body("p@example.com", photos=photo))
    assert created.status_code == 201, created.text
    assert created.json()["photos"] == photo
    uid = created.json()["id"]
    put = await anyone.put(f"/Users/{uid}", user_body("p@example.com"))
    assert "photos" not in put.json()  # a PUT without photos clears them (RFC 7644 §3.5.1)
    not_boolean = patch({"op": "replace", "path": "active", "value": "maybe"})
    assert_scim_error(await anyone.patch(f"/Users/{uid}", not_boolean), 400, "invalidValue")
    other_id = patch({"op": "replace", "value": {"id": "another", "displayName": "X"}})
    assert_scim_error(await anyone.patch(f"/Users/{uid}", other_id), 400, "mutability")


def _make_run_init_args() -> list[str]:
    """The arguments `make run` gives `scim-hub init`, read from the Makefile's recipe."""
    recipe = re.search(r"^\t\$\(BIN\)/scim-hub (init .*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert recipe is not None, "make run no longer runs scim-hub init"
    return shlex.split(recipe.group(1))


async def test_make_run_demo_connector_reads_entra_default_disable(
    client: httpx.AsyncClient, db_url: str
) -> None:
    """The demo `make run` creates answers Entra's default disable request, not 400."""
    args = _make_run_init_args()
    assert args[:3] == ["init", "--workspace", "demo"]
    idp = args[args.index("--idp") + 1]
    demo = ScimClient(client, (await create_workspace(db_url, "demo", idp=idp)).token)
    uid = (await demo.post("/Users", user_body())).json()["id"]
    disable = patch({"op": "Replace", "path": "active", "value": "False"})
    disabled = await demo.patch(f"/Users/{uid}", disable)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["active"] is False
