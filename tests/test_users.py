"""Users over real HTTP (RFC 7644 §3.3-§3.6), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import ScimClient, assert_scim_error, group_body, user_body
from tests.conftest import patch_op as ops

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
CUSTOM = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"


def full_user(user_name: str = "bjensen@example.com") -> dict[str, Any]:
    return {
        "schemas": [USER, ENTERPRISE],
        "userName": user_name,
        "externalId": "ext-" + user_name,
        "name": {
            "givenName": "Barbara",
            "familyName": "Jensen",
            "formatted": "Ms. Barbara J Jensen",
        },
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "emails": [
            {"value": user_name, "type": "work", "primary": True},
            {"value": "babs@jensen.org", "type": "home"},
        ],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
        "active": True,
        "x-unmapped": {"kept": ["as", "sent"]},
        ENTERPRISE: {
            "department": "Tours",
            "manager": {"value": "m-1", "$ref": "../Users/m-1"},  # as RFC 7643 §8.3 shows it
        },
    }


async def test_create_returns_the_resource_with_meta(scim: ScimClient) -> None:
    response = await scim.post("/Users", full_user())
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["content-type"].startswith("application/scim+json")
    assert response.headers["location"] == body["meta"]["location"]
    assert response.headers["etag"] == body["meta"]["version"]
    assert body["meta"]["resourceType"] == "User"
    assert body["meta"]["location"].endswith(f"/scim/v2/Users/{body['id']}")
    assert body["meta"]["created"] == body["meta"]["lastModified"]
    assert body["name"]["givenName"] == "Barbara"
    assert body[ENTERPRISE]["department"] == "Tours"
    assert body["x-unmapped"] == {"kept": ["as", "sent"]}
    assert "password" not in body


async def test_get_returns_what_was_put(scim: ScimClient) -> None:
    created = (await scim.post("/Users", user_body("a@example.com"))).json()
    document = full_user("a@example.com")
    document["id"] = created["id"]
    put = await scim.put(f"/Users/{created['id']}", document)
    assert put.status_code == 200, put.text
    got = (await scim.get(f"/Users/{created['id']}")).json()
    for key, value in full_user("a@example.com").items():
        assert got[key] == value, key
    assert got["meta"]["version"] != created["meta"]["version"]


async def test_attribute_names_are_case_insensitive_on_input(scim: ScimClient) -> None:
    body = {"schemas": [USER], "USERNAME": "Case@Example.com", "Name": {"GIVENNAME": "C"}}
    created = await scim.post("/Users", body)
    assert created.status_code == 201, created.text
    assert created.json()["userName"] == "Case@Example.com"
    assert created.json()["name"] == {"givenName": "C"}


async def test_username_is_unique_case_insensitively(scim: ScimClient) -> None:
    assert (await scim.post("/Users", user_body("Dup@Example.com"))).status_code == 201
    again = await scim.post("/Users", user_body("dup@example.COM"))
    body = assert_scim_error(again, 409, "uniqueness")
    assert "dup@example.COM" in body["detail"]


async def test_password_is_accepted_but_never_stored_or_returned(scim: ScimClient) -> None:
    created = await scim.post("/Users", user_body(password="hunter2-Secret!"))
    assert created.status_code == 201
    assert "password" not in created.json()
    got = await scim.get(f"/Users/{created.json()['id']}")
    assert "hunter2" not in got.text


async def test_a_null_extension_is_no_extension_listed_in_schemas_or_not(
    scim: ScimClient,
) -> None:
    """RFC 7643 §2.5: null is unassigned. An extension sent as null holds nothing, so it need
    not be listed in `schemas` (§3), as `{}` need not; on PUT it is removed, as if absent."""
    for urn in (ENTERPRISE, CUSTOM):
        for schemas in ([USER], [USER, urn]):
            nulls_only = {"department": None, "manager": {"value": None}}
            for value in (None, {}, nulls_only, {"manager": {}}):
                created = await scim.post("/Users", user_body(schemas=schemas, **{urn: value}))
                assert created.status_code == 201, (urn, schemas, value, created.text)
                assert urn not in created.json()
    holding = {ENTERPRISE: {"department": "Tours"}, CUSTOM: {"costCode": "CC-1"}}
    user = (await scim.post("/Users", user_body(schemas=[USER, *holding], **holding))).json()
    assert user[ENTERPRISE] == {"department": "Tours"}
    nulls = user_body(user["userName"], **dict.fromkeys(holding))
    put = await scim.put(f"/Users/{user['id']}", nulls)
    assert put.status_code == 200, put.text
    got = (await scim.get(f"/Users/{user['id']}")).json()
    assert got["schemas"] == [USER]
    assert ENTERPRISE not in got
    assert CUSTOM not in got


async def test_list_filter_paging_and_sorting(scim: ScimClient) -> None:
    for index in range(7):
        body = user_body(f"u{index}@example.com", title="Engineer" if index % 2 else "Designer")
        assert (await scim.post("/Users", body)).status_code == 201
    page = (await scim.get("/Users", params={"startIndex": "3", "count": "2"})).json()
    assert page["totalResults"] == 7
    assert page["startIndex"] == 3
    assert page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["u2@example.com", "u3@example.com"]
    filtered = (await scim.get("/Users", params={"filter": 'title eq "engineer"'})).json()
    assert filtered["totalResults"] == 3
    ordered = (
        await scim.get("/Users", params={"sortBy": "userName", "sortOrder": "descending"})
    ).json()
    names = [r["userName"] for r in ordered["Resources"]]
    assert names == sorted(names, reverse=True)
    zero = (await scim.get("/Users", params={"count": "0"})).json()
    assert zero["totalResults"] == 7
    assert zero["Resources"] == []


async def test_users_without_the_sort_value_come_last_ascending_and_first_descending(
    scim: ScimClient,
) -> None:
    """RFC 7644 §3.4.2.3: no value sorts "last if ascending and first if descending"."""
    for user_name, family in (("b@x.org", "Beta"), ("n@x.org", None), ("a@x.org", "alpha")):
        body = user_body(user_name)
        if family is not None:
            body["name"] = {"familyName": family}
            body["emails"] = [{"value": f"{family}@x.org", "type": "work"}]
        assert (await scim.post("/Users", body)).status_code == 201
    for sort_by, ascending in (
        ("name.familyName", ["a@x.org", "b@x.org", "n@x.org"]),
        ("emails", ["a@x.org", "b@x.org", "n@x.org"]),  # a multi-valued attribute
        ("title", ["b@x.org", "n@x.org", "a@x.org"]),  # nobody has one: insertion order
    ):
        for order, expected in (("ascending", ascending), ("descending", ascending[::-1])):
            params = {"sortBy": sort_by, "sortOrder": order}
            page = (await scim.get("/Users", params=params)).json()
            assert [r["userName"] for r in page["Resources"]] == expected, (sort_by, order)


async def test_a_value_matches_itself_whatever_its_case_mapping(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.2: `eq` is "identical", case-insensitively for caseExact=false.

    Python's `str.lower()` (Unicode's full case mapping) lowers "İ" to "i̇" and a word-final
    "Σ" to "ς", where glibc lowers them to "i" and a non-final sigma ("οδοσ"): each database must
    lower a stored value and the filter's the same way, so a value finds itself, and sort alike.
    """
    ids: dict[str, str] = {}
    for given in ("ΟΔΟΣ", "İpek", "Ipek", "ΟΔΟς", "zeta"):
        body = user_body(f"{len(ids)}@x.org", name={"givenName": given})
        response = await scim.post("/Users", body)
        assert response.status_code == 201, response.text
        ids[given] = response.json()["id"]

    async def found(flt: str) -> set[str]:
        page = (await scim.get("/Users", params={"filter": flt})).json()
        return {r["name"]["givenName"] for r in page["Resources"]}

    for given, alike in (("ΟΔΟΣ", {"ΟΔΟΣ", "ΟΔΟς"}), ("İpek", {"İpek"})):
        for op in ("eq", "sw", "co", "ew"):
            assert await found(f'name.givenName {op} "{given}"') == alike, (given, op)
        between = f'name.givenName ge "{given}" and name.givenName le "{given}"'
        assert await found(between) == alike, given
        assert await found(f'name.givenName ne "{given}"') == set(ids) - alike, given
    assert await found('name.givenName eq "Ipek"') == {"Ipek"}
    # Python's order: lowered values by code point, ties in creation order.
    expected = sorted(ids, key=str.lower)
    for order, names in (("ascending", expected), ("descending", expected[::-1])):
        params = {"sortBy": "name.givenName", "sortOrder": order}
        page = (await scim.get("/Users", params=params)).json()
        assert [r["name"]["givenName"] for r in page["Resources"]] == names, order


async def test_a_group_display_name_matches_itself_in_a_user_filter(scim: ScimClient) -> None:
    """`groups.display eq "İstanbul"` finds the members of "İstanbul", not those of "Istanbul"."""
    members: dict[str, str] = {}
    for name in ("İstanbul", "Istanbul"):
        user = (await scim.post("/Users", user_body(f"{len(members)}@x.org"))).json()
        group = await scim.post("/Groups", {**group_body(name), "members": [{"value": user["id"]}]})
        assert group.status_code == 201, group.text
        members[name] = user["userName"]
    for name, user_name in members.items():
        page = (await scim.get("/Users", params={"filter": f'groups.display eq "{name}"'})).json()
        assert [r["userName"] for r in page["Resources"]] == [user_name], name


async def test_a_custom_attribute_holding_numbers_sorts_them_as_numbers(
    scim: ScimClient,
) -> None:
    """RFC 7644 §3.4.2.3 sorts "according to the attribute type": 9 before 10, on both databases.

    A value of another type sorts as SQLite's `json_extract` gives it: numbers first (a boolean
    as 1 or 0), then strings (case-insensitively), then no value.
    """
    urn = "urn:ietf:params:scim:schemas:extension:repro:2.0:User"
    for user_name, score in (("a", 9), ("b", 10), ("c", -2), ("d", 100), ("e", 2.5)):
        body = {**user_body(f"{user_name}@x.org"), urn: {"score": score}}
        body["schemas"] = [*body["schemas"], urn]
        response = await scim.post("/Users", body)
        assert response.status_code == 201, response.text

    async def order(sort_order: str) -> list[str]:
        params = {"sortBy": f"{urn}:score", "sortOrder": sort_order}
        page = (await scim.get("/Users", params=params)).json()
        return [r["userName"].split("@")[0] for r in page["Resources"]]

    assert await order("ascending") == ["c", "e", "a", "b", "d"]
    assert await order("descending") == ["d", "b", "a", "e", "c"]
    for user_name, score in (("f", "B"), ("g", "a"), ("h", None), ("i", True)):
        body = user_body(f"{user_name}@x.org")
        if score is not None:
            body = {**body, urn: {"score": score}, "schemas": [*body["schemas"], urn]}
        assert (await scim.post("/Users", body)).status_code == 201
    assert await order("ascending") == ["c", "i", "e", "a", "b", "d", "g", "f", "h"]
    assert await order("descending") == ["h", "f", "g", "d", "b", "a", "e", "i", "c"]


THING = "urn:ietf:params:scim:schemas:extension:Thing:2.0:Resource"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def _sorted_everywhere(
    scim: ScimClient, sort_by: str, order: str, path: str = "/Users", **params: str
) -> list[str]:
    """The names a GET list and its POST `.search` answer for `sortBy`, after checking they agree.

    A name is a user's userName up to "@", or a group's displayName.
    """
    query = {"sortBy": sort_by, "sortOrder": order, **params}
    got = await scim.get(path, params=query)
    searched = await scim.post(f"{path}/.search", {"schemas": [SEARCH], **query})
    names = []
    for response in (got, searched):
        assert response.status_code == 200, (sort_by, order, response.text)
        resources = response.json()["Resources"]
        names.append([r.get("userName", r.get("displayName", "")).split("@")[0] for r in resources])
    assert names[0] == names[1], (sort_by, order)
    return names[0]


async def test_a_custom_list_sorts_by_its_primary_value_else_its_first(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary value, else its first.

    A custom extension's list of objects sorted as no value at all (`…:tags.value`) or by the
    JSON text of the whole list (`…:tags`), which PostgreSQL and SQLite spell differently.
    Named alone, an object sorts by its `value`, as `sortBy=emails` does; no value comes last
    ascending and first descending, on `/Users`, `/Users/.search` and the root search alike.
    """
    tags: dict[str, Any] = {
        "first": [{"value": "Charlie"}, {"value": "alpha", "primary": False}],
        "primary": [{"value": "zulu"}, {"value": "Bravo", "primary": True}],
        "single": {"value": "delta"},
        "empty": [],
        "none": None,
    }
    for name, held in tags.items():
        body = user_body(f"{name}@x.org")
        if held is not None:
            body = {**body, "schemas": [*body["schemas"], THING], THING: {"tags": held}}
        assert (await scim.post("/Users", body)).status_code == 201
    for name, held in (
        ("echo", [{"value": "x-ray"}, {"value": "echo", "primary": True}]),
        ("dog", [{"value": "Dog"}, {"value": "zebra"}]),
    ):
        group = {"schemas": [GROUP, THING], "displayName": name, THING: {"tags": held}}
        assert (await scim.post("/Groups", group)).status_code == 201
    ascending = ["primary", "first", "single", "empty", "none"]
    descending = ["none", "empty", "single", "first", "primary"]
    for sort_by in (f"{THING}:tags.value", f"{THING}:tags"):
        assert await _sorted_everywhere(scim, sort_by, "ascending") == ascending, sort_by
        assert await _sorted_everywhere(scim, sort_by, "descending") == descending, sort_by
        paged = await _sorted_everywhere(scim, sort_by, "ascending", startIndex="2", count="2")
        assert paged == ["first", "single"], sort_by
        groups = await _sorted_everywhere(scim, sort_by, "ascending", path="/Groups")
        assert groups == ["dog", "echo"], sort_by
        both = await _sorted_everywhere(scim, sort_by, "ascending", path="")
        assert both == ["primary", "first", "single", "dog", "echo", "empty", "none"], sort_by
        both = await _sorted_everywhere(scim, sort_by, "descending", path="")
        assert both == ["none", "empty", "echo", "dog", "single", "first", "primary"], sort_by


async def test_a_list_of_simple_values_sorts_by_its_first_value_by_type(
    scim: ScimClient,
) -> None:
    """RFC 7644 §3.4.2.3: a list of numbers or strings sorts by its first value, by its type.

    Custom extension lists and top-level lists the workspace's discovery describes sorted by
    the JSON text of the whole list: "[10,1]" before "[9]", and "a b" before "a".
    """
    held: dict[str, list[Any]] = {
        "ten": [10, 1],
        "nine": [9, 100],
        "a-z": ["A", "z"],
        "a-b": ["a b"],
        "empty": [],
    }
    for name, values in held.items():
        body = {**user_body(f"{name}@x.org"), "schemas": [USER, THING], THING: {"codes": values}}
        assert (await scim.post("/Users", {**body, "aliases2": values})).status_code == 201
    ascending = ["nine", "ten", "a-z", "a-b", "empty"]
    for sort_by in (f"{THING}:codes", "aliases2"):
        assert await _sorted_everywhere(scim, sort_by, "ascending") == ascending, sort_by
        descending = await _sorted_everywhere(scim, sort_by, "descending")
        assert descending == ascending[::-1], sort_by


async def test_meta_location_filters_and_sorts_as_rendered(scim: ScimClient) -> None:
    """RFC 7644 §3.4.2.2 filters on any attribute: `meta.location` is `{base}/Users/{id}` as
    rendered, compared caseExact (RFC 7643 §3.1). It answered 400 invalidFilter ("not
    supported") on /Users, /Groups and the root search, for filters and sortBy alike."""
    made = {}
    for name in ("b", "c", "a"):
        user = (await scim.post("/Users", user_body(f"{name}@x.org"))).json()
        made[name] = user["meta"]["location"]
    group = (await scim.post("/Groups", group_body("g"))).json()["meta"]["location"]
    located = {**made, "g": group}
    loc = made["c"]
    base = loc.rsplit("/Users/", 1)[0]

    async def names(path: str = "/Users", **params: str) -> list[str]:
        response = await scim.get(path, params=params)
        assert response.status_code == 200, (params, response.text)
        resources = response.json()["Resources"]
        return [r.get("userName", r.get("displayName", "")).split("@")[0] for r in resources]

    expected = {
        f'meta.location eq "{loc}"': ["c"],
        f'meta.location eq "{loc.upper()}"': [],
        f'meta.location eq "{loc}/"': [],
        f'meta.location ne "{loc}"': ["b", "a"],
        f'meta.location sw "{base}/Users/"': ["b", "c", "a"],
        f'meta.location sw "{base[:9]}"': ["b", "c", "a"],
        f'meta.location sw "{loc}"': ["c"],
        f'meta.location sw "{base}/Groups/"': [],
        f'meta.location co "{loc[-7:]}"': ["c"],
        f'meta.location ew "{loc[-7:]}"': ["c"],
        f'meta.location gt "{loc}"': [n for n in ("b", "c", "a") if made[n] > loc],
        "meta.location pr": ["b", "c", "a"],
        f'meta[location eq "{loc}"]': ["c"],
        f'not (meta.location eq "{loc}")': ["b", "a"],
    }
    for text, found in expected.items():
        assert await names(filter=text) == found, text
    assert await names(filter=f'meta.location eq "{group}"') == []
    assert await names("/Groups", filter=f'meta.location eq "{group}"') == ["g"]
    assert await names("/Groups", filter=f'meta.location eq "{loc}"') == []
    assert await names("", filter=f'meta.location eq "{group}" or meta.location eq "{loc}"') == [
        "c",
        "g",
    ]
    found = await scim.post(
        "/.search", {"schemas": [SEARCH], "filter": f'meta.location eq "{loc}"'}
    )
    assert [r["userName"] for r in found.json()["Resources"]] == ["c@x.org"], found.text
    by_location = sorted(made, key=made.__getitem__)
    assert await names(sortBy="meta.location") == by_location
    assert await names(sortBy="meta.location", sortOrder="descending") == by_location[::-1]
    everything = sorted(located, key=located.__getitem__)  # ".../Groups/" before ".../Users/"
    assert await names("", sortBy="meta.location") == everything


async def _holding_big(
    scim: ScimClient, bigs: dict[str, int | float]
) -> Callable[[str], Awaitable[list[str]]]:
    """Create a user per name holding its custom number `big`; return a filter on `big` that
    answers the names of the users it finds."""
    urn = "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User"
    for user_name, big in bigs.items():
        body = {**user_body(f"{user_name}@x.org"), urn: {"big": big}}
        body["schemas"] = [*body["schemas"], urn]
        response = await scim.post("/Users", body)
        assert response.status_code == 201, response.text

    async def found(flt: str) -> list[str]:
        response = await scim.get("/Users", params={"filter": f"{urn}:{flt}"})
        assert response.status_code == 200, (flt, response.text)
        return sorted(r["userName"].split("@")[0] for r in response.json()["Resources"])

    return found


async def test_a_custom_attribute_compared_with_an_integer_beyond_64_bits(
    scim: ScimClient,
) -> None:
    """A JSON number has no size limit (RFC 8259 §6): a filter comparing one answers 200.

    `urn:…:big gt 1000000000000000000000000000000` answered 500 on both databases (the integer
    overflowed SQLite's INTEGER and PostgreSQL's BIGINT bind).
    """
    found = await _holding_big(scim, {"a": 10**30, "b": 5, "c": -(10**30), "d": 2**63})

    assert await found("big eq 1000000000000000000000000000000") == ["a"]
    assert await found("big ge 1000000000000000000000000000000") == ["a"]
    assert await found("big lt -1000000000000000000000000000000") == []
    assert await found("big gt -1000000000000000000000000000000") == ["a", "b", "d"]
    assert await found("big ge 9223372036854775808") == ["a", "d"]
    assert await found("big lt 9223372036854775808") == ["b", "c"]


async def test_a_custom_attribute_beyond_a_doubles_range_compared_with_any_number(
    scim: ScimClient,
) -> None:
    """A stored 1e400 (as an integer) does not break comparing the attribute, on both databases.

    Once a user held one, every filter comparing the attribute with a fraction answered 500 on
    PostgreSQL (`…:big gt 1.25`: the FLOAT bind made PostgreSQL turn each stored NUMERIC into a
    double), and one comparing it with an integer beyond a double's range answered 500 on
    SQLite (the bind overflowed). `1e400` is an infinite filter value, compared as Python does.
    """
    found = await _holding_big(scim, {"a": 10**400, "b": 1.5, "c": -3, "d": -(10**400)})

    assert await found("big gt 1.25") == ["a", "b"]
    assert await found("big eq 1.5") == ["b"]
    assert await found("big lt 1e308") == ["b", "c", "d"]
    assert await found("big ge 1e308") == ["a"]
    assert await found("big gt 0.0000000000000000000001") == ["a", "b"]
    assert await found(f"big eq 1{'0' * 400}") == ["a"]
    assert await found(f"big lt -1{'0' * 400}") == []
    assert await found("big gt 1e400") == []
    assert await found("big lt 1e400") == ["a", "b", "c", "d"]
    assert await found("big ge -1e400") == ["a", "b", "c", "d"]
    assert await found("big eq -1e400") == []


async def test_a_filter_within_the_depth_limit_never_fails_the_database(
    scim: ScimClient, db_url: str
) -> None:
    """Nested `not` within the 32 levels the parser allows answered 500 on SQLite ("parser stack
    overflow": its parser holds ~100 levels, and each `not (… or …)` compiled to several).

    Both databases answer 32 nested `not` and 24 levels of `not (… or …)`; SQLite answers what
    its parser still cannot hold with 400 `invalidFilter`.
    """
    for user_name in ("t@x.org", "u@x.org"):
        assert (await scim.post("/Users", user_body(user_name, title=user_name))).status_code == 201

    def alternating(levels: int) -> str:
        # not (A or not (A or … A)): false where A holds, else `not` `levels` times.
        return 'not (title co "t@" or ' * levels + 'title co "t@"' + ")" * levels

    async def found(flt: str) -> list[str]:
        response = await scim.get("/Users", params={"filter": flt})
        assert response.status_code == 200, response.text
        return sorted(r["userName"] for r in response.json()["Resources"])

    assert await found("not (" * 32 + 'userName eq "t@x.org"' + ")" * 32) == ["t@x.org"]
    assert await found(alternating(23)) == ["u@x.org"]
    assert await found(alternating(24)) == []
    if db_url.startswith("postgresql"):
        assert await found(alternating(31)) == ["u@x.org"]
        return
    response = await scim.get("/Users", params={"filter": alternating(31)})
    detail = assert_scim_error(response, 400, "invalidFilter")["detail"]
    assert "nests too deeply for the database" in detail


async def test_filter_with_no_match_is_an_empty_list_response(scim: ScimClient) -> None:
    response = await scim.get("/Users", params={"filter": 'userName eq "nobody@example.com"'})
    assert response.status_code == 200
    assert response.json()["totalResults"] == 0
    assert response.json()["Resources"] == []


async def test_user_name_lookups_read_the_filter_as_the_parser_does(scim: ScimClient) -> None:
    await scim.post("/Users", user_body('q"uote@example.com'))
    await scim.post("/Users", user_body("plain@example.com"))
    found = {
        'USERNAME EQ "PLAIN@example.com"': ["plain@example.com"],
        ' \tuserName  eq\n"plain@example.com" ': ["plain@example.com"],
        'userName eq "q\\"uote@example.com"': ['q"uote@example.com'],
        'userName eq "pl\\u0061in@example.com"': ["plain@example.com"],
        'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "plain@example.com"': [
            "plain@example.com"
        ],
    }
    for expression, names in found.items():
        response = await scim.get("/Users", params={"filter": expression})
        assert response.status_code == 200, (expression, response.text)
        assert [r["userName"] for r in response.json()["Resources"]] == names, expression
    # Only ASCII case folds, and only the lexer's spaces separate: these name no attribute.
    for expression in (
        'u\u017ferName eq "plain@example.com"',
        'userName\u00a0eq "plain@example.com"',
        'userName\x0beq "plain@example.com"',
    ):
        refused = await scim.get("/Users", params={"filter": expression})
        assert_scim_error(refused, 400, "invalidFilter")


async def test_query_strings_are_read_as_url_encoded_forms(scim: ScimClient) -> None:
    created = await scim.post(
        "/Users", user_body("zo\u00eb+x@example.com", displayName="Zo\u00eb", title="Chef")
    )
    await scim.post("/Users", user_body("plain@example.com"))
    user_id = created.json()["id"]
    # `+` is a space, `%2B` a plus, UTF-8 escapes decode, empty pieces are skipped.
    found = await scim.get("/Users?&filter=userName+eq+%22zo%C3%AB%2Bx%40example.com%22&&")
    assert [r["id"] for r in found.json()["Resources"]] == [user_id]
    # A repeated parameter: the last one counts.
    twice = await scim.get(
        "/Users?filter=userName+eq+%22zoe%22&filter=userName%20eq%20%22plain@example.com%22"
    )
    assert [r["userName"] for r in twice.json()["Resources"]] == ["plain@example.com"]
    # A parameter's name may be escaped too; a malformed escape is kept as it was sent.
    one = await scim.get(f"/Users/{user_id}?%61ttributes=userName%2CdisplayName")
    assert set(one.json()) == {"schemas", "id", "userName", "displayName"}
    odd = await scim.get("/Users?filter=userName+eq+%22a%zz%22")
    assert odd.status_code == 200
    assert odd.json()["totalResults"] == 0


async def test_value_path_and_urn_filters(scim: ScimClient) -> None:
    await scim.post("/Users", full_user("x@example.com"))
    await scim.post("/Users", user_body("y@example.com"))
    for expression in (
        'emails[type eq "work" and value co "x@example"]',
        f'{ENTERPRISE}:department eq "Tours"',
        'name.familyName sw "jen"',
        "x509Certificates pr or title pr",
        'not (userName eq "y@example.com")',
    ):
        found = (await scim.get("/Users", params={"filter": expression})).json()
        assert [r["userName"] for r in found["Resources"]] == ["x@example.com"], expression


async def test_post_search(scim: ScimClient) -> None:
    await scim.post("/Users", user_body("s@example.com"))
    response = await scim.post(
        "/Users/.search",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "S@EXAMPLE.COM"',
            "attributes": ["userName"],
        },
    )
    assert response.status_code == 200, response.text
    resource = response.json()["Resources"][0]
    assert set(resource) == {"schemas", "id", "userName"}


async def test_attributes_and_excluded_attributes(scim: ScimClient) -> None:
    created = (await scim.post("/Users", full_user())).json()
    only = (
        await scim.get(f"/Users/{created['id']}", params={"attributes": "name.givenName"})
    ).json()
    assert only["name"] == {"givenName": "Barbara"}
    assert "emails" not in only
    assert only["id"] == created["id"]
    without = (
        await scim.get(f"/Users/{created['id']}", params={"excludedAttributes": "emails,name"})
    ).json()
    assert "emails" not in without
    assert "name" not in without
    assert without["userName"] == created["userName"]


async def test_etags(scim: ScimClient) -> None:
    created = await scim.post("/Users", user_body())
    tag = created.headers["etag"]
    uid = created.json()["id"]
    cached = await scim.get(f"/Users/{uid}", headers={"If-None-Match": tag})
    assert cached.status_code == 304
    stale = await scim.patch(
        f"/Users/{uid}",
        ops({"op": "replace", "path": "title", "value": "x"}),
        headers={"If-Match": 'W/"999"'},
    )
    assert_scim_error(stale, 412)
    fresh = await scim.patch(
        f"/Users/{uid}",
        ops({"op": "replace", "path": "title", "value": "x"}),
        headers={"If-Match": tag},
    )
    assert fresh.status_code == 200
    assert fresh.headers["etag"] != tag
    assert_scim_error(await scim.delete(f"/Users/{uid}", headers={"If-Match": tag}), 412)
    assert (await scim.get(f"/Users/{uid}")).json()["title"] == "x"


async def test_patch_entra_style_operations(scim: ScimClient) -> None:
    uid = (await scim.post("/Users", full_user())).json()["id"]
    response = await scim.patch(
        f"/Users/{uid}",
        ops(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"},
            {"op": "Add", "path": 'addresses[type eq "work"].locality', "value": "Oslo"},
            {
                "op": "Replace",
                "value": {"name.familyName": "Smith", f"{ENTERPRISE}:department": "Ops"},
            },
            {"op": "Remove", "path": 'phoneNumbers[type eq "work"]'},
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["emails"][0]["value"] == "new@example.com"
    assert body["addresses"] == [{"type": "work", "locality": "Oslo"}]
    assert body["name"]["familyName"] == "Smith"
    assert body[ENTERPRISE]["department"] == "Ops"
    assert "phoneNumbers" not in body


async def test_patch_primary_rule(scim: ScimClient) -> None:
    uid = (await scim.post("/Users", full_user())).json()["id"]
    response = await scim.patch(
        f"/Users/{uid}",
        ops({"op": "add", "path": "emails", "value": [{"value": "p@x.org", "primary": True}]}),
    )
    primaries = [e for e in response.json()["emails"] if e.get("primary")]
    assert primaries == [{"value": "p@x.org", "primary": True}]


async def test_patch_add_of_a_value_the_user_holds_changes_nothing(scim: ScimClient) -> None:
    """RFC 7644 §3.5.2.1: adding a value the attribute already contains makes no change.

    An email is held when a stored one carries what the added one names, the address compared
    case-insensitively (`caseExact` false): both adds below appended a second copy of it.
    """
    created = (await scim.post("/Users", full_user("held@example.com"))).json()
    path = f"/Users/{created['id']}"
    for email in ({"value": "HELD@example.com"}, {"value": "held@example.com", "type": "work"}):
        response = await scim.patch(path, ops({"op": "add", "path": "emails", "value": [email]}))
        assert response.status_code == 200, response.text
        assert response.json() == created
    added = await scim.patch(
        path,
        ops(
            {
                "op": "add",
                "path": "emails",
                "value": [{"value": "held@example.com"}, {"value": "new@example.com"}],
            }
        ),
    )
    assert [e["value"] for e in added.json()["emails"]] == [
        "held@example.com",
        "babs@jensen.org",
        "new@example.com",
    ]


async def test_patch_add_of_a_held_value_as_primary_marks_it(scim: ScimClient) -> None:
    """Adding a held email with a ``primary`` mark sets the held one's mark (RFC 7643 §2.4).

    It appended a second copy of the address, with the mark, next to the first.
    """
    created = (await scim.post("/Users", full_user())).json()
    primary = {"value": "BABS@jensen.org", "primary": True}
    response = await scim.patch(
        f"/Users/{created['id']}", ops({"op": "add", "path": "emails", "value": [primary]})
    )
    assert response.status_code == 200, response.text
    assert response.json()["emails"] == [
        {**created["emails"][0], "primary": False},
        {**created["emails"][1], "primary": True},
    ]
    unmarked = {"value": "babs@jensen.org", "primary": False}
    response = await scim.patch(
        f"/Users/{created['id']}", ops({"op": "add", "path": "emails", "value": [unmarked]})
    )
    assert response.json()["emails"] == [
        {**created["emails"][0], "primary": False},
        {**created["emails"][1], "primary": False},
    ]


async def test_two_primary_values_are_refused(scim: ScimClient) -> None:
    """RFC 7643 §2.4: ``primary`` true "MUST appear no more than once" in a POST or a PUT too."""
    two = [{"value": "a@x.org", "primary": True}, {"value": "b@x.org", "primary": True}]
    before = (await scim.get("/Users")).json()["totalResults"]
    refused = await scim.post("/Users", {**full_user(), "emails": two})
    assert_scim_error(refused, 400, "invalidValue")
    assert (await scim.get("/Users")).json()["totalResults"] == before
    created = (await scim.post("/Users", full_user())).json()
    path = f"/Users/{created['id']}"
    replaced = {**full_user(created["userName"]), "emails": two}
    assert_scim_error(await scim.put(path, replaced), 400, "invalidValue")
    listed = await scim.patch(path, ops({"op": "replace", "path": "emails", "value": two}))
    assert_scim_error(listed, 400, "invalidValue")
    assert (await scim.get(path)).json() == created
    one = [two[0], {"value": "b@x.org", "primary": False}, {"value": "c@x.org"}]
    kept = await scim.put(path, {**full_user(created["userName"]), "emails": one})
    assert kept.status_code == 200, kept.text
    assert [e.get("primary") for e in kept.json()["emails"]] == [True, False, None]


async def test_failed_patch_changes_nothing(scim: ScimClient) -> None:
    created = (await scim.post("/Users", full_user())).json()
    bad = await scim.patch(
        f"/Users/{created['id']}",
        ops(
            {"op": "replace", "path": "title", "value": "changed"},
            {"op": "replace", "path": "id", "value": "other"},
        ),
    )
    assert_scim_error(bad, 400, "mutability")
    after = (await scim.get(f"/Users/{created['id']}")).json()
    assert after == created


async def test_a_patch_removing_a_required_attribute_is_a_mutability_error(
    scim: ScimClient,
) -> None:
    """RFC 7644 §3.5.2.2: a required attribute removed or left unassigned is `mutability`."""
    user = (await scim.post("/Users", user_body("required-user"))).json()
    group = (await scim.post("/Groups", group_body("Required Group"))).json()
    for path, name in (
        (f"/Users/{user['id']}", "userName"),
        (f"/Groups/{group['id']}", "displayName"),
    ):
        before = (await scim.get(path)).json()
        for operation in (
            {"op": "remove", "path": name},
            {"op": "replace", "path": name, "value": None},
            {"op": "replace", "value": {name: None}},
        ):
            refused = await scim.patch(path, ops(operation))
            assert_scim_error(refused, 400, "mutability")
        assert (await scim.get(path)).json() == before
    blank = await scim.patch(
        f"/Users/{user['id']}", ops({"op": "replace", "path": "userName", "value": " "})
    )
    assert_scim_error(blank, 400, "invalidValue")


async def test_a_pathless_patch_may_send_back_the_users_own_id(scim: ScimClient) -> None:
    created = (await scim.post("/Users", full_user())).json()
    path = f"/Users/{created['id']}"
    value = {"ID": created["id"], "title": "Echoed"}
    echoed = await scim.patch(path, ops({"op": "Replace", "value": value}))
    assert echoed.status_code == 200, echoed.text
    assert echoed.json()["title"] == "Echoed"
    assert echoed.json()["id"] == created["id"]
    other = {"id": "someone-else", "title": "Other"}
    assert_scim_error(await scim.patch(path, ops({"op": "add", "value": other})), 400, "mutability")
    assert (await scim.get(path)).json()["title"] == "Echoed"


async def test_a_put_ignores_an_id_in_its_body(scim: ScimClient) -> None:
    """`id` is readOnly: RFC 7644 §3.5.1 says a PUT's value for it SHALL be ignored."""
    created = (await scim.post("/Users", full_user())).json()
    other = (await scim.post("/Users", full_user("other@example.com"))).json()
    path = f"/Users/{created['id']}"
    body = {**full_user(created["userName"]), "id": other["id"], "title": "Replaced"}
    replaced = await scim.put(path, body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == created["id"]
    assert (await scim.get(path)).json()["title"] == "Replaced"
    assert (await scim.get(f"/Users/{other['id']}")).json() == other


async def test_patch_checks_a_value_python_finds_equal_to_the_stored_one(scim: ScimClient) -> None:
    # Python takes 1 for True: a PATCH writing 1 into a boolean whose stored value is true must
    # be refused all the same, by path, inside a list, and without a path.
    created = (await scim.post("/Users", full_user())).json()
    uid = created["id"]
    flag = await scim.patch(f"/Users/{uid}", ops({"op": "replace", "path": "active", "value": 1}))
    assert_scim_error(flag, 400, "invalidValue")
    emails = [{**created["emails"][0], "primary": 1}, created["emails"][1]]
    nested = await scim.patch(
        f"/Users/{uid}", ops({"op": "replace", "path": "emails", "value": emails})
    )
    assert_scim_error(nested, 400, "invalidValue")
    pathless = await scim.patch(f"/Users/{uid}", ops({"op": "replace", "value": {"active": 1}}))
    assert_scim_error(pathless, 400, "invalidValue")
    assert (await scim.get(f"/Users/{uid}")).json() == created


async def test_deactivate_then_delete_keeps_user_for_reprovisioning(scim: ScimClient) -> None:
    created = (await scim.post("/Users", full_user("keep@example.com"))).json()
    uid = created["id"]
    off = await scim.patch(
        f"/Users/{uid}", ops({"op": "replace", "path": "active", "value": False})
    )
    assert off.json()["active"] is False
    assert (await scim.get(f"/Users/{uid}")).json()["active"] is False
    assert (await scim.delete(f"/Users/{uid}")).status_code == 204
    assert_scim_error(await scim.get(f"/Users/{uid}"), 404)
    gone = await scim.get("/Users", params={"filter": 'userName eq "keep@example.com"'})
    assert gone.json()["totalResults"] == 0
    again = await scim.post("/Users", full_user("keep@example.com"))
    assert again.status_code == 201
    assert again.json()["id"] == uid
    assert again.json()["active"] is True


async def test_a_create_brings_back_the_deleted_user_by_name_first_then_by_external_id(
    scim: ScimClient,
) -> None:
    """A create finds the deleted user with its userName; failing that, one with its externalId."""

    async def deleted(user_name: str, external_id: str) -> str:
        body = user_body(user_name, externalId=external_id)
        user_id: str = (await scim.post("/Users", body)).json()["id"]
        assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
        return user_id

    by_name = await deleted("named@example.com", "ext-a")
    by_external_id = await deleted("renamed@example.com", "ext-b")
    # Both match (the name one user's, the externalId another's): the name wins.
    both = await scim.post("/Users", user_body("named@example.com", externalId="ext-b"))
    assert both.status_code == 201, both.text
    assert both.json()["id"] == by_name
    # A new userName with a deleted user's externalId: that user, renamed.
    renamed = await scim.post("/Users", user_body("new-name@example.com", externalId="ext-b"))
    assert renamed.status_code == 201, renamed.text
    assert renamed.json()["id"] == by_external_id
    assert renamed.json()["userName"] == "new-name@example.com"
    # A live user in the way is a conflict, whatever externalId the create carries.
    await deleted("third@example.com", "ext-c")
    clash = await scim.post("/Users", user_body("named@example.com", externalId="ext-c"))
    assert_scim_error(clash, 409, "uniqueness")
    # Nothing deleted matches: a new user.
    fresh = await scim.post("/Users", user_body("fresh@example.com", externalId="ext-z"))
    assert fresh.status_code == 201
    assert fresh.json()["id"] not in (by_name, by_external_id)


async def test_an_empty_external_id_is_unassigned(scim: ScimClient) -> None:
    """`"externalId": ""` was stored; it now means no externalId, as null does (RFC 7643 §2.5).

    RFC 7643 §3.1 makes externalId the client's identifier for the resource, and "" identifies
    nothing. Stored, a create sending it brought back a deleted user holding it, and
    `externalId eq ""` found every user sent so. A whitespace-only one is an identifier the
    client chose, kept as sent and matched exactly.
    """
    gone = await scim.post("/Users", user_body("gone@example.com", externalId=""))
    assert gone.status_code == 201, gone.text
    assert "externalId" not in gone.json()
    assert (await scim.delete(f"/Users/{gone.json()['id']}")).status_code == 204
    made = await scim.post("/Users", user_body("made@example.com", externalId=""))
    assert made.status_code == 201, made.text
    assert made.json()["id"] != gone.json()["id"]
    user_id = made.json()["id"]
    assert "externalId" not in (await scim.get(f"/Users/{user_id}")).json()
    found = await scim.get("/Users", params={"filter": 'externalId eq ""'})
    assert found.json()["totalResults"] == 0, found.text
    # A PUT or PATCH setting it to "" removes the one held.
    put = await scim.put(f"/Users/{user_id}", user_body("made@example.com", externalId="e-1"))
    assert put.json()["externalId"] == "e-1"
    put = await scim.put(f"/Users/{user_id}", user_body("made@example.com", externalId=""))
    assert put.status_code == 200, put.text
    assert "externalId" not in put.json()
    await scim.patch(f"/Users/{user_id}", ops({"op": "add", "path": "externalId", "value": "e-2"}))
    for op in (
        {"op": "replace", "path": "externalId", "value": ""},
        {"op": "replace", "value": {"externalId": ""}},
    ):
        await scim.patch(
            f"/Users/{user_id}", ops({"op": "add", "path": "externalId", "value": "x"})
        )
        patched = await scim.patch(f"/Users/{user_id}", ops(op))
        assert patched.status_code == 200, patched.text
        assert "externalId" not in patched.json(), op
    blank = await scim.post("/Users", user_body("blank@example.com", externalId=" "))
    assert blank.json()["externalId"] == " "
    found = await scim.get("/Users", params={"filter": 'externalId eq " "'})
    assert [u["id"] for u in found.json()["Resources"]] == [blank.json()["id"]]
    group = await scim.post("/Groups", group_body(externalId=""))
    assert group.status_code == 201, group.text
    assert "externalId" not in group.json()


async def test_an_external_id_filter_leaves_deleted_users_out(scim: ScimClient) -> None:
    live = (await scim.post("/Users", user_body("live@example.com", externalId="shared"))).json()
    gone = (await scim.post("/Users", user_body("gone@example.com", externalId="shared"))).json()
    assert (await scim.delete(f"/Users/{gone['id']}")).status_code == 204
    for text in (
        'externalId eq "shared"',
        'externalId eq "shared" and active eq true',
        'active eq true and (externalId eq "shared")',
        'urn:ietf:params:scim:schemas:core:2.0:User:externalId eq "shared"',
    ):
        found = (await scim.get("/Users", params={"filter": text})).json()
        assert [u["id"] for u in found["Resources"]] == [live["id"]], text
        assert found["totalResults"] == 1, text


async def test_users_sharing_an_external_id_are_paged_and_counted(scim: ScimClient) -> None:
    """externalId is caseExact and not unique: a look-up pages and counts like any filter."""
    ids = [
        (await scim.post("/Users", user_body(f"s{i}@example.com", externalId="Same"))).json()["id"]
        for i in range(3)
    ]
    await scim.post("/Users", user_body("other@example.com", externalId="same"))

    async def listed(**params: Any) -> dict[str, Any]:
        response = await scim.get("/Users", params={"filter": 'externalId eq "Same"', **params})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everyone = await listed()
    assert [u["id"] for u in everyone["Resources"]] == ids
    assert everyone["totalResults"] == 3
    first = await listed(count="2")
    assert [u["id"] for u in first["Resources"]] == ids[:2]
    assert first["totalResults"] == 3
    assert (await listed(count="0"))["totalResults"] == 3
    later = await listed(startIndex="3", count="2")
    assert [u["id"] for u in later["Resources"]] == ids[2:]
    assert later["totalResults"] == 3
    trimmed = await listed(attributes="userName")
    assert [set(u) - {"schemas", "id"} for u in trimmed["Resources"]] == [{"userName"}] * 3


async def test_a_renamed_user_is_found_by_its_new_names_only(scim: ScimClient) -> None:
    """userName and externalId are copied to indexed columns on the updates that change them.

    An update that keeps them leaves those columns alone; the look-ups and the uniqueness
    check read the columns, so they must follow a rename by PATCH and by PUT.
    """
    user = (await scim.post("/Users", user_body("old@example.com", externalId="ext-old"))).json()
    path = f"/Users/{user['id']}"

    async def found(text: str) -> list[str]:
        page = (await scim.get("/Users", params={"filter": text})).json()
        return [resource["id"] for resource in page["Resources"]]

    renamed = await scim.patch(
        path, ops({"op": "replace", "path": "userName", "value": "New@example.com"})
    )
    assert renamed.status_code == 200, renamed.text
    retitled = await scim.patch(path, ops({"op": "replace", "path": "title", "value": "Chief"}))
    assert retitled.status_code == 200, retitled.text
    assert await found('userName eq "new@example.com"') == [user["id"]]
    assert await found('userName eq "old@example.com"') == []
    assert await found('externalId eq "ext-old"') == [user["id"]]

    document = {**retitled.json(), "externalId": "ext-new"}
    assert (await scim.put(path, document)).status_code == 200
    assert await found('externalId eq "ext-new"') == [user["id"]]
    assert await found('externalId eq "ext-old"') == []

    clash = await scim.post("/Users", user_body("NEW@example.com"))
    assert_scim_error(clash, 409, "uniqueness")
    assert (await scim.post("/Users", user_body("old@example.com"))).status_code == 201


async def test_a_value_filter_naming_no_sub_attribute_is_refused_whatever_the_user_holds(
    scim: ScimClient,
) -> None:
    """RFC 7644 §3.5.2 invalidPath, checked against the schema, not only against stored values:
    on a user without emails the filter was never tried, and an add stored `{"foo": "x"}`."""
    bare = (await scim.post("/Users", user_body("no-emails"))).json()
    held = (
        await scim.post(
            "/Users", user_body("with-emails", emails=[{"value": "b@x.com", "type": "home"}])
        )
    ).json()
    for operation in (
        {"op": "add", "path": 'emails[foo eq "x"].value', "value": "a@x.com"},
        {"op": "add", "path": 'phoneNumbers[type eq "work" and foo eq "x"].value', "value": "1"},
        {"op": "remove", "path": 'emails[foo eq "x"]'},
        {"op": "add", "path": 'emails[primary co "t"].value', "value": "a@x.com"},
    ):
        for user in (bare, held):
            path = f"/Users/{user['id']}"
            before = await scim.get(path)
            response = await scim.patch(path, ops(operation))
            assert_scim_error(response, 400, "invalidPath")
            after = await scim.get(path)
            assert after.json() == before.json()


async def test_an_element_made_from_a_filter_reads_its_names_case_insensitively(
    scim: ScimClient,
) -> None:
    """RFC 7643 §2.1: `TYPe eq "other" and TYpe eq "other"` names one sub-attribute once."""
    user = (await scim.post("/Users", user_body("filter-names"))).json()
    path = f"/Users/{user['id']}"
    made = await scim.patch(
        path,
        ops(
            {
                "op": "replace",
                "path": 'emails[TYPe eq "other" and TYpe eq "other"].value',
                "value": "v1@x.example",
            }
        ),
    )
    assert made.status_code == 200, made.text
    assert made.json()["emails"] == [{"type": "other", "value": "v1@x.example"}]
    clash = ops({"op": "add", "path": 'emails[type eq "a" and TYPE eq "b"].value', "value": "x"})
    assert_scim_error(await scim.patch(path, clash), 400, "noTarget")


async def test_binary_values_are_kept_as_rfc_4648_writes_base64(scim: ScimClient) -> None:
    """RFC 7643 §2.3.6: binary is base64 as RFC 4648 §4 writes it, padded and without line
    breaks (§3.1, §3.2). Sent without padding or wrapped, a value is taken and kept in that
    form: returned as sent, it made strict clients refuse the user and every page holding it."""
    wrapped = "MIIDQzCCAqygAwIBAgICEAAwDQYJ\r\nKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx\n"
    sent = [{"value": wrapped}, {"value": "QQ"}, {"value": "QUI="}]
    kept = [
        {"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"},
        {"value": "QQ=="},
        {"value": "QUI="},
    ]
    made = await scim.post("/Users", user_body("certs", x509Certificates=sent))
    assert made.status_code == 201, made.text
    assert made.json()["x509Certificates"] == kept
    path = f"/Users/{made.json()['id']}"
    assert (await scim.get(path)).json()["x509Certificates"] == kept
    add = ops({"op": "add", "path": "x509Certificates", "value": [{"value": "QUJD\nRA"}]})
    patched = await scim.patch(path, add)
    assert patched.status_code == 200, patched.text
    assert patched.json()["x509Certificates"] == [*kept, {"value": "QUJDRA=="}]


async def test_binary_values_must_be_base64(scim: ScimClient) -> None:
    """RFC 7643 §2.3.6: `x509Certificates.value` is base64 (line breaks and padding aside)."""
    good = "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx\nEzARBgNVBAgMCkNh"
    made = await scim.post("/Users", user_body("cert", x509Certificates=[{"value": good}]))
    assert made.status_code == 201, made.text
    assert (
        await scim.post("/Users", user_body("nopad", x509Certificates=[{"value": "QQ"}]))
    ).status_code == 201
    bad = [{"value": "not base64!"}]
    assert_scim_error(
        await scim.post("/Users", user_body("bad-cert", x509Certificates=bad)), 400, "invalidValue"
    )
    path = f"/Users/{made.json()['id']}"
    before = (await scim.get(path)).json()
    patched = await scim.patch(path, ops({"op": "add", "path": "x509Certificates", "value": bad}))
    assert_scim_error(patched, 400, "invalidValue")
    assert (await scim.get(path)).json() == before
