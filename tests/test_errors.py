"""SCIM error responses (RFC 7644 §3.12) and HTTP preconditions, on SQLite and PostgreSQL.

Every failing request answers a SCIM Error document — `schemas` the Error URN, `status` the HTTP
status as a JSON string, the right `scimType`, a `detail` saying what to fix — and changes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import patch_op as patch_body

if TYPE_CHECKING:
    from tests.conftest import ScimClient

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
MAX_BODY_BYTES = 64 * 1024
ScimError = Callable[..., dict[str, Any]]


@pytest.fixture
def settings(settings: Any) -> Any:
    """The shared settings with a small body limit, so the 413 test sends little."""
    import msgspec

    return msgspec.structs.replace(settings, max_body_bytes=MAX_BODY_BYTES)


async def snapshot(scim: ScimClient) -> tuple[Any, Any]:
    """Every user and group of the workspace, as the list endpoints show them."""
    users = await scim.get("/Users", params={"count": "1000"})
    groups = await scim.get("/Groups", params={"count": "1000"})
    assert users.status_code == 200, users.text
    assert groups.status_code == 200, groups.text
    return users.json(), groups.json()


@pytest.fixture
async def alice(scim: ScimClient) -> httpx.Response:
    """A user of workspace "acme"; the response carries the body and the ETag."""
    response = await scim.post(
        "/Users",
        {
            "schemas": [USER_URN],
            "userName": "Alice@Example.com",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "displayName": "Alice Liddell",
            "emails": [{"value": "alice@example.com", "type": "work", "primary": True}],
        },
    )
    assert response.status_code == 201, response.text
    return response


async def current(scim: ScimClient, resource: httpx.Response) -> httpx.Response:
    """GET the resource again."""
    response = await scim.get(f"/Users/{resource.json()['id']}")
    assert response.status_code == 200, response.text
    return response


# --------------------------------------------------------------------------- request bodies


BAD_BODIES = [
    pytest.param("/Users", b'{"schemas": [', "invalidSyntax", id="malformed-json"),
    pytest.param("/Users", b"[]", "invalidSyntax", id="json-array-not-object"),
    pytest.param(
        "/Users",
        b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "b\xe9b"}',
        "invalidSyntax",
        id="not-utf-8",  # RFC 8259 §8.1: JSON is UTF-8; a Latin-1 body is not JSON
    ),
    pytest.param("/Groups", b'{"displayName\xff": 1}', "invalidSyntax", id="not-utf-8-key"),
    pytest.param(
        "/Users",
        json.dumps({"schemas": USER_URN, "userName": "bob"}),
        "invalidSyntax",
        id="schemas-not-a-list",
    ),
    pytest.param(
        "/Users",
        json.dumps({"schemas": [USER_URN], "displayName": "No Username"}),
        "invalidValue",
        id="missing-userName",
    ),
    pytest.param(
        "/Users",
        json.dumps({"schemas": [USER_URN], "userName": 42}),
        "invalidValue",
        id="userName-wrong-type",
    ),
    pytest.param(
        "/Users",
        json.dumps({"schemas": [USER_URN], "userName": "bob", "active": "yes"}),
        "invalidValue",
        id="active-wrong-type",
    ),
    pytest.param(
        "/Groups",
        json.dumps({"schemas": [GROUP_URN]}),
        "invalidValue",
        id="group-missing-displayName",
    ),
]


@pytest.mark.parametrize(("path", "content", "scim_type"), BAD_BODIES)
async def test_bad_create_bodies(
    scim: ScimClient,
    alice: httpx.Response,
    path: str,
    content: bytes | str,
    scim_type: str,
    scim_error: ScimError,
) -> None:
    before = await snapshot(scim)
    response = await scim.post(path, content=content)
    scim_error(response, 400, scim_type)
    assert await snapshot(scim) == before


BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8


async def test_a_json_body_after_a_utf8_bom_is_read(
    scim: ScimClient, alice: httpx.Response, scim_error: ScimError
) -> None:
    """RFC 8259 §8.1: a parser MAY ignore a byte-order mark, and Windows PowerShell 5.1 sends
    files with one; every SCIM route taking a body answered it 400 invalidSyntax."""

    async def sent(method: str, path: str, body: Any) -> httpx.Response:
        response = await scim.request(method, path, content=BOM + json.dumps(body).encode())
        assert response.status_code in (200, 201), (method, path, response.text)
        return response

    user = (await sent("POST", "/Users", {"schemas": [USER_URN], "userName": "bom@x.org"})).json()
    put = {"schemas": [USER_URN], "userName": "bom@x.org", "title": "PUT"}
    assert (await sent("PUT", f"/Users/{user['id']}", put)).json()["title"] == "PUT"
    replace = patch_body({"op": "replace", "path": "title", "value": "PATCH"})
    assert (await sent("PATCH", f"/Users/{user['id']}", replace)).json()["title"] == "PATCH"
    group = (await sent("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "G"})).json()
    renamed = {"schemas": [GROUP_URN], "displayName": "H"}
    assert (await sent("PUT", f"/Groups/{group['id']}", renamed)).json()["displayName"] == "H"
    rename = patch_body({"op": "replace", "path": "displayName", "value": "I"})
    assert (await sent("PATCH", f"/Groups/{group['id']}", rename)).json()["displayName"] == "I"
    search = {"schemas": [SEARCH_URN], "filter": 'userName eq "bom@x.org"'}
    for path in ("/.search", "/Users/.search"):
        found = (await sent("POST", path, search)).json()
        assert [r["id"] for r in found["Resources"]] == [user["id"]], path
    search = {"schemas": [SEARCH_URN], "filter": 'displayName eq "I"'}
    found = (await sent("POST", "/Groups/.search", search)).json()
    assert [r["id"] for r in found["Resources"]] == [group["id"]]
    # Only the mark is ignored: what follows must still be JSON, and there must be some.
    before = await snapshot(scim)
    for content in (
        BOM,
        BOM + b"  ",
        BOM + BOM + b"{}",
        BOM + b'{"schemas": [',
        b" " + BOM + b"{}",
    ):
        refused = scim_error(await scim.post("/Users", content=content), 400, "invalidSyntax")
        assert "empty" in refused["detail"] or "JSON" in refused["detail"], refused
    assert await snapshot(scim) == before


@pytest.mark.parametrize(("path", "content", "scim_type"), BAD_BODIES[:3])
async def test_bad_replace_bodies(
    scim: ScimClient,
    alice: httpx.Response,
    path: str,
    content: bytes | str,
    scim_type: str,
    scim_error: ScimError,
) -> None:
    before = await current(scim, alice)
    response = await scim.put(f"/Users/{alice.json()['id']}", content=content)
    scim_error(response, 400, scim_type)
    assert (await current(scim, alice)).json() == before.json()


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "bad_filter",
    [
        pytest.param('userName eq "unterminated', id="unterminated-string"),
        pytest.param("userName eq", id="missing-value"),
        pytest.param('userName zz "x"', id="unknown-operator"),
        pytest.param('(userName eq "x"', id="unbalanced-parenthesis"),
        pytest.param('noSuchAttribute eq "x"', id="unknown-attribute"),
    ],
)
async def test_invalid_filters(
    scim: ScimClient, alice: httpx.Response, bad_filter: str, scim_error: ScimError
) -> None:
    response = await scim.get("/Users", params={"filter": bad_filter})
    scim_error(response, 400, "invalidFilter")
    search = await scim.post(
        "/Users/.search",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": bad_filter},
    )
    scim_error(search, 400, "invalidFilter")


async def test_an_unknown_sort_by_names_sort_by(scim: ScimClient, scim_error: ScimError) -> None:
    response = await scim.get("/Users", params={"sortBy": "noSuchAttribute"})
    scim_error(response, 400, "invalidFilter")
    assert "'noSuchAttribute' in sortBy" in response.json()["detail"]


_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.mark.parametrize(
    ("target", "expression"),
    [
        pytest.param("/Users", f'{_ENTERPRISE}.department eq "D"', id="dot-for-colon"),
        pytest.param("/Users", f"{_ENTERPRISE} pr", id="extension-urn"),
        pytest.param("/Users", f"{USER_URN} pr", id="core-urn"),
        pytest.param("", f"{_ENTERPRISE.upper()} pr", id="root-search"),
    ],
)
async def test_a_filter_naming_a_schema_as_an_attribute_is_refused(
    scim: ScimClient, scim_error: ScimError, target: str, expression: str
) -> None:
    """A hub schema's URN in a filter is no attribute: 400 `invalidFilter`, not an empty page.

    `urn:…:enterprise:2.0:User.department` parses as sub-attribute `department` of attribute
    `User` of a custom extension `urn:…:enterprise:2.0`, which every resource lacks: it answered
    200 with no resources for a user whose department is "D".
    """
    user = {"schemas": [USER_URN, _ENTERPRISE], "userName": "dept@example.com"}
    created = await scim.post("/Users", {**user, _ENTERPRISE: {"department": "D"}})
    assert created.status_code == 201, created.text
    response = await scim.get(target, params={"filter": expression})
    detail = scim_error(response, 400, "invalidFilter")["detail"]
    assert "names the schema" in detail


# --------------------------------------------------------------------------- PATCH


@pytest.mark.parametrize(
    ("operation", "scim_type"),
    [
        pytest.param(
            {"op": "replace", "path": "name..givenName", "value": "x"},
            "invalidPath",
            id="invalidPath-double-dot",
        ),
        pytest.param(
            {"op": "replace", "path": 'emails[type eq "work"', "value": "x"},
            None,  # unterminated value filter: invalidPath or invalidFilter, see the test
            id="invalidPath-unterminated-filter",
        ),
        pytest.param({"op": "remove"}, "noTarget", id="noTarget-remove-without-path"),
        pytest.param(
            {"op": "replace", "path": "id", "value": str(uuid.uuid4())},
            "mutability",
            id="mutability-id",
        ),
        pytest.param(
            {"op": "replace", "path": "meta", "value": {"resourceType": "Group"}},
            "mutability",
            id="mutability-meta",
        ),
        pytest.param(
            {"op": "replace", "path": "meta.created", "value": "2001-01-01T00:00:00Z"},
            "mutability",
            id="mutability-meta-created",
        ),
    ],
)
async def test_bad_patch_operations(
    scim: ScimClient,
    alice: httpx.Response,
    operation: dict[str, Any],
    scim_type: str | None,
    scim_error: ScimError,
) -> None:
    before = await current(scim, alice)
    # A valid operation first: the request is one unit, so it must not be applied either.
    body = patch_body({"op": "replace", "path": "displayName", "value": "Changed"}, operation)
    response = await scim.patch(f"/Users/{alice.json()['id']}", body)
    if scim_type is None:
        assert response.json().get("scimType") in ("invalidPath", "invalidFilter"), response.text
        scim_error(response, 400, response.json()["scimType"])
    else:
        scim_error(response, 400, scim_type)
    after = await current(scim, alice)
    assert after.json() == before.json()
    assert after.headers.get("etag") == before.headers.get("etag")


# --------------------------------------------------------------------------- uniqueness


@pytest.mark.parametrize(
    "user_name", ["Alice@Example.com", "alice@example.com", "ALICE@EXAMPLE.COM"]
)
async def test_user_name_is_unique_case_insensitively(
    scim: ScimClient, alice: httpx.Response, user_name: str, scim_error: ScimError
) -> None:
    before = await snapshot(scim)
    response = await scim.post("/Users", {"schemas": [USER_URN], "userName": user_name})
    scim_error(response, 409, "uniqueness")
    assert await snapshot(scim) == before


async def test_renaming_onto_a_taken_user_name_is_a_conflict(
    scim: ScimClient, alice: httpx.Response, scim_error: ScimError
) -> None:
    bob = await scim.post("/Users", {"schemas": [USER_URN], "userName": "bob@example.com"})
    assert bob.status_code == 201, bob.text
    before = await snapshot(scim)
    path = f"/Users/{bob.json()['id']}"
    put = await scim.put(path, {"schemas": [USER_URN], "userName": "ALICE@example.com"})
    scim_error(put, 409, "uniqueness")
    patch = await scim.patch(
        path, patch_body({"op": "replace", "path": "userName", "value": "alice@EXAMPLE.com"})
    )
    scim_error(patch, 409, "uniqueness")
    assert await snapshot(scim) == before


# --------------------------------------------------------------------------- 401 / 404 / 405


async def test_missing_or_wrong_credentials(
    scim: ScimClient, alice: httpx.Response, scim_error: ScimError
) -> None:
    for who in (scim.with_token(None), scim.with_token("not-a-token"), scim.with_token("")):
        response = await who.get("/Users")
        scim_error(response, 401)
        assert response.headers.get("www-authenticate", "").startswith("Bearer"), response.headers
        created = await who.post("/Users", {"schemas": [USER_URN], "userName": "mallory"})
        scim_error(created, 401)
    basic = await scim.get("/Users", headers={"Authorization": f"Basic {scim.token}"})
    scim_error(basic, 401)
    listing = (await snapshot(scim))[0]
    assert [u["userName"] for u in listing["Resources"]] == ["Alice@Example.com"]


@pytest.mark.parametrize(
    "path",
    [
        # Fixed ids: parallel test workers must collect the same test names.
        "/Users/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "/Groups/7a8b9c0d-1e2f-4a3b-9c5d-6e7f8a9b0c1d",
        "/Users/not-even-a-uuid",
        "/NoSuchResource",
        "/NoSuchResource/0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
        "/Users/x/y",
    ],
)
async def test_not_found(scim: ScimClient, path: str, scim_error: ScimError) -> None:
    scim_error(await scim.get(path), 404)


@pytest.mark.parametrize(
    "path", ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes", "/ResourceTypes/User"]
)
async def test_a_filter_on_a_discovery_endpoint_is_403(
    scim: ScimClient, path: str, scim_error: ScimError
) -> None:
    """RFC 7644 §4: the discovery endpoints do not filter, and say so rather than ignore it."""
    error = scim_error(await scim.get(path, params={"filter": 'id eq "User"'}), 403)
    assert "filter" in error["detail"]
    assert (await scim.get(path)).status_code == 200


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_not_found_on_writes(scim: ScimClient, method: str, scim_error: ScimError) -> None:
    before = await snapshot(scim)
    body = (
        patch_body({"op": "replace", "path": "displayName", "value": "x"})
        if method == "PATCH"
        else {"schemas": [USER_URN], "userName": "ghost"}
    )
    response = await scim.request(
        method, f"/Users/{uuid.uuid4()}", None if method == "DELETE" else body
    )
    scim_error(response, 404)
    assert await snapshot(scim) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/Users"),
        ("PUT", "/Users"),
        ("PATCH", "/Groups"),
        ("POST", "/ServiceProviderConfig"),
        ("DELETE", "/Schemas"),
        ("PUT", "/ResourceTypes"),
    ],
)
async def test_method_not_allowed(
    scim: ScimClient, method: str, path: str, scim_error: ScimError
) -> None:
    before = await snapshot(scim)
    response = await scim.request(method, path, {"schemas": [USER_URN], "userName": "x"})
    scim_error(response, 405)
    # RFC 9110 §15.5.6: a 405 response MUST carry Allow.
    assert response.headers.get("allow"), response.headers
    assert method not in response.headers["allow"]
    assert await snapshot(scim) == before


# --------------------------------------------------------------------------- ETags


#: A write of Alice (`alice`) by each method, for the precondition tests.
WRITES: dict[str, Any] = {
    "PUT": {"schemas": [USER_URN], "userName": "Alice@Example.com", "displayName": "New"},
    "PATCH": patch_body({"op": "replace", "path": "displayName", "value": "New"}),
    "DELETE": None,
}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_if_match_mismatch_is_412(
    scim: ScimClient, alice: httpx.Response, method: str, scim_error: ScimError
) -> None:
    etag = alice.headers.get("etag")
    assert etag, "a created resource carries an ETag (RFC 7644 §3.14)"
    assert alice.json()["meta"]["version"] == etag
    path = f"/Users/{alice.json()['id']}"
    body = WRITES[method]
    stale = 'W/"not-the-current-version"'
    response = await scim.request(method, path, body, headers={"If-Match": stale})
    scim_error(response, 412)
    after = await current(scim, alice)
    assert after.json() == alice.json()

    # The same request with the current ETag succeeds.
    response = await scim.request(method, path, body, headers={"If-Match": etag})
    assert response.status_code in (200, 204), response.text


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_a_write_whose_if_none_match_matches_is_412(
    scim: ScimClient, alice: httpx.Response, method: str, scim_error: ScimError
) -> None:
    """RFC 9110 §13.1.2: a write whose If-None-Match is `*` or the current version is not
    performed (412); one naming another version goes through."""
    etag = alice.headers["etag"]
    path = f"/Users/{alice.json()['id']}"
    body = WRITES[method]
    for condition in ({"If-None-Match": "*"}, {"If-None-Match": f'W/"0", {etag}'}):
        scim_error(await scim.request(method, path, body, headers=condition), 412)
        assert (await current(scim, alice)).json() == alice.json()
    # If-Match is evaluated first (RFC 9110 §13.2.2).
    both = {"If-Match": 'W/"0"', "If-None-Match": 'W/"0"'}
    scim_error(await scim.request(method, path, body, headers=both), 412)
    passes = await scim.request(method, path, body, headers={"If-None-Match": 'W/"0"'})
    assert passes.status_code in (200, 204), passes.text


async def test_if_none_match_current_etag_is_304(scim: ScimClient, alice: httpx.Response) -> None:
    path = f"/Users/{alice.json()['id']}"
    etag = alice.headers["etag"]
    not_modified = await scim.get(path, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304, not_modified.text
    assert not_modified.content == b""
    assert not_modified.headers.get("etag") == etag
    changed = await scim.get(path, headers={"If-None-Match": 'W/"something-else"'})
    assert changed.status_code == 200
    assert changed.json() == alice.json()


@pytest.mark.parametrize("resource", ["Users", "Groups"])
async def test_a_get_whose_if_match_fails_is_412(
    scim: ScimClient, alice: httpx.Response, scim_error: ScimError, resource: str
) -> None:
    """RFC 9110 §13.1.1: If-Match holds for every method; it is evaluated before If-None-Match."""
    if resource == "Users":
        created = alice
    else:
        created = await scim.post("/Groups", {"schemas": [GROUP_URN], "displayName": "Ops"})
    path, etag = f"/{resource}/{created.json()['id']}", created.headers["etag"]
    stale = 'W/"not-the-current-version"'
    scim_error(await scim.get(path, headers={"If-Match": stale}), 412)
    scim_error(await scim.get(path, headers={"If-Match": stale, "If-None-Match": etag}), 412)
    for matching in (etag, "*", f"{stale}, {etag}"):
        response = await scim.get(path, headers={"If-Match": matching})
        assert response.status_code == 200, response.text
        assert response.json() == created.json()
    both = await scim.get(path, headers={"If-Match": etag, "If-None-Match": etag})
    assert both.status_code == 304


# --------------------------------------------------------------------------- wire level


async def test_body_over_the_limit_is_413(
    scim: ScimClient, alice: httpx.Response, scim_error: ScimError
) -> None:
    before = await snapshot(scim)
    body = {
        "schemas": [USER_URN],
        "userName": "big@example.com",
        "displayName": "x" * (MAX_BODY_BYTES + 1),
    }
    response = await scim.post("/Users", body)
    scim_error(response, 413)
    assert await snapshot(scim) == before
    # Just under the limit is fine: the limit is the advertised one, not something smaller.
    body["displayName"] = "x" * (MAX_BODY_BYTES // 2)
    assert (await scim.post("/Users", body)).status_code == 201


async def test_unsupported_content_type_is_415(scim: ScimClient, scim_error: ScimError) -> None:
    before = await snapshot(scim)
    body = json.dumps({"schemas": [USER_URN], "userName": "carol@example.com"})
    response = await scim.post("/Users", content=body, headers={"Content-Type": "text/plain"})
    scim_error(response, 415)
    assert await snapshot(scim) == before
    # application/json is accepted as well as application/scim+json (RFC 7644 §3.1).
    plain_json = await scim.post(
        "/Users", content=body, headers={"Content-Type": "application/json"}
    )
    assert plain_json.status_code == 201, plain_json.text


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unacceptable_accept_is_406(
    scim: ScimClient, method: str, scim_error: ScimError
) -> None:
    before = await snapshot(scim)
    body = {"schemas": [USER_URN], "userName": "dave@example.com"} if method == "POST" else None
    response = await scim.request(method, "/Users", body, headers={"Accept": "application/xml"})
    scim_error(response, 406)
    assert await snapshot(scim) == before


async def test_nul_characters_are_refused_the_same_on_every_database(
    scim: ScimClient,
    client: httpx.AsyncClient,
    db_url: str,
    tenant: Any,
    scim_error: ScimError,
) -> None:
    # Found by schemathesis on PostgreSQL: a "\u0000" in a string or a key of a SCIM body
    # reached text / jsonb columns, which cannot hold NUL, and the driver's error answered 500
    # (SQLite stored it). Every database now refuses it as an invalid value, before any write.
    from tests.test_cards import make_admin_key

    created = await scim.post("/Users", {"schemas": [USER_URN], "userName": "nul@example.com"})
    assert created.status_code == 201, created.text
    path = f"/Users/{created.json()['id']}"
    bodies = [
        ("POST", "/Users", {"schemas": [USER_URN], "userName": "a\u0000b"}),
        ("POST", "/Users", {"schemas": [USER_URN], "userName": "x@example.com", "k\u0000": 1}),
        ("PUT", path, {"schemas": [USER_URN], "userName": "nul@example.com", "title": "\u0000"}),
        ("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "G", "externalId": "\u0000"}),
        (
            "PATCH",
            path,
            {
                "schemas": [PATCH_URN],
                "Operations": [{"op": "add", "path": "title", "value": "\u0000"}],
            },
        ),
        ("POST", "/Users/.search", {"filter": 'userName eq "\u0000"'}),
    ]
    for method, target, body in bodies:
        scim_error(await scim.request(method, target, body), 400, "invalidValue")
    # An escaped backslash followed by "u0000" is ordinary text.
    fine = await scim.put(
        path, {"schemas": [USER_URN], "userName": "nul@example.com", "title": "\\u0000"}
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["title"] == "\\u0000"
    listed = await scim.get("/Users")
    assert listed.json()["totalResults"] == 1
    for expression in ('userName eq "\u0000"', 'userName sw "a\u0000"'):
        for_list = await scim.get("/Users", params={"filter": expression})
        scim_error(for_list, 400, "invalidFilter")

    key = await make_admin_key(db_url, tenant)
    admin = {"Authorization": f"Bearer {key}"}
    base = f"/api/v1/workspaces/{tenant.workspace}"
    for method, target, body in [
        ("POST", "/templates", {"name": "T\u0000", "rule": None, "fields": {}}),
        ("PATCH", f"/cards/{created.json()['id']}/fields/job_title", {"value": "\u0000"}),
        ("POST", "/connectors", {"name": "c\u0000", "idp": "generic_scim"}),
    ]:
        response = await client.request(
            method, base + target, content=json.dumps(body), headers=admin
        )
        scim_error(response, 400, "invalidValue")


async def test_a_filter_string_escaping_nul_or_a_lone_surrogate_is_refused(
    scim: ScimClient, scim_error: ScimError
) -> None:
    # A filter's string may spell U+0000 or half a surrogate pair as an escape (the raw forms
    # are refused with the body or the query). Compared with a column, the value answered 500
    # (PostgreSQL text holds no NUL; UTF-8 cannot encode a lone surrogate); as a PATCH path's
    # value filter matching nothing, it made an element holding it: SQLite stored the NUL.
    user = await scim.post("/Users", {"schemas": [USER_URN], "userName": "esc@example.com"})
    group = await scim.post("/Groups", {"schemas": [GROUP_URN], "displayName": "Esc"})
    assert user.status_code == group.status_code == 201, (user.text, group.text)
    user_path, group_path = f"/Users/{user.json()['id']}", f"/Groups/{group.json()['id']}"
    before = (await scim.get(user_path)).json()
    for escape in ("\\u0000", "\\ud800", "\\udc00x"):
        expression = f'userName eq "a{escape}"'
        scim_error(await scim.get("/Users", params={"filter": expression}), 400, "invalidFilter")
        searched = await scim.post("/.search", {"filter": f'emails.value co "{escape}"'})
        scim_error(searched, 400, "invalidFilter")
        add = {"op": "add", "path": f'emails[value eq "{escape}"].type', "value": "work"}
        patched = await scim.patch(user_path, {"schemas": [PATCH_URN], "Operations": [add]})
        scim_error(patched, 400, "invalidPath")
        remove = {"op": "remove", "path": f'members[value eq "{escape}"]'}
        patched = await scim.patch(group_path, {"schemas": [PATCH_URN], "Operations": [remove]})
        scim_error(patched, 400, "invalidPath")
    assert (await scim.get(user_path)).json() == before
    # A whole surrogate pair is a character like any other.
    found = await scim.get("/Users", params={"filter": 'userName eq "\\ud83d\\ude00"'})
    assert found.status_code == 200, found.text
    assert found.json()["totalResults"] == 0


@pytest.mark.parametrize("resource", ["Users", "Groups"])
async def test_a_nul_in_a_resource_id_is_not_found_after_authentication(
    scim: ScimClient, client: httpx.AsyncClient, resource: str
) -> None:
    """U+0000 in a path id: 401 without credentials, 404 with them — never a database error."""
    path = f"/{resource}/ab%00cd"
    assert (await client.get(f"/scim/v2{path}")).status_code == 401
    body = {"schemas": [PATCH_URN], "Operations": [{"op": "add", "path": "title", "value": "x"}]}
    for response in (
        await scim.get(path),
        await scim.delete(path),
        await scim.patch(path, body),
        await scim.put(path, {"schemas": [], "userName": "x", "displayName": "x"}),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["status"] == "404"


async def test_a_body_nested_too_deep_is_400_after_authentication(
    scim: ScimClient, alice: httpx.Response, scim_error: ScimError
) -> None:
    """JSON nested past the decoder's recursion (~1,000 levels) answered 500, before even
    checking credentials; a custom extension ~490 levels deep overflowed the hub's own walk."""
    alice_id = alice.json()["id"]
    before = await snapshot(scim)
    deep_array = "[" * 2000 + "]" * 2000
    ext = "urn:example:deep:2.0:User"
    nested: Any = 1
    for _ in range(100):
        nested = {"a": nested}
    deep_user = json.dumps(
        {"schemas": [USER_URN, ext], "userName": "deep@example.com", ext: {"v": nested}}
    )
    add = {"op": "add", "path": f"{ext}:v", "value": nested}
    deep_patch = json.dumps({"schemas": [PATCH_URN], "Operations": [add]})
    for method, path, content in (
        ("POST", "/Users", deep_array),
        ("POST", "/Users", deep_user),
        ("PUT", f"/Users/{alice_id}", deep_user),
        ("PATCH", f"/Users/{alice_id}", deep_patch),
        ("POST", "/Groups", deep_array),
        ("POST", "/.search", deep_array),
    ):
        refused = await scim.request(method, path, content=content)
        body = scim_error(refused, 400, "invalidSyntax")
        assert "nest" in body["detail"] or "JSON" in body["detail"], body
        scim_error(await scim.with_token(None).request(method, path, content=content), 401)
    assert await snapshot(scim) == before


async def test_list_integers_are_ascii_digits(scim: ScimClient, scim_error: ScimError) -> None:
    """`count`/`startIndex` are integers (RFC 7644 §3.4.2.4): not Python's "1_0" or other
    scripts' digits, which int() reads."""
    for params in ({"count": "1_0"}, {"startIndex": "٢"}, {"count": "1" * 5000}):
        scim_error(await scim.get("/Users", params=params), 400, "invalidValue")
    assert (
        await scim.get("/Users", params={"count": " 10 ", "startIndex": "+1"})
    ).status_code == 200
