"""Inbound documents: canonical names, type checks, required attributes, PUT merge."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from hub.core.attributes import canonicalise, describe_for, lookup, merge_put, required_missing
from hub.core.errors import InvalidSyntax, InvalidValue, Mutability
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
from rules import AttrInfo


def user(**extra: Any) -> dict[str, Any]:
    return {"schemas": [USER_SCHEMA], "userName": "bjensen", **extra}


# -- lookup / describe_for ------------------------------------------------------------------


def test_lookup_core_common_extension_and_sub() -> None:
    assert lookup(USER_TYPE, None, ("USERNAME",)) is USER_TYPE.attribute("userName")
    assert lookup(USER_TYPE, None, ("id",)) is USER_TYPE.attribute("id")
    sub = lookup(USER_TYPE, None, ("emails", "TYPE"))
    assert sub is not None
    assert sub.name == "type"
    manager = lookup(USER_TYPE, ENTERPRISE_SCHEMA.lower(), ("manager", "value"))
    assert manager is not None
    assert manager.name == "value"
    assert lookup(USER_TYPE, USER_SCHEMA, ("displayName",)) is USER_TYPE.attribute("displayName")


@pytest.mark.parametrize(
    ("urn", "names"),
    [
        (None, ()),
        (None, ("nope",)),
        (None, ("emails", "nope")),
        (None, ("userName", "x")),
        ("urn:example:unknown", ("department",)),
        (ENTERPRISE_SCHEMA, ("userName",)),
    ],
)
def test_lookup_unknown(urn: str | None, names: tuple[str, ...]) -> None:
    assert lookup(USER_TYPE, urn, names) is None


def test_describe_for() -> None:
    describe = describe_for(USER_TYPE)
    assert describe(None, ("emails",)) == AttrInfo("complex", False, True)
    assert describe(None, ("emails", "type")) == AttrInfo("string", False, False)
    assert describe(None, ("id",)) == AttrInfo("string", True, False)
    assert describe(None, ("meta", "lastModified")) == AttrInfo("dateTime", False, False)
    assert describe(ENTERPRISE_SCHEMA, ("department",)) == AttrInfo("string", False, False)
    assert describe(None, ("nope",)) is None
    assert describe_for(USER_TYPE) is describe  # stable, so the rules compile cache hits


# -- canonicalise ---------------------------------------------------------------------------


def test_canonical_names_at_every_depth() -> None:
    body = {
        "SCHEMAS": [USER_SCHEMA.upper(), ENTERPRISE_SCHEMA.lower()],
        "USERNAME": "bjensen",
        "Name": {"GIVENNAME": "Barbara"},
        "emails": [{"VALUE": "b@example.com", "Type": "work", "PRIMARY": True}],
        ENTERPRISE_SCHEMA.upper(): {"DEPARTMENT": "Sales", "Manager": {"VALUE": "m1"}},
    }
    assert canonicalise(body, USER_TYPE) == {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "userName": "bjensen",
        "name": {"givenName": "Barbara"},
        "emails": [{"value": "b@example.com", "type": "work", "primary": True}],
        ENTERPRISE_SCHEMA: {"department": "Sales", "manager": {"value": "m1"}},
    }


def test_unknown_attributes_kept_as_sent() -> None:
    body = user(
        xCustom={"Deep": [1, {"A": None}]},
        name={"givenName": "B", "Nick": "x"},
        emails=[{"value": "a@b", "Label": "L"}],
        **{ENTERPRISE_SCHEMA: {"Shoe": 42}},
    )
    body["schemas"] = [USER_SCHEMA, ENTERPRISE_SCHEMA]
    doc = canonicalise(body, USER_TYPE)
    assert doc["xCustom"] == {"Deep": [1, {"A": None}]}
    assert doc["name"] == {"givenName": "B", "Nick": "x"}
    assert doc["emails"] == [{"value": "a@b", "Label": "L"}]
    assert doc[ENTERPRISE_SCHEMA] == {"Shoe": 42}


def test_schemas_lists_no_unpublished_urn_without_attributes() -> None:
    """RFC 7643 §3: `schemas` names the schemas of the attributes present."""
    custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
    ad = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User"
    body = user(**{custom: {"costCode": "CC-1"}})
    body["schemas"] = [USER_SCHEMA, ad, ENTERPRISE_SCHEMA, custom, "urn:x:empty:1.0"]
    doc = canonicalise(body, USER_TYPE)
    # The Enterprise extension is published, so listing it alone is kept; a custom one with
    # attributes is kept; the others, unpublished and empty, are not.
    assert doc["schemas"] == [USER_SCHEMA, ENTERPRISE_SCHEMA, custom]
    emptied = user(**{custom: {}})
    emptied["schemas"] = [USER_SCHEMA, custom]
    assert canonicalise(emptied, USER_TYPE)["schemas"] == [USER_SCHEMA]


def test_server_managed_and_password_dropped() -> None:
    body = user(
        id="client-id",
        meta={"version": "x"},
        groups=[{"value": "g1"}],
        password="secret",
        **{ENTERPRISE_SCHEMA: {"manager": {"value": "m1", "displayName": "Boss"}}},
    )
    body["schemas"].append(ENTERPRISE_SCHEMA)
    doc = canonicalise(body, USER_TYPE)
    assert doc == {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "userName": "bjensen",
        ENTERPRISE_SCHEMA: {"manager": {"value": "m1"}},
    }


def test_group_members_kept_and_display_dropped() -> None:
    body = {
        "schemas": [GROUP_SCHEMA],
        "displayName": "Staff",
        "Members": [{"Value": "u1", "display": "Babs"}],
    }
    assert canonicalise(body, GROUP_TYPE)["members"] == [{"value": "u1"}]


def test_nulls_and_empties_mean_absent() -> None:
    body = user(
        displayName=None,
        name={"givenName": None},
        emails=[None, {"value": None}],
        phoneNumbers=[],
        title="",
    )
    assert canonicalise(body, USER_TYPE) == {
        "schemas": [USER_SCHEMA],
        "userName": "bjensen",
        "title": "",
    }


def test_input_not_mutated() -> None:
    body = user(NAME={"GivenName": "B"}, emails=[{"Value": "x"}])
    before = json.dumps(body, sort_keys=True)
    doc = canonicalise(body, USER_TYPE)
    doc["name"]["givenName"] = "changed"
    assert json.dumps(body, sort_keys=True) == before


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"userName": 5}, "userName"),
        ({"active": "true"}, "active"),
        ({"active": 1}, "active"),
        ({"emails": [{"value": "a@b", "primary": 0}]}, "emails.primary"),
        ({"name": "Barbara"}, "name"),
        ({"name": {"givenName": 1}}, "name.givenName"),
        ({"emails": {"value": "a@b"}}, "emails"),
        ({"emails": ["a@b"]}, "emails"),
        ({"emails": [{"primary": "yes"}]}, "emails.primary"),
        ({"x509Certificates": [{"value": 5}]}, "x509Certificates.value"),
    ],
)
def test_wrong_types_rejected_naming_the_attribute(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidValue, match=named.replace(".", r"\.")):
        canonicalise(user(**extra), USER_TYPE)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"roles": [{"value": "admin", "$ref": True}]}, "roles.$ref"),
        ({"entitlements": [{"$REF": 5}]}, "entitlements.$ref"),
        ({"ims": [{"value": "x", "display": ["x"]}]}, "ims.display"),
    ],
)
def test_default_sub_attributes_of_multi_valued_attributes_are_type_checked(
    extra: dict[str, Any], named: str
) -> None:
    # Found by schemathesis: `roles[].$ref: true` was stored and returned as sent, although
    # RFC 7643 §2.4 gives every multi-valued attribute a `$ref` (a reference, so a string), a
    # `display`, a `type` and a boolean `primary`, listed in its schema or not.
    with pytest.raises(InvalidValue, match=re.escape(named)):
        canonicalise(user(**extra), USER_TYPE)
    kept = canonicalise(user(roles=[{"value": "admin", "$REF": "https://x.example/r"}]), USER_TYPE)
    assert kept["roles"] == [{"value": "admin", "$ref": "https://x.example/r"}]


def test_extension_attribute_type_error_named_with_urn() -> None:
    body = user(**{ENTERPRISE_SCHEMA: {"department": ["Sales"]}})
    body["schemas"].append(ENTERPRISE_SCHEMA)
    with pytest.raises(InvalidValue, match="User:department"):
        canonicalise(body, USER_TYPE)


@pytest.mark.parametrize(
    "body",
    [
        {"userName": "b"},
        {"schemas": [GROUP_SCHEMA], "userName": "b"},
        {"schemas": [ENTERPRISE_SCHEMA], "userName": "b"},
    ],
)
def test_bad_schemas_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue, match="schemas"):
        canonicalise(body, USER_TYPE)


@pytest.mark.parametrize(
    "body",
    [{"schemas": USER_SCHEMA, "userName": "b"}, {"schemas": [USER_SCHEMA, 5], "userName": "b"}],
)
def test_malformed_schemas_is_invalid_syntax(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidSyntax, match="schemas"):
        canonicalise(body, USER_TYPE)


def test_listed_custom_extension_is_kept_as_sent() -> None:
    custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
    body = {"schemas": [USER_SCHEMA, custom], "userName": "b", custom: {"CostCode": "X1"}}
    assert canonicalise(body, USER_TYPE) == body


def test_extension_must_be_listed_and_known() -> None:
    with pytest.raises(InvalidValue, match="not listed"):
        canonicalise(user(**{ENTERPRISE_SCHEMA: {"department": "x"}}), USER_TYPE)
    custom = "urn:ietf:params:scim:schemas:extension:Custom:2.0:User"
    with pytest.raises(InvalidValue, match="Custom"):
        canonicalise(user(**{custom: {"x": 1}}), USER_TYPE)
    body = user(**{ENTERPRISE_SCHEMA: "Sales"})
    body["schemas"].append(ENTERPRISE_SCHEMA)
    with pytest.raises(InvalidValue, match="JSON object"):
        canonicalise(body, USER_TYPE)


@pytest.mark.parametrize(
    "members",
    [
        {"userName": "a", "USERNAME": "b"},
        {"username": "a", "userName": "b"},  # the odd spelling first
        {"username": "a", "USERNAME": "b"},
        {"id": "1", "ID": "2"},  # dropped (readOnly), yet given twice all the same
        {"nickName": "a", "NICKNAME": None},  # the second one unassigned
        {ENTERPRISE_SCHEMA: {"department": "x"}, ENTERPRISE_SCHEMA.upper(): {"division": "y"}},
        {"X-Custom": 1, "x-custom": 2},  # an attribute the schema does not define
    ],
)
def test_duplicate_spellings_rejected(members: dict[str, Any]) -> None:
    body = {"schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA], **members}
    with pytest.raises(InvalidValue, match="twice"):
        canonicalise(body, USER_TYPE)


def test_schemas_answer_is_a_new_list_each_time() -> None:
    """A PATCH appends to the canonical document's `schemas`; the next body must not see it."""
    first = canonicalise(user(), USER_TYPE)
    first["schemas"].append(ENTERPRISE_SCHEMA)
    assert canonicalise(user(), USER_TYPE)["schemas"] == [USER_SCHEMA]
    spelled = user()
    spelled["schemas"] = [USER_SCHEMA.upper()]
    assert canonicalise(spelled, USER_TYPE)["schemas"] == [USER_SCHEMA]
    assert canonicalise(spelled, USER_TYPE)["schemas"] == [USER_SCHEMA]


def test_duplicate_schemas_collapsed() -> None:
    body = user()
    body["schemas"] = [USER_SCHEMA, USER_SCHEMA.upper()]
    assert canonicalise(body, USER_TYPE)["schemas"] == [USER_SCHEMA]


def test_body_must_be_object() -> None:
    with pytest.raises(InvalidValue):
        canonicalise([], USER_TYPE)  # type: ignore[arg-type]


def test_false_and_zero_are_values_not_absences() -> None:
    """Booleans and integers are taken without a check per value: `false` and `0` are values
    (RFC 7643 §2.5 makes only null, [] and {} unassigned), where an empty externalId is none."""
    counted = Schema("urn:example:c", "C", "C", (Attribute("count", "integer"),))
    kind = ResourceType("C", "/C", counted)
    assert canonicalise({"schemas": ["urn:example:c"], "count": 0}, kind)["count"] == 0
    doc = canonicalise(
        user(active=False, externalId="", emails=[{"value": "a@b", "primary": False}]), USER_TYPE
    )
    assert doc["active"] is False
    assert doc["emails"] == [{"value": "a@b", "primary": False}]
    assert "externalId" not in doc


def test_datetime_and_numbers_checked() -> None:
    numbers = Schema(
        "urn:example:n",
        "N",
        "N",
        (
            Attribute("count", "integer"),
            Attribute("ratio", "decimal"),
            Attribute("when", "dateTime"),
        ),
    )
    kind = ResourceType("N", "/N", numbers)
    ok = {"schemas": ["urn:example:n"], "count": 3, "ratio": 1.5, "when": "2024-01-01T00:00:00Z"}
    assert canonicalise(ok, kind) == ok
    for bad in ({"count": True}, {"count": 1.5}, {"ratio": "1"}, {"when": "yesterday"}):
        with pytest.raises(InvalidValue):
            canonicalise({"schemas": ["urn:example:n"], **bad}, kind)


def test_values_as_stored_are_taken_as_they_are_and_others_checked() -> None:
    stored = canonicalise(user(name={"givenName": "B"}, emails=[{"value": "b@x.org"}]), USER_TYPE)
    body = {**stored, "title": "Guide", "active": True}
    result = canonicalise(body, USER_TYPE, stored)
    assert result == {**stored, "title": "Guide", "active": True}
    assert result["name"] is body["name"]  # unchanged: not checked or copied again
    assert result["emails"] is body["emails"]
    # A value kept under another spelling (written before names were canonical) is respelled.
    legacy = {"schemas": [USER_SCHEMA], "USERNAME": "b", "TITLE": "Guide"}
    assert canonicalise(dict(legacy), USER_TYPE, legacy) == {**user(userName="b"), "title": "Guide"}


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ({"active": True}, {"active": 1}),
        ({"active": False}, {"active": 0}),
        (
            {"emails": [{"value": "b@x.org", "primary": True}]},
            {"emails": [{"value": "b@x.org", "primary": 1}]},
        ),
    ],
)
def test_a_value_python_finds_equal_to_the_stored_one_is_still_checked(
    stored: dict[str, Any], sent: dict[str, Any]
) -> None:
    assert stored == sent  # what `==` would have let through
    with pytest.raises(InvalidValue):
        canonicalise(user(**sent), USER_TYPE, user(**stored))


# -- required_missing -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_missing(value: str | None) -> None:
    doc = {"schemas": [USER_SCHEMA]} if value is None else {"userName": value}
    with pytest.raises(InvalidValue, match="userName"):
        required_missing(doc, USER_TYPE)
    with pytest.raises(InvalidValue, match="displayName"):
        required_missing({"displayName": value} if value is not None else {}, GROUP_TYPE)


def test_required_present() -> None:
    required_missing({"userName": "b"}, USER_TYPE)
    required_missing({"displayName": "Staff"}, GROUP_TYPE)


# -- merge_put ------------------------------------------------------------------------------

EXISTING: dict[str, Any] = {
    "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
    "userName": "bjensen",
    "title": "Boss",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "photos": [{"value": "https://example.com/p.jpg", "type": "photo"}],
    ENTERPRISE_SCHEMA: {"department": "Sales", "costCenter": "42"},
}


def test_put_replaces_everything() -> None:
    incoming = {"schemas": [USER_SCHEMA], "userName": "bjensen", "displayName": "Babs"}
    assert merge_put(EXISTING, incoming, USER_TYPE) == incoming


def test_put_keeps_unmanaged_when_not_sent() -> None:
    incoming = {"schemas": [USER_SCHEMA], "userName": "bjensen", "name": {"givenName": "B"}}
    result = merge_put(
        EXISTING,
        incoming,
        USER_TYPE,
        unmanaged=("PHOTOS", "name.familyName", f"{ENTERPRISE_SCHEMA}:costCenter"),
    )
    assert result == {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "userName": "bjensen",
        "name": {"givenName": "B", "familyName": "Jensen"},
        "photos": EXISTING["photos"],
        ENTERPRISE_SCHEMA: {"costCenter": "42"},
    }
    assert "photos" not in incoming  # inputs untouched


def test_put_sent_unmanaged_value_wins() -> None:
    photos = [{"value": "https://example.com/new.jpg"}]
    incoming = {"schemas": [USER_SCHEMA], "userName": "b", "photos": photos}
    assert merge_put(EXISTING, incoming, USER_TYPE, ("photos",))["photos"] == photos


def test_put_unmanaged_absent_everywhere() -> None:
    incoming = {"schemas": [USER_SCHEMA], "userName": "b"}
    assert merge_put({}, incoming, USER_TYPE, ("photos", "name.givenName")) == incoming


def test_put_ignores_read_only() -> None:
    incoming = {"schemas": [USER_SCHEMA], "userName": "b", "id": "x", "groups": [{"value": "g"}]}
    assert merge_put(EXISTING, incoming, USER_TYPE) == {"schemas": [USER_SCHEMA], "userName": "b"}


def test_put_immutable_must_match() -> None:
    kind = ResourceType(
        "T", "/T", Schema("urn:example:t", "T", "T", (Attribute("serial", mutability="immutable"),))
    )
    existing = {"schemas": ["urn:example:t"], "serial": "A"}
    assert merge_put(existing, existing, kind) == existing
    assert merge_put({}, existing, kind) == existing
    with pytest.raises(Mutability, match="serial"):
        merge_put(existing, {"schemas": ["urn:example:t"], "serial": "B"}, kind)
