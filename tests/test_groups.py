"""Groups and membership over real HTTP (RFC 7643 §4.2, RFC 7644 §3.5.2), SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import ScimClient, assert_scim_error, group_body, user_body
from tests.conftest import patch_op as ops


async def make_users(scim: ScimClient, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = await scim.post("/Users", user_body())
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def member_ids(group: dict[str, Any]) -> set[str]:
    return {m["value"] for m in group.get("members", [])}


async def test_group_lifecycle_with_members(scim: ScimClient) -> None:
    a, b, c = await make_users(scim, 3)
    created = await scim.post("/Groups", group_body("Sales", members=[{"value": a}, {"value": b}]))
    assert created.status_code == 201, created.text
    group = created.json()
    gid = group["id"]
    assert member_ids(group) == {a, b}
    assert group["meta"]["resourceType"] == "Group"
    member = group["members"][0]
    assert member["type"] == "User"
    assert member["$ref"].endswith(f"/Users/{member['value']}")

    added = await scim.patch(
        f"/Groups/{gid}", ops({"op": "Add", "path": "members", "value": [{"value": c}]})
    )
    assert (added.status_code, added.content) == (204, b"")
    assert added.headers["ETag"] == 'W/"2"'
    assert member_ids((await scim.get(f"/Groups/{gid}")).json()) == {a, b, c}
    removed = await scim.patch(
        f"/Groups/{gid}",
        ops({"op": "Remove", "path": f'members[value eq "{a}"]'}),
        params={"attributes": "members"},
    )
    assert removed.status_code == 200, removed.text
    assert member_ids(removed.json()) == {b, c}
    assert removed.headers["ETag"] == 'W/"3"'
    listed = await scim.patch(
        f"/Groups/{gid}",
        ops({"op": "remove", "path": "members", "value": [{"value": b}]}),
        params={"excludedAttributes": "displayName"},
    )
    assert member_ids(listed.json()) == {c}
    assert "displayName" not in listed.json()
    renamed = await scim.patch(
        f"/Groups/{gid}", ops({"op": "replace", "value": {"displayName": "Sales EU"}})
    )
    assert renamed.json()["displayName"] == "Sales EU"
    user = (await scim.get(f"/Users/{c}")).json()
    assert user["groups"] == [
        {"value": gid, "display": "Sales EU", "$ref": user["groups"][0]["$ref"], "type": "direct"}
    ]
    assert (await scim.delete(f"/Groups/{gid}")).status_code == 204
    assert_scim_error(await scim.get(f"/Groups/{gid}"), 404)
    assert "groups" not in (await scim.get(f"/Users/{c}")).json()


async def test_member_patch_answers_204_whatever_the_group_size(scim: ScimClient) -> None:
    """RFC 7644 §3.5.2: a PATCH changing only members answers 204 with the new ETag, so a client
    building a large group one PATCH at a time is never sent the whole member list back; any
    other PATCH, or one asking for attributes, answers 200 with the group."""
    people = await make_users(scim, 4)
    gid = (await scim.post("/Groups", group_body("Big"))).json()["id"]
    for n, person in enumerate(people[:3], start=2):
        added = await scim.patch(
            f"/Groups/{gid}", ops({"op": "add", "path": "members", "value": [{"value": person}]})
        )
        assert (added.status_code, added.content, added.headers["ETag"]) == (204, b"", f'W/"{n}"')
    group = (await scim.get(f"/Groups/{gid}")).json()
    assert member_ids(group) == set(people[:3])
    assert group["meta"]["version"] == 'W/"4"'
    # A member change and a rename together: the group comes back, members and all.
    both = await scim.patch(
        f"/Groups/{gid}",
        ops(
            {"op": "add", "path": "members", "value": [{"value": people[3]}]},
            {"op": "replace", "path": "displayName", "value": "Bigger"},
        ),
    )
    assert both.status_code == 200, both.text
    assert (both.json()["displayName"], member_ids(both.json())) == ("Bigger", set(people))
    # Removing every member is a membership change too.
    emptied = await scim.patch(f"/Groups/{gid}", ops({"op": "remove", "path": "members"}))
    assert emptied.status_code == 204
    assert "members" not in (await scim.get(f"/Groups/{gid}")).json()
    # A refused member PATCH changes nothing and says why.
    refused = await scim.patch(
        f"/Groups/{gid}", ops({"op": "add", "path": "members", "value": [{"value": "nobody"}]})
    )
    assert_scim_error(refused, 400, "invalidValue")
    assert (await scim.get(f"/Groups/{gid}")).json()["meta"]["version"] == 'W/"6"'


async def test_a_member_sub_attribute_excluded_keeps_the_members(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.5: excluding `members.display` or `groups.display` drops that
    sub-attribute, not the attribute; naming the core schema shows every attribute of it."""
    user = (await scim.post("/Users", user_body("member@example.com"))).json()
    members = [{"value": user["id"]}]
    group = (await scim.post("/Groups", group_body("Team", members=members))).json()
    one = await scim.get(f"/Groups/{group['id']}", params={"excludedAttributes": "members.display"})
    assert [set(m) for m in one.json()["members"]] == [{"value", "$ref", "type"}]
    listed = await scim.get("/Groups", params={"excludedAttributes": "members.$ref"})
    assert [set(m) for m in listed.json()["Resources"][0]["members"]] == [{"value", "type"}]
    for params, shows_display in (
        ({"excludedAttributes": "groups.display"}, False),
        ({"attributes": "urn:ietf:params:scim:schemas:core:2.0:User"}, True),
        ({"attributes": "groups.value"}, False),
    ):
        got = (await scim.get(f"/Users/{user['id']}", params=params)).json()
        assert [g["value"] for g in got["groups"]] == [group["id"]], params
        assert ("display" in got["groups"][0]) is shows_display, params
    page = await scim.get("/Users", params={"excludedAttributes": "groups.display"})
    assert [set(g) for g in page.json()["Resources"][0]["groups"]] == [{"value", "$ref", "type"}]


async def test_excluded_members_and_filters(scim: ScimClient) -> None:
    (a,) = await make_users(scim, 1)
    gid = (await scim.post("/Groups", group_body("Ops", members=[{"value": a}]))).json()["id"]
    plain = await scim.get(f"/Groups/{gid}", params={"excludedAttributes": "members"})
    assert "members" not in plain.json()
    by_name = await scim.get("/Groups", params={"filter": 'displayName eq "ops"'})
    assert [g["id"] for g in by_name.json()["Resources"]] == [gid]
    by_member = await scim.get("/Groups", params={"filter": f'members[value eq "{a}"]'})
    assert by_member.json()["totalResults"] == 1
    users_in = await scim.get("/Users", params={"filter": f'groups.value eq "{gid}"'})
    assert [u["id"] for u in users_in.json()["Resources"]] == [a]


async def test_put_replaces_members(scim: ScimClient) -> None:
    a, b = await make_users(scim, 2)
    gid = (await scim.post("/Groups", group_body("G", members=[{"value": a}]))).json()["id"]
    replaced = await scim.put(f"/Groups/{gid}", group_body("G2", members=[{"value": b}]))
    assert replaced.status_code == 200, replaced.text
    assert member_ids(replaced.json()) == {b}
    assert replaced.json()["displayName"] == "G2"


async def test_unknown_member_is_refused_and_changes_nothing(scim: ScimClient) -> None:
    (a,) = await make_users(scim, 1)
    gid = (await scim.post("/Groups", group_body("G", members=[{"value": a}]))).json()["id"]
    before = (await scim.get(f"/Groups/{gid}")).json()
    bad = await scim.patch(
        f"/Groups/{gid}",
        ops(
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]},
        ),
    )
    assert_scim_error(bad, 400, "invalidValue")
    assert (await scim.get(f"/Groups/{gid}")).json() == before


async def test_deleting_a_user_removes_their_memberships(scim: ScimClient) -> None:
    a, b = await make_users(scim, 2)
    gid = (
        await scim.post("/Groups", group_body("G", members=[{"value": a}, {"value": b}]))
    ).json()["id"]
    assert (await scim.delete(f"/Users/{a}")).status_code == 204
    assert member_ids((await scim.get(f"/Groups/{gid}")).json()) == {b}


async def test_a_user_shows_each_of_its_groups_in_the_order_they_were_made(
    scim: ScimClient,
) -> None:
    """The `groups` of a GET, a `userName eq` look-up, and the answer to a PATCH or PUT (one
    that changes the user and one that changes nothing) come in the user's row on SQLite (one
    statement): every group, its display name as it is now (quotes and non-ASCII kept), oldest
    first, whatever order the user joined them in."""
    [user] = await make_users(scim, 1)
    user_name = (await scim.get(f"/Users/{user}")).json()["userName"]
    names = ['Zeta "quoted"', "Ålesund ✓", "alpha"]
    gids = []
    for name in names:
        made = await scim.post("/Groups", group_body(name))
        assert made.status_code == 201, made.text
        gids.append(made.json()["id"])
    for gid in reversed(gids):
        added = await scim.patch(
            f"/Groups/{gid}", ops({"op": "add", "path": "members", "value": [{"value": user}]})
        )
        assert added.status_code in (200, 204), added.text
    found = await scim.get("/Users", params={"filter": f'userName eq "{user_name}"'})
    [looked_up] = found.json()["Resources"]
    patched = await scim.patch(
        f"/Users/{user}", ops({"op": "replace", "path": "title", "value": "Engineer"})
    )
    assert patched.status_code == 200, patched.text
    replaced = await scim.put(f"/Users/{user}", user_body(user_name, title="Lead"))
    assert replaced.status_code == 200, replaced.text
    resent = await scim.put(f"/Users/{user}", user_body(user_name, title="Lead"))
    assert resent.status_code == 200, resent.text
    assert resent.json()["meta"]["version"] == replaced.json()["meta"]["version"], "a no-op PUT"
    for shown in (
        (await scim.get(f"/Users/{user}")).json()["groups"],
        looked_up["groups"],
        patched.json()["groups"],
        replaced.json()["groups"],
        resent.json()["groups"],
    ):
        assert [(g["value"], g["display"], g["type"]) for g in shown] == [
            (gid, name, "direct") for gid, name in zip(gids, names, strict=True)
        ]
        assert all(g["$ref"].endswith(f"/Groups/{g['value']}") for g in shown)
    shown = (await scim.get(f"/Users/{user}")).json()["groups"]
    # Out of one group, renamed in another: the next GET says so.
    await scim.patch(f"/Groups/{gids[0]}", ops({"op": "remove", "path": "members"}))
    await scim.patch(
        f"/Groups/{gids[2]}", ops({"op": "replace", "path": "displayName", "value": "Ω"})
    )
    shown = (await scim.get(f"/Users/{user}")).json()["groups"]
    assert [(g["value"], g["display"]) for g in shown] == [(gids[1], names[1]), (gids[2], "Ω")]


async def test_a_group_name_is_taken_once_per_workspace(
    scim: ScimClient, other_scim: ScimClient
) -> None:
    """Entra ID matches groups by displayName: a second group of one name would strand it."""
    first = await scim.post("/Groups", group_body("Engineering", externalId="e-1"))
    assert first.status_code == 201, first.text
    gid = first.json()["id"]
    for clash in ("Engineering", "ENGINEERING", "engineering"):
        again = await scim.post("/Groups", group_body(clash, externalId="e-2"))
        body = assert_scim_error(again, 409, "uniqueness")
        assert gid in body["detail"]
    found = (await scim.get("/Groups", params={"filter": 'displayName eq "engineering"'})).json()
    assert [g["id"] for g in found["Resources"]] == [gid]
    # Another workspace is another namespace.
    assert (await other_scim.post("/Groups", group_body("Engineering"))).status_code == 201

    other = (await scim.post("/Groups", group_body("Operations"))).json()
    path = f"/Groups/{other['id']}"
    put = await scim.put(path, group_body("engineering"))
    assert_scim_error(put, 409, "uniqueness")
    for operation in (
        {"op": "replace", "path": "displayName", "value": "Engineering"},
        {"op": "Replace", "value": {"displayName": "ENGINEERING"}},
    ):
        assert_scim_error(await scim.patch(path, ops(operation)), 409, "uniqueness")
    unchanged = (await scim.get(path)).json()
    assert unchanged["displayName"] == "Operations"
    assert unchanged["meta"]["version"] == other["meta"]["version"]

    # A group keeps its own name in another case, and a freed name is free again.
    renamed = await scim.patch(
        f"/Groups/{gid}", ops({"op": "replace", "path": "displayName", "value": "ENGINEERING"})
    )
    assert renamed.status_code == 200, renamed.text
    assert (await scim.delete(f"/Groups/{gid}")).status_code == 204
    assert (await scim.put(path, group_body("Engineering"))).status_code == 200


async def test_the_group_schema_says_its_name_is_unique(scim: ScimClient) -> None:
    schema = (await scim.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group")).json()
    name = next(a for a in schema["attributes"] if a["name"] == "displayName")
    assert name["uniqueness"] == "server"


async def test_a_deleted_member_gives_its_groups_a_new_version(scim: ScimClient) -> None:
    a, b = await make_users(scim, 2)
    group = (await scim.post("/Groups", group_body(members=[{"value": a}, {"value": b}]))).json()
    lonely = (await scim.post("/Groups", group_body(members=[{"value": b}]))).json()
    path = f"/Groups/{group['id']}"
    assert (await scim.delete(f"/Users/{a}")).status_code == 204
    after = await scim.get(path)
    assert member_ids(after.json()) == {b}
    assert after.headers["ETag"] != group["meta"]["version"]
    assert after.json()["meta"]["lastModified"] >= group["meta"]["lastModified"]
    cached = await scim.get(path, headers={"If-None-Match": group["meta"]["version"]})
    assert cached.status_code == 200
    # A group the user was not in keeps its version.
    untouched = (await scim.get(f"/Groups/{lonely['id']}")).json()
    assert untouched["meta"]["version"] == lonely["meta"]["version"]


async def test_a_users_version_changes_with_its_groups(scim: ScimClient) -> None:
    """RFC 7644 §3.14: `groups` is part of a user, so its ETag and lastModified change with it."""
    a, b, c, bystander = await make_users(scim, 4)
    seen = {uid: (await scim.get(f"/Users/{uid}")).json()["meta"] for uid in (a, b, c, bystander)}

    async def changed(*uids: str) -> None:
        for uid in (a, b, c, bystander):
            meta = (await scim.get(f"/Users/{uid}")).json()["meta"]
            if uid in uids:
                assert meta["version"] != seen[uid]["version"], uid
                assert meta["lastModified"] > seen[uid]["lastModified"], uid
                stale = await scim.get(
                    f"/Users/{uid}", headers={"If-None-Match": seen[uid]["version"]}
                )
                assert stale.status_code == 200
            else:
                assert meta == seen[uid], uid
            seen[uid] = meta

    group = (await scim.post("/Groups", group_body("Ops", members=[{"value": a}]))).json()
    path = f"/Groups/{group['id']}"
    await changed(a)
    added = await scim.patch(path, ops({"op": "add", "path": "members", "value": [{"value": b}]}))
    assert added.status_code in (200, 204), added.text
    await changed(b)
    again = await scim.patch(path, ops({"op": "add", "path": "members", "value": [{"value": b}]}))
    assert again.status_code in (200, 204), again.text
    await changed()  # already a member: nothing changed
    removed = await scim.patch(path, ops({"op": "remove", "path": f'members[value eq "{a}"]'}))
    assert removed.status_code in (200, 204), removed.text
    await changed(a)
    renamed = await scim.patch(path, ops({"op": "replace", "path": "displayName", "value": "Ops2"}))
    assert renamed.status_code == 200, renamed.text
    assert (await scim.get(f"/Users/{b}")).json()["groups"][0]["display"] == "Ops2"
    await changed(b)
    put = group_body("Ops2", members=[{"value": c}])
    assert (await scim.put(path, put)).status_code == 200
    await changed(b, c)
    assert (await scim.delete(path)).status_code == 204
    await changed(c)


async def test_a_put_ignores_an_id_in_its_body(scim: ScimClient) -> None:
    """`id` is readOnly: RFC 7644 §3.5.1 says a PUT's value for it SHALL be ignored."""
    group = (await scim.post("/Groups", group_body("Before"))).json()
    other = (await scim.post("/Groups", group_body("Other"))).json()
    path = f"/Groups/{group['id']}"
    replaced = await scim.put(path, {**group_body("After"), "ID": other["id"]})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == group["id"]
    assert replaced.json()["displayName"] == "After"
    assert (await scim.get(f"/Groups/{other['id']}")).json()["displayName"] == "Other"


async def test_a_pathless_patch_may_send_back_the_groups_own_id(scim: ScimClient) -> None:
    group = (await scim.post("/Groups", group_body("Before"))).json()
    path = f"/Groups/{group['id']}"
    value = {"id": group["id"], "displayName": "After"}
    renamed = await scim.patch(path, ops({"op": "replace", "value": value}))
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["displayName"] == "After"
    other = {"id": "not-its-id", "displayName": "Again"}
    refused = await scim.patch(path, ops({"op": "replace", "value": other}))
    assert_scim_error(refused, 400, "mutability")
    assert (await scim.get(path)).json()["displayName"] == "After"


async def test_root_search_sorted_by_an_attribute_only_users_have(
    scim: ScimClient, scim_error: Any
) -> None:
    """RFC 7644 §3.4.2.3: groups have no userName, so they sort last (first when descending)."""
    for name in ("b-user", "a-user", "c-user"):
        assert (await scim.post("/Users", user_body(name))).status_code == 201
    for name in ("team-2", "team-1"):
        assert (await scim.post("/Groups", group_body(name))).status_code == 201

    async def names(**request: Any) -> list[str]:
        return await _root_search_names(scim, 5, "userName", **request)

    assert await names(sortBy="userName", count=1000) == [
        "a-user",
        "b-user",
        "c-user",
        "team-2",
        "team-1",
    ]
    assert await names(sortBy="userName", startIndex=4) == ["team-2", "team-1"]
    assert await names(sortBy="userName", sortOrder="descending", count=3) == [
        "team-2",
        "team-1",
        "c-user",
    ]
    refused = await scim.post("/.search", {"schemas": [SEARCH], "sortBy": "nope"})
    scim_error(refused, 400, "invalidFilter")


SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def _root_search_names(scim: ScimClient, total: int, first: str, **request: Any) -> list[str]:
    """The names (`first`, else the other of userName/displayName) of a root search's page."""
    other = "displayName" if first == "userName" else "userName"
    response = await scim.post("/.search", {"schemas": [SEARCH], **request})
    assert response.status_code == 200, response.text
    assert response.json()["totalResults"] == total
    return [r.get(first) or r[other] for r in response.json().get("Resources", [])]


async def test_root_search_sorted_by_an_attribute_both_types_have_interleaves_them(
    scim: ScimClient,
) -> None:
    """RFC 7644 §3.4.3 with §3.4.2.3: one sorted list of Users and Groups, paged as one."""
    for user, display in (("u1", "Bravo"), ("u2", "delta"), ("u3", None)):
        extra = {"displayName": display} if display else {}
        assert (await scim.post("/Users", user_body(user, **extra))).status_code == 201
    for name in ("alpha", "Charlie", "echo"):
        assert (await scim.post("/Groups", group_body(name))).status_code == 201

    async def names(**request: Any) -> list[str]:
        return await _root_search_names(scim, 6, "displayName", **request)

    ordered = ["alpha", "Bravo", "Charlie", "delta", "echo", "u3"]
    assert await names(sortBy="displayName") == ordered
    assert await names(sortBy="displayName", startIndex=2, count=3) == ordered[1:4]
    assert await names(sortBy="displayName", sortOrder="descending") == ["u3", *ordered[4::-1]]
    by_creation = await names(sortBy="meta.created")
    assert by_creation == ["Bravo", "delta", "u3", "alpha", "Charlie", "echo"]


async def test_root_search_filter_on_an_attribute_only_one_type_has(
    scim: ScimClient, scim_error: Any
) -> None:
    """RFC 7644 §3.4.2.1: an attribute a resource type does not define has no value there.

    `pr` and `eq` on it are false for that type's resources, so an `or` may still match them
    through another attribute and a `not` matches them all; an attribute neither type defines
    is still an error.
    """
    for name in ("alice", "bob"):
        assert (await scim.post("/Users", user_body(name))).status_code == 201
    for name in ("admins", "staff"):
        assert (await scim.post("/Groups", group_body(name))).status_code == 201

    async def names(flt: str, total: int) -> list[str]:
        found = await _root_search_names(scim, total, "userName", filter=flt)
        return sorted(found)

    assert await names('userName eq "alice"', 1) == ["alice"]
    assert await names('userName eq "alice" or displayName eq "admins"', 2) == ["admins", "alice"]
    assert await names('not (userName eq "alice")', 3) == ["admins", "bob", "staff"]
    assert await names('members pr or userName sw "b"', 1) == ["bob"]
    assert await names('not (emails[type eq "work"]) and displayName eq "staff"', 1) == ["staff"]
    assert await names('userName ne "bob" and not (members pr)', 3) == ["admins", "alice", "staff"]
    for unknown in ('nope eq "x"', 'userName eq "a" or nope pr', 'emails[nope eq "x"]'):
        refused = await scim.post("/.search", {"schemas": [SEARCH], "filter": unknown})
        scim_error(refused, 400, "invalidFilter")


async def test_root_query_is_the_get_form_of_the_root_search(
    scim: ScimClient, scim_error: Any
) -> None:
    """RFC 7644 §3.4.2: a GET at the base URI queries every resource type, as `/.search` does."""
    for name in ("alice", "bob"):
        assert (await scim.post("/Users", user_body(name))).status_code == 201
    assert (await scim.post("/Groups", group_body("admins"))).status_code == 201

    async def page(**params: str) -> Any:
        response = await scim.get("", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/scim+json")
        return response.json()

    every = await page(sortBy="meta.created")
    assert every["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert every["totalResults"] == 3
    assert [r.get("userName") or r["displayName"] for r in every["Resources"]] == [
        "alice",
        "bob",
        "admins",
    ]
    found = await page(filter='userName eq "bob" or displayName eq "admins"', attributes="id")
    assert found["totalResults"] == 2
    assert all(set(r) <= {"id", "schemas", "meta"} for r in found["Resources"])
    second = await page(sortBy="meta.created", startIndex="2", count="1")
    assert [r["userName"] for r in second["Resources"]] == ["bob"]
    scim_error(await scim.get("", params={"filter": 'nope eq "x"'}), 400, "invalidFilter")
    scim_error(await scim.get("", params={"cursor": ""}), 400, "invalidCursor")


async def test_filter_on_schemas(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.2's example `schemas eq "urn:…:enterprise:2.0:User"` selects by schema."""
    enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    core = "urn:ietf:params:scim:schemas:core:2.0:User"
    extended = user_body("extended", **{enterprise: {"department": "Tours"}})
    extended["schemas"] = [core, enterprise]
    assert (await scim.post("/Users", extended)).status_code == 201
    assert (await scim.post("/Users", user_body("plain"))).status_code == 201
    assert (await scim.post("/Groups", group_body("team"))).status_code == 201

    async def names(path: str, flt: str) -> list[str]:
        response = await scim.get(path, params={"filter": flt})
        assert response.status_code == 200, response.text
        found = response.json()["Resources"]
        return sorted(r.get("userName") or r["displayName"] for r in found)

    assert await names("/Users", f'schemas eq "{enterprise}"') == ["extended"]
    assert await names("/Users", f'schemas eq "{enterprise.upper()}"') == ["extended"]
    assert await names("/Users", f'not (schemas eq "{enterprise}")') == ["plain"]
    assert await names("/Users", 'schemas co "enterprise"') == ["extended"]
    assert await names("/Users", f'schemas eq "{core}" and schemas pr') == ["extended", "plain"]
    group_schema = "urn:ietf:params:scim:schemas:core:2.0:Group"
    assert await names("/Groups", f'schemas eq "{group_schema}"') == ["team"]
    by_type = await _root_search_names(scim, 1, "userName", filter=f'schemas eq "{group_schema}"')
    assert by_type == ["team"]
    unsorted = await scim.get("/Users", params={"sortBy": "schemas"})
    assert_scim_error(unsorted, 400, "invalidFilter")
    assert unsorted.json()["detail"] == "cannot sort by 'schemas'"


async def test_members_named_with_the_group_schema_urn(scim: ScimClient) -> None:
    """RFC 7644 §3.10: `urn:…:core:2.0:Group:members` is `members`, in a path or a value key."""
    a = (await scim.post("/Users", user_body("urn-a"))).json()["id"]
    b = (await scim.post("/Users", user_body("urn-b"))).json()["id"]
    group = (await scim.post("/Groups", group_body(members=[{"value": a}]))).json()
    path = f"/Groups/{group['id']}"
    members = "urn:ietf:params:scim:schemas:core:2.0:Group:members"

    async def member_ids() -> list[str]:
        return sorted(m["value"] for m in (await scim.get(path)).json().get("members", []))

    added = await scim.patch(path, ops({"op": "add", "path": members, "value": [{"value": b}]}))
    assert added.status_code in (200, 204), added.text
    assert await member_ids() == sorted([a, b])
    removed = await scim.patch(path, ops({"op": "remove", "path": f'{members}[value eq "{a}"]'}))
    assert removed.status_code in (200, 204), removed.text
    assert await member_ids() == [b]
    pathless = ops({"op": "add", "value": {members.upper(): [{"value": a}]}})
    assert (await scim.patch(path, pathless)).status_code in (200, 204)
    assert await member_ids() == sorted([a, b])
    unknown = ops({"op": "add", "path": members, "value": [{"value": "no-such-user"}]})
    assert_scim_error(await scim.patch(path, unknown), 400, "invalidValue")


async def test_replacing_members_with_the_same_set_changes_nothing(scim: ScimClient) -> None:
    """Entra and Okta re-send whole member lists: the same set keeps the version."""
    a = (await scim.post("/Users", user_body("same-a"))).json()["id"]
    group = (await scim.post("/Groups", group_body(members=[{"value": a}]))).json()
    path = f"/Groups/{group['id']}"
    before = await scim.get(path)
    user_before = (await scim.get(f"/Users/{a}")).json()["meta"]["version"]
    for operation in (
        {"op": "replace", "path": "members", "value": [{"value": a}]},
        {"op": "replace", "value": {"members": [{"value": a}]}},
    ):
        response = await scim.patch(path, ops(operation))
        assert response.status_code in (200, 204), response.text
        after = await scim.get(path)
        assert after.headers["etag"] == before.headers["etag"]
        assert after.json()["meta"]["lastModified"] == before.json()["meta"]["lastModified"]
    assert (await scim.get(f"/Users/{a}")).json()["meta"]["version"] == user_before


async def test_only_members_who_join_or_leave_get_a_new_version(scim: ScimClient) -> None:
    """A PUT or a member replace gives a new version to the users who join or leave, not to
    those who stay: their `groups` is the same (RFC 7644 §3.14), and a new ETag would cost an
    IdP sending `If-Match` a needless 412."""
    a, b, c, d = await make_users(scim, 4)
    group = await scim.post("/Groups", group_body("Crew", members=[{"value": a}, {"value": b}]))
    path = f"/Groups/{group.json()['id']}"

    async def versions() -> dict[str, str]:
        return {u: (await scim.get(f"/Users/{u}")).json()["meta"]["version"] for u in (a, b, c, d)}

    seen = await versions()
    steps: list[tuple[Any, set[str]]] = [
        (
            scim.put(
                path, group_body("Crew", externalId="x", members=[{"value": a}, {"value": b}])
            ),
            set(),
        ),
        (
            scim.put(
                path, group_body("Crew", externalId="x", members=[{"value": b}, {"value": c}])
            ),
            {a, c},
        ),
        (
            scim.patch(
                path,
                ops({"op": "replace", "path": "members", "value": [{"value": c}, {"value": d}]}),
            ),
            {b, d},
        ),
        (scim.patch(path, ops({"op": "replace", "value": {"members": [{"value": d}]}})), {c}),
    ]
    for number, (request, moved) in enumerate(steps):
        response = await request
        assert response.status_code in (200, 204), response.text
        now = await versions()
        assert {u for u in now if now[u] != seen[u]} == moved, number
        seen = now
    assert member_ids((await scim.get(path)).json()) == {d}


async def test_a_group_put_back_as_a_get_showed_it_changes_nothing(scim: ScimClient) -> None:
    """Okta pushes whole groups with PUT: a member's `display` is kept from a POST or PUT as a
    PATCH keeps it, so sending the group back as it is keeps its version."""
    a, b = await make_users(scim, 2)
    created = await scim.post(
        "/Groups", group_body("Pod", members=[{"value": a, "display": "Ann"}])
    )
    assert [m.get("display") for m in created.json()["members"]] == ["Ann"]
    path = f"/Groups/{created.json()['id']}"
    add = ops({"op": "add", "path": "members", "value": [{"value": b, "display": "Bob"}]})
    assert (await scim.patch(path, add)).status_code == 204
    shown = await scim.get(path)
    body = {k: v for k, v in shown.json().items() if k not in ("id", "meta")}
    assert {m["value"]: m.get("display") for m in body["members"]} == {a: "Ann", b: "Bob"}
    users_before = [(await scim.get(f"/Users/{u}")).json()["meta"]["version"] for u in (a, b)]
    again = await scim.put(path, body)
    assert again.status_code == 200, again.text
    assert again.headers["etag"] == shown.headers["etag"]
    assert [
        (await scim.get(f"/Users/{u}")).json()["meta"]["version"] for u in (a, b)
    ] == users_before
    # A new display is a change of the group alone.
    body["members"] = [{"value": a, "display": "Annie"}, {"value": b, "display": "Bob"}]
    renamed = await scim.put(path, body)
    assert renamed.headers["etag"] != shown.headers["etag"]
    assert {m["value"]: m.get("display") for m in renamed.json()["members"]} == {
        a: "Annie",
        b: "Bob",
    }
    assert [
        (await scim.get(f"/Users/{u}")).json()["meta"]["version"] for u in (a, b)
    ] == users_before


async def test_a_member_change_without_a_value_is_refused(scim: ScimClient) -> None:
    """RFC 7644 §3.5.2.1 and §3.5.2.3: add and replace MUST carry a value; a replace read as an
    empty list removed every member. A member without a `value` is refused, not dropped."""
    a, b = await make_users(scim, 2)
    created = await scim.post("/Groups", group_body("Keep", members=[{"value": a}, {"value": b}]))
    path = f"/Groups/{created.json()['id']}"
    before = await scim.get(path)
    refused = [
        await scim.patch(path, ops({"op": "replace", "path": "members"})),
        await scim.patch(path, ops({"op": "add", "path": "members"})),
        await scim.put(path, group_body("Keep", members=[{"display": "No One"}])),
        await scim.post("/Groups", group_body("Ghost", members=[{"display": "No One"}])),
    ]
    for response in refused:
        assert_scim_error(response, 400, "invalidValue")
    after = await scim.get(path)
    assert after.json() == before.json()
    ghost = await scim.get("/Groups", params={"filter": 'displayName eq "Ghost"'})
    assert ghost.json()["totalResults"] == 0


async def test_a_user_created_again_comes_back_in_no_group(scim: ScimClient, db_url: str) -> None:
    """A membership a DELETE did not see (one added while it ran, by a version of the hub before
    the members' rows were read FOR SHARE) does not come back with the user."""
    from sqlalchemy import insert, select

    from hub.core.database import open_database
    from hub.core.models import groups, memberships, users

    name = "returning@example.com"
    uid = (await scim.post("/Users", user_body(name))).json()["id"]
    gid = (await scim.post("/Groups", group_body("Alumni"))).json()["id"]
    assert (await scim.delete(f"/Users/{uid}")).status_code == 204

    def hide_membership(conn: Any) -> None:
        user_pk = conn.execute(select(users.c.pk).where(users.c.id == uid)).scalar_one()
        group_pk = conn.execute(select(groups.c.pk).where(groups.c.id == gid)).scalar_one()
        conn.execute(insert(memberships).values(group_pk=group_pk, user_pk=user_pk))

    db = open_database(db_url)
    try:
        await db.write(hide_membership)
    finally:
        await db.close()
    back = await scim.post("/Users", user_body(name))
    assert (back.status_code, back.json()["id"]) == (201, uid)
    assert "groups" not in back.json()
    assert "members" not in (await scim.get(f"/Groups/{gid}")).json()


async def test_members_must_be_a_list_whose_unassigned_elements_are_dropped(
    scim: ScimClient,
) -> None:
    """RFC 7643 §2.4: `members` is multi-valued, so one object is a 400; null and `{}` elements
    are unassigned (§2.5) and dropped, as at any depth of a resource."""
    (a,) = await make_users(scim, 1)
    single = await scim.post("/Groups", group_body("Single", members={"value": a}))
    assert_scim_error(single, 400, "invalidValue")
    created = await scim.post("/Groups", group_body("Holes", members=[None, {"value": a}, {}]))
    assert created.status_code == 201, created.text
    assert member_ids(created.json()) == {a}
    path = f"/Groups/{created.json()['id']}"
    assert_scim_error(
        await scim.put(path, group_body("Holes", members={"value": a})), 400, "invalidValue"
    )
    emptied = await scim.put(path, group_body("Holes", members=[None]))
    assert emptied.status_code == 200, emptied.text
    assert "members" not in emptied.json()


async def test_membership_checks_compare_ids_in_any_letters(scim: ScimClient) -> None:
    """Entra ID's check `id eq "G" and members eq "U"`: a member's value is caseExact=false."""
    a, b = await make_users(scim, 2)
    created = await scim.post("/Groups", group_body(members=[{"value": a}]))
    gid = created.json()["id"]

    async def groups_with(member: str) -> list[str]:
        query = {"filter": f'id eq "{gid}" and members eq "{member}"'}
        response = await scim.get("/Groups", params={**query, "excludedAttributes": "members"})
        assert response.status_code == 200, response.text
        return [group["id"] for group in response.json()["Resources"]]

    assert await groups_with(a.upper()) == [gid]
    assert await groups_with(a) == [gid]
    assert await groups_with(b) == []
    users = await scim.get("/Users", params={"filter": f'groups eq "{gid.upper()}"'})
    assert [user["id"] for user in users.json()["Resources"]] == [a]


SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def test_member_and_group_refs_filter_and_sort_as_rendered(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.2 filters on any attribute: `members.$ref` is `{base}/Users/{id}` and a
    user's `groups.$ref` `{base}/Groups/{id}` as rendered, caseExact=false (the hub's /Schemas).
    Both answered 400 invalidFilter in list filters, sortBy and the root search."""
    a, b = await make_users(scim, 2)
    made = await scim.post("/Groups", group_body("G1", members=[{"value": a}]))
    g1 = made.json()
    g2 = (await scim.post("/Groups", group_body("G2", members=[{"value": b}]))).json()
    a_ref = g1["members"][0]["$ref"]
    base = a_ref.rsplit("/Users/", 1)[0]
    g1_ref = g1["meta"]["location"]
    assert g1_ref == f"{base}/Groups/{g1['id']}"
    user_a = (await scim.get(f"/Users/{a}")).json()
    assert user_a["groups"][0]["$ref"] == g1_ref

    async def names(path: str, flt: str, **params: str) -> list[str]:
        response = await scim.get(path, params={"filter": flt, **params})
        assert response.status_code == 200, (flt, response.text)
        resources = response.json()["Resources"]
        return [r.get("displayName") or r["id"] for r in resources]

    groups_expected = {
        f'members[$ref eq "{a_ref}"]': ["G1"],
        f'members.$ref eq "{a_ref.upper()}"': ["G1"],
        f'members[$ref eq "{a_ref}/"]': [],
        f'members[$ref ne "{a_ref}"]': ["G2"],
        f'members[$ref sw "{base}/Users/"]': ["G1", "G2"],
        f'members[$ref sw "{base.upper()}/USERS/"]': ["G1", "G2"],
        f'members[$ref sw "{base[:9]}"]': ["G1", "G2"],
        f'members[$ref sw "{base}/Groups/"]': [],
        f'members[$ref co "{a[-6:].upper()}"]': ["G1"],
        f'members[$ref ew "{a[-6:]}"]': ["G1"],
        "members[$ref pr]": ["G1", "G2"],
        f'not (members.$ref eq "{a_ref}")': ["G2"],
    }
    for flt, found in groups_expected.items():
        assert await names("/Groups", flt) == found, flt
    assert await names("/Users", f'groups[$ref eq "{g1_ref}"]') == [a]
    assert await names("/Users", f'groups.$ref eq "{g1_ref.upper()}"') == [a]
    assert await names("/Users", f'groups[$ref sw "{base}/Groups/"]') == [a, b]
    assert await names("/Users", f'groups[$ref co "{g2["id"][-6:]}"]') == [b]
    assert await names("", f'members[$ref eq "{a_ref}"] or groups[$ref eq "{g1_ref}"]') == [
        a,
        "G1",
    ]
    searched = await scim.post(
        "/.search", {"schemas": [SEARCH], "filter": f'groups.$ref eq "{g1_ref}"'}
    )
    assert [r["id"] for r in searched.json()["Resources"]] == [a], searched.text
    searched = await scim.post(
        "/Groups/.search", {"schemas": [SEARCH], "filter": f'members.$ref eq "{a_ref}"'}
    )
    assert [r["displayName"] for r in searched.json()["Resources"]] == ["G1"], searched.text
    by_ref = ["G1", "G2"] if a < b else ["G2", "G1"]
    assert await names("/Groups", "members pr", sortBy="members.$ref") == by_ref
    by_group = [a, b] if g1["id"] < g2["id"] else [b, a]
    assert await names("/Users", "groups pr", sortBy="groups.$ref") == by_group


async def test_member_ids_in_other_letters_name_the_same_users(scim: ScimClient) -> None:
    """RFC 7643 §8.7.1: `members.value` is caseExact=false (so say the hub's /Schemas), and ids
    are lower case. An id sent in capitals was an unknown user for POST, PUT and PATCH add or
    replace (400), and a remove of it by value removed nothing."""
    a, b, c = await make_users(scim, 3)
    made = await scim.post(
        "/Groups", group_body("G", members=[{"value": a.upper()}, {"value": a}, {"value": b}])
    )
    assert made.status_code == 201, made.text
    gid = made.json()["id"]
    assert sorted(m["value"] for m in made.json()["members"]) == sorted([a, b])

    async def members() -> list[str]:
        group = (await scim.get(f"/Groups/{gid}")).json()
        return sorted(m["value"] for m in group.get("members", []))

    removed = await scim.patch(
        f"/Groups/{gid}", ops({"op": "remove", "path": "members", "value": [{"value": a.upper()}]})
    )
    assert removed.status_code == 204, removed.text
    assert await members() == [b]
    value = [{"value": c.upper()}, {"value": c}, {"value": b.upper()}]
    added = await scim.patch(
        f"/Groups/{gid}", ops({"op": "add", "path": "members", "value": value})
    )
    assert added.status_code == 204, added.text
    assert await members() == sorted([b, c])
    replaced = await scim.patch(
        f"/Groups/{gid}",
        ops({"op": "replace", "path": "members", "value": [{"value": a.upper()}, {"value": b}]}),
    )
    assert replaced.status_code == 204, replaced.text
    assert await members() == sorted([a, b])
    put = await scim.put(
        f"/Groups/{gid}", group_body("G", members=[{"value": c.upper()}, {"value": c.title()}])
    )
    assert put.status_code == 200, put.text
    assert [m["value"] for m in put.json()["members"]] == [c]
    user = (await scim.get(f"/Users/{c}")).json()
    assert [g["value"] for g in user["groups"]] == [gid]
