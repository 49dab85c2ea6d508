"""Cursor pagination (RFC 9865) over real HTTP, SQLite and PostgreSQL.

Cursor pages follow creation order: every resource exactly once, the last page without
`nextCursor`; malformed cursors, cursor with startIndex or sortBy, and count below 1 are 400s
with the RFC's scimTypes; ServiceProviderConfig advertises cursor pagination.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ScimClient, assert_scim_error, group_body, user_body

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def _make_users(scim: ScimClient, n: int, prefix: str = "cur") -> list[str]:
    ids = []
    for i in range(n):
        response = await scim.post("/Users", user_body(f"{prefix}-{i:03d}@example.com"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def _walk(scim: ScimClient, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every page from an empty cursor to the page without `nextCursor`."""
    pages = []
    cursor = ""
    for _ in range(100):
        response = await scim.get(path, params={**params, "cursor": cursor})
        assert response.status_code == 200, response.text
        body = response.json()
        assert "startIndex" not in body
        assert body["itemsPerPage"] == len(body["Resources"])
        pages.append(body)
        if "nextCursor" not in body:
            return pages
        cursor = body["nextCursor"]
        assert cursor
        assert all(c.isalnum() or c in "-._~" for c in cursor)
    raise AssertionError("cursor pagination did not end")


async def test_walk_users_every_user_once_in_order(scim: ScimClient) -> None:
    ids = await _make_users(scim, 7)
    pages = await _walk(scim, "/Users", {"count": "3"})
    assert [len(p["Resources"]) for p in pages] == [3, 3, 1]
    seen = [r["id"] for p in pages for r in p["Resources"]]
    assert seen == ids
    assert all(p["totalResults"] == 7 for p in pages)
    # An exact multiple of count: the last full page says there is no more.
    pages = await _walk(scim, "/Users", {"count": "7"})
    assert len(pages) == 1
    assert [r["id"] for r in pages[0]["Resources"]] == ids
    # Descending walks the same users backwards.
    pages = await _walk(scim, "/Users", {"count": "2", "sortOrder": "descending"})
    assert [r["id"] for p in pages for r in p["Resources"]] == ids[::-1]


async def test_walk_groups_and_post_search(scim: ScimClient) -> None:
    gids = []
    for i in range(5):
        response = await scim.post("/Groups", group_body(f"cursor-group-{i}"))
        assert response.status_code == 201, response.text
        gids.append(response.json()["id"])
    pages = await _walk(scim, "/Groups", {"count": "2"})
    assert [r["id"] for p in pages for r in p["Resources"]] == gids
    # POST .search with the SearchRequest attribute.
    seen: list[str] = []
    cursor = ""
    while True:
        response = await scim.post(
            "/Groups/.search", {"schemas": [SEARCH], "cursor": cursor, "count": 2}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [r["id"] for r in body["Resources"]]
        if "nextCursor" not in body:
            break
        cursor = body["nextCursor"]
    assert seen == gids


async def test_cursor_with_filter_and_deletes(scim: ScimClient) -> None:
    ids = await _make_users(scim, 6, "keep")
    await _make_users(scim, 4, "other")
    pages = await _walk(scim, "/Users", {"count": "4", "filter": 'userName sw "keep"'})
    assert [r["id"] for p in pages for r in p["Resources"]] == ids
    assert [p["totalResults"] for p in pages] == [6, 6]
    # A user deleted between pages is skipped; nobody is seen twice.
    first = (await scim.get("/Users", params={"cursor": "", "count": "2"})).json()
    assert (await scim.delete(f"/Users/{ids[2]}")).status_code == 204
    rest = await scim.get("/Users", params={"cursor": first["nextCursor"], "count": "100"})
    later = [r["id"] for r in rest.json()["Resources"]]
    assert ids[2] not in later
    assert not set(later) & {r["id"] for r in first["Resources"]}
    assert rest.json()["totalResults"] == 9


async def test_empty_cursor_spellings_and_empty_list(scim: ScimClient) -> None:
    response = await scim.get("/Users?cursor")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalResults"] == 0
    assert body["Resources"] == []
    assert "nextCursor" not in body
    response = await scim.get("/Users?cursor=&count=5")
    assert response.status_code == 200
    assert "nextCursor" not in response.json()


async def test_filter_username_eq_with_cursor(scim: ScimClient) -> None:
    ids = await _make_users(scim, 2)
    response = await scim.get(
        "/Users", params={"cursor": "", "filter": 'userName eq "cur-001@example.com"'}
    )
    body = response.json()
    assert [r["id"] for r in body["Resources"]] == ids[1:]
    assert "nextCursor" not in body


async def test_filter_on_a_shared_email_with_cursor(scim: ScimClient) -> None:
    """RFC 9865: an email `eq` filter's cursor pages reach every user holding the email."""
    ids = []
    for i in range(3):
        body = user_body(f"shared-{i}", emails=[{"value": "Shared@example.com"}])
        response = await scim.post("/Users", body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    await _make_users(scim, 2)
    for flt in ('emails.value eq "shared@example.com"', 'emails[value eq "SHARED@example.com"]'):
        pages = await _walk(scim, "/Users", {"count": "2", "filter": flt})
        assert [r["id"] for p in pages for r in p["Resources"]] == ids
        assert [p["totalResults"] for p in pages] == [3, 3]


@pytest.mark.parametrize(
    "bad",
    [
        "garbage!",
        "x" * 200,
        "AAAA",
        "c2NpbS1odWIuVS4w",  # pk 0
        "c2NpbS1odWIuVS4xMjM0NTY3ODkwMTIzNDU2Nzg5MA",  # pk past 64 bits
    ],
)
async def test_malformed_cursor_is_invalid_cursor(scim: ScimClient, bad: str) -> None:
    await _make_users(scim, 1)
    response = await scim.get("/Users", params={"cursor": bad})
    assert_scim_error(response, 400, "invalidCursor")


async def test_cursor_of_other_type_or_workspace(scim: ScimClient, other_scim: ScimClient) -> None:
    await _make_users(scim, 3)
    page = (await scim.get("/Users", params={"cursor": "", "count": "1"})).json()
    # A Users cursor is not a Groups cursor.
    response = await scim.get("/Groups", params={"cursor": page["nextCursor"]})
    assert_scim_error(response, 400, "invalidCursor")
    # Another workspace can send it, but sees only its own (no) users.
    response = await other_scim.get("/Users", params={"cursor": page["nextCursor"]})
    assert response.status_code == 200
    assert response.json()["Resources"] == []
    assert response.json()["totalResults"] == 0
    # A non-string cursor in a SearchRequest.
    response = await scim.post("/Users/.search", {"schemas": [SEARCH], "cursor": 5})
    assert_scim_error(response, 400, "invalidCursor")


async def test_cursor_with_start_index_or_sort_by(scim: ScimClient) -> None:
    response = await scim.get("/Users", params={"cursor": "", "startIndex": "1"})
    body = assert_scim_error(response, 400, "invalidValue")
    assert "startIndex" in body["detail"]
    response = await scim.post(
        "/Users/.search", {"schemas": [SEARCH], "cursor": "", "startIndex": 2}
    )
    assert_scim_error(response, 400, "invalidValue")
    response = await scim.get("/Users", params={"cursor": "", "sortBy": "userName"})
    body = assert_scim_error(response, 400, "invalidValue")
    assert "sortBy" in body["detail"]


async def test_count_with_cursor(scim: ScimClient) -> None:
    await _make_users(scim, 2)
    for count in ("0", "-1"):
        response = await scim.get("/Users", params={"cursor": "", "count": count})
        assert_scim_error(response, 400, "invalidCount")
    # Without a cursor count=0 keeps its RFC 7644 meaning: just totalResults.
    response = await scim.get("/Users", params={"count": "0"})
    assert response.status_code == 200
    assert response.json()["totalResults"] == 2
    # Above maxPageSize: capped, as index pagination does.
    response = await scim.get("/Users", params={"cursor": "", "count": "100000"})
    assert response.status_code == 200
    assert len(response.json()["Resources"]) == 2


async def test_root_search_refuses_cursor(scim: ScimClient) -> None:
    response = await scim.post("/.search", {"schemas": [SEARCH], "cursor": ""})
    body = assert_scim_error(response, 400, "invalidCursor")
    assert "/Users" in body["detail"]


async def test_service_provider_config_advertises_cursor(scim: ScimClient) -> None:
    body = (await scim.get("/ServiceProviderConfig")).json()
    pagination = body["pagination"]
    assert pagination["cursor"] is True
    assert pagination["index"] is True
    assert pagination["defaultPaginationMethod"] == "index"
    assert pagination["defaultPageSize"] >= 1
    assert pagination["maxPageSize"] >= 1
    # Index pagination without a cursor is unchanged.
    await _make_users(scim, 2)
    body = (await scim.get("/Users", params={"count": "1"})).json()
    assert body["startIndex"] == 1
    assert "nextCursor" not in body
    assert body["totalResults"] == 2
