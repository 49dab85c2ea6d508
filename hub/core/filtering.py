"""Compile SCIM filters (RFC 7644 §3.4.2.2) and `sortBy` (§3.4.2.3) to SQL.

The SQL selects exactly the rows whose *rendered* resource `rules.evaluate` would match, so the
two implementations can be checked against each other (tests/test_filtering_sql.py). How a
resource is stored decides where each attribute is read:

* indexed columns for `id`, `userName` / `displayName` (through their lowered `*_key` copies),
  `externalId`, `active`, `meta.created` and `meta.lastModified`; `meta.resourceType` is a
  constant and `meta.version` is derived from the `version` column;
* `EXISTS` over `memberships` for a user's `groups` and a group's `members`;
* JSON (`data`) for everything else, with `json_each`/`jsonb_array_elements` for multi-valued
  attributes.

Semantics shared with `rules.evaluate`: `ne` is `not eq`, `eq null` is "not present", and
every leaf is made two-valued under `not` (SQL's NULL would otherwise turn `not (title eq "x")`
into "unknown" for a user without a title, where the evaluator says true).

Only bound parameters carry filter values. Case-insensitive comparisons lower both sides with
Python's `str.lower()` semantics (Unicode's full case mapping: "İ" → "i̇", a word-final "Σ" →
"ς"): on SQLite with `hub_lower` (see `register_sqlite_functions`), the filter value in Python;
on PostgreSQL with `lower()` under the ICU root collation, the filter value too, so a stored
value always matches itself whatever the database's LC_CTYPE (glibc's `lower()` gives "i", and
"οδοσ" for "ΟΔΟΣ"). The lowered `*_key` columns hold `str.lower()` of the value and are compared
with the filter value lowered in Python, on both databases (indexed look-ups).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import cache
from typing import Any, Final, Protocol

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Numeric,
    String,
    and_,
    case,
    cast,
    collate,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.selectable import Exists

import rules
from hub.core.errors import InvalidFilter
from hub.core.models import groups, memberships, users
from hub.core.schema import GROUP_TYPE, RESOURCE_TYPES, Attribute, ResourceType
from rules.evaluate import STRING_TYPES, AttrInfo, compile_match, parse_datetime

Predicate = ColumnElement[bool]
#: What a workspace's discovery describes beyond the hub's schemas (`extensions.undefined_type`):
#: (the schema's URN, the attribute's name, the sub-attribute's or "") -> (type, multiValued),
#: or None when `/Schemas` does not show it. Asked only for names the schemas do not define.
DescribedLookup = Callable[[str, str, str], tuple[str, bool] | None]

_ORDERING: Final = ("gt", "ge", "lt", "le")
# PostgreSQL: any scalar leaf that is not null and not "" makes a JSON value present.
_PG_PRESENT: Final[ColumnElement[Any]] = literal_column(
    '\'strict $.** ? ((@.type() == "string" && @ != "") || @.type() == "number" '
    '|| @.type() == "boolean")\'::jsonpath'
)


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Register the SQL functions the compiled filters use on a SQLite connection.

    SQLite's built-in `lower()` folds ASCII only; `hub_lower` applies Python's `str.lower()` so
    SQL and `rules.evaluate` agree on every string. Call it from the engine's "connect" hook.

    Args:
        dbapi_connection: a `sqlite3.Connection`.
    """
    dbapi_connection.create_function("hub_lower", 1, _py_lower, deterministic=True)


def _py_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def compile_filter(
    flt: rules.Filter,
    resource_type: ResourceType,
    dialect: str,
    *,
    unknown: dict[rules.Filter, InvalidFilter] | None = None,
    described: DescribedLookup | None = None,
    base: str | None = None,
) -> Predicate:
    """Compile a parsed filter to a WHERE clause over `users` or `groups`.

    Args:
        flt: the parsed filter (`rules.parse_filter`).
        resource_type: `USER_TYPE` (rows of `users`) or `GROUP_TYPE` (rows of `groups`).
        dialect: "sqlite" or "postgresql".
        unknown: for a search across resource types (the root `/.search`): an attribute
            `resource_type` does not define then has no value instead of being an error (RFC
            7644 §3.4.2.1: `pr` and `eq` on it are false, `ne` true), and the error it would
            have raised is recorded here under the filter's comparison or value filter (the
            outermost) naming it, so the caller can refuse one no type defines.
        described: what the workspace's `/Schemas` adds to the hub's schemas. An attribute or
            sub-attribute it describes is read from the stored document as a custom
            extension's is (its name as the filter spells it, a comparison taking the type of
            the filter's value); a complex one it describes may take a value filter.
        base: the base URL resources are rendered with (`Hub.base`), which `meta.location`,
            `members.$ref` (`{base}/Users/{id}`) and `groups.$ref` (`{base}/Groups/{id}`)
            start with; None: they cannot be filtered on.

    Returns:
        A boolean SQL expression true exactly for the rows `rules.evaluate` matches.

    Raises:
        InvalidFilter: an unknown attribute, a comparison its type forbids (`gt` on a boolean),
            an unparseable dateTime, or `meta.location` or `$ref` without `base`.
    """
    compiler = _Compiler(resource_type, dialect, unknown=unknown, described=described)
    return compiler.filter(flt, _root_scope(resource_type, dialect, base), None)


def compile_member_filter(flt: rules.Filter, dialect: str, base: str) -> Predicate:
    """Compile the filter of a PATCH path `members[filter]` to a WHERE clause over the members.

    The clause reads the rows of `memberships` joined to their `users` (RFC 7644 §3.5.2.2,
    §3.5.2.3), each member as the hub renders it: `value` the user's id, `display` the one kept
    with the membership, `type` "User" and `$ref` `{base}/Users/{id}`. Case rules and operators
    are a list filter's (`compile_filter`), so the members selected are those for which
    `GET /Groups?filter=members[filter]` finds the group, `$ref` as rendered at `base`.

    Raises:
        InvalidFilter: a sub-attribute members do not have, or a comparison its type forbids.
    """
    members = GROUP_TYPE.schema.by_key["members"]
    return _Compiler(GROUP_TYPE, dialect).filter(flt, _member_scope(dialect, base), members)


def sort_key(
    path_text: str,
    resource_type: ResourceType,
    dialect: str,
    described: DescribedLookup | None = None,
    base: str | None = None,
) -> tuple[ColumnElement[Any], ...]:
    """The ORDER BY expressions for `sortBy` (RFC 7644 §3.4.2.3), most significant first.

    A multi-valued attribute sorts by its primary value, else its first one; case-insensitive
    strings sort by their lowered value, in code-point order on both databases. A custom
    extension's attribute, which has no schema, sorts by the type of each value as SQLite
    sorts what `json_extract` gives: numbers by value (a boolean as 1 or 0), then text; so
    does an attribute `described` describes beyond the hub's schemas (see `compile_filter`).
    Such an attribute holding a list sorts by its primary value, else its first, too, and one
    holding an object by its `value` (`_JsonScope.sort_any`). `base`: see `compile_filter`.

    Raises:
        InvalidFilter: the path is malformed or names an unknown or unsortable attribute.
    """
    try:
        parsed = rules.parse_path(path_text)
    except rules.FilterSyntaxError as exc:
        raise InvalidFilter(f"invalid sortBy: {exc}") from exc
    if parsed.filter is not None or not parsed.attr.name:
        raise InvalidFilter(f"invalid sortBy {path_text!r}: name one attribute")
    compiler = _Compiler(resource_type, dialect, "sortBy", described=described)
    scope = _root_scope(resource_type, dialect, base)
    keys, top, sub = compiler.resolve(parsed.attr, None)
    if top.multi_valued:
        if top.type != "complex":  # `schemas`: a list of URNs gives no order
            raise InvalidFilter(f"cannot sort by {path_text!r}")
        leaf = sub or top.sub("value")
        if leaf is None:
            raise InvalidFilter(f"cannot sort by {path_text!r}: name a sub-attribute")
        return scope.sort_multi(keys, leaf, compiler.info(leaf))
    leaf = sub or top
    if leaf.type == _SCHEMALESS:
        inner: tuple[str, ...] = ()
        if top.type != _SCHEMALESS:  # a described sub-attribute of a single-valued complex one
            keys = (*keys, leaf.name)
        elif sub is not None:  # a custom extension's: its attribute may hold a list of objects
            inner = (sub.name,)
        return scope.data.sort_any(keys, inner)
    if sub is not None:
        keys = (*keys, sub.name)
    if leaf.type == "complex":
        value = leaf.sub("value")
        if value is None:
            raise InvalidFilter(f"cannot sort by {path_text!r}: name a sub-attribute")
        keys, leaf = (*keys, "value"), value
    return (scope.target(keys, path_text).sort(compiler.info(leaf)),)


# --------------------------------------------------------------------------- the compiler


class _Unknown(InvalidFilter):
    """The path names an attribute the resource type does not define."""


class _Compiler:
    def __init__(
        self,
        resource_type: ResourceType,
        dialect: str,
        what: str = "filter",
        unknown: dict[rules.Filter, InvalidFilter] | None = None,
        described: DescribedLookup | None = None,
    ) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported dialect {dialect!r}")
        self.rt = resource_type
        self.dialect = dialect
        #: what the paths come from, as errors name it ("filter", "sortBy")
        self.what = what
        #: see `compile_filter`; None: an unknown attribute is an error
        self.unknown = unknown
        #: the value filter being compiled, which an unknown attribute inside it is recorded as
        self.outer: rules.ValuePath | None = None
        #: see `compile_filter`; None: only the hub's schemas are known
        self.described = described
        #: the attribute of the value filter being compiled (its sub-attributes' owner)
        self.outer_top: Attribute | None = None

    def absent(self, flt: rules.Filter, error: _Unknown) -> Predicate:
        """What `flt` is for a resource without its attribute, which its type does not define."""
        if self.unknown is None:
            raise error
        self.unknown.setdefault(self.outer or flt, error)
        if isinstance(flt, rules.Compare):
            # As for an absent value of a defined attribute: `ne x` and `eq null` hold.
            return true() if (flt.op == "ne") != (flt.value is None) else false()
        return false()

    def info(self, attr: Attribute, value: rules.Value = None) -> AttrInfo:
        if attr.type == _SCHEMALESS:
            return AttrInfo(_json_type(value), False, False)
        return AttrInfo(attr.type, attr.case_exact, attr.multi_valued)

    def resolve(
        self, path: rules.AttrPath, parent: Attribute | None
    ) -> tuple[tuple[str, ...], Attribute, Attribute | None]:
        """Canonical JSON keys of the top attribute, its definition and the sub-attribute's."""
        where = path.dotted()
        top: Attribute | None
        if parent is not None:
            top = None
            if path.sub is None:  # SCIM sub-attributes have no sub-attributes
                top = parent.sub(path.name) or self.undefined_sub(self.outer_owner(), path.name)
            keys: tuple[str, ...] = ()
            urn = ""
        elif path.urn is None or path.urn.lower() == self.rt.schema.id.lower():
            urn = self.rt.schema.id
            top = self.rt.attribute(path.name)
            if top is None and path.name.lower() == "schemas":
                top = _SCHEMAS
            keys = ()
        else:
            extension = self.rt.extension(path.urn)
            if extension is None:
                return _schemaless(path, self.what)
            urn = extension.id
            top = extension.attribute(path.name)
            keys = (extension.id,)
        if top is None and parent is None:
            top = self.undefined(urn, path.name)
        if top is None:
            raise _Unknown(f"unknown attribute {where!r} in {self.what}")
        sub: Attribute | None = None
        if path.sub is not None:
            sub = top.sub(path.sub)
            if sub is None and top.type == "complex":  # discovery gives only these sub-attributes
                sub = self.undefined_sub((urn, top.name), path.sub)
            if sub is None:
                raise _Unknown(f"unknown attribute {where!r} in {self.what}")
        return (*keys, top.name), top, sub

    def undefined(self, urn: str, name: str) -> Attribute | None:
        """`name` of the hub's schema `urn` as the workspace's discovery describes it, if it does.

        Asked only where the schema does not define the name, so filters on defined attributes
        never read the descriptions. A simple attribute, multi-valued or not, is schemaless (a
        list matches when one of its values does, as for a custom extension's); a complex one
        keeps its shape, with its `value` sub-attribute when that is described too.
        """
        found = self.described(urn, name, "") if self.described is not None else None
        if found is None:
            return None
        kind, multi_valued = found
        if kind != "complex":
            return Attribute(_AnyCase(name), type=_SCHEMALESS)
        value = self.undefined_sub((urn, name), "value")
        return Attribute(
            _AnyCase(name),
            "complex",
            multi_valued=multi_valued,
            description=_UNDEFINED,
            sub_attributes=() if value is None else (value,),
        )

    def outer_owner(self) -> tuple[str, str] | None:
        """The hub's schema URN and the name of the value filter's attribute, if any."""
        if self.outer is None or self.outer_top is None:
            return None
        return _schema_of(self.rt, self.outer.path), self.outer_top.name

    def undefined_sub(self, owner: tuple[str, str] | None, name: str) -> Attribute | None:
        """Sub-attribute `name` of the complex attribute `owner` (URN, name), if described."""
        if owner is None or self.described is None or not owner[0]:
            return None
        found = self.described(owner[0], owner[1], name)
        return None if found is None else Attribute(_AnyCase(name), type=_SCHEMALESS)

    def filter(self, flt: rules.Filter, scope: _Scope, parent: Attribute | None) -> Predicate:
        if isinstance(flt, rules.And):
            return and_(self.filter(flt.left, scope, parent), self.filter(flt.right, scope, parent))
        if isinstance(flt, rules.Or):
            return or_(self.filter(flt.left, scope, parent), self.filter(flt.right, scope, parent))
        if isinstance(flt, rules.Not):
            return _negate(self.filter(flt.operand, scope, parent))
        if isinstance(flt, rules.ValuePath):
            return self.value_path(flt, scope)
        try:
            keys, top, sub = self.resolve(flt.path, parent)
        except _Unknown as error:
            return self.absent(flt, error)
        where = flt.path.dotted()
        if isinstance(flt, rules.Present):
            return self.present(scope, keys, top, sub, where)
        return self.compare(scope, keys, top, sub, flt, where)

    def value_path(self, flt: rules.ValuePath, scope: _Scope) -> Predicate:
        try:
            keys, top, _ = self.resolve(flt.path, None)
        except _Unknown as error:
            return self.absent(flt, error)
        if top.type != "complex":
            raise InvalidFilter(
                f"'{flt.path.dotted()}' is not complex; a value filter '[…]' needs a complex "
                "attribute"
            )
        self.outer = flt
        self.outer_top = top
        try:
            if top.multi_valued:
                element, wrap = _elements(scope, keys, top, flt.path.dotted())
                return wrap(self.filter(flt.filter, element, top))
            # The bracketed filter applies to a value of the attribute (RFC 7644 §3.4.2.2):
            # without one nothing matches, even `ne`, as the evaluator decides for a document.
            present = scope.target(keys, flt.path.dotted()).present()
            return and_(present, self.filter(flt.filter, _PrefixScope(scope, keys), top))
        finally:
            self.outer = None
            self.outer_top = None

    def present(
        self,
        scope: _Scope,
        keys: tuple[str, ...],
        top: Attribute,
        sub: Attribute | None,
        where: str,
    ) -> Predicate:
        if top.multi_valued:
            element, wrap = _elements(scope, keys, top, where)
            if sub is None:
                return wrap(element.whole_present())
            return wrap(element.target((sub.name,), where).present())
        return scope.target(keys if sub is None else (*keys, sub.name), where).present()

    def compare(
        self,
        scope: _Scope,
        keys: tuple[str, ...],
        top: Attribute,
        sub: Attribute | None,
        flt: rules.Compare,
        where: str,
    ) -> Predicate:
        leaf = sub or top
        leaf_keys = (sub.name,) if sub is not None else ()
        if leaf.type == "complex":
            # RFC 7644 §3.4.2.2: a complex attribute without a sub-attribute compares "value".
            value_attr = leaf.sub("value")
            if value_attr is None:
                raise InvalidFilter(f"'{where}' is complex; compare one of its sub-attributes")
            leaf, leaf_keys = value_attr, ("value",)
        info = self.info(leaf, flt.value)
        try:  # the evaluator's own checks, so both refuse the same filters
            compile_match(flt.op, flt.value, info, where)
        except rules.InvalidComparison as exc:
            raise InvalidFilter(str(exc)) from exc
        op = "eq" if flt.op == "ne" else flt.op

        def leaf_predicate(target: _Target) -> Predicate:
            if flt.value is None:
                return target.present()
            if not _value_fits(info, flt.value):
                return false()  # a value of the wrong type matches nothing, like the evaluator
            return target.compare(op, flt.value, info)

        if top.multi_valued:
            element, wrap = _elements(scope, keys, top, where)
            found = wrap(leaf_predicate(element.target(leaf_keys, where)))
        else:
            found = leaf_predicate(scope.target((*keys, *leaf_keys), where))
            if top.type == _SCHEMALESS and isinstance(scope, _RowScope):
                # No schema says whether it is multi-valued: a list held there matches when
                # one of its values does (RFC 7644 §3.4.2.2), as for any multi-valued attribute.
                element, wrap = scope.data.any_elements(keys)
                found = or_(found, wrap(leaf_predicate(element.target(leaf_keys, where))))
            elif leaf.type == _SCHEMALESS and isinstance(scope, _RowScope):
                # A described sub-attribute of a single-valued complex one (`name.middleName2`)
                # may hold a list too.
                element, wrap = scope.data.any_elements((*keys, *leaf_keys))
                found = or_(found, wrap(leaf_predicate(element.target((), where))))
        # `ne x` is `not (eq x)` and `eq null` is "not present" (see rules.evaluate).
        negated = (flt.op == "ne") != (flt.value is None)
        return _negate(found) if negated else found


#: `schemas` (RFC 7643 §3), which no schema lists but RFC 7644 §3.4.2.2 filters on (its example
#: `schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"`): a list of URNs,
#: compared case-insensitively as the hub reads URNs (RFC 7643 §2.1).
_SCHEMAS: Final = Attribute("schemas", multi_valued=True, mutability="readOnly")


def _elements(
    scope: _Scope, keys: tuple[str, ...], top: Attribute, where: str
) -> tuple[_Scope, _Wrap]:
    """The elements of the multi-valued attribute `top` at `keys`, and how to test any of them.

    A list of simple values (`schemas`) is read from the document element by element, each
    element the value compared; complex values and relations come from `scope`.
    """
    if top.type != "complex" and isinstance(scope, _RowScope):
        return scope.data.any_elements(keys)
    if top.description == _UNDEFINED and isinstance(scope, _RowScope):
        # Stored as sent, it may hold an object where a list was described: on SQLite
        # `json_each` would walk the object's members as if they were elements.
        return scope.data.list_elements(keys)
    return scope.elements(keys, where)


#: The type of an attribute of an extension the hub has no schema for (an IdP's custom extension,
#: stored as sent): a comparison takes the JSON type of the filter's value.
_SCHEMALESS: Final = "schemaless"
#: What such a filter path may hold: its names go into a JSON path as they are.
_SCHEMALESS_URN = re.compile(r"urn:[A-Za-z0-9._:-]+", re.IGNORECASE)
#: The hub's own schemas: an attribute they do not define is unknown, not schemaless.
_KNOWN_URNS: Final = frozenset(urn.lower() for rt in RESOURCE_TYPES for urn in rt.schema_ids)
#: Marks a complex attribute the hub's schema lacks and the workspace's discovery describes.
_UNDEFINED: Final = "described beyond the hub's schema"


def _schema_of(resource_type: ResourceType, path: rules.AttrPath) -> str:
    """The id of the hub's schema of `resource_type` that `path` names ("" for another URN)."""
    if path.urn is None or path.urn.lower() == resource_type.schema.id.lower():
        return resource_type.schema.id
    extension = resource_type.extension(path.urn)
    return extension.id if extension is not None else ""


def _schemaless(
    path: rules.AttrPath, what: str
) -> tuple[tuple[str, ...], Attribute, Attribute | None]:
    """An attribute of a custom extension, where the hub keeps what the IdP sent (RFC 7643 §3).

    Entra ID and Okta send custom attributes under an extension URN of their own, and an Entra
    job may match users on one (`GET /Users?filter=urn:…:User:costCode eq "CC1"`). The value is
    read from the stored document at the URN and names as the filter spells them (the IdP's
    mapping spells them the same way in its writes and its queries).

    Raises:
        InvalidFilter: the URN is one of the hub's own schemas, or not a plain URN, or the path
            is one of the hub's own schemas read as a URN and a name (below).
    """
    urn = path.urn or ""
    schema = f"{urn}:{path.name}"
    if schema.lower() in _KNOWN_URNS:
        # `urn:…:enterprise:2.0:User pr` or `…:User.department eq "D"` parse as attribute `User`
        # of a URN ending in `2.0`, which would match nothing: the client meant the schema.
        raise _Unknown(
            f"{path.dotted()!r} in {what} names the schema {schema}, not one of its attributes;"
            f" write the attribute after a colon, e.g. {schema}:{path.sub or 'attributeName'}"
        )
    if urn.lower() in _KNOWN_URNS or not _SCHEMALESS_URN.fullmatch(urn):
        raise _Unknown(f"unknown attribute {path.dotted()!r} in {what}")
    top = Attribute(path.name, type=_SCHEMALESS)
    sub = None if path.sub is None else Attribute(path.sub, type=_SCHEMALESS)
    return (urn, path.name), top, sub


def _json_type(value: rules.Value) -> str:
    """The SCIM type a filter value has (`pr` and `eq null` have none: string, as any value)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "decimal"
    return "string"


def _value_fits(info: AttrInfo, value: rules.Value) -> bool:
    if info.type in STRING_TYPES or info.type == "dateTime":
        return isinstance(value, str)
    if info.type == "boolean":
        return isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _negate(predicate: Predicate) -> Predicate:
    """`NOT p` that is true when `p` is NULL: SQL NULL means "no value", i.e. no match."""
    if isinstance(predicate, Exists):
        return not_(predicate)
    # `p IS NOT TRUE`, not `NOT coalesce(p, FALSE)`: the same truth, and SQLite's parser (~100
    # levels) holds nested `not` twice as deep without the function call around each.
    return predicate.is_not(true())


# --------------------------------------------------------------------------- targets


class _Target(Protocol):
    """One single-valued location a filter can test."""

    def present(self) -> Predicate: ...

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate: ...

    def sort(self, info: AttrInfo) -> ColumnElement[Any]: ...


#: PostgreSQL's ICU root collation: `lower()` under it applies Unicode's full case mapping, as
#: Python's `str.lower()` does, whatever the database's LC_CTYPE. It needs a server built with ICU
#: (the default since PostgreSQL 16; the Debian, Ubuntu and PGDG packages of older ones are).
_PG_CASE_MAPPING: Final = "und-x-icu"


def _lower(expr: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return func.hub_lower(expr, type_=String)
    return func.lower(collate(expr, _PG_CASE_MAPPING), type_=String)


def _lower_value(value: str, dialect: str) -> str | ColumnElement[Any]:
    """A filter value lowered as `_lower` lowers the stored one (by PostgreSQL on PostgreSQL)."""
    if dialect == "sqlite":
        return value.lower()  # what hub_lower does
    return _lower(literal(value, String), dialect)


#: The integers SQLite binds, and the BIGINT a Python int is bound as on PostgreSQL.
_INT64: Final = range(-(2**63), 2**63)


def _number_value(value: rules.Value, sqlite: bool) -> rules.Value | ColumnElement[Any]:
    """A filter's number bound as the database can take it; JSON numbers have no size limit.

    An integer beyond 64 bits overflows SQLite's INTEGER and PostgreSQL's BIGINT (the request
    answered 500). SQLite reads a stored one as the REAL `json_extract` gives (infinite beyond
    a double's range), so it is compared as that REAL; PostgreSQL compares it exactly, as
    NUMERIC. A fraction is NUMERIC on PostgreSQL too: against a FLOAT bind PostgreSQL turns the
    stored NUMERIC into a double, which fails for one beyond a double's range (`…:n gt 1.5`
    answered 500 once any user held 1e400). Infinite values are `_beyond_every_number`'s.
    """
    if type(value) is int:
        if value in _INT64:
            return value
        if not sqlite:
            return literal(value, Numeric())
        if abs(value) < _FLOAT_LIMIT:
            return float(value)
        return math.inf if value > 0 else -math.inf
    if sqlite or type(value) is not float:
        return value
    return literal(Decimal(repr(value)), Numeric())


#: The smallest integer `float()` refuses (it rounds up to 2**1024).
_FLOAT_LIMIT: Final = 2**1024 - 2**970


def _beyond_every_number(op: str, value: float) -> Predicate:
    """How every number compares with an infinite filter value (`1e400`): as Python compares."""
    if op == "eq":
        return false()
    above = value > 0
    return true() if (op in ("lt", "le")) == above else false()


def contains_folded(expr: ColumnElement[Any], text: str, dialect: str) -> Predicate:
    """Whether a text expression contains `text`, case-insensitively, as filters' `co` tests it.

    Both sides are lowered as a filter lowers them (`_lower`), so a value always contains itself:
    SQLite's own `lower()` folds ASCII only ("Élodie" did not contain "élodie").
    """
    return _string_compare(_lower(expr, dialect), "co", _lower_value(text, dialect), dialect)


def _string_compare(
    expr: ColumnElement[Any], op: str, value: str | ColumnElement[Any], dialect: str
) -> Predicate:
    """Compare a text expression with a string (or a lowered one) in code-point order."""
    if op == "eq":
        return expr == value
    if op in _ORDERING:
        if dialect == "postgresql":
            # The database's collation may order "a" < "B"; Python compares code points.
            expr = collate(expr, "C")
            if not isinstance(value, str):
                value = collate(value, "C")
        return {"gt": expr > value, "ge": expr >= value, "lt": expr < value, "le": expr <= value}[
            op
        ]
    if not isinstance(value, str):
        # PostgreSQL lowered the value: no LIKE pattern to escape, as on SQLite below.
        if op == "co":
            return func.strpos(expr, value) > 0
        if op == "sw":
            return func.starts_with(expr, value, type_=Boolean)
        return func.right(expr, func.length(value)) == value
    if dialect == "postgresql":
        if op == "co":
            return expr.contains(value, autoescape=True)
        if op == "sw":
            return expr.startswith(value, autoescape=True)
        return expr.endswith(value, autoescape=True)
    # SQLite's LIKE folds ASCII case, which would break caseExact attributes, so substring
    # tests use instr/substr (no pattern, so no wildcard can be smuggled in either).
    if op == "co":
        return func.instr(expr, value) > 0
    if not value:
        return expr.is_not(None)
    if op == "sw":
        return func.substr(expr, 1, len(value)) == value
    return func.substr(expr, -len(value)) == value


@dataclass(frozen=True)
class _StringColumn:
    expr: ColumnElement[Any]
    dialect: str
    nullable: bool = False
    # The column already holds `str.lower()` of the value (users.user_name_key).
    lowered: bool = False

    def present(self) -> Predicate:
        return and_(self.expr.is_not(None), self.expr != "")

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate:
        assert isinstance(value, str)
        expr: ColumnElement[Any] = self.expr
        compared: str | ColumnElement[Any] = value
        if not info.case_exact and self.lowered:
            compared = value.lower()  # as the key column was written (an indexed look-up)
        elif not info.case_exact:
            expr, compared = _lower(expr, self.dialect), _lower_value(value, self.dialect)
        return _string_compare(expr, op, compared, self.dialect)

    def sort(self, info: AttrInfo) -> ColumnElement[Any]:
        expr = self.expr
        if not info.case_exact and not self.lowered:
            expr = _lower(expr, self.dialect)
        return collate(expr, "C") if self.dialect == "postgresql" else expr


@dataclass(frozen=True)
class _BoolColumn:
    expr: ColumnElement[Any]

    def present(self) -> Predicate:
        return self.expr.is_not(None)

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate:
        return self.expr == value

    def sort(self, info: AttrInfo) -> ColumnElement[Any]:
        return self.expr


@dataclass(frozen=True)
class _TimeColumn:
    """A dateTime kept as integer microseconds since the epoch."""

    expr: ColumnElement[Any]

    def present(self) -> Predicate:
        return true()

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate:
        assert isinstance(value, str)
        # rules.parse_datetime (not clock.parse_iso) so SQL and the evaluator accept the same
        # texts, and in nanoseconds so sub-microsecond filter values still order exactly.
        nanos = parse_datetime(value)
        floor, ceil = nanos // 1000, -(-nanos // 1000)
        if op == "eq":
            return self.expr == floor if floor == ceil else false()
        return {
            "gt": self.expr > floor,
            "ge": self.expr >= ceil,
            "lt": self.expr < ceil,
            "le": self.expr <= floor,
        }[op]

    def sort(self, info: AttrInfo) -> ColumnElement[Any]:
        return self.expr


@dataclass(frozen=True)
class _Constant:
    value: str

    def present(self) -> Predicate:
        return true() if self.value else false()

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate:
        return true() if compile_match(op, value, info, "")(self.value) else false()

    def sort(self, info: AttrInfo) -> ColumnElement[Any]:
        return literal(self.value)


@dataclass(frozen=True)
class _Refused:
    """An attribute rendered from the base URL, which the filter is not given.

    `meta.location`, and a member's or a group's `$ref`, when `compile_filter` has no `base`.
    """

    where: str

    def _refuse(self) -> InvalidFilter:
        return InvalidFilter(f"filtering or sorting on '{self.where}' is not supported")

    def present(self) -> Predicate:
        raise self._refuse()

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate:
        raise self._refuse()

    def sort(self, info: AttrInfo) -> ColumnElement[Any]:
        raise self._refuse()


@dataclass(frozen=True)
class _Location:
    """A URL rendered as `prefix` (`{base}/Users/`) then an `id` column.

    `meta.location` (caseExact) and, on a relation, a member's or a group's `$ref` (caseExact
    false in /Schemas: the prefix is then matched ignoring case, the id is the lowered one).
    `eq` and `sw` naming the prefix compare the id (`eq` is the id's indexed look-up); other
    comparisons read the concatenated text. With one prefix for every row, the id orders it.
    """

    prefix: str
    id: _StringColumn

    def present(self) -> Predicate:
        return true()

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate:
        assert isinstance(value, str)
        if op in ("eq", "sw"):
            # As rules.evaluate compares: both sides lowered unless the attribute is caseExact.
            prefix = self.prefix if info.case_exact else self.prefix.lower()
            folded = value if info.case_exact else value.lower()
            if folded.startswith(prefix):
                return self.id.compare(op, folded[len(prefix) :], info)
            # Every location starts with the prefix: a value it starts with starts them all.
            return true() if op == "sw" and prefix.startswith(folded) else false()
        text = literal(self.prefix, String) + self.id.expr
        return _StringColumn(text, self.id.dialect).compare(op, value, info)

    def sort(self, info: AttrInfo) -> ColumnElement[Any]:
        return self.id.sort(info)


@dataclass(frozen=True)
class _Json:
    """A value inside a JSON document: `doc` at `keys`."""

    doc: ColumnElement[Any]
    keys: tuple[str, ...]
    dialect: str
    where: str
    #: SQLite: a JSON path computed in SQL, read instead of `keys` (`_JsonScope.sort_any`)
    path: ColumnElement[Any] | None = None

    def _sqlite_path(self) -> str | ColumnElement[Any]:
        return _json_path(self.keys, self.doc) if self.path is None else self.path

    def _type(self) -> ColumnElement[Any]:
        if self.dialect == "sqlite":
            return func.json_type(self.doc, self._sqlite_path(), type_=String)
        return func.jsonb_typeof(self.jsonb(), type_=String)

    def jsonb(self) -> ColumnElement[Any]:
        if not self.keys:
            return self.doc
        return func.jsonb_extract_path(self.doc, *_pg_keys(self.doc, self.keys), type_=JSONB)

    def _text(self) -> ColumnElement[Any]:
        if self.dialect == "sqlite":
            return func.json_extract(self.doc, self._sqlite_path(), type_=String)
        if not self.keys:
            return func.jsonb_build_array(self.doc).op("->>")(0)
        return func.jsonb_extract_path_text(self.doc, *_pg_keys(self.doc, self.keys), type_=String)

    def present(self) -> Predicate:
        if self.dialect == "postgresql":
            return func.jsonb_path_exists(self.jsonb(), _PG_PRESENT, type_=Boolean)
        tree = func.json_tree(self.doc, self._sqlite_path()).table_valued("type", "atom")
        leaf = and_(
            tree.c.type.not_in(("object", "array", "null")),
            not_(and_(tree.c.type == "text", tree.c.atom == "")),
        )
        return exists(select(literal(1)).select_from(tree).where(leaf))

    def compare(self, op: str, value: rules.Value, info: AttrInfo) -> Predicate:
        kind = info.type
        jtype = self._type()
        sqlite = self.dialect == "sqlite"
        if kind in STRING_TYPES:
            assert isinstance(value, str)
            text = self._text()
            compared: str | ColumnElement[Any] = value
            if not info.case_exact:
                text, compared = _lower(text, self.dialect), _lower_value(value, self.dialect)
            is_string = jtype == ("text" if sqlite else "string")
            return and_(is_string, _string_compare(text, op, compared, self.dialect))
        if kind == "boolean":
            if sqlite:
                return jtype == ("true" if value else "false")
            return and_(jtype == "boolean", self._text() == ("true" if value else "false"))
        if kind in ("integer", "decimal"):
            is_number: Predicate
            number: ColumnElement[Any]
            if sqlite:
                number = func.json_extract(self.doc, self._sqlite_path())
                is_number = jtype.in_(("integer", "real"))
            else:
                is_number = jtype == "number"
                # CASE keeps PostgreSQL from casting a non-number (evaluation order is free).
                number = cast(case((is_number, self._text())), type_=Numeric())
            if type(value) is float and math.isinf(value):
                return and_(is_number, _beyond_every_number(op, value))
            bound = _number_value(value, sqlite)
            test = {
                "eq": number == bound,
                "gt": number > bound,
                "ge": number >= bound,
                "lt": number < bound,
                "le": number <= bound,
            }[op]
            return and_(is_number, test)
        raise InvalidFilter(f"filtering on the {kind} attribute '{self.where}' is not supported")

    def sort(self, info: AttrInfo) -> ColumnElement[Any]:
        text = self._text()
        if info.type in STRING_TYPES and not info.case_exact:
            text = _lower(text, self.dialect)
        return collate(text, "C") if self.dialect == "postgresql" else text

    def sort_any(self) -> tuple[ColumnElement[Any], ...]:
        """Sort keys for a value of any JSON type, as SQLite orders `json_extract`'s result.

        SQLite gives a number as a number, a boolean as 1 or 0 and anything else as text, and
        orders numbers (by value) before text; strings sort case-insensitively. PostgreSQL
        gets two keys, a number (NULL for text) and the lowered text (NULL for a number), so
        9 sorts before 10 there too (RFC 7644 §3.4.2.3: "according to the attribute type").
        """
        as_string = self.sort(AttrInfo("string", False, False))
        if self.dialect == "sqlite":
            return (as_string,)
        jtype = self._type()
        text = self._text()
        # CASE keeps PostgreSQL from casting a non-number (evaluation order is free).
        number = cast(
            case(
                (jtype == "number", text),
                (jtype == "boolean", case((text == "true", "1"), else_="0")),
            ),
            type_=Numeric(),
        )
        return number, case((jtype.not_in(("number", "boolean")), as_string))


def _json_path(
    keys: tuple[str, ...], doc: ColumnElement[Any] | None = None
) -> str | ColumnElement[Any]:
    """SQLite's JSON path of `keys` in `doc`: `$."emails"."value"`.

    An `_AnyCase` key is the one `doc` holds there in any case (the path is NULL without one,
    which SQLite's JSON functions read as no value).
    """
    if doc is None or _AnyCase not in map(type, keys):
        return "$" + "".join(f'."{key}"' for key in keys)
    path: ColumnElement[Any] = literal("$", String)
    for key in keys:
        if key.__class__ is not _AnyCase:
            path = path + literal(f'."{key}"', String)
            continue
        each = func.json_each(doc, path).table_valued("key")
        held = (
            select(each.c.key)
            .where(func.hub_lower(each.c.key) == key.lower())
            .order_by(each.c.key != key)  # the filter's own spelling first
            .limit(1)
            .scalar_subquery()
        )
        path = path + literal('."', String) + type_coerce(held, String) + literal('"', String)
    return path


def _pg_keys(doc: ColumnElement[Any], keys: tuple[str, ...]) -> list[str | ColumnElement[Any]]:
    """`keys` for PostgreSQL's `jsonb_extract_path`, an `_AnyCase` key as `doc` spells it."""
    if _AnyCase not in map(type, keys):
        return list(keys)
    found: list[str | ColumnElement[Any]] = []
    for key in keys:
        if key.__class__ is not _AnyCase:
            found.append(key)
            continue
        parent = func.jsonb_extract_path(doc, *found, type_=JSONB) if found else doc
        # jsonb_object_keys refuses anything but an object; NULL gives no row.
        held = func.jsonb_object_keys(
            case((func.jsonb_typeof(parent) == "object", parent)), type_=String
        ).column_valued("k")
        found.append(
            select(held)
            .where(_lower(held, "postgresql") == key.lower())
            .order_by(held != key)
            .limit(1)
            .scalar_subquery()
        )
    return found


class _AnyCase(str):
    """A name the hub's schemas lack, which discovery describes: matched in any case.

    Attribute names are case-insensitive (RFC 7643 §2.1) and discovery and PATCH paths treat
    such a name so, but it is stored as each client spelled it; the filter's spelling wins
    where an object holds several.
    """

    __slots__ = ()


# --------------------------------------------------------------------------- scopes

_Wrap = Callable[[Predicate], Predicate]


class _Scope(Protocol):
    """Where attribute keys are resolved: a resource row, one array element, a prefix."""

    def target(self, keys: tuple[str, ...], where: str) -> _Target: ...

    def elements(self, keys: tuple[str, ...], where: str) -> tuple[_Scope, _Wrap]: ...

    def whole_present(self) -> Predicate: ...

    def sort_multi(
        self, keys: tuple[str, ...], leaf: Attribute, info: AttrInfo
    ) -> tuple[ColumnElement[Any], ...]: ...


@dataclass(frozen=True)
class _JsonScope:
    """Keys resolved inside a JSON document (a row's `data` or one array element)."""

    doc: ColumnElement[Any]
    dialect: str

    def target(self, keys: tuple[str, ...], where: str) -> _Target:
        return _Json(self.doc, keys, self.dialect, where)

    def whole_present(self) -> Predicate:
        return _Json(self.doc, (), self.dialect, "").present()

    def _array(self, keys: tuple[str, ...]) -> tuple[Any, ColumnElement[Any]]:
        """The elements of the array at `keys` as a table, and the element's JSON value."""
        if self.dialect == "sqlite":
            path = _json_path(keys, self.doc)
            each = func.json_each(self.doc, path).table_valued("value", "type", "key")
            # json_each yields a string element as bare text, which json_extract would reject
            # as malformed JSON; only objects are complex values.
            return each, case((each.c.type == "object", each.c.value))
        array = _Json(self.doc, keys, self.dialect, "").jsonb()
        guarded = case((func.jsonb_typeof(array) == "array", array))
        each = (
            func.jsonb_array_elements(guarded)
            .table_valued("value", with_ordinality="ordinality")
            .render_derived()
        )
        return each, type_coerce(each.c.value, JSONB)

    def sort_any(
        self, keys: tuple[str, ...], inner: tuple[str, ...] = ()
    ) -> tuple[ColumnElement[Any], ...]:
        """Sort keys for the value at `keys` then `inner`, whatever its JSON type.

        No schema says whether it is multi-valued, so the document does: a list at `keys`, or
        at the end, is read as its primary element (an object whose `primary` is true), else
        its first (RFC 7644 §3.4.2.3), `inner` within that element; an object sorts by its
        `value`, as `sortBy=emails` or `manager` does. The value found sorts as
        `_Json.sort_any` says. `directory._sort_value` reads a resource the same way.

        Each step names the previous one once (a step's input would otherwise be repeated in
        the SQL as often as the step reads it, compounding over steps).
        """
        if self.dialect == "sqlite":
            path = _json_path(keys, self.doc)
            at: ColumnElement[Any] = literal(path, String) if isinstance(path, str) else path
            if inner:
                tail = "".join(f'."{key}"' for key in inner)
                at = at + self._sqlite_choice(at, valued=False) + literal(tail, String)
            at = at + self._sqlite_choice(at, valued=True)
            return _Json(self.doc, (), self.dialect, "", at).sort_any()
        value = _Json(self.doc, keys, self.dialect, "").jsonb()
        if inner:
            (chosen,) = self._pg_choice(value, lambda element: (element,))
            value = func.jsonb_extract_path(chosen, *inner, type_=JSONB)

        def valued(element: ColumnElement[Any]) -> tuple[ColumnElement[Any], ...]:
            is_object = func.jsonb_typeof(element) == "object"
            found = case((is_object, func.jsonb_extract_path(element, "value")), else_=element)
            return _Json(type_coerce(found, JSONB), (), self.dialect, "").sort_any()

        return self._pg_choice(value, valued)

    def _sqlite_choice(self, path: ColumnElement[Any], *, valued: bool) -> ColumnElement[Any]:
        """SQLite: what to add to the JSON path `path` to reach the value a sort reads there.

        A list's primary (else first) element (`[i]`); with `valued`, an object's `value`
        (`."value"`) too. NULL for an empty list or object or no value, which reads as none.
        """
        each = func.json_each(self.doc, path).table_valued("key", "type", "value")
        # json_each gives a list's elements (integer keys), an object's members (text keys) and
        # a scalar itself (a NULL key); an element that is a string comes bare, not as JSON.
        is_element = func.typeof(each.c.key) == "integer"
        element = case((and_(is_element, each.c.type == "object"), each.c.value))
        index = literal("[", String) + cast(each.c.key, String) + literal("]", String)
        suffix: ColumnElement[Any] = case((is_element, index), else_=literal("", String))
        if valued:
            is_object = or_(each.c.type == "object", each.c.key.is_not(None) & ~is_element)
            suffix = suffix + case((is_object, literal('."value"', String)), else_="")
        return (
            select(suffix)
            .order_by(case((_is_primary(element, self.dialect), 0), else_=1), each.c.key)
            .limit(1)
            .scalar_subquery()
        )

    def _pg_choice(
        self,
        value: ColumnElement[Any],
        read: Callable[[ColumnElement[Any]], tuple[ColumnElement[Any], ...]],
    ) -> tuple[ColumnElement[Any], ...]:
        """PostgreSQL: `read` of the JSON `value`, or of its primary (else first) element.

        Lax `$[*]` yields a list's elements and any other value itself, so `value` is named
        once; one subquery per expression `read` gives.
        """
        each = (
            func.jsonb_path_query(value, literal_column("'lax $[*]'::jsonpath"))
            .table_valued("value", with_ordinality="ordinality")
            .render_derived()
        )
        element = type_coerce(each.c.value, JSONB)
        primary = case((_is_primary(element, self.dialect), 0), else_=1)
        return tuple(
            select(expression)
            .select_from(each)
            .order_by(primary, each.c.ordinality)
            .limit(1)
            .scalar_subquery()
            for expression in read(element)
        )

    def any_elements(self, keys: tuple[str, ...]) -> tuple[_JsonScope, _Wrap]:
        """The elements of the list at `keys`, of any JSON type (none if it holds no list)."""
        if self.dialect != "sqlite":
            each, element = self._array(keys)  # guarded: no rows unless it is an array
            return _JsonScope(element, self.dialect), lambda predicate: exists(
                select(literal(1)).select_from(each).where(predicate)
            )
        path = _json_path(keys, self.doc)
        each = func.json_each(self.doc, path).table_valued("value", "type")
        # Each element as JSON text: json_each gives a string bare, a boolean as 1 or 0.
        as_json = case(
            (each.c.type.in_(("object", "array")), each.c.value),
            (each.c.type.in_(("true", "false", "null")), each.c.type),
            else_=func.json_quote(each.c.value),
        )
        is_list = func.json_type(self.doc, path) == "array"  # json_each walks objects too

        def wrap(predicate: Predicate) -> Predicate:
            return and_(is_list, exists(select(literal(1)).select_from(each).where(predicate)))

        return _JsonScope(as_json, self.dialect), wrap

    def elements(self, keys: tuple[str, ...], where: str) -> tuple[_Scope, _Wrap]:
        each, element = self._array(keys)

        def wrap(predicate: Predicate) -> Predicate:
            return exists(select(literal(1)).select_from(each).where(predicate))

        return _JsonScope(element, self.dialect), wrap

    def list_elements(self, keys: tuple[str, ...]) -> tuple[_Scope, _Wrap]:
        """`elements`, but none unless the value at `keys` is a list (PostgreSQL's `_array`)."""
        element, wrap = self.elements(keys, "")
        if self.dialect != "sqlite":
            return element, wrap
        is_list = func.json_type(self.doc, _json_path(keys, self.doc)) == "array"
        return element, lambda predicate: and_(is_list, wrap(predicate))

    def sort_multi(
        self, keys: tuple[str, ...], leaf: Attribute, info: AttrInfo
    ) -> tuple[ColumnElement[Any], ...]:
        each, element = self._array(keys)
        target = _Json(element, (leaf.name,), self.dialect, "")
        values = target.sort_any() if leaf.type == _SCHEMALESS else (target.sort(info),)
        primary = _is_primary(element, self.dialect)
        position = each.c.key if self.dialect == "sqlite" else each.c.ordinality
        # One subquery per key, each reading the same (primary, else first) element.
        return tuple(
            select(value)
            .select_from(each)
            .order_by(case((primary, 0), else_=1), position)
            .limit(1)
            .scalar_subquery()
            for value in values
        )


def _is_primary(element: ColumnElement[Any], dialect: str) -> Predicate:
    """Whether a list's element (JSON) is its primary value: `primary` is true (RFC 7643 §2.4)."""
    return _Json(element, ("primary",), dialect, "").compare("eq", True, _BOOLEAN)


_BOOLEAN: Final = AttrInfo("boolean", False, False)


@dataclass(frozen=True)
class _PrefixScope:
    """`name[filter]` on a single-valued complex attribute: keys are relative to `name`."""

    parent: _Scope
    prefix: tuple[str, ...]

    def target(self, keys: tuple[str, ...], where: str) -> _Target:
        return self.parent.target((*self.prefix, *keys), where)

    def elements(self, keys: tuple[str, ...], where: str) -> tuple[_Scope, _Wrap]:
        return self.parent.elements((*self.prefix, *keys), where)

    def whole_present(self) -> Predicate:
        return self.parent.target(self.prefix, "").present()

    def sort_multi(
        self, keys: tuple[str, ...], leaf: Attribute, info: AttrInfo
    ) -> tuple[ColumnElement[Any], ...]:
        return self.parent.sort_multi((*self.prefix, *keys), leaf, info)


@dataclass(frozen=True)
class _RelationScope:
    """One row of a membership join: a user's group or a group's member."""

    columns: dict[str, _Target]
    joined: Any
    correlate: Predicate
    #: the order the elements are rendered in (the related row's primary key)
    order: Any

    def target(self, keys: tuple[str, ...], where: str) -> _Target:
        found = self.columns.get(keys[0]) if len(keys) == 1 else None
        return found if found is not None else _Refused(where)

    def elements(self, keys: tuple[str, ...], where: str) -> tuple[_Scope, _Wrap]:
        raise InvalidFilter(f"unknown attribute {where!r} in filter")

    def whole_present(self) -> Predicate:
        return true()  # every element has an id as its value

    def sort_multi(
        self, keys: tuple[str, ...], leaf: Attribute, info: AttrInfo
    ) -> tuple[ColumnElement[Any], ...]:
        raise InvalidFilter("cannot sort by a nested multi-valued attribute")

    def exists(self, predicate: Predicate) -> Predicate:
        return exists(select(literal(1)).select_from(self.joined).where(self.correlate, predicate))

    def sort_first(self, leaf: Attribute, info: AttrInfo) -> ColumnElement[Any]:
        # No primary flag: RFC 7644 §3.4.2.3 then sorts by the first value, as rendered.
        value = self.target((leaf.name,), leaf.name).sort(info)
        return (
            select(value)
            .select_from(self.joined)
            .where(self.correlate)
            .order_by(self.order)
            .limit(1)
            .scalar_subquery()
        )


@dataclass(frozen=True)
class _RowScope:
    """A `users` or `groups` row: indexed columns and relations first, then `data`."""

    columns: dict[tuple[str, ...], _Target]
    relations: dict[str, _RelationScope]
    data: _JsonScope

    def target(self, keys: tuple[str, ...], where: str) -> _Target:
        found = self.columns.get(keys)
        return found if found is not None else self.data.target(keys, where)

    def elements(self, keys: tuple[str, ...], where: str) -> tuple[_Scope, _Wrap]:
        relation = self.relations.get(keys[0]) if len(keys) == 1 else None
        if relation is not None:
            return relation, relation.exists
        return self.data.elements(keys, where)

    def whole_present(self) -> Predicate:
        return true()

    def sort_multi(
        self, keys: tuple[str, ...], leaf: Attribute, info: AttrInfo
    ) -> tuple[ColumnElement[Any], ...]:
        relation = self.relations.get(keys[0]) if len(keys) == 1 else None
        if relation is not None:
            return (relation.sort_first(leaf, info),)
        return self.data.sort_multi(keys, leaf, info)


def _member_scope(dialect: str, base: str) -> _RelationScope:
    """A group's member as list filters see it, with its `$ref` as rendered at `base`."""
    return _root_scope(GROUP_TYPE, dialect, base).relations["members"]


def _version_tag(version: ColumnElement[Any]) -> ColumnElement[Any]:
    # The rendered meta.version is the weak ETag W/"<version>" (hub.core.resources.etag).
    return literal('W/"') + cast(version, String) + literal('"')


def _root_scope(resource_type: ResourceType, dialect: str, base: str | None) -> _RowScope:
    """The columns, relations and JSON document a filter on `resource_type` can name.

    Built once per resource type and dialect (building it was half of compiling a filter); its
    parts are frozen and the SQL expressions in them are never changed, only combined. With
    `base`, `meta.location` reads as rendered from it (see `compile_filter`).
    """
    if base is None:
        return _root_scope_of(resource_type.name, dialect)
    return _located_scope_of(resource_type.name, resource_type.endpoint, dialect, base)


@cache
def _located_scope_of(name: str, endpoint: str, dialect: str, base: str) -> _RowScope:
    # `base` is the hub's configured base URL, one per process (never taken from a request),
    # so this cache holds one scope per resource type and dialect too.
    scope = _root_scope_of(name, dialect)
    table = users if name == "User" else groups
    location = _Location(f"{base}{endpoint}/", _StringColumn(table.c.id, dialect))
    relations = {
        name: _with_ref(relation, f"{base}{_RELATED_ENDPOINT[name]}/")
        for name, relation in scope.relations.items()
    }
    return replace(
        scope, columns={**scope.columns, ("meta", "location"): location}, relations=relations
    )


#: The endpoint of the resource a relation's element is: a group's member is a user.
_RELATED_ENDPOINT: Final = {"members": "/Users", "groups": "/Groups"}


def _with_ref(relation: _RelationScope, prefix: str) -> _RelationScope:
    """`relation` with its elements' `$ref`, `prefix` then the related id, as rendered.

    `$ref` is caseExact=false (the hub's /Schemas), and the related id is the lowered `value`
    column, so `$ref eq "{base}/Users/{ID}"` is the same index look-up as `value eq "{ID}"`.
    """
    value = relation.columns["value"]
    assert isinstance(value, _StringColumn)
    return replace(relation, columns={**relation.columns, "$ref": _Location(prefix, value)})


@cache
def _root_scope_of(resource_type_name: str, dialect: str) -> _RowScope:
    # A member's or a group's `value` is caseExact=false (RFC 7643 §8.7.1) but is an `id`, which
    # `new_id` writes in lower case: compared as a lowered key, `members eq "…"` (Entra ID's
    # membership check) is an index look-up of the user instead of a scan of the group's members.
    if resource_type_name == "User":
        table = users
        columns: dict[tuple[str, ...], _Target] = {
            ("userName",): _StringColumn(users.c.user_name_key, dialect, lowered=True),
            ("active",): _BoolColumn(users.c.active),
        }
        group_display = _StringColumn(groups.c.display_name, dialect)
        relations = {
            "groups": _RelationScope(
                {
                    "value": _StringColumn(groups.c.id, dialect, lowered=True),
                    "display": group_display,
                    "type": _Constant("direct"),
                },
                memberships.join(groups, groups.c.pk == memberships.c.group_pk),
                memberships.c.user_pk == users.c.pk,
                groups.c.pk,
            )
        }
    elif resource_type_name == "Group":
        table = groups
        columns = {
            ("displayName",): _StringColumn(groups.c.display_name_key, dialect, lowered=True)
        }
        relations = {
            "members": _RelationScope(
                {
                    "value": _StringColumn(users.c.id, dialect, lowered=True),
                    "display": _StringColumn(memberships.c.display, dialect, nullable=True),
                    "type": _Constant("User"),
                },
                memberships.join(users, users.c.pk == memberships.c.user_pk),
                and_(memberships.c.group_pk == groups.c.pk, users.c.deleted.is_(False)),
                memberships.c.user_pk,
            )
        }
    else:
        raise ValueError(f"no table for resource type {resource_type_name!r}")
    columns |= {
        ("id",): _StringColumn(table.c.id, dialect),
        ("externalId",): _StringColumn(table.c.external_id, dialect, nullable=True),
        ("meta",): _Constant(resource_type_name),  # present; its own comparisons are refused
        ("meta", "resourceType"): _Constant(resource_type_name),
        ("meta", "created"): _TimeColumn(table.c.created),
        ("meta", "lastModified"): _TimeColumn(table.c.modified),
        ("meta", "location"): _Refused("meta.location"),
        ("meta", "version"): _StringColumn(_version_tag(table.c.version), dialect),
    }
    return _RowScope(columns, relations, _JsonScope(table.c.data, dialect))


__all__ = ["compile_filter", "compile_member_filter", "register_sqlite_functions", "sort_key"]
