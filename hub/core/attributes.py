"""Inbound SCIM resource documents: canonical names, type checks, PUT replacement (RFC 7643/7644).

Every function here is pure: it takes JSON-shaped dicts and returns new ones, never mutating its
input, so a request that fails leaves stored state untouched.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from hub.core.errors import InvalidPath, InvalidSyntax, InvalidValue, Mutability
from hub.core.schema import COMMON_BY_KEY, Attribute, ResourceType, Schema, schema_owner
from rules import AttrInfo, Describe, FilterSyntaxError, parse_path

_V = TypeVar("_V")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def json_copy(value: _V) -> _V:
    """A deep copy of a JSON value (dicts, lists and scalars, as a request or the store gives).

    A msgspec round trip: about five times faster than `copy.deepcopy`, which a PATCH paid on
    the whole stored user.
    """
    if not isinstance(value, dict | list):
        return value  # strings, numbers, booleans and null are immutable
    copied: _V = _decode(_encode(value))
    return copied


#: Server-managed attributes dropped from inbound documents on top of every `readOnly` one.
#: `password` is writeOnly + returned=never (RFC 7643 §4.1.1); the hub never keeps passwords.
_NEVER_STORED: Final = frozenset({"password"})

_URN_PREFIX: Final = "urn:"

#: RFC 7643 §2.4: the sub-attributes every multi-valued attribute may carry. They are checked by
#: these types even where the attribute's schema lists fewer (`roles.$ref` must be a string too).
_MULTI_VALUED_SUBS: Final = {
    sub.name.lower(): sub
    for sub in (
        Attribute("type"),
        Attribute("primary", "boolean"),
        Attribute("display"),
        Attribute("$ref", "reference"),
    )
}


def lookup(
    resource_type: ResourceType, urn: str | None, names: tuple[str, ...]
) -> Attribute | None:
    """Find the definition of an attribute path in the resource type's schemas.

    Names are case-insensitive (RFC 7643 §2.1). ``urn`` selects an extension schema; ``None`` or
    the core schema URN selects the core schema plus the common attributes (RFC 7643 §3.1).

    Args:
        resource_type: the resource type whose schemas are searched.
        urn: schema URN qualifying the path, if any.
        names: the attribute name followed by sub-attribute names, e.g. ``("emails", "type")``.

    Returns:
        The attribute definition, or ``None`` when the path is not in the schema.
    """
    if not names:
        return None
    found = _top_level(resource_type, urn, names[0])
    for name in names[1:]:
        if found is None:
            return None
        found = _sub(found, name)
    return found


def _sub(attribute: Attribute, name: str) -> Attribute | None:
    """A sub-attribute of `attribute`, including the RFC 7643 §2.4 multi-valued defaults."""
    found = attribute.sub(name)
    if found is None and attribute.multi_valued and attribute.type == "complex":
        return _MULTI_VALUED_SUBS.get(name.lower())
    return found


def _top_level(resource_type: ResourceType, urn: str | None, name: str) -> Attribute | None:
    if urn is None or urn.lower() == resource_type.schema.id.lower():
        return resource_type.attribute(name)
    extension = resource_type.extension(urn)
    return extension.attribute(name) if extension is not None else None


def describe_for(resource_type: ResourceType) -> Describe:
    """Build the attribute oracle the `rules` evaluator needs for one resource type.

    The evaluator passes full name tuples, also for element-relative lookups inside value paths
    (``emails[type eq "work"]`` asks for ``("emails", "type")``), so plain `lookup` suffices.

    The same function object is returned for the same resource type, so the `rules` compile
    cache (keyed on the filter and the describe function) keeps hitting across requests.

    Args:
        resource_type: the resource type filters and PATCH paths are evaluated against.

    Returns:
        A function mapping ``(urn, names)`` to the attribute's type, caseExact and multiValued
        characteristics (RFC 7643 §2.3, §7), or ``None`` for an unknown attribute.
    """
    cached = _DESCRIBERS.get(id(resource_type))
    if cached is not None and cached[0] is resource_type:
        return cached[1]

    def describe(urn: str | None, names: tuple[str, ...]) -> AttrInfo | None:
        found = lookup(resource_type, urn, names)
        if found is None:
            return None
        return AttrInfo(found.type, found.case_exact, found.multi_valued)

    _DESCRIBERS[id(resource_type)] = (resource_type, describe)
    return describe


_DESCRIBERS: dict[int, tuple[ResourceType, Describe]] = {}


def canonicalise(
    body: Mapping[str, Any],
    resource_type: ResourceType,
    stored: Mapping[str, Any] | None = None,
    unknown: list[str] | None = None,
) -> dict[str, Any]:
    """Validate an inbound resource and spell every known attribute name canonically.

    RFC 7643 §2.1 makes attribute names case-insensitive, so ``USERNAME`` becomes ``userName``,
    extension keys get the schema's spelling, and so on at every depth. Unknown attributes are kept
    exactly as sent so that a GET returns what was PUT. Server-managed attributes (every
    ``readOnly`` one: ``id``, ``meta``, User ``groups``, ``manager.displayName``, member
    ``display``) are dropped, as RFC 7644 §3.3 and §3.5.1 let the server ignore them; so is
    ``password`` (returned=never, RFC 7643 §4.1.1), which the hub never keeps. A null value, an
    empty list and an empty object all mean "unassigned" (RFC 7643 §2.5) and are removed, and
    so is an empty ``externalId`` (RFC 7643 §3.1: an identifier; "" identifies nothing).

    A missing ``schemas`` is `InvalidValue` ("a required value was missing", RFC 7644 §3.12); one
    that is not a list of strings is `InvalidSyntax` (the message does not have the request's
    structure). Every extension key holding a value must be listed in ``schemas`` (RFC 7643 §3);
    one holding null or ``{}`` holds no extension, listed or not (§2.5). An extension the hub has
    no schema for (an IdP's custom extension) is kept exactly as sent when it is listed. The
    hub's own schemas are never such an extension: another resource type's, in ``schemas`` or
    as a key, and an object under the type's core URN are refused (`misplaced_schema`).

    Args:
        body: the decoded JSON object from the request.
        resource_type: the type of resource it describes.
        stored: the canonical document `body` was made from (a PATCH's starting point): an
            attribute `body` holds exactly as stored, under its canonical name, is canonical
            already and is taken as it is, not copied (a PATCH touches one or two of a user's
            attributes; checking every other one again was most of its cost).
        unknown: if given, receives the key of each top-level member of the result that is,
            or holds, an attribute the type's schemas do not define: an unknown top-level
            attribute, a complex attribute or the Enterprise User extension holding an unknown
            sub-attribute (`extensions.record` describes them). Noted where the names are
            looked up anyway; a member taken as stored (see `stored`) is not looked into.

    Returns:
        A new dict in canonical form.

    Raises:
        InvalidValue: a value has the wrong type, ``schemas`` is missing or wrong, an extension
            is unknown or unlisted, or one of the hub's schemas is where it does not belong.
    """
    if not isinstance(body, Mapping):
        raise InvalidValue(f"a {resource_type.name} must be a JSON object")
    canonical, listed, own = _canonical_schemas(body, resource_type, stored)
    schemas = list(canonical)
    top = _shape_of(resource_type)
    result: dict[str, Any] = {"schemas": schemas}
    # Each member's lower-cased key, or an attribute's canonical name: what a second spelling
    # of it would find (`_shape_of` gives both spellings one slot, so no key is lower-cased
    # when it is spelled as the schema spells it).
    seen: set[str] = {"schemas"}
    for key, value in body.items():
        slot = top.get(key, _UNKNOWN)
        if slot is _UNKNOWN:
            lowered = key.lower()
            slot = top.get(lowered, _UNKNOWN)
            if slot is _UNKNOWN:
                if lowered == "schemas":
                    continue
                if lowered in seen:
                    raise _given_twice(key)
                seen.add(lowered)
                if lowered.startswith(_URN_PREFIX):
                    _put_extension(
                        result, key, lowered, value, resource_type, listed, stored, unknown
                    )
                    continue
                _store(result, key, json_copy(value))
                if unknown is not None:
                    unknown.append(key)
                continue
        if slot is _DROPPED:
            lowered = key.lower()
            if lowered in seen:
                raise _given_twice(key)
            seen.add(lowered)
            continue
        name, attribute, taken = slot
        if name in seen:
            raise _given_twice(key)
        seen.add(name)
        if value.__class__ is taken:
            if taken is not str or value or name != "externalId":
                result[name] = value  # never unassigned, and `seen` made it the only one
            # else: an empty externalId identifies nothing: unassigned, as null is (an IdP
            # may send "" for a mapping whose source is empty). Stored, a create sending it
            # brought back a deleted user holding it, and `externalId eq ""` found them all.
        elif key == name and _unchanged(key, value, stored):
            _store(result, key, value)
        else:
            _store(result, name, canonical_value(attribute, value, name, unknown))
    if not own:
        result["schemas"] = _without_empty_unknown(schemas, result, resource_type)
    return result


def _put_extension(
    result: dict[str, Any],
    key: str,
    lowered: str,
    value: Any,
    resource_type: ResourceType,
    listed: frozenset[str],
    stored: Mapping[str, Any] | None,
    unknown: list[str] | None,
) -> None:
    """Store the member `key` (a URN, `lowered` lower-cased) of a body in `result`, canonical.

    See `canonicalise`: one of the type's extensions, a custom one, or one of the hub's
    schemas where it does not belong.
    """
    extension = resource_type.extension_by_key.get(lowered)
    if extension is None:  # the type's own extensions are never misplaced
        refused = misplaced_schema(key, resource_type)
        if refused is not None:
            if not _unchanged(key, value, stored):
                raise InvalidValue(refused)
            _store(result, key, value)  # stored before the hub refused it (`_kept_listed`)
            return
    if value is None or value == {}:
        return  # no extension (RFC 7643 §2.5), whether `schemas` lists it or not
    if lowered not in listed and _unassigned(_assigned(value)):
        return  # nothing but unassigned values ({"department": null}): none either
    if extension is None:
        if lowered not in listed:
            raise InvalidValue(f"{key!r} is not an extension of {resource_type.name}")
        _store(result, key, _custom_extension(key, value))
    elif lowered not in listed:
        raise InvalidValue(f"extension {extension.id!r} is present but not listed in 'schemas'")
    elif key == extension.id and _unchanged(key, value, stored):
        _store(result, key, value)
    else:
        _store(result, extension.id, _canonical_extension(extension, value, unknown))


def _without_empty_unknown(
    schemas: list[str], doc: Mapping[str, Any], resource_type: ResourceType
) -> list[str]:
    """`schemas` less the URNs the hub does not publish that hold no attribute of `doc`.

    RFC 7643 §3: `schemas` names the schemas of the attributes present. Entra lists
    `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group` on every group
    it creates, with nothing under it; echoing it back made strict clients (scim2-client)
    refuse every page holding that group, as a schema neither /Schemas nor /ResourceTypes
    shows. A custom extension that holds attributes stays listed, as RFC 7643 §3 requires.
    """
    keys = {key.lower() for key in doc}
    return [
        urn
        for urn in schemas
        if urn == resource_type.schema.id
        or resource_type.extension(urn) is not None
        or urn.lower() in keys
    ]


def _unchanged(key: str, value: Any, stored: Mapping[str, Any] | None) -> bool:
    """Say whether `value` is what `stored` holds under the very same `key`.

    Compared as JSON text: Python's `==` takes `1`, `1.0` and `True` for one another, and a
    boolean sent for an integer attribute must still be refused.
    """
    if stored is None or key not in stored:
        return False
    kept = stored[key]
    if kept is value:
        return True
    return type(kept) is type(value) and _encode(kept) == _encode(value)


class _Schemas(NamedTuple):
    """A body's ``schemas``, checked (`_canonical_schemas`)."""

    #: the URNs as the hub spells them, each once
    canonical: tuple[str, ...]
    #: the same, lower-cased
    listed: frozenset[str]
    #: whether each is one of the type's own schemas (none an IdP's custom extension)
    own: bool


#: `_canonical_schemas`'s answers for lists of the type's own URNs, by the type's id and the
#: list as sent: nearly every body sends one of two or three such lists.
_SCHEMA_LISTS: dict[tuple[int, tuple[str, ...]], tuple[ResourceType, _Schemas]] = {}
_SCHEMA_LISTS_KEPT: Final = 256


def _canonical_schemas(
    body: Mapping[str, Any], resource_type: ResourceType, stored: Mapping[str, Any] | None
) -> _Schemas:
    """A body's ``schemas``, checked (see `canonicalise`), as `_Schemas`."""
    schemas = body.get("schemas")
    if schemas is None:  # names are case-insensitive (RFC 7643 §2.1): "Schemas" is the same
        schemas = next((v for k, v in body.items() if k.lower() == "schemas"), None)
    if schemas.__class__ is list:
        try:
            cached = _SCHEMA_LISTS.get((id(resource_type), tuple(schemas)))
        except TypeError:  # an unhashable element: refused below
            cached = None
        if cached is not None and cached[0] is resource_type:
            return cached[1]
    if schemas is None:
        raise InvalidValue(f"'schemas' is missing; it must include {resource_type.schema.id!r}")
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise InvalidSyntax(
            f"'schemas' must be a list of schema URNs including {resource_type.schema.id!r}"
        )
    known = resource_type.schema_id_by_key
    canonical: list[str] = []
    for urn in schemas:
        spelled = known.get(urn.lower())
        if spelled is None:
            refused = foreign_schema(urn, resource_type)
            if refused is not None and not _kept_listed(urn, stored):
                raise InvalidValue(f"'schemas': {refused}")
            # An extension the hub does not know (e.g. an Entra custom extension): as sent.
            spelled = urn
        if spelled not in canonical:
            canonical.append(spelled)
    if resource_type.schema.id not in canonical:
        raise InvalidValue(f"'schemas' must include {resource_type.schema.id!r}")
    found = _Schemas(
        tuple(canonical),
        frozenset(urn.lower() for urn in canonical),
        all(known.get(urn.lower()) == urn for urn in canonical),
    )
    if found.own and len(_SCHEMA_LISTS) < _SCHEMA_LISTS_KEPT:
        # Own URNs only: the answer depends on nothing else (`stored` is read for others).
        _SCHEMA_LISTS[id(resource_type), tuple(schemas)] = (resource_type, found)
    return found


def foreign_schema(urn: str, resource_type: ResourceType) -> str | None:
    """What is wrong with `urn` on a `resource_type` resource: it is another type's schema.

    The hub's schemas belong to their resource types (RFC 7643 §3, §6): the Enterprise User
    extension on a Group is no custom extension of Groups, and taken for one it gave `/Schemas`
    two schemas with its id (RFC 7643 §7). None for any other URN.
    """
    owner = schema_owner(urn)
    if owner is None or owner is resource_type:
        return None
    return f"{urn!r} is a schema of {owner.name} resources, not of {resource_type.name}s"


def misplaced_schema(urn: str, resource_type: ResourceType) -> str | None:
    """Why no object of a `resource_type` resource may sit under `urn`, if it is one of the hub's.

    Another type's schema (`foreign_schema`), or the type's own core schema: its attributes sit
    at the top level (RFC 7643 §3), or carry their URN in their name where RFC 7644 §3.10 allows
    it (`…:core:2.0:User:title` in a PATCH path); an object under the core URN is neither. Stored
    as a custom extension, it was returned as sent and set nothing. None for any other URN.
    """
    foreign = foreign_schema(urn, resource_type)
    if foreign is not None:
        return foreign
    if urn.lower() != resource_type.schema.id.lower():
        return None
    return (
        f"attributes of {resource_type.schema.id!r} go at the top level of a "
        f"{resource_type.name}, not in an object under the schema's URN"
    )


def _kept_listed(urn: str, stored: Mapping[str, Any] | None) -> bool:
    """Whether `stored` (a PATCH's starting point) lists `urn` as spelled.

    Versions before the hub refused another type's schema stored it; a PATCH of other
    attributes (Entra only PATCHes users) must still go through, and a PUT replaces it.
    """
    if stored is None:
        return False
    listed = stored.get("schemas")
    return isinstance(listed, list) and urn in listed


def _custom_extension(urn: str, value: Any) -> dict[str, Any] | None:
    """An extension the hub has no schema for, as sent less its unassigned values.

    RFC 7643 §3 puts an extension's attributes in one object under its URN; a null, an empty
    list and an empty object are unassigned (§2.5) at any depth, as for known attributes. Left
    in, they made the resource unreadable for strict clients, which take a null for a value of
    the wrong type, and a PATCH removing an object's last sub-attribute left `{}` behind.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidValue(f"extension {urn!r} must be a JSON object")
    assigned = _assigned(value)
    assert isinstance(assigned, dict)
    for key in [key for key in assigned if is_extension_schemas(key)]:
        del assigned[key]
    return assigned


def is_extension_schemas(key: str) -> bool:
    """Whether a key of an extension object is ``schemas``, which is no attribute of it.

    ``schemas`` lists a resource's schema URNs (RFC 7643 §3); no extension defines an attribute
    of that name. scim2-models writes an extension object on its own, as the value of a PATCH
    whose path is the extension's URN, with ``"schemas": [its URN]`` in it: kept, it came back
    under the extension and discovery described it as one of the extension's attributes.
    """
    return key.lower() == "schemas"


def _assigned(value: Any) -> Any:
    """A copy of a JSON value without its unassigned (null, [], {}) members and elements."""
    if isinstance(value, Mapping):
        kept = {key: _assigned(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if not _unassigned(item)}
    if isinstance(value, list):
        return [item for item in map(_assigned, value) if not _unassigned(item)]
    return value


def _unassigned(value: Any) -> bool:
    return value is None or value == [] or value == {}


def _canonical_extension(
    extension: Schema, value: Any, unknown: list[str] | None = None
) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidValue(f"extension {extension.id!r} must be a JSON object")
    return _canonical_object(value, _shape_of(extension), f"{extension.id}:", unknown)


#: One attribute of an object, as `_canonical_object` needs it: its canonical name, its
#: definition, and the class every value of which is valid as it is (`_taken_as_is`), or None.
_Slot = tuple[str, Attribute, type | None]
#: An object's attributes by lower-cased name, and by canonical name too: a `_Slot`, or
#: `_DROPPED` for one the hub never stores (readOnly, `_NEVER_STORED`). Built once per complex
#: attribute, extension schema or resource type.
_Shape = dict[str, _Slot | None]
_DROPPED: Final = None
#: what `_Shape.get` gives for a name not in the schema (a slot of its own, for the type checker)
_UNKNOWN: Final[_Slot] = ("", Attribute(""), None)
_SHAPES: dict[int, tuple[Attribute | Schema | ResourceType, _Shape]] = {}
#: Single-valued attribute types whose every value of one JSON class is valid as it is: most of
#: what a User holds (strings, `primary`, `active`), taken without a call per value.
_TAKEN_AS_IS: Final[dict[str, type]] = {
    "string": str,
    "reference": str,
    "boolean": bool,
    "integer": int,  # a JSON true decodes to bool, whose class is not int
}


def _taken_as_is(attribute: Attribute) -> type | None:
    """The JSON class every value of which `attribute` takes unchecked (None: check each)."""
    return None if attribute.multi_valued else _TAKEN_AS_IS.get(attribute.type)


def _shape_of(owner: Attribute | Schema | ResourceType) -> _Shape:
    """The `_Shape` of a complex attribute, an extension schema or a resource type's top level.

    A multi-valued complex attribute also gets the RFC 7643 §2.4 defaults under its own
    sub-attributes; a resource type's top level is its core schema and the common attributes
    (RFC 7643 §3.1).
    """
    cached = _SHAPES.get(id(owner))
    if cached is not None and cached[0] is owner:
        return cached[1]
    if isinstance(owner, ResourceType):
        found = {**COMMON_BY_KEY, **owner.schema.by_key}
    else:
        found = dict(owner.by_key)
    if isinstance(owner, Attribute) and owner.multi_valued and owner.type == "complex":
        found = {**_MULTI_VALUED_SUBS, **found}
    shape = {
        name: (sub.name, sub, _taken_as_is(sub)) if _is_stored(sub) else _DROPPED
        for name, sub in found.items()
    }
    # Each also under its canonical spelling, the one clients send: found without lowering.
    shape.update({sub.name: shape[name] for name, sub in found.items()})
    if isinstance(owner, Schema):
        shape["schemas"] = _DROPPED  # an extension object's, no attribute (`is_extension_schemas`)
    _SHAPES[id(owner)] = (owner, shape)
    return shape


def _canonical_object(
    value: Mapping[str, Any], shape: _Shape, prefix: str, unknown: list[str] | None = None
) -> dict[str, Any]:
    """Canonicalise the keys of a complex value or extension object (unknown keys kept as sent).

    `shape` is the object's (`_shape_of`); `prefix` starts the path an error names ("name.",
    "urn:…:User:", "urn:…:User:manager."); `unknown`, if given, receives the top-level member
    holding an unknown key, which `prefix` names (`_member_of`).
    """
    result: dict[str, Any] = {}
    for key, item in value.items():
        slot = shape.get(key, _UNKNOWN)
        if slot is _UNKNOWN:
            slot = shape.get(key.lower(), _UNKNOWN)
        if slot is _UNKNOWN:
            _store(result, key, json_copy(item))
            if unknown is not None:
                unknown.append(_member_of(prefix))
            continue
        if slot is _DROPPED:
            continue
        name, attribute, taken = slot
        if item.__class__ is taken:  # never unassigned: no `_store` call
            if name in result:
                raise _given_twice(name)
            result[name] = item
        else:
            _store(result, name, canonical_value(attribute, item, prefix + name, unknown))
    return result


def _member_of(prefix: str) -> str:
    """The top-level key of a `_canonical_object` prefix.

    `name` of "name.", the extension's URN of "urn:…:User:" and "urn:…:User:manager." (no name
    the hub defines holds "." or ":").
    """
    if prefix.startswith(_URN_PREFIX):
        return prefix.rsplit(":", 1)[0]
    return prefix.split(".", 1)[0]


def _is_stored(attribute: Attribute) -> bool:
    return attribute.mutability != "readOnly" and attribute.name not in _NEVER_STORED


def _store(target: dict[str, Any], key: str, value: Any) -> None:
    """Keep `value` unless it is unassigned: null, [] or {} (RFC 7643 §2.5)."""
    if _unassigned(value):
        return
    if key in target:
        raise _given_twice(key)
    target[key] = value


def _given_twice(name: str) -> InvalidValue:
    return InvalidValue(f"attribute {name!r} is given twice (names are case-insensitive)")


def canonical_value(
    attribute: Attribute, value: Any, where: str, unknown: list[str] | None = None
) -> Any:
    """Type-check one attribute value and return it in canonical form.

    Args:
        attribute: the attribute's definition.
        value: the value as sent; ``None`` means unassigned.
        where: the attribute path named in error details.
        unknown: if given, receives the top-level member of the resource holding a
            sub-attribute the definition lacks (see `canonicalise`).

    Returns:
        A new canonical value, or ``None`` when the value is unassigned.

    Raises:
        InvalidValue: the value does not match the attribute's type (RFC 7643 §2.3), or more than
            one of a multi-valued attribute's values is primary (§2.4).
    """
    if value is None:
        return None
    if not attribute.multi_valued:
        return _canonical_single(attribute, value, where, unknown)
    if not isinstance(value, list):
        raise InvalidValue(f"{where!r} is multi-valued and must be a list")
    if attribute.type == "complex":
        return _canonical_elements(value, _shape_of(attribute), where, unknown)
    items = []
    for element in value:
        item = _canonical_single(attribute, element, where, unknown)
        if item is not None:
            items.append(item)
    return items


def _canonical_elements(
    value: list[Any], shape: _Shape, where: str, unknown: list[str] | None
) -> list[dict[str, Any]]:
    """The elements of a multi-valued complex attribute, canonical, less the unassigned ones.

    `_canonical_single` element by element, with the shape and the error path's prefix found
    once for the list: emails, phone numbers and addresses are most of a User's values.
    """
    prefix = where + "."
    items = []
    primaries = 0
    for element in value:
        if element is None:
            continue
        if element.__class__ is not dict and not isinstance(element, Mapping):
            raise InvalidValue(f"{where!r} must be a JSON object")
        item = _canonical_object(element, shape, prefix, unknown)
        if item:
            items.append(item)
            primaries += item.get("primary") is True
    if primaries > 1:
        raise InvalidValue(f"{where!r}: at most one value may be primary (RFC 7643 §2.4)")
    return items


def _canonical_single(
    attribute: Attribute, value: Any, where: str, unknown: list[str] | None = None
) -> Any:
    if value is None:
        return None
    kind = attribute.type
    if kind == "complex":
        if value.__class__ is not dict and not isinstance(value, Mapping):
            raise InvalidValue(f"{where!r} must be a JSON object")
        return _canonical_object(value, _shape_of(attribute), where + ".", unknown)
    if not _SIMPLE_CHECKS.get(kind, _is_string)(value):
        raise InvalidValue(f"{where!r} must be a {kind}, got {type(value).__name__} {value!r}")
    if kind == "binary":
        return _base64_text(value)
    return value


def _is_string(value: Any) -> bool:
    # string, reference, binary: JSON strings (RFC 7643 §2.3.1, §2.3.6, §2.3.7)
    return isinstance(value, str)


def _is_base64(value: Any) -> bool:
    """RFC 7643 §2.3.6: binary is base64 (RFC 4648 §4); line breaks and missing padding pass."""
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(_base64_text(value), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _base64_text(value: str) -> str:
    """`value` as RFC 4648 §4 writes base64: no line breaks (§3.1), padded (§3.2).

    RFC 7643 §2.3.6 asks for that form. Taken as sent ("QQ", a certificate wrapped at 64
    characters), a value came back in it, and strict clients (scim2-models) refused every
    resource and page holding it.
    """
    text = "".join(value.split())
    return text + "=" * (-len(text) % 4)


#: RFC 7643 §2.3: does a JSON value have the attribute type's form?
_SIMPLE_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    "string": _is_string,
    "binary": _is_base64,
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    "decimal": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "dateTime": lambda value: isinstance(value, str) and _is_datetime(value),
}


def _is_datetime(text: str) -> bool:
    """RFC 7643 §2.3.5: xsd:dateTime, which `fromisoformat` accepts (including a trailing Z)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


#: The longest userName, externalId, group displayName or member display the hub stores (their
#: columns and unique indexes; PostgreSQL refuses longer values, SQLite would keep them).
MAX_KEY_LENGTH: Final = 512


def bounded(name: str, value: str) -> str:
    """`value`, if it and its lowercase form fit `MAX_KEY_LENGTH` characters.

    Raises:
        InvalidValue: the value is longer (a clear 400, where the database would fail the write).
    """
    if len(value) > MAX_KEY_LENGTH or len(value.lower()) > MAX_KEY_LENGTH:
        raise InvalidValue(
            f"{name!r} is {len(value)} characters long; the hub keeps at most {MAX_KEY_LENGTH}"
        )
    return value


def required_missing(
    doc: Mapping[str, Any], resource_type: ResourceType, *, patched: bool = False
) -> None:
    """Reject a resource whose required core attributes are missing or blank.

    RFC 7643 §4.1.1 (``userName``) and §4.2 (``displayName``) mark these ``required``.

    Args:
        doc: a canonical document (see `canonicalise`).
        resource_type: its resource type.
        patched: `doc` is the result of a PATCH: a required attribute it removed or left
            unassigned is a ``mutability`` error (RFC 7644 §3.5.2.2).

    Raises:
        Mutability: `patched`, and a required attribute is absent.
        InvalidValue: a required attribute is absent, not a string, or only whitespace.
    """
    for attribute in resource_type.schema.attributes:
        if not attribute.required:
            continue
        value = doc.get(attribute.name)
        if value is None and patched:
            raise Mutability(
                f"{attribute.name!r} is required for a {resource_type.name}: a PATCH may "
                "replace it but not remove it or leave it unassigned"
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidValue(f"{attribute.name!r} is required for a {resource_type.name}")


def merge_put(
    existing: Mapping[str, Any],
    incoming: Mapping[str, Any],
    resource_type: ResourceType,
    unmanaged: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Build the document a PUT stores: the incoming one, minus what PUT may not touch.

    RFC 7644 §3.5.1: PUT replaces the resource; ``readOnly`` values sent are ignored and
    ``immutable`` ones must match what is stored. ``unmanaged`` are attribute paths an IdP never
    sends (e.g. Entra ID and ``photos``, DESIGN.md): when the incoming document lacks one, the
    stored value is kept rather than erased.

    Args:
        existing: the stored canonical document.
        incoming: the canonical replacement (see `canonicalise`).
        resource_type: the type of both documents.
        unmanaged: SCIM attribute paths (``"photos"``, ``"name.givenName"``, URN-qualified) kept
            from ``existing`` when ``incoming`` does not carry them.

    Returns:
        A new document.

    Raises:
        Mutability: an ``immutable`` attribute would change.
        InvalidPath: an ``unmanaged`` entry is not a valid attribute path.
    """
    result = {
        key: json_copy(value)
        for key, value in incoming.items()
        if (found := resource_type.attribute(key)) is None or found.mutability != "readOnly"
    }
    _check_immutable(existing, result, resource_type.schema.attributes, "")
    for path in unmanaged:
        _keep_unmanaged(existing, result, resource_type, path)
    return result


def _check_immutable(
    existing: Mapping[str, Any],
    incoming: Mapping[str, Any],
    attributes: tuple[Attribute, ...],
    where: str,
) -> None:
    for attribute in attributes:
        old, new = existing.get(attribute.name), incoming.get(attribute.name)
        name = f"{where}{attribute.name}"
        if attribute.mutability == "immutable" and old is not None and old != new:
            raise Mutability(f"{name!r} is immutable and cannot be changed")
        nested = attribute.type == "complex" and not attribute.multi_valued
        if nested and isinstance(old, Mapping) and isinstance(new, Mapping):
            _check_immutable(old, new, attribute.sub_attributes, f"{name}.")


def _keep_unmanaged(
    existing: Mapping[str, Any], result: dict[str, Any], resource_type: ResourceType, path: str
) -> None:
    try:
        parsed = parse_path(path)
    except FilterSyntaxError as error:
        raise InvalidPath(f"unmanaged path {path!r}: {error}") from error
    keys = _stored_keys(resource_type, parsed.attr.urn, parsed.attr.name, parsed.attr.sub)
    old_parent: Any = existing
    new_parent: Any = result
    for key in keys[:-1]:
        if not isinstance(old_parent, Mapping) or key not in old_parent:
            return
        old_parent = old_parent[key]
        new_parent = new_parent.setdefault(key, {})
        if not isinstance(new_parent, dict):
            return
    last = keys[-1]
    if isinstance(old_parent, Mapping) and last in old_parent and last not in new_parent:
        new_parent[last] = json_copy(old_parent[last])
    _drop_empty(result, keys[0])
    if keys[0] in result and keys[0] in resource_type.schema_ids:
        # A kept extension object must stay listed in `schemas` (RFC 7643 §3).
        schemas = result.setdefault("schemas", [resource_type.schema.id])
        if keys[0] not in schemas:
            schemas.append(keys[0])


def _stored_keys(
    resource_type: ResourceType, urn: str | None, name: str, sub: str | None
) -> list[str]:
    """Canonical dict keys of an attribute path, e.g. ``[ENTERPRISE, "manager", "value"]``."""
    keys: list[str] = []
    if urn is not None and urn.lower() != resource_type.schema.id.lower():
        extension = resource_type.extension(urn)
        keys.append(extension.id if extension is not None else urn)
    attribute = _top_level(resource_type, urn, name) if name else None
    if name:
        keys.append(attribute.name if attribute is not None else name)
    if sub is not None:
        found = attribute.sub(sub) if attribute is not None else None
        keys.append(found.name if found is not None else sub)
    return keys


def _drop_empty(doc: dict[str, Any], key: str) -> None:
    if doc.get(key) == {}:
        del doc[key]
