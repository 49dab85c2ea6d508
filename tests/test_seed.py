"""Bulk seeding (`scim-hub seed`): users as SCIM would store them, served back over HTTP."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from hub.core.database import open_database
from hub.core.errors import NotFound, Uniqueness
from hub.core.seed import check_document, seed_users, user_document, user_name
from hub.core.tenants import InitResult
from tests.conftest import TEST_BASE_URL, ScimClient
from tests.server import hub_environ, run_cli


@pytest.mark.parametrize("i", [0, 1, 2, 3, 17, 999_999])
def test_documents_are_canonical(i: int) -> None:
    check_document(user_document(i, "p"))


async def test_seeded_users_are_served(db_url: str, tenant: InitResult, scim: ScimClient) -> None:
    db = open_database(db_url)
    seen: list[int] = []
    try:
        report = await seed_users(
            db, "acme", 300, batch=128, prefix="t", progress=lambda n, _s: seen.append(n)
        )
    finally:
        await db.close()
    assert seen == [128, 256, 300]
    assert report.users == 300
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
    # An IdP update reaches a seeded user like any other (and gives it its card).
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


async def test_seed_refuses_duplicates_and_unknown_workspaces(
    db_url: str, tenant: InitResult
) -> None:
    db = open_database(db_url)
    try:
        await seed_users(db, "acme", 10, prefix="d")
        with pytest.raises(Uniqueness, match="another --prefix"):
            await seed_users(db, "acme", 10, prefix="d", start=5)
        with pytest.raises(NotFound):
            await seed_users(db, "nope", 1)
        with pytest.raises(ValueError, match="at least 1"):
            await seed_users(db, "acme", 0)
    finally:
        await db.close()


@pytest.mark.server
def test_seed_command(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    env = hub_environ(url, TEST_BASE_URL)
    run_cli(["db", "upgrade"], env)
    run_cli(["init", "--workspace", "w", "--json"], env)
    done = run_cli(["seed", "--workspace", "w", "--users", "250", "--batch", "100", "--json"], env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["users"] == 250
    assert report["cards"] is False
    text = run_cli(["seed", "--workspace", "w", "--users", "5", "--prefix", "x"], env)
    assert "seeded 5 users" in text.stdout
    assert "no cards" in text.stdout
    bad = run_cli(["seed", "--workspace", "w", "--users", "5", "--prefix", "x"], env, check=False)
    assert bad.returncode == 2
    assert "already exists" in bad.stderr
