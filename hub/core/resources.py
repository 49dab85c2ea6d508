"""What Users and Groups share: list queries, versions (ETags), rendering helpers, outcomes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import msgspec
from sqlalchemy import ColumnElement, Connection, Table, func, select

import rules
from hub.core.errors import InvalidFilter, PreconditionFailed
from hub.core.events import Event
from hub.core.filtering import DescribedLookup, compile_filter, sort_key
from hub.core.schema import ResourceType

JSON = dict[str, Any]


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A list or `.search` request, already bounded by the HTTP layer (RFC 7644 §3.4.2)."""

    filter: str | None = None
    start_index: int = 1
    count: int = 100
    sort_by: str | None = None
    descending: bool = False
    #: False when the response will not show `groups`/`members`, so they need not be loaded.
    with_members: bool = True
    max_filter_length: int = 4096
    max_filter_depth: int = 32
    #: Cursor pagination (RFC 9865): None for index pagination; otherwise the `pk` after which
    #: the page starts (0 for the first page). Cursor pages follow insertion order (`pk`).
    after: int | None = None
    #: True when the response shows each resource exactly as rendered here (no projection, no
    #: dialect rewrite): a page may then hold pre-encoded documents (`msgspec.Raw`).
    as_stored: bool = False
    #: True in a search across resource types (the root `/.search`): an attribute the type
    #: searched does not define has no value, as RFC 7644 §3.4.2.1 asks, instead of being an error.
    across_types: bool = False


class Page(msgspec.Struct, frozen=True):
    """One page of a list response."""

    total: int
    start_index: int
    #: Resource documents; `msgspec.Raw` (already JSON) when the query was `as_stored`.
    resources: Sequence[JSON | msgspec.Raw]
    #: True when the query was cursor-paged; `next_after` is then the last `pk` of this page when
    #: more results follow (the HTTP layer turns it into `nextCursor`), None on the last page.
    cursor: bool = False
    next_after: int | None = None
    #: False when the resources were left out as too large to hold at once (a page of groups
    #: with many members, `groups.search`): the page is to be read again lazily.
    held: bool = True


class Outcome(msgspec.Struct, frozen=True):
    """The result of a write: the resource as now stored, what happened, events to broadcast."""

    resource: JSON
    version: int
    event: Literal["provisioned", "updated", "deprovisioned", "reactivated", "deleted", "none"]
    events: list[Event] = msgspec.field(default_factory=list)
    #: False: the response carries no resource (204 No Content, RFC 7644 §3.5.2)
    content: bool = True
    #: False when the resource's members were left out as too many to hold at once (a read of
    #: a large group, `groups.get`): it is to be sent in pieces.
    held: bool = True


def etag(version: int) -> str:
    """Render a version as a weak entity tag (RFC 7644 §3.14)."""
    return f'W/"{version}"'


class Preconditions(NamedTuple):
    """A write's `If-Match` and `If-None-Match` headers, when it sent the second."""

    if_match: str | None
    if_none_match: str


#: What a write checks against the resource's version: its `If-Match` header (None: absent),
#: or both headers (`write_preconditions`).
Precondition = str | Preconditions | None


def write_preconditions(if_match: str | None, if_none_match: str | None) -> Precondition:
    """A write's preconditions: its `If-Match` alone (the usual case), or both headers."""
    return if_match if if_none_match is None else Preconditions(if_match, if_none_match)


def check_if_match(version: int, if_match: Precondition) -> None:
    """Enforce `If-Match` (RFC 7644 §3.14, RFC 9110 §13.1.1), then a write's `If-None-Match`.

    RFC 9110 §13.1.2: a write whose `If-None-Match` is `*` or names the current version must
    not be performed (SCIM clients do not send it; HTTP ones may, to avoid overwriting).

    Raises:
        PreconditionFailed: none of the `If-Match` tags is the current version, or the
            `If-None-Match` matches it.
    """
    if if_match is None:
        return
    if isinstance(if_match, Preconditions):
        check_if_match(version, if_match.if_match)
        if matches_if_none_match(version, if_match.if_none_match):
            raise PreconditionFailed(
                f"If-None-Match {if_match.if_none_match} matches the current version "
                f"{etag(version)}: nothing was changed"
            )
        return
    current = etag(version)
    tags = [tag.strip() for tag in if_match.split(",")]
    if "*" in tags:
        return
    if not any(_weak_equal(tag, current) for tag in tags):
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the current version {current}; "
            "GET the resource again and retry with its ETag"
        )


def matches_if_none_match(version: int, if_none_match: str | None) -> bool:
    """Say whether `If-None-Match` names the current version (a GET then answers 304)."""
    if if_none_match is None:
        return False
    current = etag(version)
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or any(_weak_equal(tag, current) for tag in tags)


def _weak_equal(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def filter_clause(
    query: ListQuery,
    resource_type: ResourceType,
    dialect: str,
    *,
    unknown: dict[rules.Filter, InvalidFilter] | None = None,
    described: DescribedLookup | None = None,
    base: str | None = None,
) -> ColumnElement[bool] | None:
    """Parse and compile the query's filter, if any.

    `unknown` (or `query.across_types`, which records into a dictionary of its own) takes the
    attributes `resource_type` does not define as having no value (`compile_filter`);
    `described` tells what the workspace's discovery describes beyond the hub's schemas;
    `base` is the base URL resources are rendered with, for `meta.location` and `$ref`.

    Raises:
        InvalidFilter: the filter is malformed, too long, too deep, or names an unknown attribute.
    """
    if query.filter is None:
        return None
    try:
        parsed = rules.parse_filter(
            query.filter,
            max_length=query.max_filter_length,
            max_depth=query.max_filter_depth,
        )
    except rules.FilterSyntaxError as exc:
        raise InvalidFilter(f"invalid filter: {exc}") from exc
    if unknown is None and query.across_types:
        unknown = {}
    return compile_filter(
        parsed, resource_type, dialect, unknown=unknown, described=described, base=base
    )


def keyset(query: ListQuery, pk: Any) -> tuple[list[ColumnElement[bool]], list[Any]]:
    """WHERE and ORDER BY of a cursor page: a range scan on `pk` after the cursor.

    The caller fetches `count + 1` rows: the extra row says whether a next page exists.
    """
    assert query.after is not None
    where: list[ColumnElement[bool]] = []
    if query.descending:
        if query.after:
            where.append(pk < query.after)
        return where, [pk.desc()]
    if query.after:
        where.append(pk > query.after)
    return where, [pk]


def order_clause(
    query: ListQuery,
    resource_type: ResourceType,
    dialect: str,
    default: Any,
    described: DescribedLookup | None = None,
    base: str | None = None,
) -> list[Any]:
    """ORDER BY for the query: its `sortBy` (RFC 7644 §3.4.2.3), then insertion order.

    A resource without a value for `sortBy` comes last in ascending order and first in
    descending order, as §3.4.2.3 asks: the descending order is the ascending one reversed.
    `described`, `base`: see `filter_clause`.
    """
    if query.sort_by is None:
        return [default.desc() if query.descending else default]
    keys = sort_key(query.sort_by, resource_type, dialect, described, base)
    if query.descending:
        return [*(key.desc().nulls_first() for key in keys), default.desc()]
    return [*(key.asc().nulls_last() for key in keys), default]


def fetch_page(
    conn: Connection,
    query: ListQuery,
    resource_type: ResourceType,
    table: Table,
    columns: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
    render: Callable[[Sequence[Any]], Sequence[JSON | msgspec.Raw]],
    count_all: Callable[[], int] | None = None,
    plain_rows: Callable[[ListQuery, int], Sequence[Any]] | None = None,
    described: DescribedLookup | None = None,
    base: str | None = None,
) -> Page:
    """Fetch one list page — by index (RFC 7644 §3.4.2.4) or by cursor (RFC 9865) — with its total.

    `totalResults` comes free when the first page is not full; otherwise it is `count_all()` when
    given (a maintained count, for unfiltered lists) or counted. `render` turns the page's rows
    into resources (loading members in one query). `plain_rows(query, limit)`, when given, fetches
    the rows of a page in insertion order (no sortBy) the way this function would — prepared
    statements for the unfiltered lists IdPs walk. With both given and no sortBy, `where` is
    not read (callers may pass none). `described` is what the workspace's discovery describes
    beyond the hub's schemas, for a `sortBy` naming such an attribute, and `base` the base URL
    the resources are rendered with, for `sortBy` on `meta.location` or `$ref` (`order_clause`).
    """
    count = count_all if count_all is not None else (lambda: _count(conn, table, where))
    fast = plain_rows if query.sort_by is None else None
    if query.after is not None:
        after, order = keyset(query, table.c.pk)
        rows: Sequence[Any] = (
            fast(query, query.count + 1)
            if fast is not None
            else conn.execute(
                select(*columns).where(*where, *after).order_by(*order).limit(query.count + 1)
            ).all()
        )
        more = len(rows) > query.count
        rows = rows[: query.count]
        total = len(rows) if query.after == 0 and not more else count()
        next_after = rows[-1].pk if more else None
        return Page(total, 1, render(rows), cursor=True, next_after=next_after)
    rows = []
    if query.count > 0 and fast is not None:
        rows = list(fast(query, query.count))
    elif query.count > 0:
        order = order_clause(query, resource_type, conn.dialect.name, table.c.pk, described, base)
        rows = conn.execute(
            select(*columns)
            .where(*where)
            .order_by(*order)
            .limit(query.count)
            .offset(query.start_index - 1)
        ).all()
    if query.count > 0 and query.start_index == 1 and len(rows) < query.count:
        total = len(rows)
    else:
        total = count()
    return Page(total, query.start_index, render(rows))


def _count(conn: Connection, table: Table, where: Sequence[ColumnElement[bool]]) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())
