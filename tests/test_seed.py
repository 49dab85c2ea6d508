"""Bulk seeding (`scim-hub seed`): users and cards as SCIM would store them, served over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from hub.core.database import open_database
from hub.core.errors import InvalidValue, NotFound, Uniqueness
from hub.core.seed import check_document, seed_users, user_document, user_name
from hub.core.tenants import InitResult
from hub.plugins import build_registry
from tests.conftest import ONLY_POSTGRESQL, TEST_BASE_URL, ScimClient, create_workspace
from tests.server import cli_command, hub_environ, migrate_and_init, run_cli
from tests.test_cards import Admin, make_admin_key

DIALECTS = build_registry().dialects
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.mark.parametrize("i", [0, 1, 2, 3, 17, 999_999])
def test_documents_are_canonical(i: int) -> None:
    check_document(user_document(i, "p"))


async def test_seeded_users_are_served(db_url: str, tenant: InitResult, scim: ScimClient) -> None:
    db = open_database(db_url)
    seen: list[int] = []
    try:
        report = await seed_users(
            db,
            "acme",
            300,
            batch=128,
            prefix="t",
            progress=lambda n, _s: seen.append(n),
            dialects=DIALECTS,
        )
    finally:
        await db.close()
    assert seen == [128, 256, 300]
    assert report.users == 300
    assert report.cards is True
    assert report.bytes_per_user > 0
    assert report.last_user_name == user_name(299, "t")

    listed = await scim.get("/Users?count=5")
    assert listed.json()["totalResults"] == 300
    name = user_name(123, "t")
    found = await scim.get("/Users?filter=" + quote(f'userName eq "{name.upper()}"'))
    assert found.json()["totalResults"] == 1
    user = found.json()["Resources"][0]
    assert user["active"] is True
    expected = user_document(123, "t")
    for key in ("userName", "externalId", "name", "emails", "addresses", expected["schemas"][1]):
        assert user[key] == expected[key], key
    got = await scim.get(f"/Users/{user['id']}")
    assert got.status_code == 200
    # An IdP update reaches a seeded user and its card like any other.
    patched = await scim.patch(
        f"/Users/{user['id']}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "title", "value": "CTO"}],
        },
    )
    assert patched.status_code == 200, patched.text
    # Creating a seeded userName over SCIM is refused like any duplicate.
    again = await scim.post("/Users", {"schemas": expected["schemas"][:1], "userName": name})
    assert again.status_code == 409


@ONLY_POSTGRESQL  # PostgreSQL keeps planner statistics; SQLite has none unless asked
async def test_seeding_postgresql_leaves_its_planner_statistics_current(
    db_url: str, tenant: InitResult
) -> None:
    db = open_database(db_url)
    try:
        await seed_users(db, "acme", 500, batch=200, prefix="s", dialects=DIALECTS)
        # reltuples is what the planner believes a table holds: -1 before any ANALYZE, the
        # emptied count after a vacuum, and the loaded count only once analyzed again.
        estimated = await db.read(
            lambda conn: dict(
                conn.exec_driver_sql(
                    "SELECT relname, reltuples FROM pg_class"
                    " WHERE relname IN ('users', 'cards', 'user_emails')"
                ).all()
            )
        )
    finally:
        await db.close()
    assert estimated == {"users": 500, "cards": 500, "user_emails": 500}, estimated


async def test_seed_refuses_duplicates_and_unknown_workspaces(
    db_url: str, tenant: InitResult
) -> None:
    db = open_database(db_url)
    try:
        await seed_users(db, "acme", 10, prefix="d", dialects=DIALECTS)
        with pytest.raises(Uniqueness, match="another --prefix"):
            await seed_users(db, "acme", 10, prefix="d", start=5, dialects=DIALECTS)
        with pytest.raises(NotFound):
            await seed_users(db, "nope", 1, dialects=DIALECTS)
        with pytest.raises(ValueError, match="at least 1"):
            await seed_users(db, "acme", 0, dialects=DIALECTS)
        with pytest.raises(InvalidValue, match="'generic_scim' is not installed"):
            await seed_users(db, "acme", 1, prefix="e", dialects={})
        # Without cards no dialect is needed.
        report = await seed_users(db, "acme", 3, prefix="f", cards=False)
        assert (report.cards, report.templated) == (False, 0)
    finally:
        await db.close()


@pytest.mark.server
def test_seed_command(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    env = hub_environ(url, TEST_BASE_URL)
    migrate_and_init(env, "w")
    done = run_cli(["seed", "--workspace", "w", "--users", "250", "--batch", "100", "--json"], env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["users"] == 250
    assert report["cards"] is True
    text = run_cli(["seed", "--workspace", "w", "--users", "5", "--prefix", "x"], env)
    assert "seeded 5 users" in text.stdout
    assert "each with its card" in text.stdout
    bare = ["seed", "--workspace", "w", "--users", "5", "--prefix", "y", "--no-cards"]
    assert "no cards" in run_cli(bare, env).stdout
    bad = run_cli(["seed", "--workspace", "w", "--users", "5", "--prefix", "x"], env, check=False)
    assert bad.returncode == 2
    assert "already exists" in bad.stderr
    # A padded name finds the workspace, as in every other command ("no workspace ' w '").
    padded = ["seed", "--workspace", " w ", "--users", "3", "--prefix", "z", "--json"]
    report = json.loads(run_cli(padded, env).stdout.strip().splitlines()[-1])
    assert (report["workspace"], report["users"]) == ("w", 3)


@pytest.mark.server
def test_seed_interrupted_says_so_in_one_line(tmp_path: Path) -> None:
    """Ctrl-C in a long seed printed asyncio's CancelledError and KeyboardInterrupt tracebacks."""
    env = hub_environ(f"sqlite+aiosqlite:///{tmp_path}/hub.db", TEST_BASE_URL)
    migrate_and_init(env, "w")
    seed = ["seed", "--workspace", "w", "--users", "5000000", "--batch", "1000"]
    process = subprocess.Popen(
        [*cli_command(), *seed], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    assert "users in" in process.stderr.readline(), "the first batch is in"
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "scim-hub: interrupted; what was committed before stays"
    assert "Traceback" not in err


_PREFIX_RULE = (
    "must be 1 to 40 letters, digits, '.', '-' or '_', starting with a letter or digit "
    "(it goes into email addresses)"
)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--users", "5", "--start", "-1"), "argument --start: '-1' must be 0 or more"),
        (("--users", "0"), "argument --users: '0' must be at least 1"),
        (("--users", "-3"), "argument --users: '-3' must be at least 1"),
        (("--users", "5", "--batch", "0"), "argument --batch: '0' must be at least 1"),
        (("--users", "5", "--batch", "-10"), "argument --batch: '-10' must be at least 1"),
        # The prefix goes into every seeded email address; these made addresses no one takes.
        *(
            (("--users", "5", "--prefix", bad), f"argument --prefix: {bad!r} {_PREFIX_RULE}")
            for bad in ("", "two words", "a@b", "a..b", "end.", ".start", "x" * 41)
        ),
    ],
)
def test_seed_refuses_negative_and_zero_counts_naming_the_option(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    """`seed --start -1` seeded users given-1.family-1…, numbered from -1; --users and --batch
    below 1 were refused in one message naming both."""
    database = tmp_path / "hub.db"
    env = hub_environ(f"sqlite+aiosqlite:///{database}", TEST_BASE_URL)
    refused = run_cli(["seed", "--workspace", "w", *args], env, check=False)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == f"scim-hub seed: error: {named}", refused.stderr
    assert not database.exists(), "nothing is opened or written"


# --------------------------------------------------------------------------- seeded cards

#: Templates of both workspaces: rules on the profile, an admin order, one never matching.
TEMPLATES = [
    ("Sales", 'department eq "Sales"', {"company_name": "Contoso Sales", "website": "https://s"}),
    ("Seniors", 'job_title sw "senior"', {"logo_url": "https://logo", "job_title": "Sr."}),
    ("By hand", None, {"brand_colour": "#123456"}),
    ("Everyone in Berlin", 'office_phone co "555 0003"', {"address": "Berlin"}),
]
#: A connector override: company_name read from employeeNumber, given names ignored.
OVERRIDES = {"map": {"company_name": f"{ENTERPRISE}:employeeNumber"}, "drop": ["name.givenName"]}


async def _same_setup(http: httpx.AsyncClient, db_url: str, tenant: InitResult) -> Admin:
    admin = Admin(http, tenant.workspace, await make_admin_key(db_url, tenant))
    for name, rule, fields in TEMPLATES:
        await admin.ok("POST", "/templates", {"name": name, "rule": rule, "fields": fields})
    await admin.ok("PUT", f"/connectors/{tenant.connector}/mapping", OVERRIDES)
    return admin


def _comparable(card: dict[str, Any]) -> dict[str, Any]:
    """A card without what differs between any two cards (ids, times)."""
    template = card["template"]
    return {
        "userName": card["user"]["userName"],
        "active": card["active"],
        "template": None if template is None else template["name"],
        "fields": card["fields"],
    }


@pytest.mark.parametrize("idp", ["generic_scim", "azure_ad"])
async def test_seeded_cards_equal_cards_provisioned_over_scim(
    db_url: str, client: httpx.AsyncClient, idp: str
) -> None:
    """Seeding and SCIM provisioning of the same users into twin workspaces give equal cards.

    Both workspaces have the same templates (rules, order, one without a rule) and the same
    connector mapping override; the users cover every department, title and office.
    """
    count = 2 * 3 * 4 * 7  # every combination of the seeded titles, offices and departments
    seeded = await create_workspace(db_url, f"seeded-{idp}", idp=idp)
    provisioned = await create_workspace(db_url, f"scim-{idp}", idp=idp)
    seeded_admin = await _same_setup(client, db_url, seeded)
    scim_admin = await _same_setup(client, db_url, provisioned)

    db = open_database(db_url)
    try:
        report = await seed_users(db, seeded.workspace, count, batch=50, dialects=DIALECTS)
    finally:
        await db.close()
    scim = ScimClient(client, provisioned.token)
    for i in range(count):
        response = await scim.post("/Users", user_document(i))
        assert response.status_code == 201, response.text

    query = f"/cards?limit={count}"
    seeded_cards = (await seeded_admin.ok("GET", query))["cards"]
    scim_cards = (await scim_admin.ok("GET", query))["cards"]
    assert len(seeded_cards) == len(scim_cards) == count
    for got, want in zip(seeded_cards, scim_cards, strict=True):
        assert _comparable(got) == _comparable(want)
    # The same card (and rule document) through the single-card read and the template filter.
    one = await seeded_admin.card(seeded_cards[1]["user"]["id"])
    assert _comparable(one) == _comparable(scim_cards[1])
    assert one["fields"]["company_name"]["value"] == "Contoso Sales"  # Sales beats the IdP
    assert one["fields"]["first_name"] == {
        "value": None,
        "source": "manual",
        "locked": False,
        "linked": False,
    }
    assert scim_cards[0]["fields"]["company_name"]["value"] == "00000000"  # the override
    names = [None if c["template"] is None else c["template"]["name"] for c in scim_cards]
    assert {None, "Sales", "Seniors", "Everyone in Berlin"} == set(names)
    assert report.templated == count - names.count(None)
    for status in ("active", "not_activated"):
        counts = [
            (await a.ok("GET", f"/cards?status={status}&limit=1"))["total"]
            for a in (seeded_admin, scim_admin)
        ]
        assert counts == [count, count], status


async def test_seeded_cards_follow_template_edits(
    db_url: str, client: httpx.AsyncClient, tenant: InitResult
) -> None:
    """A template edit reaches seeded cards as it reaches provisioned ones: values changed and
    added show, a dropped template-only field goes, and each card's modified time moves."""
    admin = await _same_setup(client, db_url, tenant)
    db = open_database(db_url)
    try:
        await seed_users(db, tenant.workspace, 28, batch=10, dialects=DIALECTS)
    finally:
        await db.close()
    listed = await admin.ok("GET", "/templates")
    sales = next(t for t in listed["templates"] if t["name"] == "Sales")
    query = {"template": sales["id"], "limit": "100"}
    before = (await admin.ok("GET", "/cards", params=query))["cards"]
    assert before
    assert all(card["fields"]["website"]["value"] == "https://s" for card in before)

    fields = {"company_name": "Contoso Group", "brand_colour": "#05f"}
    edited = await admin.ok("PATCH", f"/templates/{sales['id']}", {"fields": fields})
    after = (await admin.ok("GET", "/cards", params=query))["cards"]
    assert [card["id"] for card in after] == [card["id"] for card in before]
    inherited = {"source": "template", "locked": True, "linked": True}
    for card in after:
        for name, value in fields.items():
            assert card["fields"][name] == {"value": value, **inherited}, name
        assert "website" not in card["fields"]
        assert card["modified"] == edited["modified"]
