"""Cards over real HTTP (SCIM + admin API), on SQLite and PostgreSQL.

Provisioning creates a locked, linked card; IdP updates flow into linked fields only; admin
edits, unlock, lock and relink; deprovisioning, seats and reactivation; listing and search;
admin authentication. The helpers here are shared by the template and owner tests.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import httpx
import pytest
from alembic import command
from litestar import Litestar
from sqlalchemy import delete, select, update
from sqlalchemy.engine import make_url

from hub.core.admins import create_key
from hub.core.database import open_database
from hub.core.models import admins, card_fields, cards, users
from hub.core.tenants import InitResult
from hub.migrate import alembic_config, upgrade
from tests.conftest import serving
from tests.dbstate import dump

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


# --------------------------------------------------------------------------- shared helpers


async def make_admin_key(db_url: str, tenant: InitResult) -> str:
    """An admin API key for the tenant's first admin."""
    db = open_database(db_url)

    def work(conn: Any) -> str:
        admin_pk = conn.execute(select(admins.c.pk).where(admins.c.id == tenant.admin_id)).scalar()
        return create_key(conn, admin_pk=admin_pk)

    try:
        return await db.write(work)
    finally:
        await db.close()


async def user_pk_of(db_url: str, user_id: str) -> int:
    """The storage key of a SCIM user."""
    db = open_database(db_url)
    try:
        return await db.read(
            lambda conn: conn.execute(select(users.c.pk).where(users.c.id == user_id)).scalar_one()
        )
    finally:
        await db.close()


class Admin:
    """Admin API calls for one workspace: paths are relative to `/api/v1/workspaces/{w}`."""

    def __init__(self, http: httpx.AsyncClient, workspace: str, key: str | None) -> None:
        self.http = http
        self.workspace = workspace
        self.key = key

    def url(self, path: str) -> str:
        """The full path of a workspace route."""
        return f"/api/v1/workspaces/{self.workspace}{path}"

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        """Send a request with the admin key."""
        headers = {} if self.key is None else {"Authorization": f"Bearer {self.key}"}
        return await self.http.request(method, self.url(path), json=body, headers=headers, **kw)

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """Send a request that must succeed; return its JSON."""
        response = await self.call(method, path, body, **kw)
        assert response.status_code in (200, 201), response.text
        return response.json()

    async def card(self, ref: str) -> dict[str, Any]:
        """Read a card by card id or user id."""
        result: dict[str, Any] = await self.ok("GET", f"/cards/{ref}")
        return result

    async def values(self, ref: str) -> dict[str, Any]:
        """A card's field values by name."""
        return {name: f["value"] for name, f in (await self.card(ref))["fields"].items()}


def person(
    user_name: str,
    *,
    department: str | None = None,
    organization: str | None = "Blinq",
    title: str | None = "Engineer",
    mobile: str | None = "+61 400 000 001",
    work: str | None = "+61 2 9000 0001",
) -> dict[str, Any]:
    """A SCIM User with a full card profile (enterprise extension included)."""
    given, _, family = user_name.partition("@")[0].partition(".")
    body: dict[str, Any] = {
        "schemas": [USER_URN, ENTERPRISE],
        "userName": user_name,
        "displayName": f"{given.title()} {family.title()}".strip(),
        "name": {"givenName": given.title(), "familyName": family.title()},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "phoneNumbers": [],
        ENTERPRISE: {},
    }
    if title is not None:
        body["title"] = title
    if mobile is not None:
        body["phoneNumbers"].append({"value": mobile, "type": "mobile"})
    if work is not None:
        body["phoneNumbers"].append({"value": work, "type": "work"})
    if department is not None:
        body[ENTERPRISE]["department"] = department
    if organization is not None:
        body[ENTERPRISE]["organization"] = organization
    return body


def replace_op(path: str, value: Any) -> dict[str, Any]:
    """A PatchOp with one replace operation."""
    return {"schemas": [PATCH_URN], "Operations": [{"op": "replace", "path": path, "value": value}]}


async def provision(scim: Any, body: dict[str, Any]) -> str:
    """Create a user over SCIM; return its id."""
    response = await scim.post("/Users", body)
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


@pytest.fixture
async def admin(client: httpx.AsyncClient, db_url: str, tenant: InitResult) -> Admin:
    """Admin API calls for workspace "acme"."""
    return Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))


# --------------------------------------------------------------------------- tests


async def test_provisioning_creates_a_locked_linked_card(scim: Any, admin: Admin) -> None:
    user_id = await provision(scim, person("ada.lovelace@example.com", department="Research"))
    card = await admin.card(user_id)
    assert card["active"] is True
    assert card["template"] is None
    assert card["user"] == {"id": user_id, "userName": "ada.lovelace@example.com"}
    fields = card["fields"]
    expected = {
        "display_name": "Ada Lovelace",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "job_title": "Engineer",
        "department": "Research",
        "company_name": "Blinq",
        "office_phone": "+61 2 9000 0001",
        "mobile_phone": "+61 400 000 001",
        "email": "ada.lovelace@example.com",
        "photo_url": None,
    }
    assert {name: f["value"] for name, f in fields.items()} == expected
    for field in fields.values():
        assert (field["source"], field["locked"], field["linked"]) == ("idp", True, True)
    assert (await admin.card(card["id"]))["id"] == card["id"]  # by card id as well


async def test_updates_flow_into_linked_fields_only(scim: Any, admin: Admin) -> None:
    user_id = await provision(scim, person("grace.hopper@example.com", department="Navy"))
    edited = await admin.ok("PATCH", f"/cards/{user_id}/fields/department", {"value": "R&D"})
    assert edited["fields"]["department"] == {
        "value": "R&D",
        "source": "manual",
        "locked": True,
        "linked": False,
    }
    unlocked = await admin.ok("POST", f"/cards/{user_id}/fields/office_phone/unlock")
    assert unlocked["fields"]["office_phone"]["locked"] is False
    assert unlocked["fields"]["office_phone"]["linked"] is False

    # The IdP changes title, department and office phone, and stops sending the mobile.
    body = person(
        "grace.hopper@example.com", department="Fleet", title="Admiral", mobile=None, work="+1 555"
    )
    response = await scim.put(f"/Users/{user_id}", body)
    assert response.status_code == 200, response.text
    values = await admin.values(user_id)
    assert values["job_title"] == "Admiral"  # linked: follows the IdP
    assert values["mobile_phone"] is None  # linked and removed: cleared
    assert values["department"] == "R&D"  # admin edit survives the update
    assert values["office_phone"] == "+61 2 9000 0001"  # unlocked: unlinked, kept

    relinked = await admin.ok("POST", f"/cards/{user_id}/fields/office_phone/relink")
    assert relinked["fields"]["office_phone"] == {
        "value": "+1 555",
        "source": "idp",
        "locked": True,
        "linked": True,
    }
    relinked = await admin.ok("POST", f"/cards/{user_id}/fields/department/relink")
    assert relinked["fields"]["department"]["value"] == "Fleet"

    patched = await scim.patch(f"/Users/{user_id}", replace_op("title", "Rear Admiral"))
    assert patched.status_code == 200, patched.text
    assert (await admin.values(user_id))["job_title"] == "Rear Admiral"


async def test_writes_that_change_no_mapped_value_leave_the_fields_as_they_show(
    scim: Any, admin: Admin
) -> None:
    user_id = await provision(scim, person("mary.jackson@example.com", title="Engineer"))
    await admin.ok("PATCH", f"/cards/{user_id}/fields/job_title", {"value": "Chief"})
    before = (await admin.card(user_id))["fields"]

    # Attributes no field maps, then a deactivation: the card's fields stay as they show.
    nick = await scim.patch(f"/Users/{user_id}", replace_op("nickName", "MJ"))
    assert nick.status_code == 200, nick.text
    assert (await admin.card(user_id))["fields"] == before
    off = await scim.patch(f"/Users/{user_id}", replace_op("active", False))
    assert off.status_code == 200, off.text
    card = await admin.card(user_id)
    assert (card["active"], card["fields"]) == (False, before)

    # Relinked, the field shows the IdP's value again, and follows it from then on.
    relinked = await admin.ok("POST", f"/cards/{user_id}/fields/job_title/relink")
    assert relinked["fields"]["job_title"]["value"] == "Engineer"
    on = await scim.patch(f"/Users/{user_id}", replace_op("active", True))
    assert on.status_code == 200, on.text
    card = await admin.card(user_id)
    job = card["fields"]["job_title"]
    shown = (card["active"], job["value"], job["source"], job["locked"], job["linked"])
    assert shown == (True, "Engineer", "idp", True, True)
    lead = await scim.patch(f"/Users/{user_id}", replace_op("title", "Lead"))
    assert lead.status_code == 200, lead.text
    assert (await admin.values(user_id))["job_title"] == "Lead"


async def _field_rows(db_url: str) -> dict[str, tuple[Any, ...]]:
    """The stored field rows of the database's only card, by field name."""
    db = open_database(db_url)
    try:
        rows = await db.read(lambda conn: conn.execute(select(card_fields)).all())
    finally:
        await db.close()
    return {row.name: tuple(row) for row in rows}


async def test_a_card_stores_rows_only_for_fields_holding_more_than_the_idp_value(
    scim: Any, admin: Admin, db_url: str
) -> None:
    # The IdP fills eight of the ten fields and leaves two empty: all ten are its, no row at all.
    user_id = await provision(scim, person("katherine.johnson@example.com", title="Analyst"))
    rows = await _field_rows(db_url)
    assert rows == {}
    empty = {"value": None, "source": "idp", "locked": True, "linked": True}
    fields = (await admin.card(user_id))["fields"]
    assert fields["department"] == fields["photo_url"] == empty

    # An IdP update of a field with no row writes no row; the card shows the new value.
    patched = await scim.patch(f"/Users/{user_id}", replace_op("title", "Mathematician"))
    assert patched.status_code == 200, patched.text
    assert await _field_rows(db_url) == rows
    assert (await admin.values(user_id))["job_title"] == "Mathematician"

    # An update writes only the rows of fields whose IdP value changed: an unlinked field keeps
    # its own value and learns the IdP's, which relinking shows (and then stores by no row).
    await admin.ok("PATCH", f"/cards/{user_id}/fields/department", {"value": "Flight"})
    before = await _field_rows(db_url)
    body = person("katherine.johnson@example.com", title="Director", department="NASA")
    assert (await scim.put(f"/Users/{user_id}", body)).status_code == 200
    after = await _field_rows(db_url)
    assert {name for name in after if after[name] != before.get(name)} == {"department"}
    card = await admin.card(user_id)
    assert card["fields"]["department"]["value"] == "Flight"
    assert card["fields"]["job_title"]["value"] == "Director"
    relinked = await admin.ok("POST", f"/cards/{user_id}/fields/department/relink")
    assert relinked["fields"]["department"]["value"] == "NASA"
    assert "department" not in await _field_rows(db_url)

    # The IdP clearing a field with no row stores no row either: the card shows it empty.
    body = person("katherine.johnson@example.com", title=None, department="NASA")
    assert (await scim.put(f"/Users/{user_id}", body)).status_code == 200
    assert "job_title" not in await _field_rows(db_url)
    job = (await admin.card(user_id))["fields"]["job_title"]
    assert job == {"value": None, "source": "idp", "locked": True, "linked": True}


async def test_a_card_older_than_a_mapped_field_shows_it_from_the_next_update(
    scim: Any, admin: Admin, db_url: str
) -> None:
    # A card written before a field existed has neither a row nor a profile value for it.
    user_id = await provision(scim, person("dorothy.vaughan@example.com", title="Supervisor"))
    other = await provision(scim, person("mary.jackson@example.com", title="Engineer"))
    db = open_database(db_url)

    def forget(conn: Any, user: str, name: str) -> int:
        pk, profile = conn.execute(
            select(cards.c.pk, cards.c.profile)
            .join(users, users.c.pk == cards.c.user_pk)
            .where(users.c.id == user)
        ).one()
        kept = {key: value for key, value in profile.items() if key != name}
        conn.execute(update(cards).where(cards.c.pk == pk).values(profile=kept))
        where = (card_fields.c.card_pk == pk) & (card_fields.c.name == name)
        return int(conn.execute(delete(card_fields).where(where)).rowcount)

    try:
        assert await db.write(forget, user_id, "job_title") == 0, "the IdP's value has no row"
        assert await db.write(forget, other, "job_title") == 0
    finally:
        await db.close()
    assert "job_title" not in (await admin.card(user_id))["fields"]

    # The next update brings it in, with the IdP's value or, when the IdP sends none, empty.
    body = person("dorothy.vaughan@example.com", title="Programmer", department="Computing")
    assert (await scim.put(f"/Users/{user_id}", body)).status_code == 200
    fields = (await admin.card(user_id))["fields"]
    job = fields["job_title"]
    shown = (job["value"], job["source"], job["locked"], job["linked"])
    assert shown == ("Programmer", "idp", True, True)
    assert fields["department"]["value"] == "Computing"
    body = person("mary.jackson@example.com", title=None, department="Computing")
    assert (await scim.put(f"/Users/{other}", body)).status_code == 200
    job = (await admin.card(other))["fields"]["job_title"]
    assert job == {"value": None, "source": "idp", "locked": True, "linked": True}


async def test_a_field_the_connector_stops_mapping_keeps_the_idps_last_value(
    scim: Any, admin: Admin, tenant: InitResult
) -> None:
    user_id = await provision(scim, person("grace.hopper@example.com", title="Rear Admiral"))
    await admin.ok("PUT", f"/connectors/{tenant.connector}/mapping", {"drop": ["title"]})
    body = person("grace.hopper@example.com", title="Commodore", department="Navy")
    assert (await scim.put(f"/Users/{user_id}", body)).status_code == 200
    fields = (await admin.card(user_id))["fields"]
    kept = {"value": "Rear Admiral", "source": "idp", "locked": True, "linked": True}
    assert fields["job_title"] == kept
    assert fields["department"]["value"] == "Navy"


def _clustered(db_url: str) -> bool | None:
    """Is `card_fields` a WITHOUT ROWID table? None on PostgreSQL, which has no such choice."""
    if not db_url.startswith("sqlite"):
        return None
    with sqlite3.connect(make_url(db_url).database or "") as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'card_fields'").fetchone()
    return "WITHOUT ROWID" in sql.upper()


async def test_migration_0016_clusters_card_fields_and_keeps_every_one(
    app: Litestar, db_url: str, tenant: InitResult
) -> None:
    async with serving(app, tenant) as scim:
        for n in range(3):
            await provision(scim, person(f"user{n}@example.com"))
    # Down to 0016 first: its downgrade stores every field as a row, as 0016 kept them.
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0016")
    before = dump(db_url, ["card_fields"])
    assert len(before["card_fields"]) == 30
    sqlite = db_url.startswith("sqlite")
    assert _clustered(db_url) is (True if sqlite else None)
    # The server stopped, as for any migration.
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0016-1")
    assert dump(db_url, ["card_fields"]) == before
    assert _clustered(db_url) is (False if sqlite else None)
    await asyncio.to_thread(upgrade, db_url)
    assert dump(db_url, ["card_fields"]) == before
    assert _clustered(db_url) is (True if sqlite else None)
    async with serving(app, tenant) as scim:
        await provision(scim, person("after.upgrade@example.com"))
    # The new card stores no row: the IdP's two empty fields are nulls in its profile.
    assert len(dump(db_url, ["card_fields"])["card_fields"]) == 30


async def test_lock_and_field_errors(scim: Any, admin: Admin) -> None:
    user_id = await provision(scim, person("alan.turing@example.com"))
    await admin.ok("POST", f"/cards/{user_id}/fields/job_title/unlock")
    locked = await admin.ok("POST", f"/cards/{user_id}/fields/job_title/lock")
    assert locked["fields"]["job_title"]["locked"] is True
    assert locked["fields"]["job_title"]["linked"] is False
    unknown = await admin.call("PATCH", f"/cards/{user_id}/fields/shoe_size", {"value": "9"})
    assert unknown.status_code == 400
    assert "shoe_size" in unknown.json()["detail"]
    website = await admin.ok("PATCH", f"/cards/{user_id}/fields/website", {"value": "https://x"})
    assert website["fields"]["website"]["source"] == "manual"
    nothing = await admin.call("POST", f"/cards/{user_id}/fields/website/relink")
    assert nothing.status_code == 409
    missing = await admin.call("GET", "/cards/no-such-card")
    assert missing.status_code == 404


async def test_deprovisioned_users_stop_counting_and_come_back_intact(
    scim: Any, admin: Admin
) -> None:
    ada = await provision(scim, person("ada@example.com", department="Research"))
    bob = await provision(scim, person("bob@example.com", department="Sales"))
    await admin.ok("PATCH", f"/cards/{ada}/fields/job_title", {"value": "Countess"})
    await admin.ok("PATCH", f"/cards/{bob}/fields/website", {"value": "https://bob.example"})
    assert (await admin.ok("GET", "/seats")) == {"seats": 2}

    response = await scim.patch(f"/Users/{ada}", replace_op("active", False))
    assert response.status_code == 200, response.text
    assert (await scim.delete(f"/Users/{bob}")).status_code == 204
    assert (await scim.get(f"/Users/{bob}")).status_code == 404
    stats = await admin.ok("GET", "/stats")
    assert stats["seats"] == 0
    assert stats["users"] == {
        "total": 2,
        "active": 0,
        "inactive": 2,
        "deprovisioned": 1,
        "deleted": 1,
        "activated": 0,
    }
    assert (await admin.card(ada))["active"] is False
    assert (await admin.card(bob))["active"] is False  # kept after DELETE
    inactive = await admin.ok("GET", "/cards", params={"status": "inactive"})
    assert inactive["total"] == 2

    bob_card = (await admin.card(bob))["id"]
    back = await scim.post("/Users", person("bob@example.com", department="Marketing"))
    assert back.status_code == 201, back.text
    assert back.json()["id"] == bob
    response = await scim.patch(f"/Users/{ada}", replace_op("active", True))
    assert response.status_code == 200, response.text

    assert (await admin.ok("GET", "/seats")) == {"seats": 2}
    ada_card, bob_again = await admin.card(ada), await admin.card(bob)
    assert bob_again["id"] == bob_card
    assert bob_again["active"] is True
    assert bob_again["fields"]["website"]["value"] == "https://bob.example"
    assert bob_again["fields"]["department"]["value"] == "Marketing"  # linked: current IdP value
    assert ada_card["active"] is True
    assert ada_card["fields"]["job_title"] == {
        "value": "Countess",
        "source": "manual",
        "locked": True,
        "linked": False,
    }


async def test_list_cards_pages_searches_and_filters(scim: Any, admin: Admin) -> None:
    names = ["ann.archer", "ben.baker", "cat.cooper", "dan.dyer", "eve.evans"]
    ids = [await provision(scim, person(f"{n}@example.com")) for n in names]
    await scim.patch(f"/Users/{ids[4]}", replace_op("active", False))

    page = await admin.ok("GET", "/cards", params={"limit": 2, "offset": 1})
    assert page["total"] == 5
    assert [c["user"]["id"] for c in page["cards"]] == ids[1:3]
    assert page["cards"][0]["fields"]["first_name"]["value"] == "Ben"

    by_name = await admin.ok("GET", "/cards", params={"q": "COOPER"})
    assert [c["user"]["id"] for c in by_name["cards"]] == [ids[2]]
    by_email = await admin.ok("GET", "/cards", params={"q": "dan.dyer@"})
    assert [c["user"]["id"] for c in by_email["cards"]] == [ids[3]]
    wildcard = await admin.ok("GET", "/cards", params={"q": "%"})
    assert wildcard["total"] == 0
    active = await admin.ok("GET", "/cards", params={"status": "active"})
    assert active["total"] == 4
    none = await admin.ok("GET", "/cards", params={"template": "none", "status": "inactive"})
    assert [c["user"]["id"] for c in none["cards"]] == [ids[4]]
    not_activated = await admin.ok("GET", "/cards", params={"status": "not_activated"})
    assert not_activated["total"] == 5

    assert (await admin.call("GET", "/cards", params={"status": "asleep"})).status_code == 400
    assert (await admin.call("GET", "/cards", params={"limit": "x"})).status_code == 400
    assert (await admin.call("GET", "/cards", params={"limit": 0})).status_code == 400
    assert (await admin.call("GET", "/cards", params={"template": "nope"})).status_code == 404


async def test_card_search_folds_the_case_of_every_letter(scim: Any, admin: Admin) -> None:
    """A name starting with an accented capital is found by itself in any case: SQLite's
    `lower()` folds ASCII only, so "Élodie" did not contain "élodie" (nor "Élodie")."""
    names = ("élodie.ørsted", "ömer.ırmak")  # noqa: RUF001 (a dotless i, on purpose)
    ids = [await provision(scim, person(f"{n}@example.com")) for n in names]
    for query, found in (
        ("Élodie", ids[0]),
        ("ÉLODIE ØRSTED", ids[0]),
        ("ørsted", ids[0]),
        ("ÖMER", ids[1]),
        ("Ömer IRMAK", ids[1]),
    ):
        page = await admin.ok("GET", "/cards", params={"q": query})
        assert [c["user"]["id"] for c in page["cards"]] == [found], query


async def test_an_offset_beyond_64_bits_is_refused_not_crashed(
    admin: Admin, scim_error: Any
) -> None:
    # Found by schemathesis: offset=2871165744913257875371884174347599872 reached the database
    # driver, whose integer overflow answered 500.
    for offset in (2**63, 10**36):
        response = await admin.call("GET", "/cards", params={"offset": offset})
        scim_error(response, 400, "invalidValue")
    far = await admin.ok("GET", "/cards", params={"offset": 2**63 - 1})
    assert far["cards"] == []


async def test_a_search_longer_than_any_field_value_is_refused_not_crashed(
    scim: Any, admin: Admin, scim_error: Any
) -> None:
    """SQLite refuses a LIKE pattern over 50,000 bytes ("LIKE or GLOB pattern too complex"):
    `q` of 60,000 letters answered 500 there. A search is at most 2048 characters, the longest
    value an admin or owner can give a card field; 2048 four-byte characters still search."""
    await provision(scim, person("ann.archer@example.com"))
    longest = await admin.ok("GET", "/cards", params={"q": "\U0001d518" * 2048})
    assert longest["cards"] == []
    for q in ("x" * 60_000, "x" * 2049):
        response = await admin.call("GET", "/cards", params={"q": q})
        assert "2048" in scim_error(response, 400, "invalidValue")["detail"]


async def test_a_nul_in_a_query_parameter_is_refused_on_every_database(
    client: httpx.AsyncClient, scim: Any, admin: Admin, scim_error: Any
) -> None:
    """PostgreSQL holds and compares no U+0000: `GET …/cards?q=a%00` answered 500 there (200 on
    SQLite), as did the other lists' text parameters. Refused as SCIM bodies and filters are."""
    await provision(scim, person("ann.archer@example.com"))
    for path in (
        "/cards?q=a%00",
        "/cards?template=a%00",
        "/activity?user=a%00",
        "/activity?connector=a%00",
        "/audit?actor=a%00",
        "/activation-emails?user_id=a%00",
    ):
        response = await admin.call("GET", path)
        assert "U+0000" in scim_error(response, 400, "invalidValue")["detail"], path
    # Authentication comes first, as for every other problem with a request.
    anonymous = await client.get(admin.url("/cards?q=a%00"))
    assert anonymous.status_code == 401


async def test_admin_api_needs_the_workspace_key(
    client: httpx.AsyncClient,
    scim: Any,
    admin: Admin,
    db_url: str,
    other_tenant: InitResult,
) -> None:
    user_id = await provision(scim, person("kim@example.com"))
    anonymous = Admin(client, admin.workspace, None)
    wrong = Admin(client, admin.workspace, "shadm_not-a-key")
    for stranger in (anonymous, wrong):
        assert (await stranger.call("GET", "/cards")).status_code == 401
        assert (await stranger.call("GET", f"/cards/{user_id}")).status_code == 401
        edit = await stranger.call("PATCH", f"/cards/{user_id}/fields/job_title", {"value": "x"})
        assert edit.status_code == 401
    # An admin of globex sees neither acme's workspace nor its cards.
    globex = Admin(client, other_tenant.workspace, await make_admin_key(db_url, other_tenant))
    assert (await globex.call("GET", f"/cards/{user_id}")).status_code == 404
    assert (await Admin(client, "acme", globex.key).call("GET", "/cards")).status_code == 404
    across = Admin(client, other_tenant.workspace, admin.key)
    assert (await across.call("GET", "/stats")).status_code == 404
    assert (await globex.ok("GET", "/cards"))["total"] == 0
    # Also by workspace id, not only by name.
    by_id = Admin(client, other_tenant.workspace_id, globex.key)
    assert (await by_id.ok("GET", "/seats")) == {"seats": 0}
