"""Searching Users and Groups at once: POST /.search at the service root (RFC 7644 §3.4.3)."""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
from sqlalchemy import Connection

import rules
from hub.core import extensions, groups, users
from hub.core.attributes import describe_for
from hub.core.errors import InvalidFilter
from hub.core.filtering import DescribedLookup, sort_key
from hub.core.resources import JSON, ListQuery, Page, filter_clause
from hub.core.schema import GROUP_TYPE, USER_TYPE, ResourceType, schema_owner
from hub.core.tokens import Caller


def search_all(conn: Connection, caller: Caller, query: ListQuery, base: str) -> Page:
    """Users then Groups matching `query`, paged as one list.

    An attribute only one of the types has has no value in the other's resources (RFC 7644
    §3.4.2.1): `userName eq "x" or displayName eq "y"` finds groups named "y", and
    `not (userName eq "x")` every group; a filter naming an attribute neither type has, or
    that neither type can evaluate, is an error. A `sortBy` only one type has
    leaves the other's resources without a value for it: they come after the sorted ones in
    ascending order and before them in descending order (RFC 7644 §3.4.2.3), in their own order.
    A `sortBy` both types have (`displayName`, `externalId`, `meta.created`…) interleaves them
    in one order, for pages within the first `MERGE_WINDOW` results; past it each type is
    sorted on its own, Users first.

    Raises:
        InvalidFilter: the filter or `sortBy` is invalid for both Users and Groups.
    """
    services: list[tuple[Any, ResourceType]] = [(users, USER_TYPE), (groups, GROUP_TYPE)]
    if query.filter is not None:
        _check_filter(conn, caller, query, [resource_type for _, resource_type in services], base)
        query = _with(query, across_types=True)
    counted: list[tuple[Any, int, ListQuery]] = []
    errors: list[InvalidFilter] = []
    for service, resource_type in services:
        own = query
        if query.sort_by is not None and not _sorts_by(
            query.sort_by, resource_type, conn, caller, base
        ):
            own = _with(query, sort_by=None, descending=False)
        try:
            total = service.search(conn, caller, _with(own, count=0), base).total
        except InvalidFilter as exc:
            errors.append(exc)
            continue
        counted.append((service, total, own))
    if len(errors) == len(services):
        raise errors[0]
    if query.sort_by is not None:
        if all(own.sort_by is None for _, _, own in counted):
            sort_key(
                query.sort_by,
                USER_TYPE,
                conn.dialect.name,
                _described(conn, caller, USER_TYPE),
                base,
            )
        window = query.start_index - 1 + query.count
        both = len(counted) > 1 and all(own.sort_by for _, _, own in counted)
        if both and window <= MERGE_WINDOW:
            return _merged(conn, caller, query, base, counted)
        unsorted_first = query.descending
        counted.sort(key=lambda item: (item[2].sort_by is None) != unsorted_first)
    resources: list[JSON] = []
    skip, room = query.start_index - 1, query.count
    for service, total, own in counted:
        if room <= 0:
            break
        if skip >= total:
            skip -= total
            continue
        page = service.search(conn, caller, _with(own, start_index=skip + 1, count=room), base)
        resources.extend(page.resources)
        room -= len(page.resources)
        skip = 0
    return Page(sum(total for _, total, _ in counted), query.start_index, resources)


#: The most results a root search reads of each type to interleave a sorted page.
MERGE_WINDOW = 10_000


def _merged(
    conn: Connection,
    caller: Caller,
    query: ListQuery,
    base: str,
    counted: list[tuple[Any, int, ListQuery]],
) -> Page:
    """A page of Users and Groups sorted together by `sortBy`, which both types hold.

    Each type's first results up to the page's end come sorted by the database; they are merged
    by the same value the database sorted on (case-insensitively for `displayName`), resources
    without one last in ascending order and first in descending (RFC 7644 §3.4.2.3), Users
    before Groups where the values are equal.
    """
    assert query.sort_by is not None
    window = query.start_index - 1 + query.count
    found: list[JSON] = []
    for service, total, own in counted:
        if total:
            found.extend(
                service.search(
                    conn, caller, _with(own, start_index=1, count=window), base
                ).resources
            )
    path = rules.parse_path(query.sort_by).attr
    found.sort(key=lambda resource: _sort_value(resource, path), reverse=query.descending)
    start = query.start_index - 1
    return Page(sum(total for _, total, _ in counted), query.start_index, found[start:window])


def _sort_value(resource: JSON, path: rules.AttrPath) -> tuple[int, float, str]:
    """What `sortBy` orders by, as the database sorted it: numbers, then strings, then none.

    A number (a boolean as 1 or 0) sorts by value before any string, as an attribute with no
    schema does (`filtering.sort_key`); a case-insensitive string by its lowered value (a shared
    attribute has one definition for both types, RFC 7643 §3.1); no value last. An attribute
    the hub's schemas do not define is read as the SQL reads it: a custom extension's as the
    `sortBy` spells it, one discovery describes in any case (its own spelling first). A list
    is read as its primary element, else its first (RFC 7644 §3.4.2.3), and an object reached
    last by its `value`, as `filtering._JsonScope.sort_any` reads them.
    """
    names = (path.name,) if path.sub is None else (path.name, path.sub)
    info = describe_for(USER_TYPE)(path.urn, names)
    exact = info is None and path.urn is not None and schema_owner(path.urn) is None
    holder: Any = resource
    if path.urn is not None and path.urn.lower() not in _CORE_URNS:
        holder = _member(holder, path.urn, exact)
    for name in names:
        holder = _member(_chosen(holder), name, exact)
    holder = _chosen(holder)
    if isinstance(holder, dict):
        holder = _member(holder, "value", exact)
    if isinstance(holder, bool | int | float):
        return (0, float(holder) if isinstance(holder, bool) else holder, "")
    if not isinstance(holder, str):
        return (2, 0, "")
    return (1, 0, holder if info is not None and info.case_exact else holder.lower())


#: The core schemas' URNs: a `sortBy` qualified with one names a top-level attribute.
_CORE_URNS = frozenset(rt.schema.id.lower() for rt in (USER_TYPE, GROUP_TYPE))


def _chosen(holder: Any) -> Any:
    """A list's primary element (RFC 7643 §2.4), else its first, else None; any other value."""
    if not isinstance(holder, list):
        return holder
    primary = (e for e in holder if isinstance(e, dict) and e.get("primary") is True)
    return next(primary, holder[0] if holder else None)


def _member(holder: Any, name: str, exact: bool) -> Any:
    """`holder[name]` (any case unless `exact`, as spelled first), or None."""
    if not isinstance(holder, dict):
        return None
    if exact or name in holder:
        return holder.get(name)
    key = next((k for k in holder if k.lower() == name.lower()), None)
    return holder.get(key) if key is not None else None


def _described(conn: Connection, caller: Caller, resource_type: ResourceType) -> DescribedLookup:
    """What the caller's workspace describes beyond the hub's schema of `resource_type`."""
    return partial(extensions.undefined_type, conn, caller.workspace_pk, resource_type)


def _check_filter(
    conn: Connection, caller: Caller, query: ListQuery, types: list[ResourceType], base: str
) -> None:
    """Refuse a filter naming, in one place, an attribute none of `types` defines.

    Raises:
        InvalidFilter: the filter is invalid, or one of its comparisons or value filters names
            an attribute no type has (the error is the first type's).
    """
    recorded: list[dict[rules.Filter, InvalidFilter]] = []
    for resource_type in types:
        unknown: dict[rules.Filter, InvalidFilter] = {}
        described = _described(conn, caller, resource_type)
        filter_clause(
            query,
            resource_type,
            conn.dialect.name,
            unknown=unknown,
            described=described,
            base=base,
        )
        recorded.append(unknown)
    for node, error in recorded[0].items():
        if all(node in other for other in recorded[1:]):
            raise error


def _sorts_by(
    path: str, resource_type: ResourceType, conn: Connection, caller: Caller, base: str
) -> bool:
    try:
        described = _described(conn, caller, resource_type)
        sort_key(path, resource_type, conn.dialect.name, described, base)
    except InvalidFilter:
        return False
    return True


def _with(query: ListQuery, **changes: Any) -> ListQuery:
    return msgspec.structs.replace(query, **changes)
