"""In-memory evaluation of SCIM filters against a resource (RFC 7644 §3.4.2.2, RFC 7643 §2).

The schema is reached through a `Describe` callback so this package stays free of the hub. A
filter is first compiled into nested closures; compiling checks every attribute and comparison,
so an invalid filter fails the same way whatever the resource holds (as the SQL compiler does),
and evaluating a cached compiled filter costs only the comparisons.

Semantics:

* Attribute names match case-insensitively; extension attributes live under `resource[urn]`.
* A multi-valued attribute matches when any of its values does; comparing a complex attribute
  without a sub-attribute compares its `value` sub-attribute.
* `ne` is the negation of `eq` (so an absent attribute is "not equal"), `eq null` means "not
  present" and `ne null` "present".
* Strings compare case-insensitively (`str.lower()`) unless the attribute is `caseExact`;
  dateTimes compare chronologically; numbers numerically. A value of the wrong type does not
  match. `gt`/`ge`/`lt`/`le` on booleans or binaries, `co`/`sw`/`ew` on non-strings, and
  unparseable dateTime values raise `InvalidComparison`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, NamedTuple, TypeAlias

from rules.ast import And, AttrPath, Filter, Not, Or, Present, Value, ValuePath
from rules.errors import InvalidComparison, UnknownAttribute


class AttrInfo(NamedTuple):
    """What evaluation needs to know about an attribute (RFC 7643 §7).

    `type` is one of "string", "boolean", "decimal", "integer", "dateTime", "binary",
    "reference", "complex".
    """

    type: str
    case_exact: bool
    multi_valued: bool


Describe: TypeAlias = Callable[[str | None, tuple[str, ...]], AttrInfo | None]
_Predicate: TypeAlias = Callable[[Mapping[str, Any]], bool]
_Match: TypeAlias = Callable[[Any], bool]

ORDERING_OPS: Final = frozenset({"gt", "ge", "lt", "le"})
SUBSTRING_OPS: Final = frozenset({"co", "sw", "ew"})
STRING_TYPES: Final = frozenset({"string", "reference", "binary"})
_CORE_PREFIX: Final = "urn:ietf:params:scim:schemas:core:"
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_DATETIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_datetime(text: str) -> int:
    """Parse an xsd:dateTime (RFC 7643 §2.3.5) into nanoseconds since the Unix epoch.

    A time without an offset is UTC. Digits beyond nanoseconds are dropped.

    Raises:
        ValueError: `text` is not an xsd:dateTime.
    """
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an xsd:dateTime such as 2011-05-13T04:42:34Z")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid xsd:dateTime: {exc}") from None
    delta = moment - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    if offset and offset not in "Zz":
        shift = int(offset[1:3]) * 3600 + int(offset[4:6]) * 60
        seconds -= shift if offset[0] == "+" else -shift
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def evaluate(filter: Filter, resource: Mapping[str, Any], describe: Describe) -> bool:
    """Say whether `resource` matches `filter`.

    Args:
        filter: a parsed filter.
        resource: the rendered SCIM resource (a JSON object).
        describe: the schema: `describe(urn, ("emails", "type"))` -> `AttrInfo`, or `None` for
            an attribute the schema does not define. `urn` is `None` for the core schema.

    Returns:
        Whether the resource matches.

    Raises:
        UnknownAttribute: the filter names an attribute `describe` does not know.
        InvalidComparison: the filter compares in a way its attribute's type does not allow.
    """
    return compile_predicate(filter, describe)(resource)


def compile_predicate(filter: Filter, describe: Describe) -> Callable[[Mapping[str, Any]], bool]:
    """Check `filter` against the schema and return a function that evaluates it.

    Raises:
        UnknownAttribute: the filter names an attribute `describe` does not know.
        InvalidComparison: the filter compares in a way its attribute's type does not allow.
    """
    try:
        return _cached(filter, describe)
    except TypeError:  # an unhashable describe (or value): compile without the cache
        return _compile(filter, describe, None, ())


@lru_cache(maxsize=1024)
def _cached(filter: Filter, describe: Describe) -> _Predicate:
    return _compile(filter, describe, None, ())


def _compile(
    flt: Filter, describe: Describe, urn: str | None, prefix: tuple[str, ...]
) -> _Predicate:
    if isinstance(flt, And):
        left, right = (_compile(f, describe, urn, prefix) for f in (flt.left, flt.right))
        return lambda obj: left(obj) and right(obj)
    if isinstance(flt, Or):
        left, right = (_compile(f, describe, urn, prefix) for f in (flt.left, flt.right))
        return lambda obj: left(obj) or right(obj)
    if isinstance(flt, Not):
        operand = _compile(flt.operand, describe, urn, prefix)
        return lambda obj: not operand(obj)
    if isinstance(flt, ValuePath):
        return _compile_value_path(flt, describe)
    path = flt.path
    if not prefix:
        urn = path.urn
    names = (*prefix, path.name) if path.sub is None else (*prefix, path.name, path.sub)
    info = describe(urn, names)
    if info is None:
        raise UnknownAttribute(_dotted(urn, names))
    values = _getter(urn if not prefix else None, path, relative=bool(prefix))
    if isinstance(flt, Present):
        return lambda obj: any(_present(v) for v in values(obj))
    compares_whole = info.type != "complex"
    if not compares_whole:
        # RFC 7644 §3.4.2.2: a complex attribute without a sub-attribute compares its "value".
        names = (*names, "value")
        value_info = describe(urn, names)
        if value_info is None:
            raise InvalidComparison(
                f"'{_dotted(urn, names[:-1])}' is complex; compare one of its sub-attributes"
            )
        info = value_info
        whole = values

        def values(obj: Mapping[str, Any]) -> list[Any]:
            return _subvalues(whole(obj), "value")

    matches = compile_match(flt.op, flt.value, info, _dotted(urn, names))
    if flt.value is None:  # `eq null` is "not present", `ne null` is "present"
        if flt.op == "eq":
            return lambda obj: not any(_present(v) for v in values(obj))
        return lambda obj: any(_present(v) for v in values(obj))
    negate = flt.op == "ne"

    def generic(obj: Mapping[str, Any]) -> bool:
        found = any(matches(v) for v in values(obj))
        return not found if negate else found

    if path.sub is not None or not compares_whole or (urn is not None and not prefix):
        return generic  # the values are gathered from elsewhere than `obj[path.name]`
    return _scalar_first(path.name, matches, generic, negate=negate)


def _scalar_first(name: str, matches: _Match, generic: _Predicate, *, negate: bool) -> _Predicate:
    """`generic` for a plain attribute of the object itself, with a shortcut for one value.

    Where the object holds `name` under that very spelling with one value (no list, not null),
    the values `generic` would gather are that value alone, so the comparison is made on it
    directly; anything else (another spelling, a list, nothing) goes the general way.
    """

    def predicate(obj: Mapping[str, Any]) -> bool:
        found = obj.get(name) if obj.__class__ is dict else None
        if found is None or isinstance(found, list):
            return generic(obj)
        return not matches(found) if negate else matches(found)

    return predicate


def _compile_value_path(flt: ValuePath, describe: Describe) -> _Predicate:
    path = flt.path
    info = describe(path.urn, (path.name,))
    if info is None:
        raise UnknownAttribute(_dotted(path.urn, (path.name,)))
    if info.type != "complex":
        raise InvalidComparison(
            f"'{path.name}' is not complex; a value filter '[…]' needs a complex attribute"
        )
    inner = _compile(flt.filter, describe, path.urn, (path.name,))
    values = _getter(path.urn, path, relative=False)
    return lambda obj: any(isinstance(v, Mapping) and inner(v) for v in values(obj))


def compile_match(op: str, value: Value, info: AttrInfo, where: str) -> _Match:
    """Return a test of one attribute value against `op value` (`ne` is tested as `eq`).

    `eq null` and `ne null` test presence of all the values, which the caller does; the
    returned test then matches nothing.

    Raises:
        InvalidComparison: the comparison is not allowed for the attribute's type.
    """
    kind = info.type
    if op in ORDERING_OPS and kind in ("boolean", "binary"):
        raise InvalidComparison(f"'{op}' cannot compare {kind} attribute '{where}'")
    if op in SUBSTRING_OPS and kind not in STRING_TYPES:
        raise InvalidComparison(f"'{op}' applies to strings; '{where}' is a {kind}")
    if value is None:
        if op not in ("eq", "ne"):
            raise InvalidComparison(f"null can only be compared with 'eq' or 'ne' ('{where}')")
        # Presence is a property of all the values together; the caller tests it.
        return _never
    if kind == "dateTime":
        return _datetime_match(op, value, where)
    test = _ORDER["eq" if op == "ne" else op] if op not in SUBSTRING_OPS else None
    if kind in STRING_TYPES:
        if not isinstance(value, str):
            return _never
        if not info.case_exact:
            value = value.lower()
            if op == "co":
                return lambda v: isinstance(v, str) and value in v.lower()
            if op == "sw":
                return lambda v: isinstance(v, str) and v.lower().startswith(value)
            if op == "ew":
                return lambda v: isinstance(v, str) and v.lower().endswith(value)
            assert test is not None
            return lambda v: isinstance(v, str) and test(v.lower(), value)
        if op == "co":
            return lambda v: isinstance(v, str) and value in v
        if op == "sw":
            return lambda v: isinstance(v, str) and v.startswith(value)
        if op == "ew":
            return lambda v: isinstance(v, str) and v.endswith(value)
        assert test is not None
        return lambda v: isinstance(v, str) and test(v, value)
    assert test is not None
    if kind == "boolean":
        if not isinstance(value, bool):
            return _never
        return lambda v: isinstance(v, bool) and v is value
    if kind in ("integer", "decimal"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _never
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and test(v, value)
    # "complex" was resolved to its "value" sub-attribute; anything else is unknown to SCIM.
    raise InvalidComparison(f"cannot compare '{where}' of type {kind!r}")


def _datetime_match(op: str, value: Value, where: str) -> _Match:
    if not isinstance(value, str):
        return _never
    try:
        target = parse_datetime(value)
    except ValueError:
        raise InvalidComparison(
            f"{value!r} is not a dateTime such as 2011-05-13T04:42:34Z ('{where}')"
        ) from None
    test = _ORDER["eq" if op == "ne" else op]

    def match(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            return bool(test(parse_datetime(v), target))
        except ValueError:
            return False

    return match


def _never(_: Any) -> bool:
    return False


def _present(value: Any) -> bool:
    """RFC 7644 §3.4.2.2 `pr`: a non-null, non-empty value (recursively for complex/lists)."""
    if value is None or value == "":
        return False
    if isinstance(value, Mapping):
        return any(_present(v) for v in value.values())
    if isinstance(value, list):
        return any(_present(v) for v in value)
    return True


def _getter(
    urn: str | None, path: AttrPath, *, relative: bool
) -> Callable[[Mapping[str, Any]], list[Any]]:
    """Return a function listing the values at `path` in an object (lists flattened, no nulls)."""
    name, sub = path.name, path.sub

    def values(obj: Mapping[str, Any]) -> list[Any]:
        container: Any = obj if relative else _container(obj, urn)
        found = _expand([_lookup(container, name)])
        return found if sub is None else _subvalues(found, sub)

    return values


def _container(resource: Mapping[str, Any], urn: str | None) -> Any:
    if urn is None:
        return resource
    found = _lookup(resource, urn)
    if found is None and urn.lower().startswith(_CORE_PREFIX):
        # Core attributes may be written URN-qualified but live at the top level.
        return resource
    return found


def _lookup(obj: Any, key: str) -> Any:
    """Case-insensitive `obj[key]`, `None` when absent or when `obj` is not an object."""
    if not isinstance(obj, Mapping):
        return None
    found = obj.get(key)
    if found is not None:
        return found
    lowered = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


def _expand(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, list):
            out.extend(x for x in v if x is not None)
        elif v is not None:
            out.append(v)
    return out


def _subvalues(values: list[Any], sub: str) -> list[Any]:
    return _expand(_lookup(v, sub) for v in values)


def _dotted(urn: str | None, names: tuple[str, ...]) -> str:
    text = ".".join(names)
    return text if urn is None else f"{urn}:{text}"
