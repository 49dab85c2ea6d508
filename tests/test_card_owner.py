"""The card owner's API (`/api/v1/me/card`) over real HTTP, on SQLite and PostgreSQL.

The owner signs in with the session activation starts (`hub.core.sessions.start_session`): they
may edit unlocked fields only; a locked field is refused with 403 naming it and nothing changes.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub.core import sessions
from hub.core.database import open_database
from hub.core.tenants import InitResult
from tests.test_cards import Admin, make_admin_key, person, provision, user_pk_of

ME = "/api/v1/me/card"


@pytest.fixture
async def admin(client: httpx.AsyncClient, db_url: str, tenant: InitResult) -> Admin:
    """Admin API calls for workspace "acme"."""
    return Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))


async def sign_in(db_url: str, user_id: str) -> dict[str, str]:
    """Start an owner session for a SCIM user; return the headers that carry it."""
    user_pk = await user_pk_of(db_url, user_id)
    db = open_database(db_url)
    try:
        token = await db.write(sessions.start_session, user_pk)
    finally:
        await db.close()
    return {"Authorization": f"Bearer {token}"}


async def test_owner_reads_and_edits_unlocked_fields_only(
    client: httpx.AsyncClient, scim: Any, admin: Admin, db_url: str
) -> None:
    user_id = await provision(scim, person("olive.owner@example.com", department="Sales"))
    me = await sign_in(db_url, user_id)
    card = (await client.get(ME, headers=me)).json()
    assert card["user"]["id"] == user_id
    assert card["fields"]["job_title"]["locked"] is True

    refused = await client.patch(ME, json={"fields": {"job_title": "Boss"}}, headers=me)
    assert refused.status_code == 403
    assert "job_title" in refused.json()["detail"]
    assert (await client.get(ME, headers=me)).json() == card  # nothing changed

    # A mix of locked and free fields is refused as a whole.
    mixed = {"fields": {"website": "https://olive.example", "mobile_phone": "+1"}}
    refused = await client.patch(ME, json=mixed, headers=me)
    assert refused.status_code == 403
    assert "mobile_phone" in refused.json()["detail"]
    assert "website" not in (await client.get(ME, headers=me)).json()["fields"]

    await admin.ok("POST", f"/cards/{user_id}/fields/mobile_phone/unlock")
    edited = await client.patch(ME, json=mixed, headers=me)
    assert edited.status_code == 200, edited.text
    fields = edited.json()["fields"]
    assert fields["mobile_phone"] == {
        "value": "+1",
        "source": "manual",
        "locked": False,
        "linked": False,
    }
    assert fields["website"]["value"] == "https://olive.example"
    # The owner's edit is audited: who (the user), which fields, never their values.
    latest = (await admin.ok("GET", "/audit"))["records"][0]
    assert (latest["actor_kind"], latest["actor_id"]) == ("owner", user_id)
    assert latest["changes"] == {"fields": ["mobile_phone", "website"]}
    assert latest["request_id"] == edited.headers["x-request-id"]

    # The IdP's next update leaves the owner's edit alone.
    body = person("olive.owner@example.com", department="Sales", mobile="+61 499")
    assert (await scim.put(f"/Users/{user_id}", body)).status_code == 200
    assert (await admin.values(user_id))["mobile_phone"] == "+1"


async def test_owner_session_is_required(client: httpx.AsyncClient, scim: Any, db_url: str) -> None:
    user_id = await provision(scim, person("sid@example.com"))
    assert (await client.get(ME)).status_code == 401
    assert (await client.get(ME, headers={"Authorization": "Bearer shses_nope"})).status_code == 401
    anonymous = await client.patch(ME, json={"fields": {"website": "x"}})
    assert anonymous.status_code == 401

    me = await sign_in(db_url, user_id)
    cookie = {"Cookie": f"{sessions.SESSION_COOKIE}={me['Authorization'].split()[1]}"}
    assert (await client.get(ME, headers=cookie)).status_code == 200
    bad = await client.patch(ME, json={"fields": {"shoe_size": "9"}}, headers=me)
    assert bad.status_code == 400
    not_json = await client.patch(ME, content=b"{", headers=me)
    assert not_json.status_code == 400

    # A deprovisioned owner is signed out at once.
    off = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    assert (await scim.patch(f"/Users/{user_id}", off)).status_code == 200
    assert (await client.get(ME, headers=me)).status_code == 401


async def test_owner_sees_the_template_values_and_edits_only_what_the_admin_unlocked(
    client: httpx.AsyncClient, scim: Any, admin: Admin, db_url: str
) -> None:
    """A template's values reach the owner's card as they change; they are locked until an admin
    unlocks one, and the owner's edit of it then outlasts later template edits until relinked."""
    rule = 'department eq "Sales"'
    fields = {"website": "https://blinq.me", "company_name": "Blinq Inc."}
    body = {"name": "Brand", "rule": rule, "fields": fields}
    template = await admin.ok("POST", "/templates", body)
    user_id = await provision(scim, person("tia.owner@example.com", department="Sales"))
    me = await sign_in(db_url, user_id)
    mine = {"fields": {"website": "https://tia.example"}}
    refused = await client.patch(ME, json=mine, headers=me)
    assert refused.status_code == 403
    assert "website" in refused.json()["detail"]

    async def edit_template(website: str) -> None:
        changed = {"website": website, "company_name": "Blinq Group"}
        await admin.ok("PATCH", f"/templates/{template['id']}", {"fields": changed})

    await edit_template("https://blinq.group")
    card = (await client.get(ME, headers=me)).json()
    inherited = {"source": "template", "locked": True, "linked": True}
    assert card["fields"]["website"] == {"value": "https://blinq.group", **inherited}
    assert card["fields"]["company_name"] == {"value": "Blinq Group", **inherited}

    await admin.ok("POST", f"/cards/{user_id}/fields/website/unlock")
    edited = await client.patch(ME, json=mine, headers=me)
    assert edited.status_code == 200, edited.text
    await edit_template("https://blinq.net")
    card = (await client.get(ME, headers=me)).json()
    assert card["fields"]["website"] == {
        "value": "https://tia.example",
        "source": "manual",
        "locked": False,
        "linked": False,
    }
    assert (await client.patch(ME, json=mine, headers=me)).status_code == 200

    await admin.ok("POST", f"/cards/{user_id}/fields/website/relink")
    card = (await client.get(ME, headers=me)).json()
    assert card["fields"]["website"] == {"value": "https://blinq.net", **inherited}
    assert (await client.patch(ME, json=mine, headers=me)).status_code == 403
