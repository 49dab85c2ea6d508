"""Request limits: each refused with a clear SCIM error that names it, and nothing stored changes.

The limits (settings `max_body_bytes`, `max_filter_length`, `max_filter_depth`, `max_results`,
`max_patch_operations`, `max_group_members_per_patch`) are set small here so the tests send
little. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest

from tests.conftest import ScimClient, assert_scim_error, group_body, user_body
from tests.conftest import patch_op as ops
from tests.dbstate import scim_state

MAX_BODY = 4096
MAX_RESULTS = 5
DEFAULT_COUNT = 3
MAX_FILTER = 200
MAX_DEPTH = 4
MAX_OPS = 3
MAX_MEMBERS = 4
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def settings(settings: Any, tmp_path: Path) -> Any:
    """The shared settings with small limits."""
    return msgspec.structs.replace(
        settings,
        max_body_bytes=MAX_BODY,
        max_results=MAX_RESULTS,
        default_count=DEFAULT_COUNT,
        max_filter_length=MAX_FILTER,
        max_filter_depth=MAX_DEPTH,
        max_patch_operations=MAX_OPS,
        max_group_members_per_patch=MAX_MEMBERS,
        outbox_dir=str(tmp_path / "outbox"),
    )


@pytest.fixture
async def user_ids(scim: ScimClient) -> list[str]:
    """Seven users of workspace "acme"."""
    ids = []
    for n in range(7):
        response = await scim.post("/Users", user_body(f"limit{n}@example.com"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


@pytest.fixture
async def group_id(scim: ScimClient, user_ids: list[str]) -> str:
    """A group with the first user as its member."""
    response = await scim.post("/Groups", group_body("Limits", members=[{"value": user_ids[0]}]))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


class Unchanged:
    """`async with Unchanged(db_url):` fails if the stored SCIM state changed inside."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.before: dict[str, Any] = {}

    async def __aenter__(self) -> None:
        self.before = scim_state(self.db_url)

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert scim_state(self.db_url) == self.before, "a refused request changed the state"


# --------------------------------------------------------------------------- discovery


async def test_service_provider_config_advertises_max_results(scim: ScimClient) -> None:
    response = await scim.get("/ServiceProviderConfig")
    assert response.status_code == 200, response.text
    config = response.json()
    assert config["filter"] == {"supported": True, "maxResults": MAX_RESULTS}
    assert config["pagination"]["maxPageSize"] == MAX_RESULTS
    assert config["pagination"]["defaultPageSize"] == DEFAULT_COUNT


# --------------------------------------------------------------------------- count


@pytest.mark.parametrize("endpoint", ["/Users", "/Groups"])
async def test_count_is_capped_at_max_results(
    scim: ScimClient, user_ids: list[str], endpoint: str
) -> None:
    if endpoint == "/Groups":
        for n in range(7):
            assert (await scim.post("/Groups", group_body(f"g{n}"))).status_code == 201
    page = (await scim.get(endpoint, params={"count": "1000"})).json()
    assert page["totalResults"] == 7
    assert page["itemsPerPage"] == len(page["Resources"]) == MAX_RESULTS
    default = (await scim.get(endpoint)).json()
    assert default["itemsPerPage"] == DEFAULT_COUNT
    last = (await scim.get(endpoint, params={"count": "1000", "startIndex": "6"})).json()
    assert last["itemsPerPage"] == 2
    assert last["startIndex"] == 6
    searched = await scim.post(f"{endpoint}/.search", {"schemas": [SEARCH], "count": 10**6})
    assert searched.status_code == 200, searched.text
    assert searched.json()["itemsPerPage"] == MAX_RESULTS
    everything = await scim.post("/.search", {"schemas": [SEARCH], "count": 1000})
    assert everything.json()["itemsPerPage"] == MAX_RESULTS


# --------------------------------------------------------------------------- body size


async def test_bodies_over_the_limit_are_413_and_change_nothing(
    scim: ScimClient, db_url: str, user_ids: list[str], group_id: str
) -> None:
    padding = "x" * MAX_BODY
    big_user = user_body("big@example.com", displayName=padding)
    big_patch = ops({"op": "replace", "path": "displayName", "value": padding})
    requests: list[tuple[str, str, Any]] = [
        ("POST", "/Users", big_user),
        ("PUT", f"/Users/{user_ids[1]}", big_user),
        ("PATCH", f"/Users/{user_ids[1]}", big_patch),
        ("PATCH", f"/Groups/{group_id}", big_patch),
        ("POST", "/Groups", group_body(padding)),
        ("POST", "/Users/.search", {"schemas": [SEARCH], "filter": f'userName eq "{padding}"'}),
    ]
    async with Unchanged(db_url):
        for method, path, body in requests:
            response = await scim.request(method, path, body)
            detail = assert_scim_error(response, 413)["detail"]
            assert str(MAX_BODY) in detail, detail


async def test_a_streamed_body_without_length_is_cut_at_the_limit(live_server: Any) -> None:
    """A chunked body (no Content-Length) cannot slip past the limit of a real server."""
    db_url = live_server.env["SCIM_HUB_DATABASE_URL"]
    limit = 1_048_576  # the default `max_body_bytes` the live server runs with
    document = json.dumps(user_body("stream@example.com", displayName="y" * (limit + 10)))

    async def chunks() -> AsyncIterator[bytes]:
        data = document.encode()
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    async with Unchanged(db_url), httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{live_server.tenant_url}/Users",
            content=chunks(),
            headers={
                "Authorization": f"Bearer {live_server.token}",
                "Content-Type": "application/scim+json",
            },
        )
        assert "content-length" not in response.request.headers
        assert_scim_error(response, 413)


async def test_a_body_cut_short_by_the_client_stores_nothing(live_server: Any) -> None:
    """A client that goes away mid-body sent no request, even when what came is a whole object."""
    db_url = live_server.env["SCIM_HUB_DATABASE_URL"]
    url = urlsplit(live_server.tenant_url)
    document = json.dumps(user_body("cut-short@example.com")).encode()
    head = (
        f"POST {url.path}/Users HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {live_server.token}\r\n"
        f"Content-Type: application/scim+json\r\nContent-Length: {len(document) + 64}\r\n\r\n"
    ).encode()
    async with Unchanged(db_url):
        _, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(head + document)
        await writer.drain()
        await asyncio.sleep(0.2)  # the server holds the object and waits for the rest
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.5)  # time to have stored it, had the hub taken it as complete
    async with httpx.AsyncClient(timeout=10) as http:
        found = await http.get(
            f"{live_server.tenant_url}/Users",
            params={"filter": 'userName eq "cut-short@example.com"'},
            headers={"Authorization": f"Bearer {live_server.token}"},
        )
    assert found.json()["totalResults"] == 0


async def test_a_body_just_under_the_limit_is_accepted(scim: ScimClient) -> None:
    body = user_body("fits@example.com")
    body["displayName"] = "z" * (MAX_BODY - len(json.dumps(body)) - 40)
    response = await scim.post("/Users", body)
    assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- filters


def nested(depth: int) -> str:
    return "(" * depth + 'userName eq "limit1@example.com"' + ")" * depth


async def _filter_answers(scim: ScimClient, text: str) -> list[Any]:
    """The responses of every way of sending a filter: GET on both types and three searches."""
    return [
        await scim.get("/Users", params={"filter": text}),
        await scim.get("/Groups", params={"filter": text}),
        await scim.post("/Users/.search", {"schemas": [SEARCH], "filter": text}),
        await scim.post("/Groups/.search", {"schemas": [SEARCH], "filter": text}),
        await scim.post("/.search", {"schemas": [SEARCH], "filter": text}),
    ]


async def test_a_filter_over_the_length_limit_is_invalid_filter_naming_it(
    scim: ScimClient, db_url: str, user_ids: list[str]
) -> None:
    base = 'userName eq "limit1@example.com" or userName eq "'
    at_limit = base + "q" * (MAX_FILTER - len(base) - 1) + '"'
    assert len(at_limit) == MAX_FILTER
    answer = await scim.get("/Users", params={"filter": at_limit})
    assert answer.status_code == 200, answer.text
    assert answer.json()["totalResults"] == 1
    too_long = at_limit[:-1] + 'q"'
    async with Unchanged(db_url):
        for response in await _filter_answers(scim, too_long):
            detail = assert_scim_error(response, 400, "invalidFilter")["detail"]
            assert f"{MAX_FILTER}-character limit" in detail, detail


@pytest.mark.parametrize(
    "deep",
    [
        nested(MAX_DEPTH + 1),
        "not (" * (MAX_DEPTH + 1) + "active eq true" + ")" * (MAX_DEPTH + 1),
        "emails[" + nested(MAX_DEPTH) + "]",
        "(" * 1000 + ")" * 1000,
    ],
    ids=["parentheses", "not", "value-path", "huge"],
)
async def test_a_filter_nested_too_deep_is_invalid_filter_naming_the_limit(
    scim: ScimClient, db_url: str, user_ids: list[str], settings: Any, deep: str
) -> None:
    at_limit = await scim.get("/Users", params={"filter": nested(MAX_DEPTH)})
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["totalResults"] == 1
    if len(deep) > MAX_FILTER:
        # A huge one hits the length limit first: still invalidFilter, still named.
        expected = f"{MAX_FILTER}-character limit"
    else:
        expected = f"deeper than {MAX_DEPTH} levels"
    async with Unchanged(db_url):
        for response in await _filter_answers(scim, deep):
            detail = assert_scim_error(response, 400, "invalidFilter")["detail"]
            assert expected in detail, detail


# --------------------------------------------------------------------------- PATCH


async def test_too_many_patch_operations_are_refused_and_change_nothing(
    scim: ScimClient, db_url: str, user_ids: list[str], group_id: str
) -> None:
    titles = [{"op": "replace", "path": "title", "value": f"t{n}"} for n in range(MAX_OPS + 1)]
    names = [{"op": "replace", "path": "externalId", "value": f"e{n}"} for n in range(MAX_OPS + 1)]
    async with Unchanged(db_url):
        for path, operations in ((f"/Users/{user_ids[2]}", titles), (f"/Groups/{group_id}", names)):
            response = await scim.patch(path, ops(*operations))
            detail = assert_scim_error(response, 400, "invalidValue")["detail"]
            assert f"at most {MAX_OPS} operations" in detail, detail
    fits = await scim.patch(f"/Users/{user_ids[2]}", ops(*titles[:MAX_OPS]))
    assert fits.status_code == 200, fits.text
    assert fits.json()["title"] == f"t{MAX_OPS - 1}"


async def test_too_many_members_in_one_group_patch_are_refused_and_change_nothing(
    scim: ScimClient, db_url: str, user_ids: list[str], group_id: str
) -> None:
    extra = [{"value": uid} for uid in user_ids[1 : MAX_MEMBERS + 2]]
    assert len(extra) == MAX_MEMBERS + 1
    split = [
        {"op": "add", "path": "members", "value": extra[:2]},
        {"op": "add", "path": "members", "value": extra[2:]},
    ]
    async with Unchanged(db_url):
        for body in (
            ops({"op": "add", "path": "members", "value": extra}),
            ops({"op": "add", "value": {"members": extra}}),
            ops(*split),  # the limit counts every member the request changes
            ops({"op": "remove", "path": "members", "value": extra}),
        ):
            response = await scim.patch(f"/Groups/{group_id}", body)
            detail = assert_scim_error(response, 400, "invalidValue")["detail"]
            assert f"at most {MAX_MEMBERS} members" in detail, detail
    fits = await scim.patch(
        f"/Groups/{group_id}", ops({"op": "add", "path": "members", "value": extra[:MAX_MEMBERS]})
    )
    assert fits.status_code == 204, fits.text
    assert len((await scim.get(f"/Groups/{group_id}")).json()["members"]) == MAX_MEMBERS + 1


async def test_a_members_replace_counts_the_members_who_join_or_leave(
    scim: ScimClient, db_url: str, user_ids: list[str], group_id: str
) -> None:
    # Okta's "full push of the membership" is a replace listing every member of the group: one
    # larger than the limit was refused ("at most 4 members may change") though a PUT of the
    # same members passes and nothing, or little, changes.
    six = [{"value": uid} for uid in user_ids[:6]]
    path = f"/Groups/{group_id}"
    put = await scim.put(path, group_body("Limits", members=six))
    assert put.status_code == 200, put.text
    version = put.headers["ETag"]
    same = await scim.patch(path, ops({"op": "replace", "path": "members", "value": six}))
    assert same.status_code == 204, same.text
    assert same.headers["ETag"] == version
    shifted = [{"value": uid} for uid in user_ids[1:7]]  # user 0 leaves, user 6 joins
    for body in (
        ops({"op": "replace", "path": "members", "value": shifted}),
        ops({"op": "replace", "value": {"displayName": "Limits", "members": six}}),
    ):
        response = await scim.patch(path, body)
        assert response.status_code in (200, 204), response.text
    members = (await scim.get(path)).json()["members"]
    assert {m["value"] for m in members} == set(user_ids[:6])
    async with Unchanged(db_url):
        one = [{"value": user_ids[6]}]  # 6 leave, 1 joins
        # The adds list 3 of the limit's 4; then 2 leave.
        adds = {"op": "add", "path": "members", "value": [{"value": u} for u in user_ids[:2]] + one}
        fewer = [{"value": uid} for uid in user_ids[2:7]]
        for body in (
            ops({"op": "replace", "path": "members", "value": one}),
            ops(adds, {"op": "replace", "path": "members", "value": fewer}),
        ):
            response = await scim.patch(path, body)
            detail = assert_scim_error(response, 400, "invalidValue")["detail"]
            assert f"at most {MAX_MEMBERS} members" in detail, detail


async def test_member_filters_count_what_a_replace_changes_and_not_a_remove(
    scim: ScimClient, db_url: str, user_ids: list[str], group_id: str
) -> None:
    """A replace through `members[filter]` counts the users who join or leave, as a `members`
    replace does; a remove through one is bounded by the group, as a remove of every member."""
    six = [{"value": uid} for uid in user_ids[:6]]
    path = f"/Groups/{group_id}"
    assert (await scim.put(path, group_body("Limits", members=six))).status_code == 200
    async with Unchanged(db_url):
        one = {"value": user_ids[6]}  # 6 leave, 1 joins
        response = await scim.patch(
            path, ops({"op": "replace", "path": 'members[type eq "User"]', "value": one})
        )
        detail = assert_scim_error(response, 400, "invalidValue")["detail"]
        assert f"at most {MAX_MEMBERS} members" in detail, detail
    removed = await scim.patch(path, ops({"op": "remove", "path": 'members[type eq "User"]'}))
    assert removed.status_code == 204, removed.text
    assert "members" not in (await scim.get(path)).json()


async def test_keys_longer_than_the_hub_keeps_are_invalid_value_and_change_nothing(
    scim: ScimClient, db_url: str, user_ids: list[str], group_id: str
) -> None:
    """userName, externalId and a group's displayName are kept in columns of 512 characters
    (PostgreSQL refuses more): a longer one is a 400 naming it, on both databases, where
    PostgreSQL answered 500 and SQLite stored it."""
    long = "x" * 513
    folded = "İ" * 300  # 300 characters, 600 once lowercased
    member = [{"value": user_ids[2], "display": long}]  # not a member yet
    requests: list[tuple[str, str, Any, str]] = [
        ("POST", "/Users", user_body(long + "@example.com"), "userName"),
        ("POST", "/Users", user_body(folded), "userName"),
        ("POST", "/Users", user_body("ok@example.com", externalId=long), "externalId"),
        ("PUT", f"/Users/{user_ids[1]}", user_body(long), "userName"),
        (
            "PATCH",
            f"/Users/{user_ids[1]}",
            ops({"op": "replace", "path": "externalId", "value": long}),
            "externalId",
        ),
        ("POST", "/Groups", group_body(long), "displayName"),
    ]
    async with Unchanged(db_url):
        for method, path, body, name in requests:
            response = await scim.request(method, path, body)
            detail = assert_scim_error(response, 400, "invalidValue")["detail"]
            assert name in detail, detail
            assert "512" in detail, detail
    # A member's display is readOnly: one longer than its column is ignored, not refused.
    added = await scim.patch(
        f"/Groups/{group_id}", ops({"op": "add", "path": "members", "value": member})
    )
    assert added.status_code in (200, 204), added.text
    shown = (await scim.get(f"/Groups/{group_id}")).json()["members"]
    added_member = [m for m in shown if m["value"] == user_ids[2]]
    assert len(added_member) == 1
    assert "display" not in added_member[0]
    # An email address longer than any address gets no invitation; the user is created.
    email = [{"type": "work", "value": "e" * 330 + "@example.com", "primary": True}]
    created = await scim.post("/Users", user_body("long-mail@example.com", emails=email))
    assert created.status_code == 201, created.text
