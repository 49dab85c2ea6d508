"""The card profile: profile fields read out of a SCIM User through a dialect's mapping.

A dialect maps each card profile field (`PROFILE_FIELDS`) to the SCIM attribute path it is read
from, in PATCH path syntax (RFC 7644 §3.5.2): `title`, `name.givenName`,
`urn:…:enterprise:2.0:User:organization`, `phoneNumbers[type eq "work"].value`. Paths are parsed
once and cached; reading a profile is then a few dictionary lookups.

The profile is also what template rules see (`describe_profile`): the profile field names plus
`userName`, all single-valued, case-insensitive strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

import rules
from hub.core.attributes import describe_for, lookup
from hub.core.dialects import PROFILE_FIELDS, STANDARD_MAPPING
from hub.core.schema import USER_TYPE

Profile = dict[str, str | None]


#: Attribute names a template rule may use, lower-cased -> the profile key they read.
RULE_ATTRIBUTES: Final[Mapping[str, str]] = {
    **{name: name for name in PROFILE_FIELDS},
    "username": "userName",
}

_STRING = rules.AttrInfo("string", False, False)
_Reader = Callable[[Mapping[str, Any]], str | None]


def effective_mapping(mapping: Mapping[str, str]) -> Mapping[str, str]:
    """The mapping a card is filled through: the dialect's, or the standard one if it has none.

    Only an empty mapping falls back: a dialect that leaves a field out on purpose (an IdP that
    never sends photos) means "the IdP does not manage this field".
    """
    known = {field: path for field, path in mapping.items() if field in PROFILE_FIELDS}
    return known or STANDARD_MAPPING


def read_profile(resource: Mapping[str, Any], mapping: Mapping[str, str]) -> Profile:
    """Read every mapped profile field out of a rendered SCIM User.

    Args:
        resource: the user's SCIM resource (canonical attribute names, extensions under URNs).
        mapping: profile field -> SCIM attribute path, as `effective_mapping` returns it.

    Returns:
        One entry per mapped field: its value as a string, or None when the IdP sent none.

    Raises:
        rules.FilterSyntaxError: a mapping path is not a valid SCIM attribute path.
    """
    return {field: _reader(path)(resource) for field, path in mapping.items()}


def rule_input(profile: Mapping[str, str | None], user_name: str) -> dict[str, str | None]:
    """The document a template rule is evaluated against: the profile plus `userName`."""
    return {**profile, "userName": user_name}


def describe_profile(urn: str | None, names: tuple[str, ...]) -> rules.AttrInfo | None:
    """Describe the attributes a template rule may name (see `RULE_ATTRIBUTES`).

    Every one is a single-valued string compared case-insensitively, like most SCIM strings
    (RFC 7643 §2.1 caseExact=false).
    """
    if urn is None and len(names) == 1 and names[0].lower() in RULE_ATTRIBUTES:
        return _STRING
    return None


@lru_cache(maxsize=256)
def _reader(path_text: str) -> _Reader:
    path = rules.parse_path(path_text)
    attr = path.attr
    if path.filter is None:
        return _plain_reader(attr.urn, attr.name, attr.sub)
    element_describe = _element_describe(attr.urn, attr.name)
    matches = rules.compile_predicate(path.filter, element_describe)
    primary_only = path.filter == rules.Compare(rules.AttrPath(None, "primary", None), "eq", True)
    return _filtered_reader(attr.urn, attr.name, path.sub or "value", matches, primary_only)


def _plain_reader(urn: str | None, name: str, sub: str | None) -> _Reader:
    spelled = _spelled(urn, name, sub)
    if spelled is not None:
        return _spelled_reader(*spelled)
    extension = None if _is_core(urn) else urn  # core attributes are top-level keys

    def read(resource: Mapping[str, Any]) -> str | None:
        found = attribute_value(
            resource if extension is None else attribute_value(resource, extension), name
        )
        if sub is not None:
            found = attribute_value(found, sub)
        return _text(found)

    return read


def _spelled_reader(extension: str | None, name: str, sub: str | None) -> _Reader:
    """A reader of a path the schema defines, by its canonical keys (see `_spelled`).

    `_plain_reader`'s look-ups written out, without a call for each: the profile is read on
    every create and update, ten paths at a time.
    """

    def read(resource: Mapping[str, Any]) -> str | None:
        found: Any = resource
        if extension is not None:
            found = found.get(extension) if isinstance(found, dict) else None
        found = found.get(name) if isinstance(found, dict) else None
        if sub is not None:
            found = found.get(sub) if isinstance(found, dict) else None
        if found.__class__ is str:
            return found or None
        return _text(found)

    return read


def _filtered_reader(
    urn: str | None,
    name: str,
    sub: str,
    matches: Callable[[Mapping[str, Any]], bool],
    primary_only: bool,
) -> _Reader:
    extension = None if _is_core(urn) else urn  # core attributes are top-level keys
    get: Callable[[Any, str], Any] = attribute_value
    spelled = _spelled(urn, name, sub)
    if spelled is not None:
        extension, name, sub = spelled[0], spelled[1], spelled[2] or sub
        get = _exact

    def read(resource: Mapping[str, Any]) -> str | None:
        values = get(resource if extension is None else get(resource, extension), name)
        if type(values) is not list:
            return None
        first = None
        for element in values:
            if isinstance(element, dict):
                if matches(element):
                    return _text(get(element, sub))
                if first is None:
                    first = element
        if primary_only and first is not None:
            # RFC 7643 §2.4: "primary" marks the preferred value; clients that send a single
            # email often leave the flag out, and that one value is then the preferred one.
            return _text(get(first, sub))
        return None

    return read


@lru_cache(maxsize=64)
def _element_describe(urn: str | None, parent: str) -> rules.Describe:
    """Describe sub-attributes of one multi-valued attribute, for filters inside `[...]`."""
    user = describe_for(USER_TYPE)

    def describe(_urn: str | None, names: tuple[str, ...]) -> rules.AttrInfo | None:
        return user(urn, (parent, *names))

    return describe


def _is_core(urn: str | None) -> bool:
    """Does a path's URN name the core schema (its attributes are top-level keys)?"""
    return urn is None or urn.lower().startswith("urn:ietf:params:scim:schemas:core:")


def _spelled(
    urn: str | None, name: str, sub: str | None
) -> tuple[str | None, str, str | None] | None:
    """How a canonical User spells a path the schema defines: (extension key, name, sub).

    None for a path it does not define (an IdP's custom extension keeps the spelling it was sent
    in). A stored or rendered User holds every attribute the schema defines under its canonical name
    (`canonicalise`), so such an attribute is there under that name or not at all: a reader
    looks it up directly instead of comparing every key, which an attribute the IdP did not send
    (Entra's photo) cost on every write.
    """
    found = lookup(USER_TYPE, None if _is_core(urn) else urn, (name,))
    if found is None:
        return None
    extension = None
    if not _is_core(urn):
        schema = USER_TYPE.extension(urn or "")
        if schema is None:
            return None
        extension = schema.id
    if sub is None:
        return extension, found.name, None
    inner = found.sub(sub)
    if inner is None:
        return None
    return extension, found.name, inner.name


def _exact(obj: Any, key: str) -> Any:
    """`obj[key]`, None when absent or `obj` is no object: `attribute_value` for canonical names."""
    return obj.get(key) if isinstance(obj, dict) else None


def attribute_value(obj: Any, key: str) -> Any:
    """Case-insensitive `obj[key]` (RFC 7643 §2.1), None when absent or `obj` is no object.

    `key` as clients usually spell it (its canonical form) is tried first, with no scan.
    """
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    lowered = key.lower()
    return next((v for k, v in obj.items() if isinstance(k, str) and k.lower() == lowered), None)


def _text(value: Any) -> str | None:
    if value.__class__ is str:  # nearly every value: a string, or "" for none
        return value or None
    if value is None or value == "" or isinstance(value, _CONTAINERS):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: What a profile field cannot be read from (JSON objects and arrays)
_CONTAINERS: Final = (dict, list)
