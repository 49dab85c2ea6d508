"""Templates and rules over real HTTP, on SQLite and PostgreSQL.

The first matching template (admin's order) applies at provisioning only; template values beat
IdP values; an edit writes the template row and every inheriting card shows it on every read path
(10,000 cards, no card row written), with a modified time that moves; delete keeps values; hand
assignment; invalid rules are refused with their position; preview counts; card_created /
template_applied reach plugins; migration 0013 carries cards stored with template copies over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from alembic import command
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import Connection, event, select
from sqlalchemy.engine import Engine

from hub.app import create_app
from hub.core import cards as card_service
from hub.core.clock import now_us
from hub.core.database import open_database
from hub.core.ids import new_id
from hub.core.models import card_fields, cards, templates, users, workspaces
from hub.core.seed import analyze_seeded
from hub.core.tenants import InitResult
from hub.hookspecs import hookimpl
from hub.migrate import alembic_config, upgrade
from hub.plugins import build_registry
from hub.settings import Settings
from tests.conftest import TEST_BASE_URL, ScimClient, serving
from tests.test_card_owner import ME, sign_in
from tests.test_cards import Admin, make_admin_key, person, provision, replace_op
from tests.test_dashboard_http import signed_in

RULE_A = 'department eq "Marketing" or department eq "Sales"'


@pytest.fixture
async def admin(client: httpx.AsyncClient, db_url: str, tenant: InitResult) -> Admin:
    """Admin API calls for workspace "acme"."""
    return Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))


async def create_template(admin: Admin, name: str, rule: str | None, **fields: str) -> Any:
    """Create a template through the admin API."""
    return await admin.ok("POST", "/templates", {"name": name, "rule": rule, "fields": fields})


async def test_first_matching_template_applies_and_beats_the_idp(scim: Any, admin: Admin) -> None:
    template_a = await create_template(
        admin, "Template A", RULE_A, company_name="Blinq Inc.", website="https://blinq.me"
    )
    marketing = await provision(scim, person("mia@example.com", department="Marketing"))
    sales = await provision(scim, person("sam@example.com", department="sales"))
    engineering = await provision(scim, person("eli@example.com", department="Engineering"))

    for user_id in (marketing, sales):
        card = await admin.card(user_id)
        assert card["template"] == {"id": template_a["id"], "name": "Template A"}
        assert card["fields"]["company_name"] == {
            "value": "Blinq Inc.",
            "source": "template",
            "locked": True,
            "linked": True,
        }
        assert card["fields"]["website"]["value"] == "https://blinq.me"
    plain = await admin.card(engineering)
    assert plain["template"] is None
    assert plain["fields"]["company_name"]["value"] == "Blinq"
    assert "website" not in plain["fields"]

    # Template values keep beating the IdP on later updates; other linked fields still follow.
    body = person("mia@example.com", department="Marketing", organization="Blinq Pty", title="CMO")
    assert (await scim.put(f"/Users/{marketing}", body)).status_code == 200
    values = await admin.values(marketing)
    assert (values["company_name"], values["job_title"]) == ("Blinq Inc.", "CMO")

    # Templates apply at provisioning only: a later move into Sales does not change Eli's card.
    moved = replace_op(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "Sales"
    )
    assert (await scim.patch(f"/Users/{engineering}", moved)).status_code == 200
    assert (await admin.card(engineering))["template"] is None
    listed = await admin.ok("GET", "/cards", params={"template": template_a["id"]})
    assert {c["user"]["id"] for c in listed["cards"]} == {marketing, sales}


async def test_admin_order_decides_and_reorder_changes_it(scim: Any, admin: Admin) -> None:
    first = await create_template(admin, "Sales A", 'department eq "Sales"', website="https://a")
    second = await create_template(admin, "Everyone", "userName pr", website="https://b")
    listed = await admin.ok("GET", "/templates")
    assert [t["name"] for t in listed["templates"]] == ["Sales A", "Everyone"]
    one = await provision(scim, person("one@example.com", department="Sales"))
    assert (await admin.values(one))["website"] == "https://a"

    order = await admin.ok("PUT", "/templates/order", {"order": [second["id"], first["id"]]})
    assert [t["position"] for t in order["templates"]] == [0, 1]
    assert order["templates"][0]["id"] == second["id"]
    two = await provision(scim, person("two@example.com", department="Sales"))
    assert (await admin.values(two))["website"] == "https://b"

    partial = await admin.call("PUT", "/templates/order", {"order": [first["id"]]})
    assert partial.status_code == 400
    duplicate = await admin.call("POST", "/templates", {"name": "Everyone", "rule": None})
    assert duplicate.status_code == 409


async def test_edit_reaches_inheriting_cards_and_delete_keeps_values(
    scim: Any, admin: Admin
) -> None:
    template = await create_template(
        admin, "Brand", RULE_A, company_name="Blinq Inc.", logo_url="https://logo/1"
    )
    ann = await provision(scim, person("ann@example.com", department="Sales"))
    ben = await provision(scim, person("ben@example.com", department="Sales"))
    await admin.ok("PATCH", f"/cards/{ben}/fields/logo_url", {"value": "https://ben/logo"})

    edited = await admin.ok(
        "PATCH",
        f"/templates/{template['id']}",
        {"fields": {"company_name": "Blinq Group", "brand_colour": "#0055ff"}},
    )
    assert edited["fields"] == {"company_name": "Blinq Group", "brand_colour": "#0055ff"}
    ann_values, ben_values = await admin.values(ann), await admin.values(ben)
    assert ann_values["company_name"] == ben_values["company_name"] == "Blinq Group"
    assert ann_values["brand_colour"] == ben_values["brand_colour"] == "#0055ff"
    assert "logo_url" not in ann_values  # dropped from the template: a template-only field goes
    assert ben_values["logo_url"] == "https://ben/logo"  # the admin's edit stays

    # Dropping company_name from the template gives the IdP's value back.
    await admin.ok("PATCH", f"/templates/{template['id']}", {"fields": {"brand_colour": "#111"}})
    assert (await admin.values(ann))["company_name"] == "Blinq"

    assert (await admin.call("DELETE", f"/templates/{template['id']}")).status_code == 204
    card = await admin.card(ann)
    assert card["template"] is None
    assert card["fields"]["brand_colour"] == {
        "value": "#111",
        "source": "template",
        "locked": True,
        "linked": False,
    }
    assert (await admin.call("GET", f"/templates/{template['id']}")).status_code == 404


async def _brand_template(admin: Admin, tenant: InitResult, **fields: str) -> Any:
    """The "Brand" template (rule A) over a connector that does not manage job titles.

    job_title is then a profile field the IdP never sets (titles dropped from the mapping).
    """
    await admin.ok("PUT", f"/connectors/{tenant.connector}/mapping", {"drop": ["title"]})
    return await create_template(
        admin,
        "Brand",
        RULE_A,
        job_title="Representative",
        company_name="Blinq Inc.",
        website="https://blinq.me",
        **fields,
    )


async def test_a_deleted_template_leaves_an_idp_field_relinkable_to_the_idp(
    scim: Any, admin: Admin
) -> None:
    """A template over a field the IdP fills: deleting the template keeps its value on the card,
    unlinked, and relinking brings back the IdP's value, which later updates keep moving."""
    template = await create_template(admin, "Brand", RULE_A, company_name="Blinq Inc.")
    ann = await provision(scim, person("ann@example.com", department="Sales"))
    assert (await admin.values(ann))["company_name"] == "Blinq Inc."

    assert (await admin.call("DELETE", f"/templates/{template['id']}")).status_code == 204
    kept = (await admin.card(ann))["fields"]["company_name"]
    assert kept == {"value": "Blinq Inc.", "source": "template", "locked": True, "linked": False}
    relinked = await admin.ok("POST", f"/cards/{ann}/fields/company_name/relink")
    idp = {"value": "Blinq", "source": "idp", "locked": True, "linked": True}
    assert relinked["fields"]["company_name"] == idp
    moved = person("ann@example.com", department="Sales", organization="Blinq Pty")
    assert (await scim.put(f"/Users/{ann}", moved)).status_code == 200
    assert (await admin.values(ann))["company_name"] == "Blinq Pty"


async def test_edit_changes_adds_and_drops_every_kind_of_field(
    scim: Any, admin: Admin, tenant: InitResult
) -> None:
    """One edit changes two values, adds a field and drops an unmanaged profile field and a
    template-only one; admin overrides of each stay as the admin left them."""
    template = await _brand_template(admin, tenant, logo_url="https://logo/1")
    ann = await provision(scim, person("ann@example.com", department="Sales"))
    ben = await provision(scim, person("ben@example.com", department="Sales"))
    await admin.ok("PATCH", f"/cards/{ben}/fields/job_title", {"value": "Boss"})
    await admin.ok("PATCH", f"/cards/{ben}/fields/company_name", {"value": "Ben Ltd"})
    await admin.ok("POST", f"/cards/{ben}/fields/website/unlock")
    before = {ann: await admin.card(ann), ben: await admin.card(ben)}

    # Refused as a whole: nothing of it reaches the cards.
    bad = {"rule": "department eq", "fields": {"company_name": "Never"}}
    assert (await admin.call("PATCH", f"/templates/{template['id']}", bad)).status_code == 400
    assert {ann: await admin.card(ann), ben: await admin.card(ben)} == before

    fields = {"company_name": "Blinq Group", "logo_url": "https://logo/2", "brand_colour": "#05f"}
    await admin.ok("PATCH", f"/templates/{template['id']}", {"fields": fields})
    inherited = {"source": "template", "locked": True, "linked": True}
    ann_card, ben_card = await admin.card(ann), await admin.card(ben)
    for name, value in fields.items():
        assert ann_card["fields"][name] == {"value": value, **inherited}, name
    assert ann_card["fields"]["job_title"] == {
        "value": None,
        "source": "manual",
        "locked": False,
        "linked": False,
    }
    assert "website" not in ann_card["fields"]
    ben_fields = ben_card["fields"]
    assert ben_fields["logo_url"] == {"value": "https://logo/2", **inherited}
    assert ben_fields["brand_colour"] == {"value": "#05f", **inherited}
    assert ben_fields["company_name"]["value"] == "Ben Ltd"
    assert ben_fields["job_title"] == before[ben]["fields"]["job_title"]
    assert ben_fields["website"] == before[ben]["fields"]["website"]  # unlocked: kept
    assert ben_fields["website"]["value"] == "https://blinq.me"


async def _stored_fields(db_url: str, user_id: str) -> dict[str, tuple[Any, ...]]:
    """The field rows stored for a user's card: name -> (value, source, linked)."""
    db = open_database(db_url)

    def read(conn: Connection) -> dict[str, tuple[Any, ...]]:
        rows = conn.execute(
            select(card_fields.c.name, card_fields.c.value, card_fields.c.source)
            .add_columns(card_fields.c.linked)
            .join(cards, cards.c.pk == card_fields.c.card_pk)
            .join(users, users.c.pk == cards.c.user_pk)
            .where(users.c.id == user_id)
        ).all()
        return {row.name: (row.value, row.source, bool(row.linked)) for row in rows}

    try:
        return await db.read(read)
    finally:
        await db.close()


async def _ids(admin: Admin, **params: str) -> set[str]:
    listed = await admin.ok("GET", "/cards", params=params)
    return {card["user"]["id"] for card in listed["cards"]}


async def test_an_edit_shows_on_every_card_read_path(
    client: httpx.AsyncClient, scim: Any, admin: Admin, db_url: str, tenant: InitResult
) -> None:
    """One card, the list, the template filter, search, the owner's API, the dashboard: each
    shows the edited template's values, the admin's edit and unlock stay, and a card's modified
    time moves with its template's while the card's own stored fields are not written."""
    template = await create_template(
        admin, "Brand", RULE_A, display_name="Blinq Team", logo_url="https://logo/1"
    )
    ann = await provision(scim, person("ann@example.com", department="Sales"))
    ben = await provision(scim, person("ben@example.com", department="Sales"))
    eli = await provision(scim, person("eli.ops@example.com", department="Ops"))
    await admin.ok("PATCH", f"/cards/{ben}/fields/display_name", {"value": "Ben Own"})
    await admin.ok("POST", f"/cards/{ben}/fields/logo_url/unlock")
    ann_before, ben_before = await admin.card(ann), await admin.card(ben)
    stored_before = await _stored_fields(db_url, ann)
    assert await _ids(admin, q="blinq team") == {ann}
    # Eli's own display name ("Eli Ops", not in his userName) while templates set display_name.
    assert await _ids(admin, q="eli ops") == {eli}
    assert await _ids(admin, q="ann") == {ann}  # Ann's userName; her IdP name is under the template

    fields = {
        "display_name": "Contoso Team",
        "logo_url": "https://logo/2",
        "website": "https://contoso.example",
    }
    edited = await admin.ok("PATCH", f"/templates/{template['id']}", {"fields": fields})
    inherited = {"source": "template", "locked": True, "linked": True}

    def check(card: dict[str, Any]) -> None:
        got = card["fields"]
        assert got["website"] == {"value": fields["website"], **inherited}
        if card["user"]["id"] == ann:
            assert got["display_name"] == {"value": "Contoso Team", **inherited}
            assert got["logo_url"] == {"value": "https://logo/2", **inherited}
        else:
            assert got["display_name"] == ben_before["fields"]["display_name"]
            assert got["display_name"]["value"] == "Ben Own"
            assert got["logo_url"] == ben_before["fields"]["logo_url"]
            assert got["logo_url"] == {
                "value": "https://logo/1",
                "source": "template",
                "locked": False,
                "linked": False,
            }

    for user_id in (ann, ben):
        check(await admin.card(user_id))
    listed = await admin.ok("GET", "/cards", params={"template": template["id"]})
    assert len(listed["cards"]) == 2
    for card in listed["cards"]:
        check(card)
    for card in (await admin.ok("GET", "/cards"))["cards"]:
        if card["user"]["id"] == eli:
            assert card["template"] is None
            assert "website" not in card["fields"]
        else:
            check(card)
    me = await sign_in(db_url, ann)
    check((await client.get(ME, headers=me)).json())

    # Search matches what a card shows: the template's new value, or the admin's own.
    assert await _ids(admin, q="contoso team") == {ann}
    assert await _ids(admin, q="blinq team") == set()
    assert await _ids(admin, q="ben own") == {ben}
    assert await _ids(admin, q="eli ops") == {eli}

    # Modified moves with the template; the card's stored fields were not written.
    ann_after = await admin.card(ann)
    assert ann_after["modified"] > ann_before["modified"]
    assert ann_after["modified"] == edited["modified"]
    assert (await admin.card(ben))["modified"] == edited["modified"] > ben_before["modified"]
    assert await _stored_fields(db_url, ann) == stored_before

    # The dashboard's Team Cards table and card page read cards the same way.
    client.follow_redirects = False
    await signed_in(client, db_url, tenant)
    page = await client.get("/admin/team-cards")
    assert page.status_code == 200
    assert "Contoso Team" in page.text
    assert "Blinq Team" not in page.text
    card_page = await client.get(f"/admin/team-cards/{ann_after['id']}")
    row = card_page.text.split('data-field="website"', 1)[1].split("</tr>", 1)[0]
    assert 'value="https://contoso.example"' in row
    assert "Linked" in row


async def test_migration_0013_carries_cards_that_stored_template_copies(
    app: Litestar, db_url: str, tenant: InitResult
) -> None:
    """Cards stored before 0013 (template values copied onto each card) show the same after it,
    and follow later template edits and IdP updates like cards made after it."""
    key = await make_admin_key(db_url, tenant)
    async with serving(app, tenant) as scim:
        admin = Admin(scim.http, tenant.workspace, key)
        template = await _brand_template(admin, tenant)
        ann = await provision(scim, person("ann@example.com", department="Sales"))
        ben = await provision(scim, person("ben@example.com", department="Sales"))
        eli = await provision(scim, person("eli@example.com", department="Ops"))
        await admin.ok("PATCH", f"/cards/{ben}/fields/company_name", {"value": "Ben Ltd"})
        await admin.ok("POST", f"/cards/{ben}/fields/website/unlock")
        shown = {user_id: await admin.card(user_id) for user_id in (ann, ben, eli)}
        assert "website" not in await _stored_fields(db_url, ann)

    # The server stopped, as for any migration: its background writers (the provisioning log)
    # would otherwise hold locks a schema change waits for.
    # Back to before 0013: each inheriting card stores a copy of its template's values.
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0013-1")
    old = await _stored_fields(db_url, ann)
    assert old["company_name"] == ("Blinq Inc.", "template", True)
    assert old["job_title"] == ("Representative", "template", True)
    assert old["website"] == ("https://blinq.me", "template", True)
    assert (await _stored_fields(db_url, ben))["company_name"] == ("Ben Ltd", "manual", False)
    assert "website" not in await _stored_fields(db_url, eli)

    upgrade(db_url)
    async with serving(app, tenant) as scim:
        admin = Admin(scim.http, tenant.workspace, key)
        assert {user_id: await admin.card(user_id) for user_id in shown} == shown
        new = await _stored_fields(db_url, ann)
        assert new["company_name"] == ("Blinq", "idp", True)  # the IdP's side, under the template
        assert new["job_title"] == (None, "template", True)  # a placeholder the template fills
        assert "website" not in new

        # Later IdP updates and template edits reach migrated cards.
        moved = person("ann@example.com", department="Sales", organization="Blinq Pty")
        assert (await scim.put(f"/Users/{ann}", moved)).status_code == 200
        assert (await admin.values(ann))["company_name"] == "Blinq Inc."
        await admin.ok(
            "PATCH", f"/templates/{template['id']}", {"fields": {"website": "https://b.g"}}
        )
        ann_card, ben_card = await admin.card(ann), await admin.card(ben)
        assert ann_card["fields"]["company_name"] == {
            "value": "Blinq Pty",
            "source": "idp",
            "locked": True,
            "linked": True,
        }
        assert ann_card["fields"]["job_title"] == {
            "value": None,
            "source": "manual",
            "locked": False,
            "linked": False,
        }
        assert ann_card["fields"]["website"]["value"] == "https://b.g"
        assert ben_card["fields"]["company_name"]["value"] == "Ben Ltd"
        assert ben_card["fields"]["website"] == shown[ben]["fields"]["website"]


async def test_assign_and_unassign_by_hand(scim: Any, admin: Admin) -> None:
    template = await create_template(admin, "Manual", None, company_name="Blinq Inc.")
    user_id = await provision(scim, person("hand@example.com", department="Support"))
    assert (await admin.card(user_id))["template"] is None  # a rule-less template never applies

    card = await admin.ok("PUT", f"/cards/{user_id}/template", {"template": template["id"]})
    assert card["template"]["id"] == template["id"]
    assert card["fields"]["company_name"]["value"] == "Blinq Inc."
    card = await admin.ok("DELETE", f"/cards/{user_id}/template")
    assert card["template"] is None
    assert card["fields"]["company_name"] == {
        "value": "Blinq",
        "source": "idp",
        "locked": True,
        "linked": True,
    }
    unknown = await admin.call("PUT", f"/cards/{user_id}/template", {"template": "nope"})
    assert unknown.status_code == 404


async def test_a_template_given_later_shows_over_empty_fields_the_idp_does_not_manage(
    scim: Any, admin: Admin, tenant: InitResult
) -> None:
    """A profile field the IdP does not manage (here job_title: the connector drops titles) has
    an empty, editable row. A template setting it shows its value there (locked) when assigned by
    hand or when it gains the field, as when a rule gives it at creation; a value an admin or
    owner put there stays. Before, only a template given at creation showed."""
    await admin.ok("PUT", f"/connectors/{tenant.connector}/mapping", {"drop": ["title"]})
    inherited = {"value": "Representative", "source": "template", "locked": True, "linked": True}
    empty = {"value": None, "source": "manual", "locked": False, "linked": False}
    by_hand = await create_template(admin, "By hand", None, job_title="Representative")
    ann = await provision(scim, person("ann@example.com", department="Support"))
    assert (await admin.card(ann))["fields"]["job_title"] == empty
    card = await admin.ok("PUT", f"/cards/{ann}/template", {"template": by_hand["id"]})
    assert card["fields"]["job_title"] == inherited
    card = await admin.ok("DELETE", f"/cards/{ann}/template")
    assert card["fields"]["job_title"] == empty

    later = await create_template(admin, "Later", RULE_A, company_name="Blinq Inc.")
    ben = await provision(scim, person("ben@example.com", department="Sales"))
    cat = await provision(scim, person("cat@example.com", department="Sales"))
    await admin.ok("PATCH", f"/cards/{cat}/fields/job_title", {"value": "Chief"})
    assert (await admin.card(ben))["fields"]["job_title"] == empty
    fields = {"company_name": "Blinq Inc.", "job_title": "Representative"}
    await admin.ok("PATCH", f"/templates/{later['id']}", {"fields": fields})
    assert (await admin.card(ben))["fields"]["job_title"] == inherited
    assert (await admin.card(cat))["fields"]["job_title"]["value"] == "Chief"


async def test_invalid_rules_are_refused_with_their_position(admin: Admin) -> None:
    response = await admin.call("POST", "/templates", {"name": "Bad", "rule": "department eq"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "position 13" in detail
    assert "department eq^" in detail
    unknown = await admin.call("POST", "/templates", {"name": "Bad", "rule": 'shoe eq "9"'})
    assert unknown.status_code == 400
    assert "shoe" in unknown.json()["detail"]
    assert "job_title" in unknown.json()["detail"]  # says what rules may use
    field = await admin.call("POST", "/templates", {"name": "Bad", "fields": {"shoe": "9"}})
    assert field.status_code == 400
    good = await create_template(admin, "Good", 'job_title co "eng"')
    broken = await admin.call("PATCH", f"/templates/{good['id']}", {"rule": "job_title eq (x"})
    assert broken.status_code == 400
    assert "position" in broken.json()["detail"]
    assert (await admin.ok("GET", f"/templates/{good['id']}"))["rule"] == 'job_title co "eng"'
    preview = await admin.call("POST", "/templates/preview", {"rule": "or"})
    assert preview.status_code == 400
    for content in (b"{", b'{"name": "Caf\xe9"}'):  # the second is Latin-1, not UTF-8
        not_json = await admin.http.post(
            admin.url("/templates"),
            content=content,
            headers={"Authorization": f"Bearer {admin.key}"},
        )
        assert not_json.status_code == 400, not_json.text
        assert not_json.json()["scimType"] == "invalidSyntax"


async def test_preview_counts_current_users(scim: Any, admin: Admin) -> None:
    for name, department in [("a", "Sales"), ("b", "Marketing"), ("c", "Sales"), ("d", "Ops")]:
        await provision(scim, person(f"{name}@example.com", department=department))
    gone = await provision(scim, person("e@example.com", department="Sales"))
    await scim.patch(f"/Users/{gone}", replace_op("active", False))
    preview = await admin.ok("POST", "/templates/preview", {"rule": RULE_A})
    assert preview == {"rule": RULE_A, "matches": 3, "activeUsers": 4}
    by_name = await admin.ok("POST", "/templates/preview", {"rule": 'userName sw "A@"'})
    assert by_name["matches"] == 1


class Recorder:
    """A real plugin recording the card events it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def card_created(self, workspace: str, connector: str, user: Any, card: Any) -> None:
        """Record card_created."""
        self.calls.append(("card_created", {"workspace": workspace, "user": user, "card": card}))

    @hookimpl
    def template_applied(self, workspace: str, user: Any, template: Any) -> None:
        """Record template_applied."""
        self.calls.append(("template_applied", {"user": user, "template": template}))


@pytest.fixture
async def recorded(settings: Settings) -> AsyncIterator[tuple[Recorder, httpx.AsyncClient]]:
    """A client over an app whose plugins include a `Recorder`."""
    recorder = Recorder()
    app = create_app(settings, registry=build_registry(extra_plugins={"recorder": recorder}))
    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as http:
        yield recorder, http


async def test_card_events_reach_plugins(
    recorded: tuple[Recorder, httpx.AsyncClient], db_url: str, tenant: InitResult
) -> None:
    recorder, http = recorded
    admin = Admin(http, tenant.workspace, await make_admin_key(db_url, tenant))
    scim = ScimClient(http, tenant.token)
    # The connector ignores `title`: the template's job_title has no IdP value under it, and the
    # card keeps a placeholder for it (a field the IdP maps keeps the IdP's value, no row).
    await admin.ok("PUT", "/connectors/generic_scim/mapping", {"drop": ["title"]})
    template = await create_template(
        admin, "Template A", RULE_A, company_name="Blinq Inc.", job_title="Consultant"
    )
    user_id = await provision(scim, person("ev@example.com", department="Sales"))
    assert [hook for hook, _ in recorder.calls] == ["card_created", "template_applied"]
    created, applied = recorder.calls[0][1], recorder.calls[1][1]
    assert created["workspace"] == tenant.workspace_id
    assert created["user"]["id"] == user_id
    assert created["card"]["fields"]["company_name"]["value"] == "Blinq Inc."
    assert created["card"]["fields"]["job_title"]["value"] == "Consultant"
    # The event's card is the card as stored: each field's value, source and flags.
    assert created["card"]["fields"] == (await admin.ok("GET", f"/cards/{user_id}"))["fields"]
    assert applied["template"]["id"] == template["id"]

    await provision(scim, person("other@example.com", department="Ops"))
    assert [hook for hook, _ in recorder.calls[2:]] == ["card_created"]
    await admin.ok("PUT", f"/cards/{user_id}/template", {"template": template["id"]})
    assert recorder.calls[-1][0] == "template_applied"
    assert recorder.calls[-1][1]["user"]["userName"] == "ev@example.com"


# --------------------------------------------------------------------------- 10,000 cards

SEEDED = 10_000


def _seed(conn: Connection, workspace: str, template_id: str) -> None:
    """10,000 users with cards inheriting the template, written with Core bulk inserts."""
    ws = conn.execute(select(workspaces.c.pk).where(workspaces.c.name == workspace)).scalar_one()
    tpl = conn.execute(select(templates.c.pk).where(templates.c.id == template_id)).scalar_one()
    now = now_us()
    names = [f"seed{i}@example.com" for i in range(SEEDED)]
    user_rows = [
        {
            "id": new_id(),
            "workspace_pk": ws,
            "user_name": name,
            "user_name_key": name,
            "active": True,
            "deleted": False,
            "data": {"userName": name},
            "version": 1,
            "created": now,
            "modified": now,
        }
        for name in names
    ]
    user_pks = conn.execute(
        users.insert().returning(users.c.pk, sort_by_parameter_order=True), user_rows
    ).scalars()
    card_rows = [
        {
            "id": new_id(),
            "workspace_pk": ws,
            "user_pk": pk,
            "template_pk": tpl,
            "active": True,
            "profile": {"department": "Sales" if i % 4 else "Support", "userName": names[i]},
            "created": now,
            "modified": now,
        }
        for i, pk in enumerate(user_pks)
    ]
    card_pks = conn.execute(
        cards.insert().returning(cards.c.pk, sort_by_parameter_order=True), card_rows
    ).scalars()
    # As provisioning stores a mapped field the template sets: its IdP side, linked.
    field = {"source": "idp", "locked": True, "linked": True, "managed": True}
    conn.execute(
        card_fields.insert(),
        [
            {"card_pk": pk, "name": "company_name", "value": "Blinq", "idp_value": "Blinq"} | field
            for pk in card_pks
        ],
    )
    # A pooled database's tables were vacuumed empty: without fresh statistics PostgreSQL
    # planned the reads of the 10,000 cards as loops over one row (67 s instead of 1).
    analyze_seeded(conn)


def _count_changed(conn: Connection, workspace: str, template_id: str) -> tuple[int, int]:
    """How many of the template's cards show the edit, read as the admin API reads cards."""
    ws = conn.execute(select(workspaces.c.pk).where(workspaces.c.name == workspace)).scalar_one()
    company = website = 0
    for offset in range(0, SEEDED, card_service.MAX_PAGE):
        query = card_service.CardQuery(
            limit=card_service.MAX_PAGE, offset=offset, template=template_id
        )
        for card in card_service.list_cards(conn, ws, query)["cards"]:
            company += card["fields"]["company_name"]["value"] == "Blinq Group"
            website += card["fields"]["website"]["value"] == "https://blinq.group"
    return company, website


async def test_template_edit_reaches_10000_cards_set_based(
    db_url: str, tenant: InitResult, admin: Admin
) -> None:
    template = await create_template(admin, "Template A", RULE_A, company_name="Blinq Inc.")
    db = open_database(db_url)
    try:
        await db.write(_seed, tenant.workspace, template["id"])

        statements: list[str] = []

        def on_execute(*args: Any) -> None:
            if "card_fields" in args[2]:
                statements.append(args[2])

        event.listen(Engine, "before_cursor_execute", on_execute)
        try:
            started = time.perf_counter()
            await admin.ok(
                "PATCH",
                f"/templates/{template['id']}",
                {"fields": {"company_name": "Blinq Group", "website": "https://blinq.group"}},
            )
            elapsed = time.perf_counter() - started
        finally:
            event.remove(Engine, "before_cursor_execute", on_execute)
        # Changed and added values are read from the template: no card row is written.
        assert statements == [], statements
        assert elapsed < 5.0, f"template edit over {SEEDED} cards took {elapsed:.2f}s"
        changed = await db.read(_count_changed, tenant.workspace, template["id"])
        assert changed == (SEEDED, SEEDED)

        started = time.perf_counter()
        preview = await admin.ok("POST", "/templates/preview", {"rule": RULE_A})
        elapsed = time.perf_counter() - started
        assert preview == {"rule": RULE_A, "matches": SEEDED * 3 // 4, "activeUsers": SEEDED}
        assert elapsed < 1.0, f"preview over {SEEDED} users took {elapsed:.2f}s"
    finally:
        await db.close()
