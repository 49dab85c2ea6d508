"""Attributes the hub's own schemas do not define are described in discovery once stored.

Okta sends an app's custom attributes at the top level when their namespace is the core User
schema; clients send unknown keys inside `name`, inside the Enterprise User extension, or
top-level typos (Microsoft's reference suite PUTs `adreses`). The hub stores and returns them
(README: a GET returns what was PUT), so a strict client (scim2-client) refused every page
holding such a resource: `/Schemas` did not describe what it held. Now the workspace's
`/Schemas` shows the hub's schemas with those attributes added, typed as first sent, on SQLite
and PostgreSQL, only for writes that were committed; a workspace holding none is shown the
standard schemas, byte for byte.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from alembic import command
from litestar import Litestar
from scim2_models import ListResponse

from hub.core import extensions
from hub.core import schema as schema_definitions
from hub.core.tenants import InitResult
from hub.migrate import alembic_config, upgrade
from tests.conftest import ScimClient, patch_op, serving, user_body
from tests.test_extensions import attribute, read_strictly

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def odd_user(user_name: str | None = None, **attributes: Any) -> dict[str, Any]:
    """A user holding attributes the hub's schemas do not define, at every place they occur."""
    return user_body(
        user_name,
        schemas=[USER, ENTERPRISE],
        nickName2="Bobby",
        adreses=[{"streetAddress": "1 Main St", "floor": 3}],
        name={"givenName": "Ada", "middleName2": "B."},
        emails=[{"value": "ada@example.com", "type": "work", "verified": True}],
        **{
            ENTERPRISE: {
                "department": "R&D",
                "costCentre": "CC-1",
                "manager": {"value": "m-1", "reportsDirectly": True},
            }
        },
        **attributes,
    )


async def schema_of(scim: ScimClient, urn: str) -> dict[str, Any]:
    """The schema `urn` as `/Schemas` lists it, after checking `/Schemas/<urn>` agrees."""
    listed = (await scim.get("/Schemas")).json()["Resources"]
    found = [doc for doc in listed if doc["id"] == urn]
    assert len(found) == 1, [doc["id"] for doc in listed]
    one = await scim.get(f"/Schemas/{urn}")
    assert one.status_code == 200, one.text
    assert one.json() == found[0]
    return found[0]


def kinds(attributes: list[dict[str, Any]]) -> dict[str, tuple[str, bool]]:
    return {a["name"]: (a["type"], a["multiValued"]) for a in attributes}


def names(attributes: list[dict[str, Any]]) -> list[str]:
    return [a["name"].lower() for a in attributes]


async def standard(scim: ScimClient) -> dict[str, bytes]:
    """What a workspace holding nothing unknown is shown: every discovery document, as bytes."""
    paths = ["/Schemas", f"/Schemas/{USER}", f"/Schemas/{ENTERPRISE}", f"/Schemas/{GROUP}"]
    return {path: (await scim.get(path)).content for path in (*paths, "/ResourceTypes")}


async def assert_described(scim: ScimClient) -> None:
    """`odd_user`'s unknown attributes are described, typed, each once, beside the hub's own."""
    user = await schema_of(scim, USER)
    added = kinds(user["attributes"])
    assert added["nickName2"] == ("string", False)
    assert added["adreses"] == ("complex", True)
    assert kinds(attribute(user, "adreses")["subAttributes"]) == {
        "streetAddress": ("string", False),
        "floor": ("integer", False),
    }
    assert kinds(attribute(user, "name")["subAttributes"])["middleName2"] == ("string", False)
    assert kinds(attribute(user, "emails")["subAttributes"])["verified"] == ("boolean", False)
    enterprise = await schema_of(scim, ENTERPRISE)
    assert kinds(enterprise["attributes"])["costCentre"] == ("string", False)
    manager = kinds(attribute(enterprise, "manager")["subAttributes"])
    assert manager["reportsDirectly"] == ("boolean", False)
    for schema in (user, enterprise):
        tops = names(schema["attributes"])
        assert len(tops) == len(set(tops)), tops
        for one in schema["attributes"]:
            subs = names(one.get("subAttributes", []))
            assert len(subs) == len(set(subs)), (one["name"], subs)
    # The hub's own definitions are as they were.
    assert attribute(user, "name", "givenName")["type"] == "string"
    assert attribute(enterprise, "manager", "value")["mutability"] == "readWrite"
    assert (await scim.get("/ResourceTypes/User")).json()["schemaExtensions"] == [
        {"schema": ENTERPRISE, "required": False}
    ]
    assert len((await scim.get("/Schemas")).json()["Resources"]) == 3


async def test_a_created_user_describes_what_the_hub_schemas_lack(
    scim: ScimClient, other_scim: ScimClient
) -> None:
    before = await standard(scim)
    created = await scim.post("/Users", odd_user())
    assert created.status_code == 201, created.text
    assert created.json()["nickName2"] == "Bobby"
    await assert_described(scim)
    # Another workspace is shown the standard schemas, byte for byte.
    assert await standard(other_scim) == before


async def test_a_put_describes_what_the_hub_schemas_lack(scim: ScimClient) -> None:
    created = await scim.post("/Users", user_body())
    assert created.status_code == 201, created.text
    before = await standard(scim)
    user = created.json()
    replaced = await scim.put(f"/Users/{user['id']}", odd_user(user["userName"]))
    assert replaced.status_code == 200, replaced.text
    await assert_described(scim)
    # Described from the first write that sent it: a later PUT without it forgets nothing.
    again = await scim.put(f"/Users/{user['id']}", user_body(user["userName"]))
    assert again.status_code == 200, again.text
    await assert_described(scim)
    assert await standard(scim) != before


async def test_a_patch_describes_what_the_hub_schemas_lack(scim: ScimClient) -> None:
    created = await scim.post("/Users", user_body(name={"givenName": "Ada"}))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    # A path must name an attribute the schema defines (RFC 7644 §3.5.2: invalidPath), so
    # unknown ones come in values: without a path, or under a complex attribute's path.
    patched = await scim.patch(
        f"/Users/{user_id}",
        patch_op(
            {"op": "add", "value": {"nickName2": "Bobby"}},
            {"op": "add", "value": {"adreses": [{"streetAddress": "1 Main St", "floor": 3}]}},
            {"op": "replace", "path": "name", "value": {"givenName": "Ada", "middleName2": "B."}},
            {
                "op": "add",
                "path": "emails",
                "value": [{"value": "a@example.com", "verified": True}],
            },
            {"op": "add", "path": ENTERPRISE, "value": {"costCentre": "CC-1"}},
            {
                "op": "add",
                "path": f"{ENTERPRISE}:manager",
                "value": {"value": "m-1", "reportsDirectly": True},
            },
        ),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["adreses"] == [{"streetAddress": "1 Main St", "floor": 3}]
    await assert_described(scim)


async def test_the_type_first_sent_stands_and_names_are_case_insensitive(
    scim: ScimClient,
) -> None:
    assert (await scim.post("/Users", user_body(badge=7))).status_code == 201
    assert (await scim.post("/Users", user_body(BADGE="x", NAME={"Suffix2": 1}))).status_code == 201
    assert (await scim.post("/Users", user_body(name={"suffix2": "x"}))).status_code == 201
    user = await schema_of(scim, USER)
    assert kinds(user["attributes"])["badge"] == ("integer", False)
    assert kinds(attribute(user, "name")["subAttributes"])["Suffix2"] == ("integer", False)
    assert names(user["attributes"]).count("badge") == 1


async def test_a_group_describes_what_its_schema_lacks(scim: ScimClient) -> None:
    body = {"schemas": [GROUP], "displayName": "Ops", "mailNickname": "ops"}
    created = await scim.post("/Groups", body)
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    put = await scim.put(f"/Groups/{group_id}", {**body, "securityEnabled": True})
    assert put.status_code == 200, put.text
    patched = await scim.patch(f"/Groups/{group_id}", patch_op({"op": "add", "value": {"tier": 2}}))
    assert patched.status_code == 200, patched.text
    group = await schema_of(scim, GROUP)
    added = kinds(group["attributes"])
    assert added["mailNickname"] == ("string", False)
    assert added["securityEnabled"] == ("boolean", False)
    assert added["tier"] == ("integer", False)
    assert "mailNickname" not in kinds((await schema_of(scim, USER))["attributes"])


async def test_a_refused_write_describes_nothing(scim: ScimClient) -> None:
    before = await standard(scim)
    taken = await scim.post("/Users", user_body("ada@example.com"))
    assert taken.status_code == 201, taken.text
    clash = await scim.post("/Users", odd_user("ADA@example.com"))
    assert clash.status_code == 409, clash.text
    user_id = taken.json()["id"]
    undone = patch_op(
        {"op": "add", "value": {"nickName2": "Bobby"}},
        {"op": "replace", "path": "active", "value": "not a boolean"},
    )
    assert (await scim.patch(f"/Users/{user_id}", undone)).status_code == 400
    assert await standard(scim) == before


async def test_the_described_attributes_count_toward_the_limit(scim: ScimClient) -> None:
    many = {f"a{i:04d}": i for i in range(extensions.MAX_DESCRIBED + 5)}
    created = await scim.post("/Users", user_body(**many))
    assert created.status_code == 201, created.text
    assert len(created.json()) > extensions.MAX_DESCRIBED  # stored and returned whole
    custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
    more = await scim.post("/Users", user_body(schemas=[USER, custom], **{custom: {"x": "y"}}))
    assert more.status_code == 201, more.text
    user = await schema_of(scim, USER)
    standard_count = len(schema_definitions.USER.attributes)
    assert len(user["attributes"]) == standard_count + extensions.MAX_DESCRIBED
    assert (await scim.get(f"/Schemas/{custom}")).status_code == 404


async def test_a_strict_client_reads_users_holding_unknown_attributes(
    scim: ScimClient, client: httpx.AsyncClient
) -> None:
    """scim2-client validates every response against the schemas discovery shows: a list
    page, a `.search` and a root search holding such a user were refused before."""
    assert (await scim.post("/Users", odd_user())).status_code == 201
    users, everything = await read_strictly(scim, client)
    assert isinstance(users, ListResponse)
    assert users.total_results == 1
    assert everything.total_results == 1


async def test_a_patch_path_may_name_what_discovery_describes(scim: ScimClient) -> None:
    """Once `/Schemas` shows `costCode`, a client PATCHes it by path (scim2-tester does): an
    attribute the workspace's discovery describes is taken, stored as sent; one it does not
    is still invalidPath."""
    holder = await scim.post("/Users", odd_user())
    assert holder.status_code == 201, holder.text
    created = await scim.post("/Users", user_body(name={"givenName": "Ada"}))
    user_id = created.json()["id"]
    patched = await scim.patch(
        f"/Users/{user_id}",
        patch_op(
            {"op": "add", "path": "NICKNAME2", "value": "Bob"},
            {"op": "add", "path": "name.middleName2", "value": "C."},
            {"op": "replace", "path": f"{ENTERPRISE}:costCentre", "value": "CC-9"},
            {"op": "add", "path": f"{ENTERPRISE}:manager.reportsDirectly", "value": False},
        ),
    )
    assert patched.status_code == 200, patched.text
    shown = patched.json()
    assert shown["NICKNAME2"] == "Bob"
    assert shown["name"] == {"givenName": "Ada", "middleName2": "C."}
    assert shown[ENTERPRISE] == {"costCentre": "CC-9", "manager": {"reportsDirectly": False}}
    removed = await scim.patch(
        f"/Users/{user_id}",
        patch_op(
            {"op": "remove", "path": "nickName2"},
            {"op": "remove", "path": "name.middleName2"},
            {"op": "remove", "path": f"{ENTERPRISE}:manager.reportsDirectly"},
        ),
    )
    assert removed.status_code == 200, removed.text
    assert "NICKNAME2" not in removed.json()
    assert removed.json()["name"] == {"givenName": "Ada"}
    assert removed.json()[ENTERPRISE] == {"costCentre": "CC-9"}
    for path in ("nickName3", "name.middleName3", f"{ENTERPRISE}:costCentre2"):
        refused = await scim.patch(
            f"/Users/{user_id}", patch_op({"op": "add", "path": path, "value": "x"})
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["scimType"] == "invalidPath"
    # Described for Users, not for Groups.
    group = (await scim.post("/Groups", {"schemas": [GROUP], "displayName": "G"})).json()
    refused = await scim.patch(
        f"/Groups/{group['id']}", patch_op({"op": "add", "path": "nickName2", "value": "x"})
    )
    assert refused.status_code == 400, refused.text


async def test_a_patch_path_may_filter_on_what_discovery_describes(scim: ScimClient) -> None:
    """A value filter in a PATCH path on a described list (`adreses[floor eq 3].streetAddress`)
    or a described sub-attribute (`emails[verified eq true].value`) was a 400 invalidPath,
    though list filters took both; it now selects, adds and removes elements as a custom
    extension's list does. What discovery does not show stays a 400 invalidPath."""
    holder = await scim.post("/Users", odd_user())
    assert holder.status_code == 201, holder.text
    user_id = holder.json()["id"]

    async def patched(*operations: dict[str, Any]) -> dict[str, Any]:
        response = await scim.patch(f"/Users/{user_id}", patch_op(*operations))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    shown = await patched(
        {"op": "replace", "path": "ADRESES[floor eq 3].streetAddress", "value": "2 Main St"},
        {"op": "add", "path": "adreses[floor eq 7].streetAddress", "value": "7 High St"},
        {"op": "replace", "path": "emails[verified eq true].value", "value": "bo@example.com"},
        {"op": "add", "path": 'emails[type eq "work"].verified', "value": False},
    )
    assert shown["adreses"] == [
        {"streetAddress": "2 Main St", "floor": 3},
        {"floor": 7, "streetAddress": "7 High St"},
    ]
    assert shown["emails"] == [{"value": "bo@example.com", "type": "work", "verified": False}]
    found = await scim.get("/Users", params={"filter": "emails[verified eq false]"})
    assert [r["id"] for r in found.json()["Resources"]] == [user_id]
    shown = await patched(
        {"op": "remove", "path": "adreses[floor gt 5]"},
        {"op": "remove", "path": 'adreses[streetAddress co "main"].floor'},
        {"op": "remove", "path": "emails[verified eq false].verified"},
    )
    assert shown["adreses"] == [{"streetAddress": "2 Main St"}]
    assert shown["emails"] == [{"value": "bo@example.com", "type": "work"}]
    for path in (
        'adreses[zip eq "x"].streetAddress',
        "adreses[floor eq 3].zip",
        "emails[verified2 eq true].value",
        'emails[type eq "work"].verified2',
        'nickName2[value eq "x"]',
    ):
        refused = await scim.patch(
            f"/Users/{user_id}", patch_op({"op": "replace", "path": path, "value": "x"})
        )
        assert refused.status_code == 400, (path, refused.text)
        assert refused.json()["scimType"] == "invalidPath", path
    assert (await scim.get(f"/Users/{user_id}")).json()["adreses"] == shown["adreses"]


async def listed(scim: ScimClient, path: str = "/Users", **params: str) -> list[str]:
    """The ids a list answers for `params`, in its order (every page in one)."""
    response = await scim.get(path, params={**params, "count": "1000"})
    assert response.status_code == 200, response.text
    return [resource["id"] for resource in response.json().get("Resources", [])]


async def assert_refused(scim: ScimClient, path: str = "/Users", **params: str) -> None:
    response = await scim.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["scimType"] == "invalidFilter"


async def _user(scim: ScimClient, **attributes: Any) -> str:
    """Create a user holding the core and Enterprise `attributes`; return its id."""
    created = await scim.post("/Users", user_body(schemas=[USER, ENTERPRISE], **attributes))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_filters_and_sortby_may_name_what_discovery_describes(
    scim: ScimClient, other_scim: ScimClient
) -> None:
    """A strict client reads `/Schemas`, then filters and sorts on what it shows (it was a 400
    invalidFilter): with a custom extension's semantics, on every operator, `and`/`or`/`not`
    and value filters; names discovery does not show stay a 400 invalidFilter."""

    bob = await _user(
        scim,
        nickName2="Bobby",
        rank2=10,
        adreses=[{"streetAddress": "1 Main St", "floor": 3}],
        name={"givenName": "Ada", "middleName2": "B."},
        emails=[{"value": "bob@example.com", "verified": True}],
        **{ENTERPRISE: {"costCentre": "CC-1", "manager": {"value": "m", "reportsDirectly": True}}},
    )
    amy = await _user(
        scim,
        nickName2="alice",
        rank2=9,
        adreses=[{"streetAddress": "2 Side St", "floor": 10}],
        name={"middleName2": "a"},
        emails=[{"value": "amy@example.com", "verified": False}],
        **{ENTERPRISE: {"costCentre": "cc-2", "manager": {"reportsDirectly": False}}},
    )
    cid = await _user(scim, rank2="x")
    zed = await _user(scim, nickName2=["Zed", "Carl"])
    cost, reports = f"{ENTERPRISE}:costCentre", f"{ENTERPRISE}:manager.reportsDirectly"
    expected = {
        'nickName2 eq "BOBBY"': [bob],
        'nickName2 sw "b"': [bob],
        'nickName2 ne "bobby"': [amy, cid, zed],
        "nickName2 pr": [bob, amy, zed],
        "not (nickName2 pr)": [cid],
        'nickName2 eq "carl"': [zed],
        'nickName2 gt "b"': [bob, zed],
        "rank2 ge 10": [bob],
        "rank2 lt 10": [amy],
        'rank2 eq "X"': [cid],
        'name.middleName2 eq "b."': [bob],
        "name.middleName2 pr": [bob, amy],
        "adreses[floor gt 5]": [amy],
        'adreses[floor eq 3 and streetAddress co "MAIN"]': [bob],
        "adreses.floor ge 3": [bob, amy],
        "adreses pr": [bob, amy],
        "emails[verified eq true]": [bob],
        "emails.verified eq false": [amy],
        f'{cost} eq "CC-2"': [amy],
        f"{reports} eq true": [bob],
        f'nickName2 eq "bobby" or {cost} ew "2"': [bob, amy],
        f'{USER}:nickName2 co "ob" and not ({reports} eq false)': [bob],
    }
    for text, ids in expected.items():
        assert await listed(scim, filter=text) == ids, text
    # Sorted as a custom extension's attribute: numbers by value, then strings, then no value.
    assert await listed(scim, sortBy="rank2") == [amy, bob, cid, zed]
    assert await listed(scim, sortBy="rank2", sortOrder="descending") == [zed, cid, bob, amy]
    assert await listed(scim, sortBy="adreses.floor") == [bob, amy, cid, zed]
    assert await listed(scim, sortBy="name.middleName2") == [amy, bob, cid, zed]
    assert await listed(scim, sortBy=cost, filter=f"{cost} pr") == [bob, amy]
    assert await listed(scim, sortBy=reports, filter="rank2 pr") == [amy, bob, cid]
    # POST /Users/.search takes them too.
    search = {"schemas": [SEARCH], "filter": "rank2 pr", "sortBy": "rank2"}
    found = await scim.post("/Users/.search", search)
    assert [r["id"] for r in found.json()["Resources"]] == [amy, bob, cid], found.text
    for text in (
        'nickName3 eq "x"',
        'name.middleName3 eq "x"',
        'adreses.zip eq "x"',
        'adreses[zip eq "x"]',
        'nickName2.first eq "x"',
        f'{ENTERPRISE}:costCentre2 eq "x"',
        'emails[verified2 eq "x"]',
        'adreses eq "x"',  # complex: compare one of its sub-attributes
    ):
        await assert_refused(scim, filter=text)
    for path in ("nickName3", "adreses", "adreses.zip"):
        await assert_refused(scim, sortBy=path)
    # Described in this workspace only, and for Users only.
    await assert_refused(other_scim, filter='nickName2 eq "bobby"')
    await assert_refused(other_scim, sortBy="rank2")
    await assert_refused(scim, "/Groups", filter='nickName2 eq "bobby"')


async def test_described_names_match_in_any_case(scim: ScimClient) -> None:
    """Attribute names are case-insensitive (RFC 7643 §2.1), as discovery and PATCH paths read
    a described one; each resource keeps the spelling its client sent, and a filter or sortBy
    in any case finds it (the filter's own spelling first where an object holds two)."""

    bob = await _user(
        scim,
        nickName2="Bobby",
        name={"middleName2": "B"},
        adreses=[{"floor": 3}],
        **{ENTERPRISE: {"costCentre": "CC-1", "manager": {"reportsDirectly": True}}},
    )
    dora = await _user(
        scim,
        NICKNAME2="Dora",
        name={"MiddleName2": "A"},
        ADRESES=[{"Floor": 10}],
        **{ENTERPRISE: {"COSTCENTRE": "CC-2", "manager": {"REPORTSDIRECTLY": False}}},
    )
    await _user(scim, rank2=7)  # described as first sent: "rank2"
    patched = await scim.patch(
        f"/Users/{bob}", patch_op({"op": "add", "path": "Rank2", "value": 5})
    )
    assert patched.status_code == 200, patched.text
    cost = f"{ENTERPRISE}:costCentre"
    expected = {
        "nickName2 pr": [bob, dora],
        'NickName2 eq "dora"': [dora],
        'name.MIDDLENAME2 eq "b"': [bob],
        "adreses[FLOOR gt 5]": [dora],
        "Adreses.floor lt 5": [bob],
        f'{cost} eq "cc-2"': [dora],
        f"{ENTERPRISE}:manager.reportsdirectly eq false": [dora],
        "rank2 eq 5": [bob],
    }
    for text, ids in expected.items():
        assert await listed(scim, filter=text) == ids, text
    assert await listed(scim, sortBy="NICKNAME2", filter="nickName2 pr") == [bob, dora]
    assert await listed(scim, sortBy="name.middlename2", filter="nickName2 pr") == [dora, bob]
    assert await listed(scim, sortBy="adreses.FLOOR", filter="nickName2 pr") == [bob, dora]
    assert await listed(scim, sortBy=cost, sortOrder="descending", filter=f"{cost} pr") == [
        dora,
        bob,
    ]
    # A root search merging both types reads them so too.
    groups = [{"rank2": 1}, {"RANK2": 6}]
    made = [
        await scim.post("/Groups", {"schemas": [GROUP], "displayName": f"G{n}", **g})
        for n, g in enumerate(groups)
    ]
    one, six = (group.json()["id"] for group in made)
    seven = await listed(scim, filter="rank2 eq 7")
    assert await listed(scim, "", sortBy="RANK2", filter="rank2 pr") == [one, bob, six, *seven]


async def test_groups_and_root_searches_filter_and_sort_on_what_is_described(
    scim: ScimClient,
) -> None:
    """Groups, `POST /.search` and `GET /scim/v2` read what discovery describes too: for the
    type that describes it; the other type's resources have no value (RFC 7644 §3.4.2.1)."""
    user = await scim.post("/Users", user_body(nickName2="Bobby", rank2=10))
    uid = user.json()["id"]
    group = await scim.post("/Groups", {"schemas": [GROUP], "displayName": "G", "rank2": 9.5})
    gid = group.json()["id"]
    other = await scim.post("/Groups", {"schemas": [GROUP], "displayName": "H", "rank2": "b"})
    oid = other.json()["id"]
    assert await listed(scim, "/Groups", filter="rank2 lt 10") == [gid]
    assert await listed(scim, "/Groups", sortBy="rank2", sortOrder="descending") == [oid, gid]
    both = {"filter": 'nickName2 eq "bobby" or rank2 eq 9.5'}
    assert await listed(scim, "", **both) == [uid, gid]
    search = {"schemas": [SEARCH], **both}
    found = await scim.post("/.search", search)
    assert [r["id"] for r in found.json()["Resources"]] == [uid, gid], found.text
    # Sorted together: numbers by value, then strings.
    assert await listed(scim, "", sortBy="rank2") == [gid, uid, oid]
    assert await listed(scim, "", sortBy="rank2", sortOrder="descending") == [oid, uid, gid]
    assert await listed(scim, "", filter="nickName2 pr") == [uid]
    await assert_refused(scim, "", filter='nickName3 eq "x"')
    await assert_refused(scim, "", sortBy="nickName3")


async def test_a_root_search_sorts_a_custom_extension_attribute_both_types_hold(
    scim: ScimClient,
) -> None:
    """`GET /scim/v2?sortBy=<custom URN>:rank` interleaves Users and Groups by the value under
    that URN (it read a top-level `rank`, found none, and listed Users then Groups)."""
    thing = "urn:ietf:params:scim:schemas:extension:Thing:2.0:Resource"
    user = await scim.post("/Users", user_body(schemas=[USER, thing], **{thing: {"rank": 3}}))
    group = {"schemas": [GROUP, thing], "displayName": "G", thing: {"rank": 2}}
    gid = (await scim.post("/Groups", group)).json()["id"]
    uid = user.json()["id"]
    assert await listed(scim, "", sortBy=f"{thing}:rank") == [gid, uid]
    assert await listed(scim, "", sortBy=f"{thing}:rank", sortOrder="descending") == [uid, gid]


async def test_migration_describes_what_stored_resources_hold(
    app: Litestar, db_url: str, tenant: InitResult
) -> None:
    """Revision 0021 describes what users and groups stored before it hold, as if recorded."""
    async with serving(app, tenant) as scim:
        await scim.post("/Users", odd_user())
        await scim.post("/Users", user_body(nickName2=7, name={"middleName2": 1}))
        await scim.post("/Groups", {"schemas": [GROUP], "displayName": "G", "mailNickname": "g"})
        before = await standard(scim)
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0020")
    async with serving(app, tenant) as scim:
        assert (await scim.get(f"/Schemas/{USER}")).json()["attributes"] == (
            schema_definitions.USER.to_scim("")["attributes"]
        )
    await asyncio.to_thread(upgrade, db_url)
    async with serving(app, tenant) as scim:
        assert await standard(scim) == before
        await assert_described(scim)
