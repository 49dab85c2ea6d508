"""attributes / excludedAttributes projection (RFC 7644 §3.4.2.5, §3.9)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from hub.core.projection import parse_attribute_list, plan, project
from hub.core.schema import ENTERPRISE_SCHEMA, GROUP_TYPE, USER_SCHEMA, USER_TYPE

USER: dict[str, Any] = {
    "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
    "id": "u1",
    "externalId": "ext-1",
    "userName": "bjensen@example.com",
    "password": "leaked?",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "displayName": "Babs",
    "emails": [
        {"value": "b@work.example", "type": "work", "primary": True},
        {"value": "b@home.example", "type": "home"},
    ],
    "groups": [{"value": "g1", "display": "Staff"}],
    "meta": {"resourceType": "User", "lastModified": "2024-01-01T00:00:00Z", "version": 'W/"1"'},
    ENTERPRISE_SCHEMA: {"department": "Sales", "manager": {"value": "m1", "displayName": "Boss"}},
    "x-custom": "kept",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ()),
        ("", ()),
        ("userName", ("userName",)),
        (" userName , name.givenName ,,", ("userName", "name.givenName")),
        (f"{ENTERPRISE_SCHEMA}:manager.value", (f"{ENTERPRISE_SCHEMA}:manager.value",)),
    ],
)
def test_parse_attribute_list(text: str | None, expected: tuple[str, ...]) -> None:
    assert parse_attribute_list(text) == expected


def test_default_projection_drops_only_never_returned() -> None:
    result = project(USER, USER_TYPE)
    expected = {k: v for k, v in USER.items() if k != "password"}
    assert result == expected


def test_attributes_keeps_listed_plus_always() -> None:
    # RFC 7643 §8.7.1: `id` is returned always, `userName` by default (so not here).
    result = project(USER, USER_TYPE, attributes=("displayName",))
    assert result == {"schemas": USER["schemas"], "id": "u1", "displayName": "Babs"}


def test_attributes_is_case_insensitive() -> None:
    result = project(USER, USER_TYPE, attributes=("DISPLAYNAME", "Name.GivenName"))
    assert result["displayName"] == "Babs"
    assert result["name"] == {"givenName": "Barbara"}


def test_attributes_sub_attribute_of_multi_valued() -> None:
    result = project(USER, USER_TYPE, attributes=("emails.value",))
    assert result["emails"] == [{"value": "b@work.example"}, {"value": "b@home.example"}]


def test_attributes_meta_sub_attribute() -> None:
    result = project(USER, USER_TYPE, attributes=("meta.lastModified",))
    assert result["meta"] == {"lastModified": "2024-01-01T00:00:00Z"}


def test_attributes_urn_qualified_extension_attribute() -> None:
    result = project(USER, USER_TYPE, attributes=(f"{ENTERPRISE_SCHEMA}:department",))
    assert result[ENTERPRISE_SCHEMA] == {"department": "Sales"}
    assert "name" not in result


def test_attributes_urn_qualified_sub_attribute() -> None:
    result = project(USER, USER_TYPE, attributes=(f"{ENTERPRISE_SCHEMA.upper()}:manager.value",))
    assert result[ENTERPRISE_SCHEMA] == {"manager": {"value": "m1"}}


def test_attributes_whole_extension() -> None:
    result = project(USER, USER_TYPE, attributes=(ENTERPRISE_SCHEMA,))
    assert result[ENTERPRISE_SCHEMA] == USER[ENTERPRISE_SCHEMA]


def test_attributes_core_urn_qualified() -> None:
    result = project(USER, USER_TYPE, attributes=(f"{USER_SCHEMA}:displayName",))
    assert result["displayName"] == "Babs"
    assert ENTERPRISE_SCHEMA not in result


def test_attributes_unknown_kept_attribute() -> None:
    result = project(USER, USER_TYPE, attributes=("X-Custom",))
    assert result["x-custom"] == "kept"


def test_attributes_never_returns_password_even_when_asked() -> None:
    assert "password" not in project(USER, USER_TYPE, attributes=("password",))


def test_excluded_removes_listed() -> None:
    result = project(USER, USER_TYPE, excluded=("emails", "GROUPS", "meta.version"))
    assert "emails" not in result
    assert "groups" not in result
    assert result["meta"] == {"resourceType": "User", "lastModified": "2024-01-01T00:00:00Z"}
    assert result["displayName"] == "Babs"


def test_excluded_never_removes_always() -> None:
    result = project(USER, USER_TYPE, excluded=("id", "userName", "schemas"))
    assert result["id"] == "u1"
    assert result["schemas"] == USER["schemas"]
    assert "userName" not in result  # returned "default" (RFC 7643 §8.7.1)


def test_excluded_sub_attribute_of_elements_and_extension() -> None:
    result = project(USER, USER_TYPE, excluded=("emails.primary", f"{ENTERPRISE_SCHEMA}:manager"))
    assert result["emails"][0] == {"value": "b@work.example", "type": "work"}
    assert result[ENTERPRISE_SCHEMA] == {"department": "Sales"}


def test_excluded_whole_extension() -> None:
    assert ENTERPRISE_SCHEMA not in project(USER, USER_TYPE, excluded=(ENTERPRISE_SCHEMA,))


def test_group_members_excluded() -> None:
    group = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g1",
        "displayName": "Staff",
        "members": [{"value": "u1"}],
    }
    assert project(group, GROUP_TYPE, excluded=("members",)) == {
        "schemas": group["schemas"],
        "id": "g1",
        "displayName": "Staff",
    }
    assert project(group, GROUP_TYPE, attributes=("members.value",))["members"] == [{"value": "u1"}]


def test_plan_reused_and_input_untouched() -> None:
    before = json.dumps(USER, sort_keys=True)
    projection = plan(USER_TYPE, ("name.givenName",), ())
    other = copy.deepcopy(USER)
    other["name"] = {"givenName": "Other", "familyName": "X"}
    assert projection.apply(USER)["name"] == {"givenName": "Barbara"}
    assert projection.apply(other)["name"] == {"givenName": "Other"}
    assert json.dumps(USER, sort_keys=True) == before
