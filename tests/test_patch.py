"""PATCH semantics (RFC 7644 §3.5.2), including the operations Entra ID and Okta send."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.core.attributes import canonicalise
from hub.core.errors import (
    InvalidPath,
    InvalidSyntax,
    InvalidValue,
    Mutability,
    NoTarget,
    ScimError,
)
from hub.core.patch import apply_patch
from hub.core.schema import (
    ENTERPRISE_SCHEMA,
    GROUP_SCHEMA,
    GROUP_TYPE,
    USER_SCHEMA,
    USER_TYPE,
    Attribute,
    ResourceType,
    Schema,
)

E = ENTERPRISE_SCHEMA

USER: dict[str, Any] = {
    "schemas": [USER_SCHEMA],
    "userName": "bjensen",
    "active": True,
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "emails": [
        {"value": "b@home.example", "type": "home", "primary": True},
        {"value": "b@other.example", "type": "other"},
    ],
    "phoneNumbers": [{"value": "555-1234", "type": "work"}],
}

GROUP: dict[str, Any] = {
    "schemas": [GROUP_SCHEMA],
    "displayName": "Staff",
    "members": [{"value": "id1", "type": "User"}, {"value": "id2"}, {"value": "id3"}],
}


def patch(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    kind = GROUP_TYPE if resource.get("schemas") == [GROUP_SCHEMA] else USER_TYPE
    return apply_patch(resource, list(operations), kind)


# -- add ------------------------------------------------------------------------------------


def test_add_simple_and_complex_merge() -> None:
    result = patch(
        USER,
        {"op": "add", "path": "title", "value": "CEO"},
        {"op": "add", "path": "name", "value": {"middleName": "J", "givenName": "Babs"}},
    )
    assert result["title"] == "CEO"
    assert result["name"] == {"givenName": "Babs", "familyName": "Jensen", "middleName": "J"}


def test_add_multi_valued_appends_and_deduplicates() -> None:
    new = {"value": "b@new.example", "type": "work"}
    existing = USER["emails"][1]
    result = patch(USER, {"op": "add", "path": "emails", "value": [new, existing, new]})
    assert result["emails"] == [*USER["emails"], new]


def test_add_multi_valued_accepts_single_object() -> None:
    result = patch(USER, {"op": "add", "path": "ims", "value": {"value": "bj", "type": "xmpp"}})
    assert result["ims"] == [{"value": "bj", "type": "xmpp"}]


def test_add_without_path_rfc_example() -> None:
    # RFC 7644 §3.5.2.1, second example.
    result = patch(
        USER,
        {
            "op": "add",
            "value": {
                "emails": [{"value": "babs@jensen.org", "type": "home"}],
                "nickname": "Babs",
            },
        },
    )
    assert result["nickName"] == "Babs"
    assert result["emails"][-1] == {"value": "babs@jensen.org", "type": "home"}


def test_add_members_rfc_example() -> None:
    # RFC 7644 §3.5.2.1, first example.
    op = {
        "op": "add",
        "path": "members",
        "value": [{"display": "Babs Jensen", "$ref": "https://x/Users/2819c223", "value": "2819"}],
    }
    result = patch(GROUP, op)
    assert result["members"][-1] == {"$ref": "https://x/Users/2819c223", "value": "2819"}


def test_add_sub_attribute_path() -> None:
    result = patch(USER, {"op": "add", "path": "name.honorificPrefix", "value": "Ms."})
    assert result["name"]["honorificPrefix"] == "Ms."


def test_add_through_filter_merges_into_match() -> None:
    result = patch(
        USER, {"op": "add", "path": 'emails[type eq "other"]', "value": {"display": "Other"}}
    )
    assert result["emails"][1] == {"value": "b@other.example", "type": "other", "display": "Other"}


# -- replace ----------------------------------------------------------------------------------


def test_replace_multi_valued_replaces_whole_list() -> None:
    value = [{"value": "only@example.com", "type": "work"}]
    assert patch(USER, {"op": "replace", "path": "emails", "value": value})["emails"] == value


def test_replace_complex_leaves_unspecified_sub_attributes() -> None:
    result = patch(USER, {"op": "replace", "path": "name", "value": {"givenName": "B"}})
    assert result["name"] == {"givenName": "B", "familyName": "Jensen"}


def test_replace_filtered_element_rfc_example() -> None:
    # RFC 7644 §3.5.2.3: replace the matching record.
    value = {"type": "home", "value": "new@home.example"}
    result = patch(USER, {"op": "replace", "path": 'emails[type eq "home"]', "value": value})
    assert result["emails"][0] == value


def test_replace_filtered_sub_attribute() -> None:
    op = {"op": "replace", "path": 'emails[type eq "other"].value', "value": "o@x"}
    assert patch(USER, op)["emails"][1] == {"value": "o@x", "type": "other"}


def test_replace_sub_attribute_of_all_elements_without_filter() -> None:
    result = patch(USER, {"op": "replace", "path": "emails.display", "value": "D"})
    assert all(e["display"] == "D" for e in result["emails"])


def test_replace_null_clears() -> None:
    result = patch(USER, {"op": "replace", "path": "name.givenName", "value": None})
    assert result["name"] == {"familyName": "Jensen"}


def test_replace_complex_with_null_sub_attribute_clears_it() -> None:
    result = patch(USER, {"op": "replace", "path": "name", "value": {"familyName": None}})
    assert result["name"] == {"givenName": "Barbara"}


def test_replace_multi_valued_filter_with_and_clause() -> None:
    path = 'emails[type eq "home" and value ew "example"].display'
    result = patch(USER, {"op": "replace", "path": path, "value": "Home"})
    assert result["emails"][0]["display"] == "Home"


# -- Entra ID -------------------------------------------------------------------------------


def test_entra_capitalised_ops_and_pathless_replace_with_dotted_and_urn_keys() -> None:
    result = patch(
        USER,
        {
            "op": "Replace",
            "value": {
                "displayName": "Babs",
                "name.givenName": "Babs",
                f"{E}:department": "Sales",
                f"{E}:employeeNumber": "701984",
                "active": False,
            },
        },
        {"op": "Add", "path": "title", "value": "Tour Guide"},
    )
    assert result["displayName"] == "Babs"
    assert result["name"]["givenName"] == "Babs"
    assert result["active"] is False
    assert result["title"] == "Tour Guide"
    assert result[E] == {"department": "Sales", "employeeNumber": "701984"}
    assert result["schemas"] == [USER_SCHEMA, E]
    assert canonicalise(result, USER_TYPE) == result


def test_entra_work_email_created_when_missing() -> None:
    op = {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "b@work.example"}
    result = patch(USER, op)
    assert result["emails"] == [*USER["emails"], {"type": "work", "value": "b@work.example"}]


def test_entra_work_address_created_then_updated() -> None:
    result = patch(
        USER,
        {"op": "Add", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main St"},
        {"op": "Add", "path": 'addresses[type eq "work"].locality', "value": "Springfield"},
    )
    assert result["addresses"] == [
        {"type": "work", "streetAddress": "1 Main St", "locality": "Springfield"}
    ]


def test_entra_primary_filter_creates_primary_element() -> None:
    path = 'phoneNumbers[type eq "mobile" and primary eq true].value'
    result = patch(USER, {"op": "Add", "path": path, "value": "555-0000"})
    assert result["phoneNumbers"][-1] == {"type": "mobile", "primary": True, "value": "555-0000"}


def test_entra_manager_via_urn_path_with_bare_string() -> None:
    result = patch(USER, {"op": "Add", "path": f"{E}:manager", "value": "boss-id"})
    assert result[E] == {"manager": {"value": "boss-id"}}
    assert E in result["schemas"]


def test_manager_value_sub_path_and_removal() -> None:
    result = patch(USER, {"op": "replace", "path": f"{E}:manager.value", "value": "m2"})
    assert result[E] == {"manager": {"value": "m2"}}
    cleared = patch(result, {"op": "Remove", "path": f"{E}:manager"})
    assert E not in cleared
    assert cleared["schemas"] == [USER_SCHEMA]


def test_pathless_whole_extension_value_is_merged() -> None:
    start = patch(USER, {"op": "add", "path": f"{E}:costCenter", "value": "42"})
    result = patch(start, {"op": "replace", "value": {E: {"department": "Sales"}}})
    assert result[E] == {"costCenter": "42", "department": "Sales"}


def test_pathless_unknown_keys_stored_as_sent() -> None:
    result = patch(USER, {"op": "replace", "value": {"xCustom": {"A": 1}, "schemas": ["x"]}})
    assert result["xCustom"] == {"A": 1}
    assert result["schemas"] == [USER_SCHEMA]


def test_operation_members_are_case_insensitive() -> None:
    result = patch(USER, {"OP": "REPLACE", "Path": "Title", "VALUE": "x"})
    assert result["title"] == "x"


# -- remove ---------------------------------------------------------------------------------


def test_remove_whole_attribute_sub_attribute_and_elements() -> None:
    assert "phoneNumbers" not in patch(USER, {"op": "remove", "path": "phoneNumbers"})
    assert patch(USER, {"op": "remove", "path": "name.familyName"})["name"] == {
        "givenName": "Barbara"
    }
    result = patch(USER, {"op": "remove", "path": 'emails[type eq "home"]'})
    assert result["emails"] == [USER["emails"][1]]


def test_remove_sub_attribute_of_matching_elements() -> None:
    result = patch(USER, {"op": "remove", "path": 'emails[type eq "home"].primary'})
    assert result["emails"][0] == {"value": "b@home.example", "type": "home"}


def test_remove_last_element_unassigns_attribute() -> None:
    result = patch(USER, {"op": "remove", "path": 'phoneNumbers[type eq "work"]'})
    assert "phoneNumbers" not in result


def test_remove_members_by_filter_rfc_example() -> None:
    result = patch(GROUP, {"op": "remove", "path": 'members[value eq "id2"]'})
    assert [m["value"] for m in result["members"]] == ["id1", "id3"]


def test_remove_members_by_value_list_entra() -> None:
    op = {"op": "Remove", "path": "members", "value": [{"value": "ID1"}, {"value": "id3"}]}
    assert patch(GROUP, op)["members"] == [{"value": "id2"}]


def test_remove_all_members() -> None:
    assert "members" not in patch(GROUP, {"op": "remove", "path": "members"})


def test_remove_no_match_is_idempotent() -> None:
    # Module docstring: a retried removal must not fail once the member is gone.
    assert patch(GROUP, {"op": "remove", "path": 'members[value eq "gone"]'}) == GROUP
    assert patch(USER, {"op": "remove", "path": "title"}) == USER
    assert patch(USER, {"op": "remove", "path": f"{E}:department"}) == USER


def test_remove_without_path_is_no_target() -> None:
    with pytest.raises(NoTarget):
        patch(USER, {"op": "remove"})


def test_remove_whole_extension() -> None:
    start = patch(USER, {"op": "add", "path": f"{E}:department", "value": "Sales"})
    result = patch(start, {"op": "remove", "path": E})
    assert E not in result
    assert result["schemas"] == [USER_SCHEMA]


# -- primary ---------------------------------------------------------------------------------


def test_primary_new_element_clears_others() -> None:
    op = {"op": "add", "path": "emails", "value": [{"value": "n@x", "primary": True}]}
    emails = patch(USER, op)["emails"]
    assert [e.get("primary") for e in emails] == [False, None, True]


def test_primary_set_via_filter_clears_others() -> None:
    op = {"op": "replace", "path": 'emails[type eq "other"].primary', "value": True}
    emails = patch(USER, op)["emails"]
    assert [e.get("primary") for e in emails] == [False, True]


def test_primary_twice_in_one_value_rejected() -> None:
    value = [{"value": "a", "primary": True}, {"value": "b", "primary": True}]
    with pytest.raises(InvalidValue, match="primary"):
        patch(USER, {"op": "replace", "path": "emails", "value": value})


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["id", "meta", "meta.lastModified", "groups", f"{E}:manager.displayName"]
)
def test_read_only_paths_are_mutability_errors(path: str) -> None:
    with pytest.raises(Mutability):
        patch(USER, {"op": "replace", "path": path, "value": "x"})
    with pytest.raises(Mutability):
        patch(USER, {"op": "remove", "path": path})


def test_a_filter_that_cannot_make_its_element_names_the_attribute() -> None:
    path = 'roles[primary eq "True"].display'
    with pytest.raises(InvalidValue, match=r"^Operations\[0\]: 'roles\.primary' must be a boolean"):
        patch(USER, {"op": "add", "path": path, "value": "x"})


def test_read_only_pathless_key_is_mutability_error() -> None:
    with pytest.raises(Mutability):
        patch(USER, {"op": "replace", "value": {"id": "other"}})


def test_immutable_may_be_added_not_changed() -> None:
    member = 'members[value eq "id1"].type'
    assert patch(GROUP, {"op": "add", "path": member, "value": "User"}) == GROUP
    added = patch(GROUP, {"op": "add", "path": 'members[value eq "id2"].type', "value": "User"})
    assert added["members"][1] == {"value": "id2", "type": "User"}
    with pytest.raises(Mutability, match="immutable"):
        patch(GROUP, {"op": "replace", "path": 'members[value eq "id1"].value', "value": "x"})
    with pytest.raises(Mutability, match="immutable"):
        patch(GROUP, {"op": "remove", "path": 'members[value eq "id1"].type'})


def test_immutable_top_level_attribute() -> None:
    kind = ResourceType(
        "T", "/T", Schema("urn:example:t", "T", "T", (Attribute("serial", mutability="immutable"),))
    )
    doc = {"schemas": ["urn:example:t"]}
    added = apply_patch(doc, [{"op": "add", "path": "serial", "value": "A"}], kind)
    assert added["serial"] == "A"
    with pytest.raises(Mutability):
        apply_patch(added, [{"op": "replace", "path": "serial", "value": "B"}], kind)


@pytest.mark.parametrize(
    ("operation", "error", "detail"),
    [
        ({"op": "move", "path": "title", "value": "x"}, InvalidSyntax, "add, remove or replace"),
        ({"path": "title", "value": "x"}, InvalidSyntax, "add, remove or replace"),
        ("add", InvalidSyntax, "object"),
        ({"op": "add", "path": "title"}, InvalidValue, "requires a value"),
        ({"op": "add", "value": "x"}, InvalidValue, "object value"),
        ({"op": "add", "path": 'emails[type eq "work"', "value": "x"}, InvalidPath, "position"),
        ({"op": "add", "path": "nope", "value": "x"}, InvalidPath, "nope"),
        ({"op": "add", "path": "name.nope", "value": "x"}, InvalidPath, "nope"),
        ({"op": "add", "path": "urn:example:x:attr", "value": "x"}, InvalidPath, "example"),
        ({"op": "add", "path": 'name[givenName eq "B"]', "value": {}}, InvalidPath, "multi"),
        ({"op": "add", "path": 'emails[nope eq "x"].value', "value": "x"}, InvalidPath, "nope"),
        ({"op": "add", "path": "title", "value": 5}, InvalidValue, "title"),
        ({"op": "add", "path": "active", "value": "False"}, InvalidValue, "active"),
        ({"op": "add", "path": "name", "value": "B"}, InvalidValue, "name"),
        ({"op": "add", "path": 5, "value": "x"}, InvalidPath, "string"),
        ({"op": "add", "path": 'emails[type ne "x"].value', "value": "v"}, None, None),
    ],
)
def test_errors(operation: Any, error: type[ScimError] | None, detail: str | None) -> None:
    if error is None:  # a no-match filter that is not made of eq clauses
        ops = [{"op": "remove", "path": "emails"}, operation]
        with pytest.raises(NoTarget):
            apply_patch(USER, ops, USER_TYPE)
        return
    with pytest.raises(error, match=detail):
        apply_patch(USER, [operation], USER_TYPE)


def test_error_detail_names_the_operation_index() -> None:
    ops = [{"op": "add", "path": "title", "value": "x"}, {"op": "add", "path": "nope", "value": 1}]
    with pytest.raises(InvalidPath, match=r"Operations\[1\]"):
        apply_patch(USER, ops, USER_TYPE)


@pytest.mark.parametrize("operations", [{"op": "add"}, None, "add"])
def test_operations_must_be_a_list(operations: Any) -> None:
    with pytest.raises(InvalidSyntax):
        apply_patch(USER, operations, USER_TYPE)


def test_too_many_operations() -> None:
    ops = [{"op": "add", "path": "title", "value": "x"}] * 3
    with pytest.raises(InvalidValue, match="at most 2"):
        apply_patch(USER, ops, USER_TYPE, max_operations=2)


# -- purity ------------------------------------------------------------------------------------


def test_input_not_mutated_on_success_and_failure() -> None:
    before = json.dumps(USER, sort_keys=True)
    result = patch(USER, {"op": "replace", "path": 'emails[type eq "home"].value', "value": "x"})
    result["emails"][1]["value"] = "changed"
    with pytest.raises(InvalidPath):
        patch(
            USER,
            {"op": "remove", "path": "emails"},
            {"op": "add", "path": "nope", "value": 1},
        )
    assert json.dumps(USER, sort_keys=True) == before


_PATHS = [
    "title",
    "active",
    "name",
    "name.givenName",
    "emails",
    "emails.value",
    'emails[type eq "work"]',
    'emails[type eq "work"].value',
    'emails[type eq "home"].primary',
    'emails[value co "@"]',
    'addresses[type eq "work"].streetAddress',
    'members[value eq "id1"]',
    "groups",
    "id",
    "nope",
    f"{E}:department",
    f"{E}:manager",
    f"{E}:manager.value",
    E,
    "emails[",
]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.integers(),
    st.dictionaries(st.sampled_from(["value", "type", "primary", "givenName", "x"]), st.text()),
    st.lists(st.dictionaries(st.sampled_from(["value", "type", "primary"]), st.booleans())),
)
_WELL_TYPED = [
    ("title", st.text(max_size=5)),
    ("active", st.booleans()),
    ("name", st.fixed_dictionaries({}, optional={"givenName": st.text(max_size=3)})),
    ("name.givenName", st.text(max_size=3)),
    (
        "emails",
        st.lists(
            st.fixed_dictionaries(
                {"value": st.text(max_size=3)},
                optional={"type": st.sampled_from(["work", "home"]), "primary": st.booleans()},
            ),
            max_size=3,
        ),
    ),
    ('emails[type eq "work"].value', st.text(max_size=3)),
    ('emails[type eq "home"].primary', st.booleans()),
    ('addresses[type eq "work"].streetAddress', st.text(max_size=3)),
    (f"{E}:department", st.text(max_size=3)),
    (f"{E}:manager", st.text(max_size=3)),
    (E, st.fixed_dictionaries({"costCenter": st.text(max_size=3)})),
]
_RANDOM_OPERATION = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "Replace", "remove", "bogus"])},
    optional={"path": st.sampled_from(_PATHS), "value": _VALUES},
)
_TYPED_OPERATION = st.sampled_from(_WELL_TYPED).flatmap(
    lambda pair: st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "replace", "Remove"]),
            "path": st.just(pair[0]),
            "value": pair[1],
        }
    )
)
_OPERATION = st.one_of(_TYPED_OPERATION, _TYPED_OPERATION, _RANDOM_OPERATION)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_OPERATION, min_size=1, max_size=6))
def test_random_operations_never_mutate_input(operations: list[dict[str, Any]]) -> None:
    resource = copy.deepcopy(USER)
    resource["schemas"] = [USER_SCHEMA, E]
    resource[E] = {"department": "Sales", "manager": {"value": "m1"}}
    before = json.dumps(resource, sort_keys=True)
    try:
        result = apply_patch(resource, operations, USER_TYPE)
    except ScimError:
        pass
    else:
        assert isinstance(result, dict)
        canonicalise(result, USER_TYPE)  # a successful PATCH yields a valid document
    assert json.dumps(resource, sort_keys=True) == before
