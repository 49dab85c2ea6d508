"""Users read as stored (`GET /Users/{id}`, every list path) equal the general rendering.

A user is encoded straight from the stored JSON text (no decode, no re-encode) when the response
shows resources as stored (no `attributes`/`excludedAttributes`, no dialect `render`); these tests
hold that fast path to the general one, which `excludedAttributes=password` (never returned
anyway) takes.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ScimClient, group_body, user_body

SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CUSTOM = "urn:ietf:params:scim:schemas:extension:contoso:2.0:User"


def _awkward_users() -> list[dict[str, Any]]:
    plain = user_body("plain@example.com")
    inactive = user_body("inactive@example.com", active=False)
    escaped = user_body(
        'quote"back\\slash@example.com',
        displayName='Zoë "Z" \\ Ångström 🚀 \u2028 line',
        title="</script><b>",
    )
    enterprise = user_body(
        "enterprise@example.com",
        **{ENTERPRISE: {"department": "R&D", "employeeNumber": "0042"}},
    )
    enterprise["schemas"] = [*enterprise["schemas"], ENTERPRISE]
    custom = user_body("custom@example.com", **{CUSTOM: {"costCentre": "X1", "flags": [1, 2]}})
    custom["schemas"] = [*custom["schemas"], CUSTOM]
    bare = {"schemas": plain["schemas"], "userName": "bare@example.com"}
    return [plain, inactive, escaped, enterprise, custom, bare]


async def _provision(scim: ScimClient) -> dict[str, dict[str, Any]]:
    """Create the users (one in two groups) and return each as `GET /Users/{id}` shows it."""
    ids = []
    for body in _awkward_users():
        created = await scim.post("/Users", body)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for name in ("Team A", "Team B"):
        members = [{"value": ids[0]}, {"value": ids[2]}]
        made = await scim.post("/Groups", group_body(name, members=members))
        assert made.status_code == 201, made.text
    shown = {}
    for user_id in ids:
        got = await scim.get(f"/Users/{user_id}", params={"excludedAttributes": "password"})
        assert got.status_code == 200
        shown[user_id] = got.json()
    assert len(shown[ids[0]]["groups"]) == 2
    return shown


def _same(listed: list[dict[str, Any]], shown: dict[str, dict[str, Any]]) -> int:
    for resource in listed:
        assert resource == shown[resource["id"]]
    return len(listed)


async def test_get_matches_the_general_rendering(scim: ScimClient) -> None:
    shown = await _provision(scim)
    for user_id, expected in shown.items():
        got = await scim.get(f"/Users/{user_id}")
        assert got.status_code == 200
        assert got.headers["content-type"].startswith("application/scim+json")
        assert got.json() == expected
        assert got.headers["etag"] == expected["meta"]["version"]
        again = await scim.get(f"/Users/{user_id}", headers={"If-None-Match": got.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["etag"] == got.headers["etag"]
    missing = await scim.get("/Users/no-such-user")
    assert missing.status_code == 404


@pytest.mark.parametrize("count", [100, 2])
async def test_index_and_cursor_pages_match_get(scim: ScimClient, count: int) -> None:
    shown = await _provision(scim)
    seen = 0
    start = 1
    while start <= len(shown):
        page = await scim.get("/Users", params={"startIndex": str(start), "count": str(count)})
        assert page.status_code == 200
        seen += _same(page.json()["Resources"], shown)
        start += count
    assert seen == len(shown)
    cursor, seen = "", 0
    while True:
        page = (await scim.get("/Users", params={"cursor": cursor, "count": str(count)})).json()
        seen += _same(page["Resources"], shown)
        cursor = page.get("nextCursor", "")
        if not cursor:
            break
    assert seen == len(shown)


async def test_filtered_lookup_and_search_match_get(scim: ScimClient) -> None:
    shown = await _provision(scim)
    for resource in shown.values():
        query = f'userName eq "{_escape(resource["userName"])}"'
        found = (await scim.get("/Users", params={"filter": query})).json()
        assert found["totalResults"] == 1
        assert _same(found["Resources"], shown) == 1
    filtered = (await scim.get("/Users", params={"filter": 'userName co "@example.com"'})).json()
    assert _same(filtered["Resources"], shown) == len(shown)
    search = await scim.post(
        "/Users/.search",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 10},
    )
    assert _same(search.json()["Resources"], shown) == len(shown)


async def test_projected_pages_are_still_projected(scim: ScimClient) -> None:
    shown = await _provision(scim)
    page = (await scim.get("/Users", params={"attributes": "userName"})).json()
    assert len(page["Resources"]) == len(shown)
    for resource in page["Resources"]:
        assert set(resource) == {"schemas", "id", "userName"}
    page = (await scim.get("/Users", params={"excludedAttributes": "groups,meta"})).json()
    for resource in page["Resources"]:
        expected = {k: v for k, v in shown[resource["id"]].items() if k not in ("groups", "meta")}
        assert resource == expected


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


async def test_paging_numbers_beyond_64_bits_are_still_numbers(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.4: any integer is a startIndex or count; past the end is an empty page."""
    await scim.post("/Users", user_body())
    huge = "9" * 30
    for offset in (str(2**31), str(2**40), huge):  # past PostgreSQL's int4 and SQLite's int64
        beyond = await scim.get("/Users", params={"startIndex": offset})
        assert beyond.status_code == 200, beyond.text
    far = await scim.get("/Users", params={"startIndex": huge})
    assert far.status_code == 200, far.text
    assert far.json().get("Resources", []) == []
    assert far.json()["totalResults"] == 1
    many = await scim.get("/Users", params={"count": huge})
    assert many.status_code == 200, many.text
    assert len(many.json()["Resources"]) == 1
    below = await scim.get("/Users", params={"startIndex": "-" + huge, "count": "-" + huge})
    assert below.status_code == 200, below.text
    assert below.json()["startIndex"] == 1
    assert below.json().get("Resources", []) == []


async def test_a_page_past_the_end_answers_the_start_index_asked(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.4: a ListResponse's startIndex is the index of its first result.

    `startIndex` above 2**31-1 came back as 2147483647 (the offset the database binds); a page
    past the end, however far, now answers empty with the index asked, on every list, up to
    2**53-1: past it (10**30 came back as 30 digits) with 2**53-1, the largest integer RFC 8259
    §6 says every JSON parser reads exactly (JavaScript rounds beyond; Go, Java and .NET fail
    to parse one beyond 2**63).
    """
    await scim.post("/Users", user_body())
    safe = 2**53 - 1
    for start in (5, 2**31 - 1, 2**31, 2**40, safe, safe + 1, 2**63, 10**30, -(10**30)):
        shown = min(max(start, 1), safe)
        for path in ("/Users", "/Groups", ""):
            page = await scim.get(path, params={"startIndex": str(start), "count": "3"})
            assert page.status_code == 200, (path, page.text)
            assert page.json()["startIndex"] == shown, (path, start)
            assert f'"startIndex":{shown},' in page.text  # a plain integer, as written
            if start > 1:
                assert page.json().get("Resources", []) == [], path
        for path in ("/Users/.search", "/Groups/.search", "/.search"):
            searched = await scim.post(path, {"schemas": [SEARCH_REQUEST], "startIndex": start})
            assert searched.status_code == 200, searched.text
            assert searched.json()["startIndex"] == shown, (path, start)
            assert searched.json()["totalResults"] == (0 if path == "/Groups/.search" else 1)
