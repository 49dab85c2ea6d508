"""Custom extensions are described in discovery from what the workspace's resources hold.

Entra ID and Okta send custom attributes under extension URNs the hub has no schema for; the hub
stores and returns them. A strict client refuses a resource naming a schema that `/ResourceTypes`
and `/Schemas` do not show, so once a resource holds such an attribute both describe it, on
SQLite and PostgreSQL, per workspace, and only for writes that were committed.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
from alembic import command
from litestar import Litestar
from scim2_models import ListResponse, SearchRequest, User
from sqlalchemy import Connection, insert, update

from hub.core import extensions
from hub.core import schema as schema_definitions
from hub.core.database import open_database
from hub.core.models import extension_attributes, groups, users
from hub.core.tenants import InitResult, require_workspace
from hub.migrate import alembic_config, upgrade
from tests.conftest import (
    ScimClient,
    assert_scim_error,
    create_workspace,
    group_body,
    patch_op,
    serving,
    user_body,
)
from tests.dbstate import dump, scim_state
from tests.test_conformance import HttpxSCIMClient

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
CUSTOM = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
SHARED = "urn:example:params:scim:schemas:extension:acme:2.0:Common"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def holding(urn: str, user_name: str | None = None, **attributes: Any) -> dict[str, Any]:
    """A user listing `urn` in `schemas` and holding `attributes` under it."""
    return user_body(user_name, schemas=[USER, urn], **{urn: attributes})


async def described(scim: ScimClient, rt: str = "User") -> dict[str, Any]:
    """The custom schemas the caller is shown, by id, after checking both documents agree."""
    resource_type = (await scim.get(f"/ResourceTypes/{rt}")).json()
    listed = (await scim.get("/Schemas")).json()["Resources"]
    ids = [e["schema"] for e in resource_type["schemaExtensions"]]
    found = {doc["id"]: doc for doc in listed if doc["id"] in ids and "enterprise" not in doc["id"]}
    for urn, doc in found.items():
        for asked in (urn, urn.upper()):
            one = await scim.get(f"/Schemas/{asked}")
            assert one.status_code == 200, one.text
            assert one.json() == doc
    return found


def attribute(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    found: Any = {"subAttributes": schema["attributes"]}
    for name in path:
        found = next(a for a in found["subAttributes"] if a["name"] == name)
    assert isinstance(found, dict)
    return found


async def test_a_custom_extension_is_described_once_a_user_holds_it(scim: ScimClient) -> None:
    assert await described(scim) == {}
    assert (await scim.get(f"/Schemas/{CUSTOM}")).status_code == 404
    body = holding(
        CUSTOM,
        costCode="CC-1",
        level=3,
        contractor=True,
        rate=1.5,
        tags=["a", "b"],
        badge={"number": "B-7", "issued": 2024, "rooms": ["1", "2"], "ignored": None},
        phones=[{"value": "+1", "primary": True}, {"value": "+2", "kind": "desk"}],
        empty=[],
        nothing=None,
    )
    created = await scim.post("/Users", body)
    assert created.status_code == 201, created.text

    schemas = await described(scim)
    assert list(schemas) == [CUSTOM]
    schema = schemas[CUSTOM]
    assert schema["name"] == "CustomExtensionName"
    kinds = {a["name"]: (a["type"], a["multiValued"]) for a in schema["attributes"]}
    assert kinds == {
        "badge": ("complex", False),
        "contractor": ("boolean", False),
        "costCode": ("string", False),
        "level": ("integer", False),
        "phones": ("complex", True),
        "rate": ("decimal", False),
        "tags": ("string", True),
    }
    badge = {
        s["name"]: (s["type"], s["multiValued"])
        for s in attribute(schema, "badge")["subAttributes"]
    }
    assert badge == {
        "issued": ("integer", False),
        "number": ("string", False),
        "rooms": (
            "string",
            True,
        ),
    }
    phones = [s["name"] for s in attribute(schema, "phones")["subAttributes"]]
    assert sorted(phones) == ["kind", "primary", "value"]
    assert attribute(schema, "costCode")["mutability"] == "readWrite"
    # The Group resource type is not extended by a User's extension.
    assert await described(scim, "Group") == {}


async def test_attributes_added_later_are_described_with_the_type_first_sent(
    scim: ScimClient,
) -> None:
    first = await scim.post("/Users", holding(CUSTOM, costCode="CC-1"))
    user_id = first.json()["id"]
    # Another spelling of the same name and another type change nothing: names are
    # case-insensitive, and the first type stands.
    again = await scim.post("/Users", holding(CUSTOM, COSTCODE=7, level=2))
    assert again.status_code == 201, again.text
    path = f"{CUSTOM}:building"
    patched = await scim.patch(
        f"/Users/{user_id}", patch_op({"op": "add", "path": path, "value": "B1"})
    )
    assert patched.status_code == 200, patched.text
    replaced = await scim.put(
        f"/Users/{user_id}",
        holding(CUSTOM, first.json()["userName"], costCode="CC-2", floor=4),
    )
    assert replaced.status_code == 200, replaced.text
    schema = (await described(scim))[CUSTOM]
    kinds = {a["name"]: a["type"] for a in schema["attributes"]}
    assert kinds == {
        "building": "string",
        "costCode": "string",
        "floor": "integer",
        "level": "integer",
    }


async def test_an_integer_attribute_sent_a_fraction_becomes_a_decimal(scim: ScimClient) -> None:
    """Okta sends number attributes as 1, then 1.5: a strict client reads 1 as a decimal."""
    user = (await scim.post("/Users", holding(CUSTOM, rate=1, level=2))).json()
    assert attribute((await described(scim))[CUSTOM], "rate")["type"] == "integer"
    op = {"op": "replace", "path": f"{CUSTOM}:rate", "value": 1.5}
    assert (await scim.patch(f"/Users/{user['id']}", patch_op(op))).status_code == 200
    assert (await scim.post("/Users", holding(CUSTOM, level=2.5, costCode=3.5))).status_code == 201
    assert (await scim.post("/Users", holding(CUSTOM, costCode=4))).status_code == 201
    schema = (await described(scim))[CUSTOM]
    kinds = {a["name"]: a["type"] for a in schema["attributes"]}
    assert kinds == {"rate": "decimal", "level": "decimal", "costCode": "decimal"}


async def test_a_refused_write_describes_nothing(scim: ScimClient) -> None:
    taken = await scim.post("/Users", user_body("ada@example.com"))
    assert taken.status_code == 201, taken.text
    clash = await scim.post("/Users", holding(CUSTOM, "ADA@example.com", costCode="x"))
    assert clash.status_code == 409, clash.text
    user_id = taken.json()["id"]
    undone = patch_op(
        {"op": "add", "path": f"{CUSTOM}:costCode", "value": "x"},
        {"op": "replace", "path": "active", "value": "not a boolean"},
    )
    assert (await scim.patch(f"/Users/{user_id}", undone)).status_code == 400
    assert await described(scim) == {}


async def test_group_extensions_are_described_and_a_shared_urn_is_one_schema(
    scim: ScimClient,
) -> None:
    group = group_body(schemas=[GROUP, SHARED], **{SHARED: {"site": "Paris"}})
    assert (await scim.post("/Groups", group)).status_code == 201
    assert list(await described(scim, "Group")) == [SHARED]
    assert await described(scim) == {}
    assert (await scim.post("/Users", holding(SHARED, costCode="CC"))).status_code == 201
    listed = (await scim.get("/Schemas")).json()
    assert [doc["id"] for doc in listed["Resources"]].count(SHARED) == 1
    assert listed["totalResults"] == 4
    names = {a["name"] for a in (await described(scim, "Group"))[SHARED]["attributes"]}
    assert names == {"site", "costCode"}


async def test_each_workspace_is_shown_its_own_extensions(
    scim: ScimClient, other_scim: ScimClient
) -> None:
    assert (await scim.post("/Users", holding(CUSTOM, costCode="CC"))).status_code == 201
    assert list(await described(scim)) == [CUSTOM]
    assert await described(other_scim) == {}
    assert (await other_scim.get("/Schemas")).json()["totalResults"] == 3


async def test_a_workspace_describes_at_most_so_many_attributes(scim: ScimClient) -> None:
    many = {f"a{i:04d}": i for i in range(extensions.MAX_DESCRIBED + 5)}
    created = await scim.post("/Users", holding(CUSTOM, **many))
    assert created.status_code == 201, created.text
    assert len(created.json()[CUSTOM]) == len(many)  # stored and returned whole
    more = await scim.post("/Users", holding(SHARED, extra="x"))
    assert more.status_code == 201, more.text
    schemas = await described(scim)
    assert list(schemas) == [CUSTOM]
    assert len(schemas[CUSTOM]["attributes"]) == extensions.MAX_DESCRIBED


async def test_names_too_long_once_lowered_are_stored_and_not_described(
    scim: ScimClient,
) -> None:
    """ "İ" lowered is two characters: a name or URN within its limit as sent but past it lowered
    is stored and returned, not described (PostgreSQL refused its key: the create was a 500)."""
    long_name = "İ" * 101  # 101 sent, 202 lowered: past the 200 of a name
    long_sub = "İ" * 150
    long_urn = "urn:example:" + "İ" * 300  # 312 sent, 612 lowered: past the 512 of a URN
    bodies = [
        holding(CUSTOM, **{long_name: "x", "fine": "y"}),
        holding(CUSTOM, badge={long_sub: "1", "number": "2"}),
        holding(long_urn, kept="z"),
    ]
    for body in bodies:
        created = await scim.post("/Users", body)
        assert created.status_code == 201, created.text
        shown = (await scim.get(f"/Users/{created.json()['id']}")).json()
        urn = next(key for key in body if key.startswith("urn:"))
        assert shown[urn] == body[urn]
    schemas = await described(scim)
    assert list(schemas) == [CUSTOM]
    assert {a["name"] for a in schemas[CUSTOM]["attributes"]} == {"fine", "badge"}
    assert [s["name"] for s in attribute(schemas[CUSTOM], "badge")["subAttributes"]] == ["number"]


async def test_the_widest_names_described_fit_one_index_entry(scim: ScimClient) -> None:
    """The longest URN of four-byte characters with the longest names RFC 7643 §2.1 allows is
    stored, returned and described, on SQLite as on PostgreSQL (whose b-tree refuses an entry
    past 2,704 bytes: such keys answered 500 before names had to be ASCII)."""
    chars = random.Random(7)  # CJK Extension B: four bytes each, and random, so nothing compresses
    wide = "".join(chr(chars.randrange(0x20000, 0x2A6D0)) for _ in range(500))
    urn, name, sub = f"urn:{wide}", "n" * 200, "s" * 200
    body = holding(urn, **{name: {sub: "deep", "short": "kept"}})
    created = await scim.post("/Users", body)
    assert created.status_code == 201, created.text
    shown = (await scim.get(f"/Users/{created.json()['id']}")).json()
    assert shown[urn] == body[urn]
    schemas = await described(scim)
    assert list(schemas) == [urn]
    subs = attribute(schemas[urn], name)["subAttributes"]
    assert sorted(s["name"] for s in subs) == sorted([sub, "short"])


async def test_a_strict_client_reads_users_holding_custom_attributes(
    scim: ScimClient, client: httpx.AsyncClient
) -> None:
    """scim2-client validates every response against the schemas discovery shows."""
    await scim.post("/Users", holding(CUSTOM, costCode="CC-1", level=3, tags=["a"]))
    await scim.post("/Groups", group_body(schemas=[GROUP, SHARED], **{SHARED: {"site": "P"}}))

    users, everything = await read_strictly(scim, client)
    assert isinstance(users, ListResponse)
    assert users.total_results == 1
    dumped = users.resources[0].model_dump()
    assert dumped[CUSTOM] == {"costCode": "CC-1", "level": 3, "tags": ["a"]}
    assert everything.total_results == 2
    assert {"site": "P"} in [r.model_dump().get(SHARED) for r in everything.resources]


async def read_strictly(scim: ScimClient, client: httpx.AsyncClient) -> tuple[Any, Any]:
    """List the users and search everything as scim2-client does: after discovery, validating
    every answer against the schemas it showed (it raises on what they do not describe)."""
    transport = _SyncOverAsync(client)

    def read() -> tuple[Any, Any]:
        with httpx.Client(
            transport=transport,
            base_url=str(client.base_url) + "/scim/v2",
            headers={"Authorization": f"Bearer {scim.token}"},
        ) as http:
            strict = HttpxSCIMClient(http)
            strict.discover()
            return strict.query(User), strict.search(SearchRequest())

    return await asyncio.to_thread(read)


class _SyncOverAsync(httpx.BaseTransport):
    """Lets a synchronous httpx client call the test app through the async test client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self.client.request(
            request.method, str(request.url), headers=request.headers, content=request.read()
        )
        response = asyncio.run_coroutine_threadsafe(call, self.loop).result()
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )


async def test_migration_describes_what_stored_resources_hold(
    app: Litestar, db_url: str, tenant: InitResult
) -> None:
    async with serving(app, tenant) as scim:
        await scim.post("/Users", holding(CUSTOM, costCode="CC-1"))
        await scim.post("/Users", holding(CUSTOM, costCode=5, level=2))
        await scim.post("/Users", holding(CUSTOM, level=2.5))
        await scim.post("/Groups", group_body(schemas=[GROUP, SHARED], **{SHARED: {"x": True}}))
        before = await described(scim), await described(scim, "Group")
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0018")
    await asyncio.to_thread(upgrade, db_url)
    async with serving(app, tenant) as scim:
        after = await described(scim), await described(scim, "Group")
    assert after == before
    assert attribute(after[0][CUSTOM], "costCode")["type"] == "string"
    assert attribute(after[0][CUSTOM], "level")["type"] == "decimal"


async def test_a_patch_may_add_an_extension_discovery_describes_to_a_resource(
    scim: ScimClient, scim_error: Any
) -> None:
    """A URN outside the IETF extension namespace is taken on once discovery shows it."""
    plain = await scim.post("/Groups", group_body())
    group_id = plain.json()["id"]
    add_site = patch_op({"op": "add", "path": f"{SHARED}:site", "value": "Lyon"})
    error = scim_error(await scim.patch(f"/Groups/{group_id}", add_site), 400, "invalidPath")
    assert SHARED in error["detail"]
    holder = group_body(schemas=[GROUP, SHARED], **{SHARED: {"site": "Paris"}})
    assert (await scim.post("/Groups", holder)).status_code == 201
    patched = await scim.patch(f"/Groups/{group_id}", add_site)
    assert patched.status_code == 200, patched.text
    assert patched.json()["schemas"] == [GROUP, SHARED]
    assert patched.json()[SHARED] == {"site": "Lyon"}
    # Described for Groups only: a user cannot take it on.
    user = (await scim.post("/Users", user_body())).json()
    scim_error(await scim.patch(f"/Users/{user['id']}", add_site), 400, "invalidPath")


async def test_unassigned_values_under_a_custom_extension_are_not_kept(
    scim: ScimClient, scim_error: Any
) -> None:
    """RFC 7643 §2.5 at every depth: null, [] and {} are unassigned, as for known attributes."""
    body = holding(
        CUSTOM,
        kept="x",
        gone=None,
        none=[],
        nulls=[None, "a", None],
        badge={"number": "B-7", "floor": None, "rooms": [], "inner": {}},
        cards=[{"id": None}, {"id": "c1", "tags": [None]}],
    )
    created = await scim.post("/Users", body)
    assert created.status_code == 201, created.text
    expected = {"kept": "x", "nulls": ["a"], "badge": {"number": "B-7"}, "cards": [{"id": "c1"}]}
    assert created.json()[CUSTOM] == expected
    user_id = created.json()["id"]
    assert (await scim.get(f"/Users/{user_id}")).json()[CUSTOM] == expected
    for path in ("kept", "nulls", "cards", "badge.number"):
        op = {"op": "remove", "path": f"{CUSTOM}:{path}"}
        removed = await scim.patch(f"/Users/{user_id}", patch_op(op))
        assert removed.status_code == 200, removed.text
    assert CUSTOM not in removed.json()
    assert removed.json()["schemas"] == [USER]
    for value in ("text", ["a"], 3):
        refused = await scim.post(
            "/Users", holding(CUSTOM, "refused@example.com") | {CUSTOM: value}
        )
        scim_error(refused, 400, "invalidValue")


async def test_a_patch_path_naming_a_whole_custom_urn(scim: ScimClient) -> None:
    """`urn:…:extension:x:User` parses as attribute `User` of `urn:…:extension:x`; a URN the
    resource lists, or discovery describes, is the whole extension instead."""
    bare = "urn:ietf:params:scim:schemas:extension:x:User"
    user = (await scim.post("/Users", holding(bare, a="1"))).json()
    path = f"/Users/{user['id']}"
    added = await scim.patch(path, patch_op({"op": "add", "path": bare, "value": {"b": "2"}}))
    assert added.status_code == 200, added.text
    assert added.json()[bare] == {"a": "1", "b": "2"}
    assert "urn:ietf:params:scim:schemas:extension:x" not in added.json()
    removed = await scim.patch(path, patch_op({"op": "remove", "path": bare}))
    assert bare not in removed.json()
    assert removed.json()["schemas"] == [USER]

    other = "urn:acme:foo:bar:Group"
    holder = group_body(schemas=[GROUP, other], **{other: {"site": "Paris"}})
    assert (await scim.post("/Groups", holder)).status_code == 201
    group = (await scim.post("/Groups", group_body())).json()
    whole = patch_op({"op": "replace", "path": other, "value": {"site": "Lyon"}})
    replaced = await scim.patch(f"/Groups/{group['id']}", whole)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()[other] == {"site": "Lyon"}
    assert replaced.json()["schemas"] == [GROUP, other]


async def test_add_to_a_custom_list_appends(scim: ScimClient) -> None:
    """RFC 7644 §3.5.2.1: add to a multi-valued attribute adds the values it lacks."""
    user = (await scim.post("/Users", holding(CUSTOM, tags=["a"]))).json()
    path = f"/Users/{user['id']}"
    tags = f"{CUSTOM}:tags"
    added = await scim.patch(path, patch_op({"op": "add", "path": tags, "value": ["b", "a"]}))
    assert added.json()[CUSTOM]["tags"] == ["a", "b"]
    pathless = patch_op({"op": "add", "value": {CUSTOM: {"tags": "c"}}})
    assert (await scim.patch(path, pathless)).json()[CUSTOM]["tags"] == ["a", "b", "c"]
    replaced = await scim.patch(path, patch_op({"op": "replace", "path": tags, "value": ["z"]}))
    assert replaced.json()[CUSTOM]["tags"] == ["z"]


async def test_a_custom_urn_in_other_letters_is_spelled_as_discovery_shows_it(
    scim: ScimClient,
) -> None:
    """RFC 7643 §2.1 URNs are case-insensitive; strict clients look `schemas` up as spelled."""
    assert (await scim.post("/Users", holding(CUSTOM, costCode="A"))).status_code == 201
    lower = CUSTOM.lower()
    created = await scim.post("/Users", holding(lower, costCode="B"))
    assert created.status_code == 201, created.text
    assert created.json()["schemas"] == [USER, CUSTOM]
    assert created.json()[CUSTOM] == {"costCode": "B"}
    assert lower not in created.json()
    plain = (await scim.post("/Users", user_body())).json()
    patched = await scim.patch(
        f"/Users/{plain['id']}", patch_op({"op": "add", "value": {f"{lower}:costCode": "C"}})
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["schemas"] == [USER, CUSTOM]
    assert (await scim.get(f"/Users/{plain['id']}")).json()[CUSTOM] == {"costCode": "C"}
    group = group_body(schemas=[GROUP, SHARED.upper()], **{SHARED.upper(): {"site": "P"}})
    assert (await scim.post("/Groups", group)).status_code == 201
    again = group_body(schemas=[GROUP, SHARED], **{SHARED: {"site": "Q"}})
    made = (await scim.post("/Groups", again)).json()
    assert made["schemas"] == [GROUP, SHARED.upper()]
    assert made[SHARED.upper()] == {"site": "Q"}


async def test_schemas_inside_an_extension_object_is_no_attribute_of_it(
    scim: ScimClient,
) -> None:
    """scim2-models writes an extension object on its own with ``"schemas": [its URN]`` (the
    value of a PATCH whose path is the URN; scim2-tester sends it). ``schemas`` is the
    resource's list of URNs (RFC 7643 §3), no attribute of an extension: it was stored under
    the extension and discovery described a custom one as having an attribute ``schemas``."""
    user = (await scim.post("/Users", holding(CUSTOM, costCode="A"))).json()
    path = f"/Users/{user['id']}"
    for urn, value in ((CUSTOM, {"costCode": "B"}), (ENTERPRISE, {"department": "D"})):
        whole = patch_op({"op": "add", "path": urn, "value": {"schemas": [urn], **value}})
        patched = await scim.patch(path, whole)
        assert patched.status_code == 200, patched.text
        assert patched.json()[urn] == value
        pathless = patch_op({"op": "replace", "value": {urn: {"Schemas": [urn], **value}}})
        assert (await scim.patch(path, pathless)).json()[urn] == value
    put = user_body(
        user["userName"],
        schemas=[USER, CUSTOM, ENTERPRISE],
        **{CUSTOM: {"schemas": [CUSTOM], "costCode": "C"}},
        **{ENTERPRISE: {"schemas": [ENTERPRISE], "department": "E"}},
    )
    replaced = await scim.put(path, put)
    assert replaced.status_code == 200, replaced.text
    stored = (await scim.get(path)).json()
    assert (stored[CUSTOM], stored[ENTERPRISE]) == ({"costCode": "C"}, {"department": "E"})
    created = await scim.post("/Users", holding(CUSTOM, schemas=[CUSTOM], level=1))
    assert created.status_code == 201, created.text
    assert created.json()[CUSTOM] == {"level": 1}
    names = [a["name"] for a in (await described(scim))[CUSTOM]["attributes"]]
    assert sorted(names) == ["costCode", "level"]


# --------------------------------------------------------------------------- the hub's own schemas


async def discovery_is_intact(scim: ScimClient) -> None:
    """`/Schemas` shows each of the hub's schemas once, as the hub defines it, and only the User
    type takes the Enterprise User extension (RFC 7643 §3, §6, §7)."""
    listed = (await scim.get("/Schemas")).json()["Resources"]
    assert sorted(doc["id"] for doc in listed) == sorted([USER, GROUP, ENTERPRISE])
    enterprise = (await scim.get(f"/Schemas/{ENTERPRISE}")).json()
    assert enterprise["name"] == "EnterpriseUser"
    group = (await scim.get("/ResourceTypes/Group")).json()
    assert group["schemaExtensions"] == []
    user = (await scim.get("/ResourceTypes/User")).json()
    assert [e["schema"] for e in user["schemaExtensions"]] == [ENTERPRISE]


class Unchanged:
    """`async with Unchanged(db_url):` fails if the block changed a resource or a description."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.before: Any = None

    def state(self) -> Any:
        return scim_state(self.db_url), dump(self.db_url, ["extension_attributes"])

    async def __aenter__(self) -> None:
        self.before = self.state()

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert self.state() == self.before, "a refused request changed the state"


def refused(response: httpx.Response, scim_type: str, *named: str) -> None:
    """A 400 with `scim_type` whose detail names every one of `named`."""
    error = assert_scim_error(response, 400, scim_type)
    for text in named:
        assert text in error["detail"], error


def misplaced_groups() -> list[dict[str, Any]]:
    """Groups naming a User schema, in `schemas` or as a key, which none may take on."""
    return [
        group_body(schemas=[GROUP, ENTERPRISE], **{ENTERPRISE: {"department": "x"}}),
        group_body(schemas=[GROUP, ENTERPRISE]),
        group_body(schemas=[GROUP, USER], **{USER: {"title": "x"}}),
        group_body(schemas=[GROUP, USER]),
        group_body(**{ENTERPRISE: {"department": "x"}}),
        group_body(**{USER: {"title": "x"}}),
        group_body(schemas=[GROUP, ENTERPRISE.upper()], **{ENTERPRISE.upper(): {"x": 1}}),
    ]


async def test_a_group_naming_a_user_schema_is_refused_and_changes_nothing(
    scim: ScimClient, db_url: str, client: httpx.AsyncClient
) -> None:
    """One Group holding the Enterprise User extension made `/Schemas` show two schemas with
    its id and `/ResourceTypes` list it under Group, for the whole workspace."""
    group = (await scim.post("/Groups", group_body())).json()
    user = (await scim.post("/Users", user_body())).json()
    # Entra's dialect lists an extension object's URN the request left out of `schemas`.
    entra = ScimClient(client, (await create_workspace(db_url, "contoso", idp="azure_ad")).token)
    async with Unchanged(db_url):
        for body in misplaced_groups():
            refused(await scim.post("/Groups", body), "invalidValue", "Group")
            refused(await entra.post("/Groups", body), "invalidValue", "Group")
            put = {**body, "displayName": group["displayName"]}
            refused(await scim.put(f"/Groups/{group['id']}", put), "invalidValue", "Group")
        for body in (
            user_body(schemas=[USER, GROUP]),
            user_body(schemas=[USER, GROUP], **{GROUP: {"displayName": "x"}}),
            user_body(**{GROUP: {"displayName": "x"}}),
        ):
            refused(await scim.post("/Users", body), "invalidValue", GROUP)
            put = {**body, "userName": user["userName"]}
            refused(await scim.put(f"/Users/{user['id']}", put), "invalidValue", GROUP)
    await discovery_is_intact(scim)
    await discovery_is_intact(entra)


async def test_a_patch_into_another_types_schema_is_refused_and_changes_nothing(
    scim: ScimClient, db_url: str
) -> None:
    """A path is `invalidPath` (RFC 7644 §3.5.2); a path-less value's key is `invalidValue`."""
    group = (await scim.post("/Groups", group_body())).json()
    user = (await scim.post("/Users", user_body())).json()
    for_group = [
        ({"op": "add", "path": f"{ENTERPRISE}:department", "value": "x"}, "invalidPath"),
        ({"op": "replace", "path": ENTERPRISE, "value": {"department": "x"}}, "invalidPath"),
        ({"op": "remove", "path": f"{ENTERPRISE}:department"}, "invalidPath"),
        ({"op": "add", "path": f"{USER}:title", "value": "x"}, "invalidPath"),
        ({"op": "add", "value": {ENTERPRISE: {"department": "x"}}}, "invalidValue"),
        ({"op": "replace", "value": {f"{ENTERPRISE}:department": "x"}}, "invalidValue"),
    ]
    for_user = [
        ({"op": "add", "path": f"{GROUP}:displayName", "value": "x"}, "invalidPath"),
        ({"op": "add", "value": {GROUP: {"displayName": "x"}}}, "invalidValue"),
    ]
    async with Unchanged(db_url):
        for operation, scim_type in for_group:
            response = await scim.patch(f"/Groups/{group['id']}", patch_op(operation))
            refused(response, scim_type, "a schema of User resources, not of Groups")
        for operation, scim_type in for_user:
            response = await scim.patch(f"/Users/{user['id']}", patch_op(operation))
            refused(response, scim_type, "a schema of Group resources, not of Users")
    await discovery_is_intact(scim)


async def test_an_object_under_the_core_urn_is_refused(scim: ScimClient, db_url: str) -> None:
    """RFC 7644 §3.10 qualifies an attribute's name with its URN (`…:User:title`); an object
    under the core URN is no form the RFCs give, and was stored as sent, setting nothing."""
    user = (await scim.post("/Users", user_body())).json()
    group = (await scim.post("/Groups", group_body())).json()
    async with Unchanged(db_url):
        for body in (user_body(**{USER: {"title": "x"}}), user_body(**{USER.upper(): {}})):
            refused(await scim.post("/Users", body), "invalidValue", "top level")
            put = {**body, "userName": user["userName"]}
            refused(await scim.put(f"/Users/{user['id']}", put), "invalidValue", "top level")
        pathless = patch_op({"op": "add", "value": {USER: {"title": "x"}}})
        refused(await scim.patch(f"/Users/{user['id']}", pathless), "invalidValue", "top level")
        whole = patch_op({"op": "add", "path": USER, "value": {"title": "x"}})
        refused(await scim.patch(f"/Users/{user['id']}", whole), "invalidPath", "top level")
        body = group_body(**{GROUP: {"displayName": "x"}})
        refused(await scim.post("/Groups", body), "invalidValue", "top level")
        put = {**body, "displayName": group["displayName"]}
        refused(await scim.put(f"/Groups/{group['id']}", put), "invalidValue", "top level")
    qualified = patch_op({"op": "add", "path": f"{USER}:title", "value": "Guide"})
    patched = await scim.patch(f"/Users/{user['id']}", qualified)
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Guide"


async def test_a_patch_path_with_a_dot_after_a_schema_urn_is_refused(
    scim: ScimClient, db_url: str
) -> None:
    """`urn:…:enterprise:2.0:User.department` (a dot for the colon) reads as attribute `User` of
    a custom extension `urn:…:enterprise:2.0`: the PATCH answered 200, stored
    `{"urn:…:enterprise:2.0": {"User": {"department": "D"}}}` and `/Schemas` showed that URN."""
    user = (await scim.post("/Users", user_body())).json()
    operations = [
        ({"op": "replace", "path": f"{ENTERPRISE}.department", "value": "D"}, "invalidPath"),
        ({"op": "add", "path": f"{USER}.title", "value": "T"}, "invalidPath"),
        ({"op": "replace", "value": {f"{ENTERPRISE.upper()}.department": "D"}}, "invalidValue"),
    ]
    async with Unchanged(db_url):
        for operation, scim_type in operations:
            response = await scim.patch(f"/Users/{user['id']}", patch_op(operation))
            refused(response, scim_type, "is a schema", "after a colon")
    await discovery_is_intact(scim)


async def test_a_description_of_a_hub_schema_recorded_earlier_is_not_shown(
    scim: ScimClient, db_url: str, tenant: InitResult
) -> None:
    """Before the hub refused them, a Group holding the Enterprise User extension had it
    described as a custom Group extension; discovery leaves such records out. A record naming
    an attribute a hub schema defines changes nothing of it (`test_undescribed` covers the
    attributes it does not define, which are shown)."""

    def record_misplaced(conn: Connection) -> None:
        ws = require_workspace(conn, tenant.workspace)
        rows = (
            ("Group", ENTERPRISE, "department"),
            ("Group", USER, "title"),
            ("User", ENTERPRISE, "DEPARTMENT"),
            ("User", GROUP, "displayName"),
        )
        conn.execute(
            insert(extension_attributes),
            [
                {
                    "workspace_pk": ws.pk,
                    "resource_type": rt,
                    "urn_key": urn.lower(),
                    "name_key": name.lower(),
                    "sub_key": "",
                    "urn": urn,
                    "name": name,
                    "sub": "",
                    "type": "integer",
                    "multi_valued": False,
                }
                for rt, urn, name in rows
            ],
        )

    db = open_database(db_url)
    try:
        await db.write(record_misplaced)
    finally:
        await db.close()
    await discovery_is_intact(scim)
    enterprise = (await scim.get(f"/Schemas/{ENTERPRISE}")).json()
    shown = [a for a in enterprise["attributes"] if a["name"].lower() == "department"]
    assert [(a["name"], a["type"]) for a in shown] == [("department", "string")]
    for urn, schema in ((GROUP, schema_definitions.GROUP), (USER, schema_definitions.USER)):
        shown = (await scim.get(f"/Schemas/{urn}")).json()["attributes"]
        assert shown == schema.to_scim("")["attributes"]
    group = (await scim.post("/Groups", group_body())).json()
    add = patch_op({"op": "add", "path": f"{ENTERPRISE}:department", "value": "x"})
    refused(await scim.patch(f"/Groups/{group['id']}", add), "invalidPath", "not of Groups")


async def test_what_an_earlier_version_stored_under_a_hub_schema_does_not_block_a_patch(
    scim: ScimClient, db_url: str
) -> None:
    """Entra only PATCHes users: one stored before the hub refused an object under the core
    URN stays patchable (the object kept as stored) until a PUT replaces it."""
    user = (await scim.post("/Users", user_body())).json()
    group = (await scim.post("/Groups", group_body())).json()
    held_user = {**user_body(user["userName"]), USER: {"title": "x"}}
    held_group = {
        **group_body(group["displayName"], schemas=[GROUP, ENTERPRISE]),
        ENTERPRISE: {"department": "x"},
    }

    def store_as_before(conn: Connection) -> None:
        for table, resource, doc in ((users, user, held_user), (groups, group, held_group)):
            conn.execute(
                update(table)
                .where(table.c.id == resource["id"])
                .values(data=doc, version=table.c.version + 1)
            )

    db = open_database(db_url)
    try:
        await db.write(store_as_before)
    finally:
        await db.close()
    title = patch_op({"op": "replace", "path": "title", "value": "Guide"})
    patched = await scim.patch(f"/Users/{user['id']}", title)
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Guide"
    assert patched.json()[USER] == {"title": "x"}
    renamed = patch_op({"op": "replace", "path": "displayName", "value": "Renamed"})
    patched = await scim.patch(f"/Groups/{group['id']}", renamed)
    assert patched.status_code == 200, patched.text
    assert patched.json()[ENTERPRISE] == {"department": "x"}
    more = patch_op({"op": "add", "path": f"{ENTERPRISE}:division", "value": "y"})
    refused(await scim.patch(f"/Groups/{group['id']}", more), "invalidPath", "not of Groups")
    put = await scim.put(f"/Users/{user['id']}", user_body(user["userName"]))
    assert put.status_code == 200, put.text
    assert USER not in put.json()
    put = await scim.put(f"/Groups/{group['id']}", group_body("Renamed"))
    assert put.status_code == 200, put.text
    assert ENTERPRISE not in put.json()
    assert put.json()["schemas"] == [GROUP]
    await discovery_is_intact(scim)
