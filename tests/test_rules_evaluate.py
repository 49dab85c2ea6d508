"""In-memory filter evaluation (RFC 7644 §3.4.2.2) against the RFC 7643 §8.2 full user."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.attributes import describe_for
from hub.core.schema import USER_TYPE
from rules import (
    AttrInfo,
    InvalidComparison,
    UnknownAttribute,
    evaluate,
    parse_datetime,
    parse_filter,
)

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DESCRIBE = describe_for(USER_TYPE)

# RFC 7643 §8.2 "Full User Representation" (addresses, photos and certificates trimmed), plus
# the §8.3 enterprise extension.
BJENSEN: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "701984",
    "userName": "bjensen@example.com",
    "name": {
        "formatted": "Ms. Barbara J Jensen, III",
        "familyName": "Jensen",
        "givenName": "Barbara",
        "middleName": "Jane",
        "honorificPrefix": "Ms.",
        "honorificSuffix": "III",
    },
    "displayName": "Babs Jensen",
    "nickName": "Babs",
    "profileUrl": "https://login.example.com/bjensen",
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "phoneNumbers": [
        {"value": "555-555-5555", "type": "work"},
        {"value": "555-555-4444", "type": "mobile"},
    ],
    "ims": [{"value": "someaimhandle", "type": "aim"}],
    "userType": "Employee",
    "title": "Tour Guide",
    "preferredLanguage": "en-US",
    "locale": "en-US",
    "timezone": "America/Los_Angeles",
    "active": True,
    "groups": [
        {
            "value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
            "display": "Tour Guides",
        }
    ],
    ENT: {
        "employeeNumber": "701984",
        "department": "Tour Operations",
        "manager": {"value": "26118915-6090", "displayName": "John Smith"},
    },
    "meta": {
        "resourceType": "User",
        "created": "2010-01-23T04:56:22Z",
        "lastModified": "2011-05-13T04:42:34Z",
        "version": 'W/"3694e05e9dff591"',
        "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
    },
}


def matches(text: str, resource: dict[str, Any] | None = None) -> bool:
    return evaluate(parse_filter(text), BJENSEN if resource is None else resource, DESCRIBE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RFC 7644 §3.4.2.2, the example filters.
        ('userName eq "bjensen@example.com"', True),
        ('userName Eq "BJENSEN@EXAMPLE.COM"', True),
        ('name.familyName co "O\'Malley"', False),
        ('name.familyName co "ENS"', True),
        ('userName sw "J"', False),
        ('userName sw "B"', True),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "B"', True),
        ("title pr", True),
        ('meta.lastModified gt "2011-05-13T04:42:34Z"', False),
        ('meta.lastModified ge "2011-05-13T04:42:34Z"', True),
        ('meta.lastModified lt "2011-05-13T04:42:34Z"', False),
        ('meta.lastModified le "2011-05-13T04:42:34Z"', True),
        ('meta.lastModified gt "2011-05-13T06:42:34+02:01"', True),  # offsets compare in UTC
        ('meta.lastModified eq "2011-05-13T04:42:34.000Z"', True),
        ('meta.lastModified eq "2011-05-13T04:42:34"', True),  # naive is UTC
        ('title pr and userType eq "Employee"', True),
        ('title pr or userType eq "Intern"', True),
        (
            'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
            True,
        ),
        (
            'userType ne "Employee" and not (emails co "example.com" or '
            'emails.value co "example.org")',
            False,
        ),
        ('userType eq "Employee" and (emails.type eq "work")', True),
        ('userType eq "Employee" and emails[type eq "work" and value co "@example.com"]', True),
        (
            'emails[type eq "work" and value co "@example.com"] or '
            'ims[type eq "xmpp" and value co "@foo.com"]',
            True,
        ),
        ('emails[type eq "home" and value co "@example.com"]', False),
        ('emails[type eq "home" and primary eq true]', False),
        ("emails[primary eq true]", True),
        ("emails[not (primary eq true)]", True),
        # Multi-valued: any value; complex without sub-attribute compares "value".
        ('emails eq "babs@jensen.org"', True),
        ('emails.type eq "mobile"', False),
        ('phoneNumbers.type eq "MOBILE"', True),
        ('groups eq "E9E30DBA-F08F-4109-8486-D5C6A331660A"', True),
        ('groups.$ref sw "https://example.com/"', True),
        # caseExact attributes.
        ('id eq "2819C223-7F76-453A-919D-413861904646"', False),
        ('id eq "2819c223-7f76-453a-919d-413861904646"', True),
        ('externalId eq "701984"', True),
        ('meta.resourceType eq "user"', False),
        # Extension attributes.
        (f'{ENT}:department eq "tour operations"', True),
        (f'{ENT}:manager.value eq "26118915-6090"', True),
        (f'{ENT}:manager eq "26118915-6090"', True),
        (f'{ENT}:manager[value sw "2611"]', True),
        (f"{ENT}:costCenter pr", False),
        # ne is the negation of eq; eq null is "not present".
        ('nickName ne "babs"', False),
        ("title ne null", True),
        ("costCenter eq null", None),
        ("userType eq null", False),
        ('nickName ne "nope"', True),
        ('profileUrl ew "/BJENSEN"', True),
        ("active eq true", True),
        ("active ne true", False),
        ('active eq "true"', False),  # wrong type: no match, no error
        ("title eq 1", False),
        ('name.givenName gt "Barbara"', False),
        ('name.givenName ge "barbara"', True),
        ('name.givenName lt "c"', True),
        ("not (x509Certificates pr)", True),
    ],
)
def test_rfc_examples(text: str, expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(UnknownAttribute):
            matches(text)
        return
    assert matches(text) is expected


def test_names_and_urns_are_case_insensitive() -> None:
    assert matches('USERNAME eq "bjensen@example.com"')
    assert matches('Emails[TYPE eq "work"]')
    shouted = copy.deepcopy(BJENSEN)
    shouted["TITLE"] = shouted.pop("title")
    shouted[ENT.upper()] = shouted.pop(ENT)
    assert matches('title eq "tour guide"', shouted)
    assert matches(f'{ENT.lower()}:department sw "Tour"', shouted)


def test_present_means_non_empty() -> None:
    user: dict[str, Any] = {"userName": "x", "title": "", "emails": [{"type": None}], "name": {}}
    assert not matches("title pr", user)
    assert not matches("emails pr", user)
    assert not matches("name pr", user)
    assert matches("title eq null", user)
    user["emails"] = [{}, {"primary": False}]
    assert matches("emails pr", user)
    assert not matches("emails.value pr", user)
    assert matches("emails.primary pr", user)


def test_unknown_attributes_raise() -> None:
    with pytest.raises(UnknownAttribute) as caught:
        matches('nope eq "x"')
    assert caught.value.path == "nope"
    with pytest.raises(UnknownAttribute, match=r"emails\.nope"):
        matches("emails[nope pr]")
    with pytest.raises(UnknownAttribute, match="urn:x:y"):
        matches('urn:x:y eq "1"')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("active gt true", "cannot compare boolean"),
        ('x509Certificates.value lt "x"', "cannot compare binary"),
        ('meta.created gt "yesterday"', "not a dateTime"),
        ('meta.created gt "2011-13-01T00:00:00Z"', "not a dateTime"),
        ('active co "t"', "applies to strings"),
        ("title gt null", "null can only be compared"),
        ('name eq "x"', "is complex"),
        ('userName[value eq "x"]', "not complex"),
    ],
)
def test_invalid_comparisons_raise_whatever_the_data(text: str, message: str) -> None:
    # Raised while compiling, so an empty resource fails exactly like a full one.
    for resource in (BJENSEN, {}):
        with pytest.raises(InvalidComparison, match=message):
            matches(text, resource)


def test_numbers_and_wrong_types() -> None:
    schema = {
        ("age",): AttrInfo("integer", False, False),
        ("score",): AttrInfo("decimal", False, True),
        ("code",): AttrInfo("string", True, False),
    }

    def describe(urn: str | None, names: tuple[str, ...]) -> AttrInfo | None:
        return schema.get(names)

    doc = {"age": 42, "score": [1.5, 9], "code": "AbC"}

    def check(text: str) -> bool:
        return evaluate(parse_filter(text), doc, describe)

    for text in ["age gt 41.5", "age eq 42", "score ge 9", 'code eq "AbC"', 'code co "bC"']:
        assert check(text), text
    for text in ["age lt 42", "score gt 9", "age eq true", 'age eq "42"', 'code eq "abc"']:
        assert not check(text), text
    assert evaluate(parse_filter("age eq 1"), {"age": True}, describe) is False


def test_parse_datetime() -> None:
    assert parse_datetime("1970-01-01T00:00:00Z") == 0
    assert parse_datetime("1970-01-01T01:00:00+01:00") == 0
    assert parse_datetime("1970-01-01T00:00:00.000000001Z") == 1
    assert parse_datetime("1969-12-31T23:59:59.5z") == -500_000_000
    for bad in ["1970-01-01", "1970-01-01 00:00:00Z", "1970-02-30T00:00:00Z", "x"]:
        with pytest.raises(ValueError, match="xsd:dateTime"):
            parse_datetime(bad)


# --- the one-value shortcut agrees with the general way ------------------------------------

_SHORTCUT_FILTERS = [
    'title eq "Tour Guide"',
    'title ne "tour guide"',
    'title co "GUIDE"',
    'userName sw "b"',
    "active eq true",
    "active ne false",
    'emails[type eq "work"]',
    'emails[type ne "work" and value co "@"]',
    'phoneNumbers[type eq "mobile" or primary eq true]',
    'not (title eq "x")',
    'meta.lastModified gt "2011-05-13T04:42:34Z"',
    f'{ENT}:department eq "tour operations"',
]
_SCALARS = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        1,
        "",
        "Tour Guide",
        "TOUR GUIDE",
        "work",
        "Mobile",
        "b@x",
        "2012-01-01T00:00:00Z",
    ]
)
_ELEMENT = st.dictionaries(
    st.sampled_from(["type", "Type", "value", "VALUE", "primary"]),
    st.one_of(_SCALARS, st.lists(_SCALARS, max_size=2)),
    max_size=3,
)
_USER = st.dictionaries(
    st.sampled_from(["title", "Title", "userName", "active", "Active"]),
    st.one_of(_SCALARS, st.lists(_SCALARS, max_size=2)),
    max_size=4,
).flatmap(
    lambda top: st.fixed_dictionaries(
        {
            "emails": st.one_of(_SCALARS, _ELEMENT, st.lists(_ELEMENT, max_size=3)),
            "phoneNumbers": st.lists(st.one_of(_ELEMENT, _SCALARS), max_size=3),
            ENT: st.one_of(_SCALARS, st.fixed_dictionaries({"department": _SCALARS})),
        }
    ).map(lambda rest: {**top, **rest})
)


def _general(value: Any) -> Any:
    """`value` with every object a read-only mapping: the evaluator takes the general way."""
    if isinstance(value, dict):
        return MappingProxyType({k: _general(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_general(v) for v in value]
    return value


@settings(max_examples=300, deadline=None)
@given(user=_USER)
def test_the_one_value_shortcut_agrees_with_the_general_way(user: dict[str, Any]) -> None:
    # A plain dict holding an attribute under its filter's own spelling, with one value, is
    # compared directly; any other mapping is read the general way, value by value.
    for text in _SHORTCUT_FILTERS:
        compiled = parse_filter(text)
        assert evaluate(compiled, user, DESCRIBE) == evaluate(compiled, _general(user), DESCRIBE)
