"""Checks of public SCIM conformance suites other than scim2-tester, replayed over HTTP.

Each test names the suite and the check it replays; the hub is held to RFC 7643/7644 where the
suite and the RFC agree, and to the vendor's published behaviour where the RFC leaves it open.
"""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import USER_URN, ScimClient, group_body, patch_op, user_body


def _emails(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"type": kind, "value": value} for kind, value in pairs]


async def test_attributes_with_a_value_filter_return_the_matching_values(
    scim: ScimClient,
) -> None:
    """di-wu/scim-test-suite (Microsoft's SCIMReferenceCode Postman tests), "Get user attributes".

    `GET /Users?attributes=emails[type eq "other"]` answered each user with `id` and `schemas`
    only, as if no user had an email; the values the filter selects are now returned, as a
    PATCH path of that form (RFC 7644 §3.5.2) selects them.
    """
    emails = _emails(("work", "w@example.com"), ("other", "o,1@example.com"))
    made = await scim.post("/Users", user_body("complex1", emails=emails))
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]

    async def shown(attributes: str) -> dict[str, Any]:
        listed = await scim.get("/Users", params={"attributes": attributes})
        assert listed.status_code == 200, listed.text
        (resource,) = listed.json()["Resources"]
        got = await scim.get(f"/Users/{user_id}", params={"attributes": attributes})
        assert got.status_code == 200, got.text
        assert got.json() == resource
        return {k: v for k, v in resource.items() if k not in ("schemas", "id")}

    assert await shown('emails[type eq "other"]') == {"emails": [emails[1]]}
    assert await shown('EMAILS[value eq "o,1@example.com"].value,userName') == {
        "userName": "complex1",
        "emails": [{"value": "o,1@example.com"}],
    }
    # Listed unfiltered too, or by two filters: every value either selects.
    assert await shown('emails[type eq "other"],emails') == {"emails": emails}
    assert await shown('emails[type eq "other"],emails[type eq "work"]') == {"emails": emails}
    assert await shown('emails[type eq "home"]') == {}
    # Not a filter the attribute can be asked (or not one at all): names nothing, as before.
    assert await shown('emails[kind eq "other"]') == {}
    assert await shown("emails[type eq") == {}


async def test_attributes_with_a_value_filter_on_group_members(scim: ScimClient) -> None:
    """The same for a group's members, which a GET loads only when the response shows them."""
    ids = [(await scim.post("/Users", user_body())).json()["id"] for _ in range(2)]
    made = await scim.post("/Groups", group_body(members=[{"value": i} for i in ids]))
    assert made.status_code == 201, made.text
    got = await scim.get(
        f"/Groups/{made.json()['id']}", params={"attributes": f'members[value eq "{ids[1]}"]'}
    )
    assert got.status_code == 200, got.text
    assert [m["value"] for m in got.json()["members"]] == [ids[1]]


async def test_excluded_attributes_with_a_value_filter_leave_out_the_matching_values(
    scim: ScimClient,
) -> None:
    """`excludedAttributes=emails[type eq "work"]` was ignored, every email returned.

    RFC 7644 §3.4.2.5 asks for attribute names; as `attributes` of that form returns the values
    the filter selects, `excludedAttributes` now leaves exactly those out (with a
    sub-attribute, only it), on a read and on a list page alike.
    """
    emails = [
        {"type": "work", "value": "w@example.com", "display": "W"},
        {"type": "other", "value": "o@example.com", "display": "O"},
    ]
    made = await scim.post("/Users", user_body("excluding1", emails=emails))
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]

    async def shown(excluded: str) -> Any:
        got = await scim.get(f"/Users/{user_id}", params={"excludedAttributes": excluded})
        assert got.status_code == 200, got.text
        listed = await scim.get("/Users", params={"excludedAttributes": excluded})
        assert listed.status_code == 200, listed.text
        assert listed.json()["Resources"] == [got.json()]
        assert got.json()["userName"] == "excluding1"
        return got.json().get("emails")

    assert await shown('emails[type eq "work"]') == [emails[1]]
    assert await shown('EMAILS[type eq "work"].display') == [
        {"type": "work", "value": "w@example.com"},
        emails[1],
    ]
    assert await shown('emails[type eq "work"],emails[value co "o@"]') is None
    assert await shown('emails[type eq "home"]') == emails
    assert await shown('emails[kind eq "work"]') == emails  # names nothing, as in attributes
    ids = [(await scim.post("/Users", user_body())).json()["id"] for _ in range(2)]
    group = await scim.post("/Groups", group_body(members=[{"value": i} for i in ids]))
    assert group.status_code == 201, group.text
    got = await scim.get(
        f"/Groups/{group.json()['id']}",
        params={"excludedAttributes": f'members[value eq "{ids[1]}"]'},
    )
    assert got.status_code == 200, got.text
    assert [m["value"] for m in got.json()["members"]] == [ids[0]]


ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def test_a_manager_replaced_by_an_empty_id_object_is_removed(scim: ScimClient) -> None:
    """pranems/SCIMServer live test, "Manager removed when value is empty string".

    `replace …:manager` with `{"value": ""}` answered 200 and kept a manager whose id is empty
    (a reference to nobody), while the bare `""` Entra ID sends removed it; both remove it now,
    through a path, through the extension's URN and without a path alike.
    """
    boss = (await scim.post("/Users", user_body())).json()["id"]
    manager = f"{ENTERPRISE}:manager"
    removals = [
        {"op": "replace", "path": manager, "value": {"value": ""}},
        {"op": "Replace", "path": manager, "value": {"Value": "", "displayName": None}},
        {"op": "replace", "path": ENTERPRISE, "value": {"manager": {"value": ""}}},
        {"op": "replace", "value": {manager: {"value": ""}}},
        {"op": "replace", "path": manager, "value": ""},
    ]
    for removal in removals:
        body = user_body(**{ENTERPRISE: {"department": "Sales", "manager": {"value": boss}}})
        body["schemas"] = [*body["schemas"], ENTERPRISE]
        user_id = (await scim.post("/Users", body)).json()["id"]
        patched = await scim.patch(f"/Users/{user_id}", patch_op(removal))
        assert patched.status_code == 200, (removal, patched.text)
        assert patched.json()[ENTERPRISE] == {"department": "Sales"}, removal
        got = await scim.get(f"/Users/{user_id}")
        assert got.json()[ENTERPRISE] == {"department": "Sales"}, removal
    # An id that is not empty is still set, whatever else comes with it.
    kept = await scim.patch(
        f"/Users/{user_id}", patch_op({"op": "add", "path": manager, "value": {"value": boss}})
    )
    assert kept.json()[ENTERPRISE]["manager"] == {"value": boss, "$ref": f"../Users/{boss}"}


async def test_attributes_win_over_excluded_attributes(scim: ScimClient) -> None:
    """pranems/SCIMServer live test, "attributes Precedence Over excludedAttributes".

    `?attributes=userName,displayName&excludedAttributes=displayName` answered without
    `displayName`. RFC 7644 §3.4.2.5 removes `excludedAttributes` from the default set of
    attributes, which `attributes` replaces: the attributes asked for are returned, as a group's
    members already were (`?attributes=members&excludedAttributes=members` listed them).
    """
    made = await scim.post("/Users", user_body(displayName="Babs", title="Boss"))
    user_id = made.json()["id"]
    both = {"attributes": "userName,displayName", "excludedAttributes": "displayName,userName"}
    got = await scim.get(f"/Users/{user_id}", params=both)
    assert got.status_code == 200, got.text
    assert set(got.json()) == {"schemas", "id", "userName", "displayName"}
    listed = await scim.get("/Users", params={**both, "filter": f'id eq "{user_id}"'})
    assert listed.json()["Resources"] == [got.json()]
    group = await scim.post("/Groups", group_body(members=[{"value": user_id}]))
    members = {"attributes": "members", "excludedAttributes": "members"}
    shown = await scim.get(f"/Groups/{group.json()['id']}", params=members)
    assert [m["value"] for m in shown.json()["members"]] == [user_id]
    # Alone, excludedAttributes still removes from the default set.
    alone = await scim.get(f"/Users/{user_id}", params={"excludedAttributes": "displayName"})
    assert "displayName" not in alone.json()
    assert alone.json()["title"] == "Boss"


SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


async def test_a_search_request_with_attributes_that_are_not_strings_is_refused(
    scim: ScimClient,
) -> None:
    """pranems/SCIMServer live test, "9z-CO … invalid input scalar detail".

    A SearchRequest's `attributes` and `excludedAttributes` are lists of strings (RFC 7644
    §3.4.3). `{"attributes": ["id", 12]}`, `{"excludedAttributes": {"name": "id"}}` or a number
    answered 200, the odd value read as an attribute name that names nothing; they are now a
    400 `invalidValue` saying what to send. A list of strings, or one comma-separated string,
    still works.
    """
    made = await scim.post("/Users", user_body(displayName="Babs"))
    user_id = made.json()["id"]
    wrong = [
        {"attributes": ["id", 12]},
        {"attributes": 5},
        {"attributes": [None]},
        {"excludedAttributes": {"name": "id"}},
        {"excludedAttributes": True},
    ]
    for path in ("/Users/.search", "/Groups/.search", "/.search"):
        for extra in wrong:
            refused = await scim.post(path, {"schemas": [SEARCH], **extra})
            assert refused.status_code == 400, (path, extra, refused.text)
            error = refused.json()
            assert error["scimType"] == "invalidValue"
            assert next(iter(extra)) in error["detail"]
    for selection in (["displayName"], "displayName", "userName, displayName"):
        body = {"schemas": [SEARCH], "attributes": selection, "filter": f'id eq "{user_id}"'}
        found = await scim.post("/Users/.search", body)
        assert found.status_code == 200, found.text
        assert found.json()["Resources"][0]["displayName"] == "Babs"


GOOGLE = "urn:ietf:params:scim:schemas:extension:google:2.0:CloudIdentityUser"
CONTOSO = "urn:ietf:params:scim:schemas:extension:contoso:2.0:ScalarMVUser"


def _incident(**core: Any) -> dict[str, Any]:
    """pranems/SCIMServer's "typed PATCH" incident resource: lists in two custom extensions."""
    return {
        **core,
        "schemas": [*core["schemas"], GOOGLE, CONTOSO],
        GOOGLE: {
            "primaryOrganization": {"location": "old"},
            "additionalOrganizations": [
                {"type": "school", "symbol": "old"},
                {"type": "work", "symbol": "old"},
            ],
        },
        CONTOSO: {"contacts": [{"primary": True, "value": "old"}]},
    }


async def test_value_filters_select_elements_of_a_custom_extension_list(
    scim: ScimClient,
) -> None:
    """pranems/SCIMServer live test 9z-CQ, "typed PATCH value, error, rollback" (Users, Groups).

    `replace urn:…:google:2.0:CloudIdentityUser:additionalOrganizations[type eq "school"].symbol`
    answered 400 invalidPath ("no value filters inside custom extension") although /Schemas
    describes that list as a multi-valued complex attribute; the elements the filter selects
    are now written. A PATCH that fails half-way still changes nothing (RFC 7644 §3.5.2).
    """
    operations = [
        {"op": "replace", "path": f"{GOOGLE}:primaryOrganization.location", "value": "new"},
        {
            "op": "replace",
            "path": f'{GOOGLE}:additionalOrganizations[type eq "school"].symbol',
            "value": "new",
        },
        {
            "op": "replace",
            "path": f'{GOOGLE}:additionalOrganizations[TYPE eq "WORK"].symbol',
            "value": "new",
        },
        {"op": "replace", "path": f"{CONTOSO}:contacts[primary eq true].value", "value": "new"},
    ]
    for family, body in (("Users", user_body()), ("Groups", group_body())):
        made = await scim.post(f"/{family}", _incident(**body))
        assert made.status_code == 201, made.text
        path = f"/{family}/{made.json()['id']}"
        changed = await scim.patch(path, patch_op(*operations))
        assert changed.status_code == 200, changed.text
        read = await scim.get(path)
        assert read.json()[GOOGLE] == {
            "primaryOrganization": {"location": "new"},
            "additionalOrganizations": [
                {"type": "school", "symbol": "new"},
                {"type": "work", "symbol": "new"},
            ],
        }
        assert read.json()[CONTOSO] == {"contacts": [{"primary": True, "value": "new"}]}
        bad = {"op": "replace", "path": f"{CONTOSO}:contacts[primary xx true].value", "value": 1}
        failed = await scim.patch(path, patch_op(operations[0], bad))
        assert failed.status_code == 400
        assert failed.json()["scimType"] == "invalidPath"
        after = await scim.get(path)
        assert after.json() == read.json()
        assert after.headers["etag"] == read.headers["etag"]


async def test_value_filters_in_a_custom_extension_add_and_remove_elements(
    scim: ScimClient,
) -> None:
    """The rules of the hub's own lists: a filter of `eq` clauses makes the element it misses,
    another is `noTarget`; remove drops the elements (or the sub-attribute) it selects, and
    the extension once nothing of it is left."""
    made = await scim.post("/Users", _incident(**user_body()))
    path = f"/Users/{made.json()['id']}"
    organizations = f"{GOOGLE}:additionalOrganizations"
    added = await scim.patch(
        path,
        patch_op(
            {"op": "add", "path": f'{organizations}[type eq "club"].symbol', "value": "C"},
            {"op": "replace", "path": f'{organizations}[symbol sw "o"]', "value": {"type": "x"}},
        ),
    )
    assert added.status_code == 200, added.text
    assert added.json()[GOOGLE]["additionalOrganizations"] == [
        {"type": "x"},
        {"type": "x"},
        {"type": "club", "symbol": "C"},
    ]
    missing = patch_op({"op": "replace", "path": f'{organizations}[symbol co "z"]', "value": "v"})
    refused = await scim.patch(path, missing)
    assert refused.status_code == 400
    assert refused.json()["scimType"] == "noTarget"
    removed = await scim.patch(
        path,
        patch_op(
            {"op": "remove", "path": f'{organizations}[type eq "x"]'},
            {"op": "remove", "path": f'{organizations}[type eq "club"].symbol'},
            {"op": "remove", "path": f'{CONTOSO}:contacts[value eq "OLD"]'},
            {"op": "remove", "path": f'{organizations}[type eq "nothing"]'},
        ),
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()[GOOGLE]["additionalOrganizations"] == [{"type": "club"}]
    assert CONTOSO not in removed.json()
    assert CONTOSO not in removed.json()["schemas"]


async def test_a_primary_written_through_a_custom_value_filter_unmarks_the_others(
    scim: ScimClient,
) -> None:
    """pranems/SCIMServer ordered-PATCH contract: one `primary` per list (RFC 7643 §2.4).

    Marking `contacts[value eq "two"].primary` true left `one` primary too, so the next
    operation's `contacts[primary eq true]` selected both; the element written last now wins,
    as in the hub's own lists.
    """
    contacts = [
        {"type": "work", "value": "one", "primary": True},
        {"type": "work", "value": "two", "primary": False},
    ]
    body = user_body(schemas=[USER_URN, CONTOSO], **{CONTOSO: {"contacts": contacts}})
    made = await scim.post("/Users", body)
    assert made.status_code == 201, made.text
    patched = await scim.patch(
        f"/Users/{made.json()['id']}",
        patch_op(
            {"op": "replace", "path": f'{CONTOSO}:contacts[value eq "two"].primary', "value": True},
            {"op": "replace", "path": f"{CONTOSO}:contacts[primary eq true].value", "value": "new"},
        ),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()[CONTOSO]["contacts"] == [
        {"type": "work", "value": "one", "primary": False},
        {"type": "work", "value": "new", "primary": True},
    ]


async def test_options_lists_every_method_of_a_resource_path(scim: ScimClient) -> None:
    """RFC 9110 §9.3.7: OPTIONS tells the methods a URL answers (`Allow`), CORS preflights too.

    `OPTIONS /scim/v2/Users` answered `Allow: OPTIONS, POST` and `/scim/v2/Users/{id}`
    `GET, OPTIONS` (Litestar 2 lists the first handler registered for a path only); each now
    names them all, HEAD included (answered as GET). No token is needed to ask.
    """
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    group_id = (await scim.post("/Groups", group_body())).json()["id"]
    anonymous = scim.with_token(None)
    for path, allow in (
        ("/Users", "GET, HEAD, OPTIONS, POST"),
        ("/Groups", "GET, HEAD, OPTIONS, POST"),
        (f"/Users/{user_id}", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
        (f"/Groups/{group_id}", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
    ):
        answered = await anonymous.request("OPTIONS", path)
        assert answered.status_code == 204, (path, answered.text)
        assert answered.headers["allow"] == allow, path
        assert answered.content == b""


ACME = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


async def test_discovery_names_attributes_only_as_rfc_7643_allows(scim: ScimClient) -> None:
    """di-wu/scim-test-suite `TestAttributes`: every name in /Schemas is an ATTRNAME.

    RFC 7643 §2.1: `ATTRNAME = ALPHA *("-" / "_" / DIGIT / ALPHA)`. A client sending `bad name`,
    `1st` or `émoji` (at the top level, inside `name`, under a custom extension) got them
    described in /Schemas, which then broke that rule; they are still stored and returned, and
    no longer described. Names the rule allows are described as before.
    """
    body = user_body(
        schemas=[USER_URN, ACME],
        **{
            "bad name": 1,
            "1st": 2,
            "émoji": 3,
            "fine-name_2": 4,
            "name": {"givenName": "G", "given name": "x"},
            ACME: {"cost center": "x", "9lives": True, "costCenter": "CC", "ok": {"sub key": 1}},
        },
    )
    made = await scim.post("/Users", body)
    assert made.status_code == 201, made.text
    got = (await scim.get(f"/Users/{made.json()['id']}")).json()
    assert got["bad name"] == 1
    assert got[ACME]["cost center"] == "x"
    names: dict[str, set[str]] = {}

    def walk(urn: str, attributes: list[dict[str, Any]], prefix: str = "") -> None:
        for attribute in attributes:
            names.setdefault(urn, set()).add(prefix + attribute["name"])
            walk(urn, attribute.get("subAttributes", []), attribute["name"] + ".")

    for schema in (await scim.get("/Schemas")).json()["Resources"]:
        walk(schema["id"], schema["attributes"])
    attrname = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
    for urn, described in names.items():
        for name in described:
            assert all(part == "$ref" or attrname.fullmatch(part) for part in name.split(".")), (
                urn,
                name,
            )
    assert "fine-name_2" in names[USER_URN]
    assert "costCenter" in names[ACME]


async def test_an_invalid_token_is_told_apart_from_a_missing_one(scim: ScimClient) -> None:
    """Okta SCIM 2.0 spec test "Check status 401", with RFC 6750 §3.1's error code.

    Both answer 401 with a SCIM Error and a Bearer challenge; a token that is sent but unknown
    (or revoked) now gets `error="invalid_token"` in the challenge, so an OAuth client knows to
    get another one. A request without a token gets no error code (RFC 6750 §3.1).
    """
    missing = await scim.with_token(None).get("/Users")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="scim-hub"'
    assert missing.json()["status"] == "401"
    wrong = await scim.with_token("not-a-token").get("/Users")
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="scim-hub", error="invalid_token"'
    assert wrong.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert wrong.json()["detail"]


async def test_discovery_shows_no_complex_attribute_without_sub_attributes(
    scim: ScimClient,
) -> None:
    """di-wu/scim-test-suite `TestSchemas`: a complex attribute has `subAttributes` (RFC 7643 §7).

    A custom attribute whose values hold only objects (`{"deep": {"x": {"y": 1}}}`, which RFC
    7643 §2.3.8 does not allow) or only names §2.1 does not allow was described in /Schemas as
    complex with no sub-attributes, which strict clients refuse; such an attribute is stored and
    returned but not described.
    """
    body = user_body(
        schemas=[USER_URN, ACME],
        weird={"sub key": 1},
        **{ACME: {"deep": {"x": {"y": 1}}, "ok": {"sub key": 1}, "fine": 1, "box": {"a": 1}}},
    )
    made = await scim.post("/Users", body)
    assert made.status_code == 201, made.text
    assert (await scim.get(f"/Users/{made.json()['id']}")).json()[ACME]["deep"] == {"x": {"y": 1}}
    shown: dict[str, dict[str, Any]] = {}
    for schema in (await scim.get("/Schemas")).json()["Resources"]:
        for attribute in schema["attributes"]:
            shown[f"{schema['id']}:{attribute['name']}"] = attribute
            if attribute["type"] == "complex":
                assert attribute.get("subAttributes"), (schema["id"], attribute)
    assert f"{ACME}:fine" in shown
    assert shown[f"{ACME}:box"]["subAttributes"][0]["name"] == "a"
    assert f"{ACME}:deep" not in shown
    assert f"{USER_URN}:weird" not in shown


async def test_a_405_names_head_among_the_methods_allowed(scim: ScimClient) -> None:
    """RFC 9110 §15.5.6: a 405's `Allow` lists the methods the URL supports.

    `PUT /scim/v2/Users` answered `Allow: POST, OPTIONS, GET` though every GET URL answers
    HEAD as well; the list now names HEAD too (sorted, like the OPTIONS answers).
    """
    refused = await scim.put("/Users", user_body())
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    search = await scim.get("/Users/.search")
    assert search.status_code == 405
    assert search.headers["allow"] == "OPTIONS, POST"


async def test_a_patch_into_a_member_sub_attribute_is_a_mutability_error(
    scim: ScimClient,
) -> None:
    """RFC 7644 §3.12's status table: changing an immutable or readOnly attribute is `mutability`.

    `PATCH /Groups/{id}` replacing `members[value eq "…"].display` (or `.value`, `.type`,
    `members.value`) answered 400 `invalidPath`, though the path is valid and discovery shows
    the member's `value`, `$ref` and `type` immutable and `display` readOnly; it now answers
    `mutability` naming the attribute, and changes nothing. A sub-attribute members do not
    have stays an `invalidPath`.
    """
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    made = await scim.post("/Groups", group_body(members=[{"value": user_id}]))
    group_id = made.json()["id"]
    member = f'members[value eq "{user_id}"]'
    for op, path, value, named in (
        ("replace", f"{member}.display", "Babs", "'members.display' is readOnly"),
        ("replace", f"{member}.value", "someone-else", "'members.value' is immutable"),
        ("remove", f"{member}.type", None, "'members.type' is immutable"),
        ("add", "members.$ref", "https://example.com/x", "'members.$ref' is immutable"),
        ("Replace", "MEMBERS.Value", "x", "'members.value' is immutable"),
    ):
        operation = {"op": op, "path": path} | ({} if value is None else {"value": value})
        refused = await scim.patch(f"/Groups/{group_id}", patch_op(operation))
        assert refused.status_code == 400, (path, refused.text)
        assert refused.json()["scimType"] == "mutability", (path, refused.text)
        assert refused.json()["detail"].startswith(named), refused.text
    unknown = await scim.patch(
        f"/Groups/{group_id}",
        patch_op({"op": "replace", "path": f"{member}.nickname", "value": "x"}),
    )
    assert unknown.status_code == 400
    assert unknown.json()["scimType"] == "invalidPath"
    after = await scim.get(f"/Groups/{group_id}")
    assert after.headers["etag"] == made.headers["etag"]
    assert [m["value"] for m in after.json()["members"]] == [user_id]


async def test_a_patch_without_the_patchop_urn_says_what_to_send(scim: ScimClient) -> None:
    """RFC 7644 §3.5.2: a PATCH body lists `urn:…:PatchOp` in `schemas`.

    A body without it, or with only the resource's URN, answered
    400 `invalidValue` with the detail "a PATCH body lists … in 'schemas'", which reads as if
    it did; the detail now says the body must list it. Nothing changes.
    """
    made = await scim.post("/Users", user_body(title="Boss"))
    user_id = made.json()["id"]
    operation = {"op": "replace", "path": "title", "value": "Chief"}
    for body in ({"Operations": [operation]}, {"schemas": [USER_URN], "Operations": [operation]}):
        refused = await scim.patch(f"/Users/{user_id}", body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["scimType"] == "invalidValue"
        assert refused.json()["detail"] == (
            "a PATCH body must list urn:ietf:params:scim:api:messages:2.0:PatchOp in 'schemas'"
        )
    assert (await scim.get(f"/Users/{user_id}")).json()["title"] == "Boss"


async def test_options_names_head_on_every_read_only_path(scim: ScimClient) -> None:
    """RFC 9110 §9.3.7: `Allow` names every method of the URL, HEAD wherever GET answers.

    Litestar's own OPTIONS on a path of one handler listed `GET, OPTIONS` for the discovery
    documents and the base URI (and `DELETE, GET, …` for /Me) though each answers HEAD as GET;
    POST-only paths (the root `.search`, /Bulk) have no HEAD.
    """
    anonymous = scim.with_token(None)
    for path, allow in (
        ("/ServiceProviderConfig", "GET, HEAD, OPTIONS"),
        ("/ResourceTypes", "GET, HEAD, OPTIONS"),
        ("/ResourceTypes/User", "GET, HEAD, OPTIONS"),
        ("/Schemas", "GET, HEAD, OPTIONS"),
        (f"/Schemas/{USER_URN}", "GET, HEAD, OPTIONS"),
        ("", "GET, HEAD, OPTIONS"),
        ("/.search", "OPTIONS, POST"),
        ("/Bulk", "OPTIONS, POST"),
        ("/Me", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
    ):
        answered = await anonymous.request("OPTIONS", path)
        assert answered.status_code == 204, (path, answered.text)
        assert answered.headers["allow"] == allow, path
        head = await scim.request("HEAD", path)
        assert ("HEAD" in allow) == (head.status_code != 405), (path, head.status_code)


async def test_accept_application_json_is_answered_as_scim(scim: ScimClient) -> None:
    """RFC 7644 §3.8: `Accept: application/json` MUST result in SCIM behaviour, and Microsoft's
    provisioning guide asks every response for `Content-Type: application/scim+json` (its SCIM
    Validator fails a response typed otherwise): the body and its type stay SCIM's."""
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    for accept in ("application/json", "application/scim+json", "*/*"):
        for path in (f"/Users/{user_id}", "/Users", "/ServiceProviderConfig"):
            got = await scim.get(path, headers={"Accept": accept})
            assert got.status_code == 200, (accept, path, got.text)
            assert got.headers["content-type"].startswith("application/scim+json"), accept
