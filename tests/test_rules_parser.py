"""The SCIM filter and PATCH path parser (RFC 7644 §3.4.2.2 Figure 1, §3.5.2)."""

from __future__ import annotations

import pytest

from rules import (
    And,
    AttrPath,
    Compare,
    FilterSyntaxError,
    Not,
    Or,
    PatchPath,
    Present,
    ValuePath,
    parse_filter,
    parse_path,
)

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def a(name: str, sub: str | None = None, urn: str | None = None) -> AttrPath:
    return AttrPath(urn, name, sub)


@pytest.mark.parametrize("op", ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"])
def test_every_operator_any_case(op: str) -> None:
    assert parse_filter(f'title {op} "x"') == Compare(a("title"), op, "x")
    assert parse_filter(f'title {op.upper()} "x"') == Compare(a("title"), op, "x")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"plain"', "plain"),
        (r'"q\"uote \\ back \/ \n \t \u00e9 \ud83d\ude00"', 'q"uote \\ back / \n \t é 😀'),
        ('""', ""),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        ("2e3", 2000.0),
        ("true", True),
        ("FALSE", False),
        ("null", None),
    ],
)
def test_values(text: str, value: object) -> None:
    parsed = parse_filter(f"x eq {text}")
    assert isinstance(parsed, Compare)
    assert parsed.value == value
    assert type(parsed.value) is type(value)


def test_true_and_one_are_different_filters() -> None:
    assert parse_filter("x eq true") != parse_filter("x eq 1")
    assert hash(parse_filter("x eq 1")) == hash(parse_filter("x eq 1"))


def test_present_and_sub_attributes() -> None:
    assert parse_filter("title pr") == Present(a("title"))
    assert parse_filter("name.givenName PR") == Present(a("name", "givenName"))
    assert parse_filter('groups.$ref eq "x"') == Compare(a("groups", "$ref"), "eq", "x")
    assert parse_filter('$ref eq "x"') == Compare(a("$ref"), "eq", "x")


def test_urn_qualified_attributes() -> None:
    assert parse_filter(f'{USER}:userName sw "J"') == Compare(a("userName", urn=USER), "sw", "J")
    assert parse_filter(f'{USER}:name.givenName eq "B"') == Compare(
        a("name", "givenName", USER), "eq", "B"
    )
    assert parse_filter(f'{ENT}:manager.value eq "1"') == Compare(
        a("manager", "value", ENT), "eq", "1"
    )


def test_precedence_not_over_and_over_or() -> None:
    x, y, z = (Present(a(n)) for n in "xyz")
    assert parse_filter("x pr or y pr and z pr") == Or(x, And(y, z))
    assert parse_filter("x pr and y pr or z pr") == Or(And(x, y), z)
    assert parse_filter("(x pr or y pr) and z pr") == And(Or(x, y), z)
    assert parse_filter("not (x pr) and y pr") == And(Not(x), y)
    assert parse_filter("NOT(x pr or y pr)") == Not(Or(x, y))
    assert parse_filter("x pr or y pr or z pr") == Or(Or(x, y), z)


def test_value_paths() -> None:
    parsed = parse_filter('emails[type eq "work" and value co "@example.com"] or ims pr')
    assert parsed == Or(
        ValuePath(
            a("emails"),
            And(Compare(a("type"), "eq", "work"), Compare(a("value"), "co", "@example.com")),
        ),
        Present(a("ims")),
    )
    assert parse_filter(f"{ENT}:manager[value pr]") == ValuePath(
        a("manager", urn=ENT), Present(a("value"))
    )
    assert parse_filter("emails[not (primary eq true)]") == ValuePath(
        a("emails"), Not(Compare(a("primary"), "eq", True))
    )


def test_a_value_path_s_sub_attribute_is_compared_on_the_same_element() -> None:
    """Entra ID matches users on `emails[type eq "work"].value eq "…"` (not RFC 7644 grammar)."""
    assert parse_filter('emails[type eq "work"].value eq "a@b.example"') == parse_filter(
        'emails[type eq "work" and value eq "a@b.example"]'
    )
    text = 'Emails[Type eq "work" or primary eq true].Value pr and active eq true'
    assert parse_filter(text) == (
        And(
            ValuePath(
                a("Emails"),
                And(
                    Or(Compare(a("Type"), "eq", "work"), Compare(a("primary"), "eq", True)),
                    Present(a("Value")),
                ),
            ),
            Compare(a("active"), "eq", True),
        )
    )
    assert parse_filter(f'{ENT}:manager[value pr].displayName sw "B"') == ValuePath(
        a("manager", urn=ENT), And(Present(a("value")), Compare(a("displayName"), "sw", "B"))
    )


def test_rfc_examples_parse() -> None:
    for text in [
        'userName eq "bjensen"',
        'name.familyName co "O\'Malley"',
        'meta.lastModified gt "2011-05-13T04:42:34Z"',
        'title pr and userType eq "Employee"',
        'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
        'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
        'emails[type eq "work" and value co "@example.com"] or '
        'ims[type eq "xmpp" and value co "@foo.com"]',
    ]:
        parse_filter(text)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("userName", "expected a comparison operator or 'pr' after 'userName'", 8),
        ('userName "x"', "expected a comparison operator or 'pr' after 'userName'", 9),
        ('userName is "x"', "expected a comparison operator (eq, ne", 9),
        ("userName eq", "expected a value", 11),
        ("userName eq bjensen", "strings take double quotes", 12),
        ('userName eq "bjensen', "unterminated string", 12),
        (r'userName eq "a\qb"', "invalid string", 14),
        ('(userName eq "x"', "expected ')' to close the '(' at position 0", 16),
        ('userName eq "x")', "found ')' without a matching '('", 15),
        ('userName eq "x" title pr', "expected 'and', 'or' or the end of the filter", 16),
        ('userName eq "x" and', "expected an attribute name", 19),
        ('emails[type eq "work"', "expected ']' to close the '['", 21),
        ("emails[ims[type pr]]", "cannot be nested", 10),
        (f"emails[{USER}:type pr]", "drop the schema URN", 7),
        ('not userName eq "x"', "'not' must be followed by a parenthesised filter", 4),
        ("1st eq 1", "invalid attribute name '1st'", 0),
        ("name.given.x pr", "invalid sub-attribute name 'given.x'", 5),
        ("name.giv$n pr", "invalid sub-attribute name", 5),
        ("", "the filter is empty", 0),
        ("   ", "the filter is empty", 0),
        ("urn:x pr", "expected an attribute name after the schema URN", 0),
        ("name.givenName[type pr]", "must follow an attribute name without a sub-attribute", 14),
        ('emails[type eq "work"].value', "expected a comparison operator or 'pr' after", 28),
        ('emails[type eq "work"].value is "x"', "expected a comparison operator (eq", 29),
        ('emails[type eq "work"].value eq', "expected a value", 31),
        ('emails[type eq "work"].va$ue eq "x"', "invalid sub-attribute name 'va$ue'", 23),
        ('emails[type eq "work"] eq "x"', "expected 'and', 'or' or the end of the filter", 23),
    ],
)
def test_positioned_errors(text: str, message: str, position: int) -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter(text)
    assert message in caught.value.message
    assert caught.value.position == position
    assert caught.value.text == text
    assert f"at position {position}:" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_error_text_marks_the_spot() -> None:
    with pytest.raises(FilterSyntaxError) as caught:
        parse_filter("userName eq bjensen")
    assert str(caught.value).endswith("userName eq ^bjensen")


def test_limits() -> None:
    long_text = 'userName eq "' + "x" * 5000 + '"'
    with pytest.raises(FilterSyntaxError, match="longer than the 4096-character limit"):
        parse_filter(long_text)
    assert parse_filter(long_text, max_length=6000) == Compare(a("userName"), "eq", "x" * 5000)
    deep = "(" * 40 + "x pr" + ")" * 40
    with pytest.raises(FilterSyntaxError, match="nests deeper than 32 levels"):
        parse_filter(deep)
    assert parse_filter(deep, max_depth=40) == Present(a("x"))
    with pytest.raises(FilterSyntaxError, match="nests deeper than 3 levels"):
        parse_filter("not (not (not (not (x pr))))", max_depth=3)
    # Long and/or chains are loops, not recursion.
    chain = " and ".join(["x pr"] * 500)
    assert isinstance(parse_filter(chain, max_length=10_000), And)


def test_parse_path_forms() -> None:
    work = Compare(a("type"), "eq", "work")
    assert parse_path('emails[type eq "work"].value') == PatchPath(a("emails"), work, "value")
    assert parse_path("name.givenName") == PatchPath(a("name", "givenName"), None, None)
    assert parse_path("userName") == PatchPath(a("userName"), None, None)
    assert parse_path(f"{ENT}:manager.value") == PatchPath(a("manager", "value", ENT), None, None)
    assert parse_path(f"{ENT}:department") == PatchPath(a("department", urn=ENT), None, None)
    assert parse_path('members[value eq "2819c223"]') == PatchPath(
        a("members"), Compare(a("value"), "eq", "2819c223"), None
    )
    assert parse_path(ENT) == PatchPath(AttrPath(ENT, "", None), None, None)
    assert parse_path(USER) == PatchPath(AttrPath(USER, "", None), None, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the path is empty"),
        ("emails[type eq 1", "expected ']'"),
        ('emails[type eq "w"]value', "expected '.subAttribute'"),
        ('emails[type eq "w"].', "invalid sub-attribute name ''"),
        ('emails[type eq "w"].value.x', "invalid sub-attribute name 'value.x'"),
        ('emails[type eq "w"].value extra', "expected 'and', 'or' or the end"),
        ("emails extra", "expected '[' or the end of the path"),
        ('name.givenName[x eq "y"]', "without a sub-attribute"),
    ],
)
def test_parse_path_errors(text: str, message: str) -> None:
    with pytest.raises(FilterSyntaxError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_path(text)
