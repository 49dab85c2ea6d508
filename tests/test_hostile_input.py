"""Hostile input: hypothesis-generated PATCH bodies and filters against the real HTTP app.

Every request must end in a 2xx or a SCIM Error document with a 4xx status, never a 5xx; and a
4xx must leave the stored state byte for byte as it was (every column of users, groups,
memberships and what provisioning writes beside them: cards, card fields, activation links,
outbox). Runs on SQLite and PostgreSQL.

Sizes: `SCIM_HUB_TEST_FUZZ_EXAMPLES` examples per test (default 50; a soak run sets more).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from tests.conftest import (
    ERROR_URN,
    GROUP_URN,
    PATCH_URN,
    SCIM_JSON,
    SCIM_PREFIX,
    TEST_BASE_URL,
    USER_URN,
)
from tests.dbstate import scim_state

EXAMPLES = int(os.environ.get("SCIM_HUB_TEST_FUZZ_EXAMPLES", "50"))
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
FUZZ = fuzz_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("SCIM_HUB_TEST_FUZZ_RANDOM") is None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


# --------------------------------------------------------------------------- the app


class Http:
    """Synchronous SCIM calls through the real app (hypothesis drives synchronous tests)."""

    def __init__(self, client: TestClient[Any], token: str, db_url: str) -> None:
        self.client = client
        self.token = token
        self.db_url = db_url

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = {"Authorization": f"Bearer {self.token}", "Accept": SCIM_JSON}
        if content is not None:
            all_headers["Content-Type"] = SCIM_JSON
        all_headers.update(headers or {})
        return self.client.request(
            method, SCIM_PREFIX + path, content=content, params=params, headers=all_headers
        )

    def json(self, method: str, path: str, body: Any) -> httpx.Response:
        return self.request(method, path, content=json.dumps(body).encode())

    def state(self) -> dict[str, list[Any]]:
        """The stored state, once the outbox sender has nothing left to do.

        The sender updates outbox rows in the background after a write queued an email; waiting
        for it first keeps its work out of the comparison.
        """
        return scim_state(self.db_url)


@pytest.fixture
def settings(settings: Any, tmp_path: Path) -> Any:
    """The shared settings, with activation emails written under `tmp_path`."""
    return msgspec.structs.replace(settings, outbox_dir=str(tmp_path / "outbox"))


@pytest.fixture
def http(settings: Any, db_url: str, tenant: Any) -> Iterator[Http]:
    """The real app over `db_url`, with workspace "acme"'s token."""
    from hub.app import create_app

    with TestClient(app=create_app(settings), base_url=TEST_BASE_URL) as client:
        yield Http(client, tenant.token, db_url)


@pytest.fixture
def people(http: Http) -> list[str]:
    """Six users (ids) with a rich profile; the last one is deleted (its id answers 404)."""
    ids = []
    for n in range(6):
        body = {
            "schemas": [USER_URN, ENT],
            "userName": f"person{n}@example.com",
            "externalId": f"ext-{n}",
            "name": {"givenName": f"Given{n}", "familyName": "Family"},
            "displayName": f"Person {n}",
            "title": "Engineer",
            "emails": [
                {"value": f"person{n}@example.com", "type": "work", "primary": True},
                {"value": f"home{n}@example.org", "type": "home"},
            ],
            "phoneNumbers": [{"value": f"+1555000{n}", "type": "mobile"}],
            ENT: {"department": "R&D", "manager": {"value": "boss"}},
        }
        response = http.json("POST", "/Users", body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    assert http.request("DELETE", f"/Users/{ids[-1]}").status_code == 204
    return ids


@pytest.fixture
def team(http: Http, people: list[str]) -> str:
    """A group holding the first three people."""
    body = {
        "schemas": [GROUP_URN],
        "displayName": "Team",
        "externalId": "team-ext",
        "members": [{"value": uid} for uid in people[:3]],
    }
    response = http.json("POST", "/Groups", body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def check_outcome(
    response: httpx.Response,
    before: dict[str, list[Any]],
    http: Http,
    what: str,
    *,
    compare: bool = True,
) -> None:
    """No 5xx; a 4xx is a SCIM Error document and (`compare`) changed nothing that is stored."""
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.text[:2000]}"
    if response.status_code >= 400:
        body = response.json()
        assert body.get("schemas") == [ERROR_URN], body
        assert body.get("status") == str(response.status_code), body
        assert isinstance(body.get("detail"), str), body
        assert body["detail"].strip(), body
        if not compare:
            return
        after = http.state()
        for table, rows in before.items():
            assert after[table] == rows, f"{what} -> {response.status_code} changed {table}"


# --------------------------------------------------------------------------- strategies

KEYS = [
    "userName",
    "USERNAME",
    "displayName",
    "name",
    "givenName",
    "familyName",
    "title",
    "active",
    "emails",
    "value",
    "type",
    "primary",
    "display",
    "phoneNumbers",
    "externalId",
    "id",
    "meta",
    "schemas",
    "members",
    "groups",
    "password",
    "department",
    "manager",
    ENT,
    "$ref",
]
scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "work", "home", "true", "person1@example.com", "\x00", "é" * 3])
)
json_value = st.recursive(
    scalar,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)

FILTER_WORDS = string.ascii_letters + string.digits + ' "()[].:-_@\\'
USER_PATHS = [
    "userName",
    "displayName",
    "nickName",
    "title",
    "active",
    "externalId",
    "name",
    "name.givenName",
    "name.familyName",
    "NAME.GIVENNAME",
    "emails",
    "emails.value",
    "emails.primary",
    'emails[type eq "work"]',
    'emails[type eq "work"].value',
    'emails[value co "@"].primary',
    "emails[primary eq true].type",
    'phoneNumbers[type eq "mobile"].value',
    "phoneNumbers",
    "addresses",
    'addresses[type eq "work"].locality',
    "roles",
    "x509Certificates",
    "password",
    "id",
    "meta",
    "meta.version",
    "groups",
    "schemas",
    ENT,
    f"{ENT}:department",
    f"{ENT}:manager",
    f"{ENT}:manager.value",
    f"{ENT}:manager.displayName",
    "urn:example:unknown:1.0:User:thing",
    "emails[",
    "emails[type eq]",
    "name..givenName",
    "",
]
GROUP_PATHS = [
    "displayName",
    "externalId",
    "members",
    "members.value",
    "members.display",
    'members[value eq "nobody"]',
    'members[type eq "User"]',
    'members[value eq "x" or value eq "y"]',
    "id",
    "meta",
    "schemas",
    "unknown",
    "",
]
OPS = ["add", "remove", "replace", "Add", "REPLACE", "Remove", "move", "copy", "", "test"]


def _ops(paths: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    operation = st.fixed_dictionaries(
        {"op": st.sampled_from(OPS) | json_value},
        optional={
            "path": st.sampled_from(paths) | st.text(FILTER_WORDS, max_size=30) | json_value,
            "value": values,
        },
    )
    return st.lists(operation | json_value, min_size=0, max_size=4)


def _bodies(operations: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    proper = st.builds(lambda ops: {"schemas": [PATCH_URN], "Operations": ops}, operations)
    odd = st.fixed_dictionaries(
        {},
        optional={
            "schemas": st.just([PATCH_URN]) | json_value,
            "Operations": operations | json_value,
            "operations": operations,
        },
    )
    return proper | odd | json_value


def _member_values(ids: list[str]) -> st.SearchStrategy[Any]:
    member = st.fixed_dictionaries(
        {"value": st.sampled_from([*ids, "nobody", ""]) | json_value},
        optional={
            "display": json_value,
            "type": st.sampled_from(["User", "Group", "user"]) | json_value,
            "$ref": json_value,
        },
    )
    return st.lists(member, max_size=4) | member | json_value


def _encode(body: Any) -> bytes:
    # allow_nan: hostile clients send NaN and Infinity, which are not JSON.
    return json.dumps(body, allow_nan=True).encode()


raw_bodies = st.binary(max_size=40) | st.sampled_from(
    [b"", b"{", b"[]", b"null", b'{"schemas": [', b"\xff\xfe", b'{"a": 1e999999}']
)


# --------------------------------------------------------------------------- PATCH


def test_random_user_patches_never_fail_the_server_and_4xx_changes_nothing(
    http: Http, people: list[str]
) -> None:
    targets = st.sampled_from(people)  # includes the deleted user (404)

    @FUZZ
    @given(
        target=targets,
        body=_bodies(_ops(USER_PATHS, json_value)) | raw_bodies,
        if_match=st.none() | st.sampled_from(['W/"1"', "*", '"nope"', 'W/"999"']),
    )
    def run(target: str, body: Any, if_match: str | None) -> None:
        before = http.state()
        content = body if isinstance(body, bytes) else _encode(body)
        headers = {"If-Match": if_match} if if_match else {}
        response = http.request("PATCH", f"/Users/{target}", content=content, headers=headers)
        check_outcome(response, before, http, f"PATCH /Users {content[:500]!r}")
        if response.status_code == 200:
            resource = response.json()
            assert resource["id"] == target
            again = http.request("GET", f"/Users/{target}")
            assert again.status_code == 200, again.text
            stored = again.json()
            assert isinstance(stored["userName"], str), stored
            assert stored["userName"], stored
            assert stored["meta"]["version"] == resource["meta"]["version"]
            assert "password" not in stored

    run()


def test_random_group_patches_never_fail_the_server_and_4xx_changes_nothing(
    http: Http, people: list[str], team: str
) -> None:
    @FUZZ
    @given(
        body=_bodies(_ops(GROUP_PATHS, _member_values(people) | json_value)) | raw_bodies,
        with_members=st.booleans(),
    )
    def run(body: Any, with_members: bool) -> None:
        before = http.state()
        content = body if isinstance(body, bytes) else _encode(body)
        params = {} if with_members else {"excludedAttributes": "members"}
        response = http.request("PATCH", f"/Groups/{team}", content=content, params=params)
        check_outcome(response, before, http, f"PATCH /Groups {content[:500]!r}")
        if response.status_code == 200:
            again = http.request("GET", f"/Groups/{team}")
            assert again.status_code == 200, again.text
            stored = again.json()
            assert isinstance(stored["displayName"], str), stored
            member_ids = [m["value"] for m in stored.get("members", [])]
            # Only live users of the workspace are ever members, each once.
            assert len(member_ids) == len(set(member_ids)), stored
            assert set(member_ids) <= set(people[:-1]), stored

    run()


# --------------------------------------------------------------------------- filters

FILTER_PATHS = [
    *USER_PATHS[:20],
    "meta.created",
    "meta.lastModified",
    "meta.resourceType",
    "members.value",
    "members",
    "groups.value",
    "unknownAttr",
    "emails.nothing",
]
COMPARE = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "xx", ""]
filter_values = st.one_of(
    st.text(max_size=8).map(json.dumps),
    st.sampled_from(["true", "false", "null", "1", "-1.5e3", "2011-05-13T04:42:34Z", '"\\u0000"']),
    st.integers(-(2**70), 2**70).map(str),
    st.text(FILTER_WORDS, max_size=6),
)
leaf = st.builds(
    lambda path, op, value: f"{path} {op} {value}".strip(),
    st.sampled_from(FILTER_PATHS) | st.text(FILTER_WORDS, max_size=10),
    st.sampled_from(COMPARE),
    filter_values | st.just(""),
)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return (
        st.tuples(children, st.sampled_from(["and", "or", "AND", "nand", ""]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        )
        | children.map(lambda c: f"not ({c})")
        | children.map(lambda c: f"not {c}")
        | st.builds(
            lambda p, c: f"{p}[{c}]", st.sampled_from(["emails", "members", "name"]), children
        )
    )


filters = (
    st.recursive(leaf, _combine, max_leaves=8)
    | st.text(FILTER_WORDS, max_size=60)
    | st.text(max_size=30)
    | st.integers(1, 40).map(lambda n: "(" * n + 'userName eq "x"' + ")" * n)
    | st.integers(1, 40).map(lambda n: "not (" * n + "active eq true" + ")" * n)
)
list_params = st.fixed_dictionaries(
    {"filter": filters},
    optional={
        "count": st.integers(-5, 10**6).map(str) | st.text(max_size=4) | st.just("1" * 30),
        "startIndex": st.integers(-5, 10**6).map(str) | st.text(max_size=4) | st.just("9" * 30),
        "sortBy": st.sampled_from(FILTER_PATHS) | st.text(FILTER_WORDS, max_size=10),
        "sortOrder": st.sampled_from(["ascending", "descending", "sideways"]),
        "attributes": st.sampled_from(["userName", "members", "emails.value", "x,,y"]),
    },
)


def _check_list(response: httpx.Response, params: Any, max_results: int) -> None:
    if response.status_code == 200:
        body = response.json()
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], body
        assert len(body["Resources"]) == body["itemsPerPage"] <= max_results, params
        assert body["totalResults"] >= 0


def test_random_filters_and_list_parameters_never_fail_the_server(
    http: Http, people: list[str], team: str, settings: Any
) -> None:
    @FUZZ
    @given(endpoint=st.sampled_from(["/Users", "/Groups"]), params=list_params)
    def run(endpoint: str, params: dict[str, str]) -> None:
        response = http.request("GET", endpoint, params=params)
        check_outcome(response, before, http, f"GET {endpoint} {params!r}", compare=False)
        _check_list(response, params, settings.max_results)

    before = http.state()
    run()
    assert http.state() == before  # reads never write, whatever they are sent


def test_random_search_requests_never_fail_the_server(
    http: Http, people: list[str], team: str, settings: Any
) -> None:
    body = st.fixed_dictionaries(
        {"schemas": st.just(["urn:ietf:params:scim:api:messages:2.0:SearchRequest"])},
        optional={
            "filter": filters | json_value,
            "count": st.integers(-5, 10**6) | json_value,
            "startIndex": st.integers(-5, 10**6) | json_value,
            "sortBy": st.sampled_from(FILTER_PATHS) | json_value,
            "attributes": st.lists(st.sampled_from(FILTER_PATHS), max_size=3) | json_value,
            "excludedAttributes": json_value,
        },
    )

    @FUZZ
    @given(endpoint=st.sampled_from(["/Users/.search", "/Groups/.search", "/.search"]), doc=body)
    def run(endpoint: str, doc: dict[str, Any]) -> None:
        response = http.request("POST", endpoint, content=_encode(doc))
        check_outcome(response, before, http, f"POST {endpoint} {doc!r}", compare=False)
        _check_list(response, doc, settings.max_results)

    before = http.state()
    run()
    assert http.state() == before  # searches never write
