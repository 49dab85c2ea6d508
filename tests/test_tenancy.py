"""Workspaces are sealed from each other, and every SCIM route needs a valid token.

A token of workspace "acme" used on resources of workspace "globex" gets 404 — never 403, which
would confirm the id exists — and leaves the resource exactly as it was. Lists, filters and
searches never show another workspace's resources; group members never cross workspaces. The
credential checks walk the app's route table, so a new SCIM route is covered without editing
this file.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import patch_op as patch_body

if TYPE_CHECKING:
    from litestar import Litestar

    from tests.conftest import ScimClient

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ScimError = Callable[..., dict[str, Any]]


class Globex:
    """Workspace "globex"'s resources, as globex itself sees them."""

    def __init__(self, scim: ScimClient, user: dict[str, Any], group: dict[str, Any]) -> None:
        self.scim = scim
        self.user = user
        self.group = group

    async def state(self) -> list[tuple[int, Any, str | None]]:
        """Status, body and ETag of globex's user and group, and of both lists."""
        paths = [
            f"/Users/{self.user['id']}",
            f"/Groups/{self.group['id']}",
            "/Users",
            "/Groups",
        ]
        result = []
        for path in paths:
            response = await self.scim.get(path)
            result.append((response.status_code, response.json(), response.headers.get("etag")))
        return result


@pytest.fixture
async def globex(other_scim: ScimClient) -> Globex:
    """In "globex": user "shared@example.com" (externalId ext-1) in group "Globex Staff"."""
    user = await other_scim.post(
        "/Users",
        {
            "schemas": [USER_URN],
            "userName": "shared@example.com",
            "externalId": "ext-1",
            "displayName": "Globex Person",
            "active": True,
        },
    )
    assert user.status_code == 201, user.text
    group = await other_scim.post(
        "/Groups",
        {
            "schemas": [GROUP_URN],
            "displayName": "Globex Staff",
            "externalId": "grp-1",
            "members": [{"value": user.json()["id"]}],
        },
    )
    assert group.status_code == 201, group.text
    assert [m["value"] for m in group.json().get("members", [])] == [user.json()["id"]]
    return Globex(other_scim, user.json(), group.json())


FOREIGN_CALLS = [
    pytest.param("GET", "Users", None, id="GET-user"),
    pytest.param(
        "PUT",
        "Users",
        {"schemas": [USER_URN], "userName": "hijacked@example.com", "active": False},
        id="PUT-user",
    ),
    pytest.param(
        "PATCH",
        "Users",
        patch_body(
            {"op": "replace", "path": "displayName", "value": "Hijacked"},
            {"op": "replace", "path": "active", "value": False},
        ),
        id="PATCH-user",
    ),
    pytest.param("DELETE", "Users", None, id="DELETE-user"),
    pytest.param("GET", "Groups", None, id="GET-group"),
    pytest.param(
        "PUT",
        "Groups",
        {"schemas": [GROUP_URN], "displayName": "Hijacked", "members": []},
        id="PUT-group",
    ),
    pytest.param(
        "PATCH",
        "Groups",
        patch_body(
            {"op": "replace", "path": "displayName", "value": "Hijacked"},
            {"op": "remove", "path": "members"},
        ),
        id="PATCH-group",
    ),
    pytest.param("DELETE", "Groups", None, id="DELETE-group"),
]


@pytest.mark.parametrize(("method", "kind", "body"), FOREIGN_CALLS)
async def test_another_workspaces_resource_is_not_found(
    scim: ScimClient,
    globex: Globex,
    scim_error: ScimError,
    method: str,
    kind: str,
    body: dict[str, Any] | None,
) -> None:
    before = await globex.state()
    resource = globex.user if kind == "Users" else globex.group
    path = f"/{kind}/{resource['id']}"

    response = await scim.request(method, path, body)
    scim_error(response, 404)
    # Conditional requests must not reveal the resource either.
    etag = resource["meta"]["version"]
    conditional = await scim.request(method, path, body, headers={"If-Match": etag})
    scim_error(conditional, 404)

    assert await globex.state() == before


async def test_lists_and_filters_never_show_another_workspace(
    scim: ScimClient, globex: Globex
) -> None:
    mine = await scim.post(
        "/Users", {"schemas": [USER_URN], "userName": "mine@example.com", "externalId": "ext-1"}
    )
    assert mine.status_code == 201, mine.text
    user, group = globex.user, globex.group
    user_filters = [
        f'userName eq "{user["userName"]}"',
        f'userName eq "{user["userName"].upper()}"',
        'userName sw "shared"',
        f'id eq "{user["id"]}"',
        'displayName eq "Globex Person"',
        'externalId eq "ext-1"',
        f'id eq "{user["id"]}" or userName pr',
    ]
    group_filters = [
        'displayName eq "Globex Staff"',
        f'id eq "{group["id"]}"',
        'externalId eq "grp-1"',
        "displayName pr",
    ]
    for kind, filters, foreign in (
        ("Users", user_filters, user),
        ("Groups", group_filters, group),
    ):
        for expression in [None, *filters]:
            params = {"filter": expression} if expression else {}
            listed = await scim.get(f"/{kind}", params=params)
            searched = await scim.post(
                f"/{kind}/.search",
                {"schemas": [SEARCH_URN], **({"filter": expression} if expression else {})},
            )
            for response in (listed, searched):
                assert response.status_code == 200, (expression, response.text)
                ids = {r["id"] for r in response.json().get("Resources", [])}
                assert foreign["id"] not in ids, (kind, expression)
                assert response.json()["totalResults"] == len(ids), (kind, expression)
    # ...while "acme"'s own user with the same externalId is found.
    found = await scim.get("/Users", params={"filter": 'externalId eq "ext-1"'})
    assert [r["id"] for r in found.json()["Resources"]] == [mine.json()["id"]]


async def test_user_names_are_unique_per_workspace_only(scim: ScimClient, globex: Globex) -> None:
    same = await scim.post(
        "/Users", {"schemas": [USER_URN], "userName": globex.user["userName"].upper()}
    )
    assert same.status_code == 201, same.text
    assert same.json()["id"] != globex.user["id"]
    group = await scim.post("/Groups", {"schemas": [GROUP_URN], "displayName": "Globex Staff"})
    assert group.status_code == 201, group.text


def _member_ids(group: dict[str, Any]) -> set[str]:
    return {m["value"] for m in group.get("members", [])}


def _refused_or_not_linked(
    response: httpx.Response, foreign_id: str, scim_error: ScimError
) -> None:
    """Either 400 invalidValue, or success without the foreign member (RFC 7643 §4.2)."""
    if response.status_code == 400:
        scim_error(response, 400, "invalidValue")
        return
    assert response.status_code in (200, 201, 204), response.text
    if response.status_code != 204:
        assert foreign_id not in _member_ids(response.json())


async def test_members_never_cross_workspaces(
    scim: ScimClient, globex: Globex, scim_error: ScimError
) -> None:
    before = await globex.state()
    foreign = globex.user["id"]
    mine = await scim.post("/Users", {"schemas": [USER_URN], "userName": "local@example.com"})
    assert mine.status_code == 201, mine.text
    local = mine.json()["id"]

    created = await scim.post(
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Mixed", "members": [{"value": foreign}]},
    )
    _refused_or_not_linked(created, foreign, scim_error)

    group = await scim.post(
        "/Groups",
        {"schemas": [GROUP_URN], "displayName": "Acme Staff", "members": [{"value": local}]},
    )
    assert group.status_code == 201, group.text
    path = f"/Groups/{group.json()['id']}"
    patched = await scim.patch(
        path, patch_body({"op": "add", "path": "members", "value": [{"value": foreign}]})
    )
    _refused_or_not_linked(patched, foreign, scim_error)
    replaced = await scim.put(
        path,
        {
            "schemas": [GROUP_URN],
            "displayName": "Acme Staff",
            "members": [{"value": local}, {"value": foreign}],
        },
    )
    _refused_or_not_linked(replaced, foreign, scim_error)

    for response in [await scim.get(path), await scim.get("/Groups")]:
        documents = response.json().get("Resources", [response.json()])
        for document in documents:
            assert foreign not in _member_ids(document), document
    assert await globex.state() == before


# --------------------------------------------------------------------------- credentials


def scim_route_calls(app: Litestar) -> Iterator[tuple[str, str]]:
    """(method, concrete path) for every method of every route under /scim/v2."""
    for route in app.routes:
        if not route.path.startswith("/scim/v2"):
            continue
        methods = getattr(route, "methods", set()) - {"OPTIONS", "HEAD"}
        path = re.sub(r"\{[^}]*\}", str(uuid.uuid4()), route.path)
        for method in sorted(methods):
            yield method, path


EXPECTED_CALLS = {
    ("GET", "/scim/v2/Users"),
    ("POST", "/scim/v2/Users"),
    ("POST", "/scim/v2/Users/.search"),
    ("GET", "/scim/v2/Groups"),
    ("POST", "/scim/v2/Groups"),
    ("POST", "/scim/v2/Groups/.search"),
    ("GET", "/scim/v2/ServiceProviderConfig"),
    ("GET", "/scim/v2/ResourceTypes"),
    ("GET", "/scim/v2/Schemas"),
}


async def test_every_scim_route_needs_a_valid_token(
    app: Litestar, client: httpx.AsyncClient, scim: ScimClient, scim_error: ScimError
) -> None:
    calls = sorted(set(scim_route_calls(app)))
    assert set(calls) >= EXPECTED_CALLS, "the route walk lost sight of the SCIM routes"
    with_id = {(m, re.sub(r"/[0-9a-f-]{36}$", "/{id}", p)) for m, p in calls}
    for kind in ("Users", "Groups"):
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            assert (method, f"/scim/v2/{kind}/{{id}}") in with_id

    # Credentials are checked before the body is even read: a valid-looking body and a broken
    # one both get 401, so an unauthenticated caller learns nothing about the API.
    bodies = [json.dumps({"schemas": [USER_URN], "userName": "intruder@example.com"}), "{broken"]
    credentials = [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic x"}]
    failures = []
    for method, path in calls:
        with_body = method in ("POST", "PUT", "PATCH")
        for headers, body in itertools.product(credentials, bodies if with_body else [None]):
            response = await client.request(
                method,
                path,
                content=body,
                headers={
                    "Accept": "application/scim+json",
                    "Content-Type": "application/scim+json",
                    **headers,
                },
            )
            try:
                scim_error(response, 401)
                assert response.headers.get("www-authenticate", "").startswith("Bearer"), (
                    response.headers
                )
            except AssertionError as exc:
                failures.append(f"{method} {path} {headers} body={body!r}: {exc}")
    assert not failures, "\n".join(failures)
    # Nothing was created on the way.
    listing = await scim.get("/Users")
    assert listing.json()["totalResults"] == 0
