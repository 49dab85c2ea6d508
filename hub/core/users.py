"""Users over SCIM: create, read, list, replace, patch, delete (RFC 7644 §3.3-§3.6).

Every function is a unit of work: `fn(conn, caller, …)`, run in one transaction by
`hub.core.database`. Nothing is erased: DELETE marks the user deleted and inactive, and a later
create of the same userName (or externalId) brings the same user back.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Text,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError

import rules
from hub.core import audit, extensions
from hub.core.attributes import (
    bounded,
    canonicalise,
    describe_for,
    merge_put,
    required_missing,
)
from hub.core.clock import now_us, to_iso
from hub.core.errors import InvalidValue, NotFound, Uniqueness
from hub.core.groups import lock_memberships
from hub.core.ids import new_id
from hub.core.manager import with_manager_ref
from hub.core.models import (
    EMAIL_KEY_MAX,
    connectors,
    groups,
    memberships,
    user_counts,
    user_emails,
    users,
)
from hub.core.patch import apply_patch, without_own_id
from hub.core.provisioning import Provisioning, UserEvent, user_written
from hub.core.resources import (
    JSON,
    ListQuery,
    Outcome,
    Page,
    Precondition,
    check_if_match,
    etag,
    fetch_page,
    filter_clause,
)
from hub.core.schema import USER_TYPE
from hub.core.sql import Prepared, PreparedInsert, fixed_in, fixed_in_params
from hub.core.tokens import Caller

_COLUMNS = (
    users.c.pk,
    users.c.id,
    users.c.data,
    users.c.active,
    users.c.version,
    users.c.created,
    users.c.modified,
)
#: `_COLUMNS` with the document as its JSON text, for pages rendered without decoding it.
_TEXT_COLUMNS = tuple(cast(c, Text).label("data") if c is users.c.data else c for c in _COLUMNS)


_BY_ID = (
    users.c.workspace_pk == bindparam("b_ws"),
    users.c.id == bindparam("b_id"),
    users.c.deleted.is_(False),
)
_LOAD = Prepared(select(*_COLUMNS).where(*_BY_ID))
_LOAD_FOR_UPDATE = Prepared(select(*_COLUMNS).where(*_BY_ID).with_for_update())
_GROUPS_OF_ONE = Prepared(
    select(groups.c.id, groups.c.display_name)
    .join(groups, groups.c.pk == memberships.c.group_pk)
    .where(memberships.c.user_pk == bindparam("b_pk"))
    .order_by(groups.c.pk)
)
#: The user's groups as one JSON array of [id, displayName] in the user's row, by dialect: one
#: statement for a GET or a userName look-up instead of two (on PostgreSQL a round trip fewer; on
#: SQLite a statement's Python fewer, ~3 µs).
#: PostgreSQL orders the aggregate itself.
_PG_GROUPS_AS_JSON = cast(
    select(
        func.json_agg(
            aggregate_order_by(
                func.json_build_array(groups.c.id, groups.c.display_name), groups.c.pk
            )
        )
    )
    .select_from(memberships.join(groups, groups.c.pk == memberships.c.group_pk))
    .where(memberships.c.user_pk == users.c.pk)
    .scalar_subquery(),
    Text,
)
#: SQLite before 3.44 has no ORDER BY inside an aggregate; it feeds the aggregate the rows of an
#: ordered subquery in their order (its query flattener leaves a subquery with ORDER BY under an
#: aggregate alone for that reason, so `group_concat` and `json_group_array` keep it).
_ORDERED_GROUPS = (
    select(groups.c.id, groups.c.display_name)
    .select_from(memberships.join(groups, groups.c.pk == memberships.c.group_pk))
    .where(memberships.c.user_pk == users.c.pk)
    .order_by(groups.c.pk)
    .correlate(users)
    .subquery()
)
_SQLITE_GROUPS_AS_JSON = select(
    func.json_group_array(func.json_array(_ORDERED_GROUPS.c.id, _ORDERED_GROUPS.c.display_name))
).scalar_subquery()
_GROUPS_AS_JSON = {"postgresql": _PG_GROUPS_AS_JSON, "sqlite": _SQLITE_GROUPS_AS_JSON}
#: SQLite: the row a PUT or PATCH starts from with the user's groups in it, as a GET reads them
#: (a statement fewer a write). The write holds SQLite's one write lock from its BEGIN
#: IMMEDIATE, so no membership changes before the response is rendered. PostgreSQL reads the
#: groups after the write (`_groups_of_one`): a membership committed meanwhile shows there.
_LOAD_FOR_WRITE_WITH_GROUPS = Prepared(
    select(*_COLUMNS, _SQLITE_GROUPS_AS_JSON.label("member_of")).where(*_BY_ID)
)
_SAME_NAME = Prepared(
    select(users.c.pk, users.c.deleted, connectors.c.name)
    .outerjoin(connectors, connectors.c.pk == users.c.connector_pk)
    .where(users.c.workspace_pk == bindparam("b_ws"), users.c.user_name_key == bindparam("b_key"))
)


def _in_the_way() -> Any:
    """The statement a create looks for what is in its way with.

    The user with its userName, else a deleted one with its externalId, in one statement (with
    the workspace's toggle, which the token now brings, two statements were ~7 µs of a ~1 ms
    create).
    """
    by_name = (
        select(users.c.pk, users.c.deleted, connectors.c.name, literal_column("0").label("rank"))
        .outerjoin(connectors, connectors.c.pk == users.c.connector_pk)
        .where(
            users.c.workspace_pk == bindparam("b_ws"), users.c.user_name_key == bindparam("b_key")
        )
    )
    by_external_id = (
        select(users.c.pk, users.c.deleted, connectors.c.name, literal_column("1").label("rank"))
        .outerjoin(connectors, connectors.c.pk == users.c.connector_pk)
        .where(
            users.c.workspace_pk == bindparam("b_ws"),
            users.c.external_id == bindparam("b_ext"),
            # An expression, not the column: without statistics SQLite would as readily take
            # the (workspace_pk, deleted) index and scan every deleted user of the workspace.
            func.coalesce(users.c.deleted, false()).is_(true()),
        )
        .limit(1)
    )
    both = union_all(by_name, by_external_id.subquery().select()).subquery()
    return select(both.c.pk, both.c.deleted, both.c.name).order_by(both.c.rank).limit(1)


_IN_THE_WAY = Prepared(_in_the_way())
_INSERT = PreparedInsert(
    users.insert().values(
        id=bindparam("b_id"),
        workspace_pk=bindparam("b_ws"),
        connector_pk=bindparam("b_connector"),
        active=bindparam("b_active"),
        deleted=False,
        data=bindparam("b_data", type_=users.c.data.type),
        version=1,
        created=bindparam("b_now"),
        modified=bindparam("b_now"),
        user_name=bindparam("b_name"),
        user_name_key=bindparam("b_key"),
        external_id=bindparam("b_ext"),
    ),
    users.c.pk,
    json_params=("b_data",),
)
_BY_PK = Prepared(select(*_COLUMNS).where(users.c.pk == bindparam("b_pk")))
_ADD_EMAIL = Prepared(
    user_emails.insert().values(
        workspace_pk=bindparam("b_ws"), value_key=bindparam("b_key"), user_pk=bindparam("b_user")
    )
)
_DROP_EMAIL = Prepared(
    delete(user_emails).where(
        user_emails.c.workspace_pk == bindparam("b_ws"),
        user_emails.c.value_key == bindparam("b_key"),
        user_emails.c.user_pk == bindparam("b_user"),
    )
)
_DROP_EMAILS = Prepared(delete(user_emails).where(user_emails.c.user_pk == bindparam("b_user")))
_SAVE_VALUES = {
    "data": bindparam("b_data", type_=users.c.data.type),
    "active": bindparam("b_active"),
    "version": bindparam("b_version"),
    "modified": bindparam("b_now"),
}
_SAVE = Prepared(
    update(users).where(users.c.pk == bindparam("b_pk")).values(**_SAVE_VALUES),
    json_params=("b_data",),
)
#: `_SAVE` for a user whose userName or externalId changed. Setting an indexed column, even to
#: its own value, makes SQLite delete and re-insert the index entry: ~4 µs and two more dirty
#: pages an update in a 200,000-user table, so an update that keeps them leaves them out.
_SAVE_NAMES = Prepared(
    update(users)
    .where(users.c.pk == bindparam("b_pk"))
    .values(
        **_SAVE_VALUES,
        user_name=bindparam("b_name"),
        user_name_key=bindparam("b_key"),
        external_id=bindparam("b_ext"),
    ),
    json_params=("b_data",),
)


def email_keys(doc: Mapping[str, Any]) -> set[str]:
    """The `user_emails` keys of a canonical user document (see `models.UserEmail`)."""
    emails = doc.get("emails")
    if not isinstance(emails, list):
        return set()
    values = (e.get("value") for e in emails if isinstance(e, dict))
    return {k for v in values if isinstance(v, str) and len(k := v.lower()) <= EMAIL_KEY_MAX}


def _index_emails(
    conn: Connection, workspace_pk: int, user_pk: int, before: set[str], doc: JSON
) -> None:
    """Bring the user's `user_emails` rows from the keys `before` to those of `doc`."""
    after = email_keys(doc)
    if after == before:
        return
    for statement, keys in ((_DROP_EMAIL, before - after), (_ADD_EMAIL, after - before)):
        rows = [{"b_ws": workspace_pk, "b_key": k, "b_user": user_pk} for k in sorted(keys)]
        statement.run_many(conn, rows)


def _location(base: str, user_id: str) -> str:
    return f"{base}/Users/{user_id}"


def render(row: Any, base: str, member_of: Sequence[tuple[str, str]] | None) -> JSON:
    """Render a stored user as its SCIM resource (RFC 7643 §4.1)."""
    data: JSON = row.data
    resource: JSON = {"schemas": data.get("schemas", [USER_TYPE.schema.id]), "id": row.id}
    resource.update(data)
    resource.update(_managed(row, base, member_of))
    return resource


_encode = msgspec.json.Encoder().encode
_ACTIVE: Final = {None: "", True: '"active":true,', False: '"active":false,'}


def render_raw(row: Any, base: str, member_of: Sequence[tuple[str, str]] | None) -> msgspec.Raw:
    """`render` for a row whose `data` is JSON text, already encoded, without decoding the text.

    The stored document is canonical (`canonicalise`: `schemas` present; no `id`, `meta`,
    `groups`, `active` or `password`), so the resource is the text with those spliced in; the
    keys come in another order than `render`'s, which JSON objects do not distinguish. The
    attributes the hub keeps are written as text too (what `_managed` holds; the two are held
    equal by `tests/test_list_rendering.py`): building and encoding that dict was most of a list
    page's rendering.
    """
    inner = row.data.strip()[1:-1].strip()
    groups = ""
    if member_of:
        groups = f'"groups":{_encode(_memberships(base, member_of)).decode()},'
    return msgspec.Raw(
        (
            f'{{"id":{_encode(row.id).decode()}{"," if inner else ""}{inner},'
            f"{_ACTIVE[row.active]}{groups}"
            f'"meta":{{"resourceType":"User","created":"{to_iso(row.created)}",'
            f'"lastModified":"{to_iso(row.modified)}",'
            f'"location":{_encode(_location(base, row.id)).decode()},'
            f'"version":{_encode(etag(row.version)).decode()}}}}}'
        ).encode()
    )


def _memberships(base: str, member_of: Sequence[tuple[str, str]]) -> list[JSON]:
    return [
        {"value": gid, "display": name, "$ref": f"{base}/Groups/{gid}", "type": "direct"}
        for gid, name in member_of
    ]


def _managed(row: Any, base: str, member_of: Sequence[tuple[str, str]] | None) -> JSON:
    """The attributes the hub keeps outside the stored document: active, groups, meta."""
    managed: JSON = {}
    if row.active is not None:
        managed["active"] = row.active
    if member_of:
        managed["groups"] = _memberships(base, member_of)
    managed["meta"] = {
        "resourceType": "User",
        "created": to_iso(row.created),
        "lastModified": to_iso(row.modified),
        "location": _location(base, row.id),
        "version": etag(row.version),
    }
    return managed


#: Users whose groups one `_GROUPS_OF_MANY` looks up (a fixed `IN` list, padded with pk 0).
_GROUPS_CHUNK = 100
_GROUPS_OF_MANY = Prepared(
    select(memberships.c.user_pk, groups.c.id, groups.c.display_name)
    .join(groups, groups.c.pk == memberships.c.group_pk)
    .where(fixed_in(memberships.c.user_pk, _GROUPS_CHUNK))
    .order_by(groups.c.pk)
)


def _groups_of(conn: Connection, user_pks: Iterable[int]) -> dict[int, list[tuple[str, str]]]:
    result: dict[int, list[tuple[str, str]]] = {}
    for params in fixed_in_params(list(user_pks), _GROUPS_CHUNK, 0):
        for user_pk, group_id, name in _GROUPS_OF_MANY.all(conn, **params):
            result.setdefault(user_pk, []).append((group_id, name))
    return result


def _load(
    conn: Connection, caller: Caller, user_id: str, *, lock: bool = False, write: bool = False
) -> Any:
    """The user's row; `write` (a PUT or PATCH, locked): on SQLite with its groups in it too."""
    if write and conn.dialect.name == "sqlite":
        statement = _LOAD_FOR_WRITE_WITH_GROUPS
    else:
        statement = _LOAD_FOR_UPDATE if lock or write else _LOAD
    row = statement.first(conn, b_ws=caller.workspace_pk, b_id=user_id)
    if row is None:
        raise NotFound(f"no User with id {user_id!r}")
    return row


def _groups_of_one(conn: Connection, pk: int) -> list[tuple[str, str]]:
    return [(gid, name) for gid, name in _GROUPS_OF_ONE.all(conn, b_pk=pk)]


def _groups_of_loaded(conn: Connection, row: Any) -> list[tuple[str, str]]:
    """The groups of a row `_load(write=True)` read: from the row itself on SQLite."""
    if conn.dialect.name != "sqlite":
        return _groups_of_one(conn, row.pk)
    return _member_of(row)


class _Stored:
    """A user row as just written, so a write needs no read-back."""

    __slots__ = ("active", "created", "data", "id", "modified", "pk", "version")

    def __init__(
        self,
        pk: int,
        user_id: str,
        data: JSON,
        active: bool | None,
        version: int,
        created: int,
        modified: int,
    ) -> None:
        self.pk, self.id, self.data, self.active = pk, user_id, data, active
        self.version, self.created, self.modified = version, created, modified


def _split(doc: JSON, absent: bool | None) -> tuple[JSON, bool | None]:
    """Take `active` out of the document (the column is its one home); `absent` if not sent."""
    active = doc.pop("active", absent)
    if active is not None and not isinstance(active, bool):
        raise InvalidValue("active must be a boolean")
    return doc, active


def _audit(
    conn: Connection, caller: Caller, user_id: str, action: str, changes: dict[str, Any]
) -> None:
    audit.by_connector(conn, caller, "User", user_id, action, changes)


def _taken(user_name: str, connector: str | None) -> Uniqueness:
    owner = f" (provisioned by connector {connector!r})" if connector else ""
    return Uniqueness(f"userName {user_name!r} is already in use in this workspace{owner}")


def _columns(doc: JSON) -> dict[str, Any]:
    user_name = bounded("userName", doc["userName"])
    external_id = doc.get("externalId")
    return {
        "user_name": user_name,
        "user_name_key": user_name.lower(),
        "external_id": bounded("externalId", external_id) if isinstance(external_id, str) else None,
    }


_PLAIN = Provisioning()


def create(
    conn: Connection, caller: Caller, body: JSON, base: str, provisioning: Provisioning = _PLAIN
) -> Outcome:
    """Create a user (RFC 7644 §3.3), or bring back the deprovisioned user with that name.

    Raises:
        Uniqueness: an active user already has this userName (case-insensitive).
        InvalidValue: the document is not a valid User.
    """
    unknown: list[str] = []
    doc, active = _split(
        with_manager_ref(canonicalise(body, USER_TYPE, unknown=unknown), base), True
    )
    required_missing(doc, USER_TYPE)
    doc = extensions.respelled(conn, caller.workspace_pk, USER_TYPE, doc)
    cols = _columns(doc)
    existing = _IN_THE_WAY.first(
        conn, b_ws=caller.workspace_pk, b_key=cols["user_name_key"], b_ext=cols["external_id"]
    )
    now = now_us()
    if existing is not None and existing.deleted:
        if _revive(conn, caller, existing.pk, doc, active, cols, now, unknown):
            return _revived(conn, caller, existing.pk, doc, base, provisioning)
        # Another request brought that user back, or renamed someone onto its name, since it
        # was read (PostgreSQL runs requests side by side): look again, as if after it.
        existing = _IN_THE_WAY.first(
            conn, b_ws=caller.workspace_pk, b_key=cols["user_name_key"], b_ext=cols["external_id"]
        )
        if existing is not None and existing.deleted:
            raise _taken(doc["userName"], None)  # still changing under this request: refuse
    if existing is not None:
        raise _taken(doc["userName"], existing.name)
    user_id = new_id()
    try:
        pk = _INSERT.run(
            conn,
            b_id=user_id,
            b_ws=caller.workspace_pk,
            b_connector=caller.connector_pk,
            b_active=active,
            b_data=doc,
            b_now=now,
            b_name=cols["user_name"],
            b_key=cols["user_name_key"],
            b_ext=cols["external_id"],
        )
    except IntegrityError as exc:  # `Prepared` raises SQLAlchemy's, on every driver
        raise _taken(doc["userName"], None) from exc
    _index_emails(conn, caller.workspace_pk, pk, set(), doc)
    extensions.record(conn, caller.workspace_pk, USER_TYPE, doc, unknown=unknown)
    _audit(conn, caller, user_id, "create", {"attributes": sorted(doc)})
    resource = render(_Stored(pk, user_id, doc, active, 1, now, now), base, None)
    events = user_written(conn, caller, pk, resource, "provisioned", provisioning)
    return Outcome(resource, 1, "provisioned", events)


def _revived(
    conn: Connection, caller: Caller, pk: int, doc: JSON, base: str, provisioning: Provisioning
) -> Outcome:
    row = _BY_PK.first(conn, b_pk=pk)
    _audit(conn, caller, row.id, "reactivate", {"attributes": sorted(doc)})
    resource = render(row, base, _groups_of_one(conn, row.pk))
    events = user_written(conn, caller, row.pk, resource, "reactivated", provisioning)
    return Outcome(resource, row.version, "reactivated", events)


def _revive(
    conn: Connection,
    caller: Caller,
    pk: int,
    doc: JSON,
    active: bool | None,
    cols: dict[str, Any],
    now: int,
    unknown: Collection[str],
) -> bool:
    """Bring the deleted user back with `doc`; False if it is no longer deleted.

    `unknown`: what `canonicalise` noted of `doc` (`extensions.record`).

    The update takes the row only while it is deleted: on PostgreSQL two creates may read the
    same deleted user, and the second must not overwrite what the first acknowledged.

    Raises:
        Uniqueness: another user took the userName since it was read.
    """
    try:
        revived = conn.execute(
            update(users)
            .where(users.c.pk == pk, users.c.deleted.is_(True))
            .values(
                deleted=False,
                active=active,
                data=doc,
                connector_pk=caller.connector_pk,
                version=users.c.version + 1,
                modified=now,
                **cols,
            )
        )
    except IntegrityError as exc:
        raise _taken(doc["userName"], None) from exc
    if revived.rowcount != 1:
        return False
    # A user comes back in no group. Memberships a DELETE did not see (one added as it ran, on
    # PostgreSQL before the members' rows were read FOR SHARE) were hidden while it was away.
    _END_MEMBERSHIPS.run(conn, b_pk=pk)
    _DROP_EMAILS.run(conn, b_user=pk)
    _index_emails(conn, caller.workspace_pk, pk, set(), doc)
    extensions.record(conn, caller.workspace_pk, USER_TYPE, doc, unknown=unknown)
    return True


class StoredUser(NamedTuple):
    """A user resource already encoded (`render_raw`), with what the HTTP layer reads of it."""

    body: msgspec.Raw
    version: int
    user_name: str


#: By dialect, as `groups._ADD_MEMBER`: each compiles for its own dialect only.
_LOAD_TEXT_WITH_GROUPS = {
    dialect: Prepared(
        select(*_TEXT_COLUMNS, users.c.user_name, member_of.label("member_of")).where(*_BY_ID)
    )
    for dialect, member_of in _GROUPS_AS_JSON.items()
}
_decode_member_of = msgspec.json.Decoder(list[tuple[str, str]]).decode


def _member_of(row: Any) -> list[tuple[str, str]]:
    """The (id, displayName) groups of a row read with `_GROUPS_AS_JSON` (NULL or [] for none)."""
    return _decode_member_of(row.member_of) if row.member_of else []


def get_as_stored(conn: Connection, caller: Caller, user_id: str, base: str) -> StoredUser:
    """`get` for a response showing the user as stored (no projection, no dialect `render`).

    Raises:
        NotFound: no such user in this workspace (deleted users included).
    """
    statement = _LOAD_TEXT_WITH_GROUPS[conn.dialect.name]
    row = statement.first(conn, b_ws=caller.workspace_pk, b_id=user_id)
    if row is None:
        raise NotFound(f"no User with id {user_id!r}")
    body = render_raw(row, base, _member_of(row))
    return StoredUser(body, row.version, row.user_name)


def get(
    conn: Connection, caller: Caller, user_id: str, base: str, with_groups: bool = True
) -> Outcome:
    """Read one user of the caller's workspace (RFC 7644 §3.4.1).

    Raises:
        NotFound: no such user in this workspace (deleted users included).
    """
    row = _load(conn, caller, user_id)
    member_of = _groups_of_one(conn, row.pk) if with_groups else None
    return Outcome(render(row, base, member_of), row.version, "none")


def search(conn: Connection, caller: Caller, query: ListQuery, base: str) -> Page:
    """List the workspace's users matching a query (RFC 7644 §3.4.2).

    Raises:
        InvalidFilter: the filter or sortBy is not valid for Users.
    """
    wanted = _key_lookup(query)
    if wanted is not None and wanted[0] == "username":
        return _by_user_name(conn, caller, query, base, wanted[1])
    if wanted is not None and query.after is None:
        return _by_external_id(conn, caller, query, base, wanted[1])
    email = _pinned_email(query)
    # Index pages only: a cursor walk's first page (after == 0) must carry its nextCursor.
    if (
        email is not None
        and query.sort_by is None
        and query.start_index == 1
        and query.after is None
    ):
        page = _by_email(conn, caller, query, base, email)
        if page is not None:
            return page
    # What discovery describes beyond the hub's schemas, read only for a name they lack.
    described = partial(extensions.undefined_type, conn, caller.workspace_pk, USER_TYPE)
    clause = filter_clause(query, USER_TYPE, conn.dialect.name, described=described, base=base)

    def rendered(rows: Sequence[Any]) -> list[JSON | msgspec.Raw]:
        member_of = _groups_of(conn, [r.pk for r in rows]) if query.with_members else {}
        show = render_raw if query.as_stored else render
        return [show(r, base, member_of.get(r.pk)) for r in rows]

    def live() -> int:
        return int(_LIVE.scalar(conn, b_ws=caller.workspace_pk))

    def plain(query: ListQuery, limit: int) -> Sequence[Any]:
        return _plain_page(conn, caller.workspace_pk, query, limit)

    columns = _TEXT_COLUMNS if query.as_stored else _COLUMNS
    if clause is None and query.sort_by is None:
        # The pages IdPs walk: `plain` and `live` read them with prepared statements, so no
        # condition is built (a few dozen µs of SQLAlchemy expressions a page otherwise).
        return fetch_page(conn, query, USER_TYPE, users, columns, (), rendered, live, plain)
    # Only the users holding a required email can match: read them off `user_emails`.
    where = (
        [users.c.workspace_pk == caller.workspace_pk]
        if email is None
        else list(_held_by(caller.workspace_pk, email))
    )
    indexed = email is not None or _pins_external_id(query)
    where.append(_LIVE_UNINDEXED if indexed else users.c.deleted.is_(False))
    if clause is not None:
        where.append(clause)
        return fetch_page(
            conn, query, USER_TYPE, users, columns, where, rendered, described=described, base=base
        )
    return fetch_page(
        conn, query, USER_TYPE, users, columns, where, rendered, live, plain, described, base
    )


def _page_statement(descending: bool, keyset: bool, text: bool) -> Prepared:
    order = users.c.pk.desc() if descending else users.c.pk
    stmt = select(*(_TEXT_COLUMNS if text else _COLUMNS)).where(
        users.c.workspace_pk == bindparam("b_ws"), users.c.deleted.is_(False)
    )
    if keyset:
        after = bindparam("b_after", type_=users.c.pk.type)
        stmt = stmt.where(users.c.pk < after if descending else users.c.pk > after)
        return Prepared(stmt.order_by(order).limit(bindparam("b_limit")))
    return Prepared(stmt.order_by(order).limit(bindparam("b_limit")).offset(bindparam("b_offset")))


#: Unfiltered pages in insertion order: (descending, cursor, data as text) -> statement.
_PLAIN_PAGES = {
    (d, k, t): _page_statement(d, k, t)
    for d in (False, True)
    for k in (False, True)
    for t in (False, True)
}


#: An index page starting further in than this is read from whichever end is nearer.
_FAR_OFFSET = 1_000


def _far_page_statement(descending: bool, text: bool) -> Prepared:
    """An index page read from the other end of the list, in the other order.

    The live users are counted by triggers (`_LIVE`), so the page at positions first … last of
    N is positions N - last + 1 … N - first + 1 in the opposite order: a walk of N - last
    entries instead of first - 1 (OFFSET steps through every entry it skips: ~60 ns each, 55 ms
    for a page at 900,001 of 1,000,000). The count is read in the same statement, so the window
    is the one of the statement's own snapshot (PostgreSQL reads run without a transaction).
    """
    total = (
        select(func.coalesce(func.sum(user_counts.c.live), 0))
        .where(user_counts.c.workspace_pk == bindparam("b_ws"))
        .scalar_subquery()
    )
    first = bindparam("b_first", type_=Integer)
    size = bindparam("b_limit", type_=Integer)
    left = total - first + 1  # users from the page's first to the end
    beyond = left - size  # users after the page's last
    order = users.c.pk if descending else users.c.pk.desc()
    stmt = select(*(_TEXT_COLUMNS if text else _COLUMNS)).where(
        users.c.workspace_pk == bindparam("b_ws"), users.c.deleted.is_(False)
    )
    return Prepared(
        stmt.order_by(order)
        .limit(case((left >= size, size), (left > 0, left), else_=0))
        .offset(case((beyond > 0, beyond), else_=0))
    )


#: Index pages read from the far end: (descending, data as text) -> statement.
_FAR_PAGES = {(d, t): _far_page_statement(d, t) for d in (False, True) for t in (False, True)}


def _plain_page(conn: Connection, workspace_pk: int, query: ListQuery, limit: int) -> list[Any]:
    """One unfiltered page, by index or after a cursor (what `fetch_page` would select)."""
    skipped = query.start_index - 1
    if query.after is None and skipped > _FAR_OFFSET:
        live = int(_LIVE.scalar(conn, b_ws=workspace_pk))
        if live - skipped - limit < skipped:  # the far end is nearer
            statement = _FAR_PAGES[query.descending, query.as_stored]
            rows = statement.all(conn, b_ws=workspace_pk, b_first=query.start_index, b_limit=limit)
            rows.reverse()
            return rows
    if query.after is None or query.after == 0:  # an index page, or a cursor walk's first page
        offset = 0 if query.after is not None else query.start_index - 1
        statement = _PLAIN_PAGES[query.descending, False, query.as_stored]
        return statement.all(conn, b_ws=workspace_pk, b_limit=limit, b_offset=offset)
    statement = _PLAIN_PAGES[query.descending, True, query.as_stored]
    return statement.all(conn, b_ws=workspace_pk, b_limit=limit, b_after=query.after)


#: The workspace's live users, from the trigger-kept counts (see `models.UserCount`).
_LIVE = Prepared(
    select(func.coalesce(func.sum(user_counts.c.live), 0)).where(
        user_counts.c.workspace_pk == bindparam("b_ws")
    )
)


_BY_NAME_WHERE = (
    users.c.workspace_pk == bindparam("b_ws"),
    users.c.user_name_key == bindparam("b_key"),
    users.c.deleted.is_(False),
)
_BY_NAME = Prepared(select(*_COLUMNS).where(*_BY_NAME_WHERE))
_BY_NAME_TEXT = Prepared(select(*_TEXT_COLUMNS).where(*_BY_NAME_WHERE))
#: By dialect: `_BY_NAME_TEXT` with the user's groups in the row (see `_GROUPS_AS_JSON`).
_BY_NAME_TEXT_WITH_GROUPS = {
    dialect: Prepared(select(*_TEXT_COLUMNS, member_of.label("member_of")).where(*_BY_NAME_WHERE))
    for dialect, member_of in _GROUPS_AS_JSON.items()
}


#: That query (or `externalId eq "…"`) with a string free of escapes: the value is the text
#: between the quotes, as the filter parser reads it (ASCII case folding of the attribute name
#: only, and only the spaces its lexer skips).
_PLAIN_KEY_EQ = re.compile(
    r'[ \t\r\n]*(username|externalid)[ \t\r\n]+eq[ \t\r\n]+"([^"\\]*)"[ \t\r\n]*',
    re.IGNORECASE | re.ASCII,
)
#: The attributes a one-index look-up answers, by lowercase name.
_LOOKUP_KEYS: Final = frozenset({"username", "externalid"})


def _key_lookup(query: ListQuery) -> tuple[str, str] | None:
    """The attribute ("username" or "externalid") and value of a one-user look-up, if it is one.

    `userName eq "…"` is what every IdP sends before a create; `externalId eq "…"` what one that
    matches users on externalId sends.
    """
    text = query.filter
    if text is None or query.sort_by is not None or query.start_index != 1 or query.after:
        return None
    if len(text) <= query.max_filter_length:
        plain = _PLAIN_KEY_EQ.fullmatch(text)
        if plain is not None:  # the common form, without building the filter's tree
            return plain.group(1).lower(), plain.group(2)
    parsed = _parsed(query)
    if not isinstance(parsed, rules.Compare) or parsed.op != "eq":
        return None
    path = parsed.path
    name = path.name.lower()
    if name in _LOOKUP_KEYS and _is_core(path, name) and path.sub is None:
        return (name, parsed.value) if isinstance(parsed.value, str) else None
    return None


#: `deleted` is false, as an expression SQLite cannot look up in an index. Where a filter pins
#: externalId, SQLite (without statistics) takes the (workspace_pk, deleted, pk) index as
#: readily as (workspace_pk, external_id), since it also gives the page's order, and then reads
#: every live user of the workspace (a million in the scale benchmark) to find one.
_LIVE_UNINDEXED = func.coalesce(users.c.deleted, false()).is_(false())


def _parsed(query: ListQuery, mentioning: str = "") -> rules.Filter | None:
    """The query's filter tree, if it has one whose text mentions `mentioning` (lowercase).

    None as well for a filter that does not parse: the general path reports it, limits included.
    """
    text = query.filter
    if text is None or mentioning not in text.lower():
        return None
    try:
        return rules.parse_filter(
            text, max_length=query.max_filter_length, max_depth=query.max_filter_depth
        )
    except rules.FilterSyntaxError:
        return None


def _pins_external_id(query: ListQuery) -> bool:
    """Say whether the filter asks for one externalId (alone, or in an `and` at the top)."""
    node = _parsed(query, "externalid")
    return node is not None and any(
        isinstance(part, rules.Compare)
        and part.op == "eq"
        and part.path.sub is None
        and _is_core(part.path, "externalid")
        for part in _conjuncts(node)
    )


def _conjuncts(node: rules.Filter) -> Iterator[rules.Filter]:
    """The filter's operands joined by `and` at its top (the filter itself if there are none)."""
    pending = [node]
    while pending:
        node = pending.pop()
        if isinstance(node, rules.And):
            pending += (node.right, node.left)
        else:
            yield node


def _is_core(path: rules.AttrPath, name: str) -> bool:
    core = path.urn is None or path.urn.lower() == USER_TYPE.schema.id.lower()
    return core and path.name.lower() == name


def _pinned_email(query: ListQuery) -> str | None:
    """The email a filter requires by `eq`, if it does, as `user_emails` keys it (lowered).

    `emails.value eq "…"`, or a value path on `emails` requiring `value eq "…"` (Entra ID's
    `emails[type eq "work"].value eq "…"` parses into one), alone or in an `and` at the top.
    None when the value is longer than a key may be: such values are not in `user_emails`.
    """
    node = _parsed(query, "emails")
    if node is None:
        return None
    for part in _conjuncts(node):
        tests: Iterable[rules.Filter] = ()
        if isinstance(part, rules.Compare) and _is_core(part.path, "emails"):
            element = rules.AttrPath(None, part.path.sub or "", None)
            tests = (rules.Compare(element, part.op, part.value),)
        elif isinstance(part, rules.ValuePath) and _is_core(part.path, "emails"):
            tests = () if part.path.sub is not None else _conjuncts(part.filter)
        for test in tests:
            if (
                isinstance(test, rules.Compare)
                and test.path.name.lower() == "value"
                and test.op == "eq"
                and isinstance(test.value, str)
            ):
                key = test.value.lower()
                return key if len(key) <= EMAIL_KEY_MAX else None
    return None


#: More users than this holding one email: the look-up leaves them to the SQL filter.
_EMAIL_CANDIDATES = 100


def _held_by(workspace_pk: Any, key: Any) -> tuple[ColumnElement[bool], ...]:
    """Users of the workspace holding the email `key` (values or bind parameters).

    By pk from `user_emails` (see `models.UserEmail`); the workspace test is an expression, or
    SQLite walks the workspace's index instead of the pks found.
    """
    holders = select(user_emails.c.user_pk).where(
        user_emails.c.workspace_pk == workspace_pk, user_emails.c.value_key == key
    )
    return users.c.pk.in_(holders), (users.c.workspace_pk + 0) == workspace_pk


_BY_EMAIL = Prepared(
    select(*_COLUMNS)
    .where(*_held_by(bindparam("b_ws"), bindparam("b_key")), _LIVE_UNINDEXED)
    .order_by(users.c.pk)
    .limit(_EMAIL_CANDIDATES + 1)
)


def _by_email(
    conn: Connection, caller: Caller, query: ListQuery, base: str, key: str
) -> Page | None:
    """The first page of a filter that requires the email `key`, from the users holding it.

    The users `user_emails` lists for the email are read by pk (prepared, no SQL compiled for
    the filter), and the filter is evaluated on their resources in memory — what
    `rules.evaluate` decides is what the compiled SQL selects (tests/test_filtering_sql.py).
    None when the general path must answer: a filter the schema refuses (it reports why), or
    more holders than `_EMAIL_CANDIDATES`.
    """
    node = _parsed(query, "emails")
    if node is None:
        return None
    try:
        matches = rules.compile_predicate(node, describe_for(USER_TYPE))
    except (rules.UnknownAttribute, rules.InvalidComparison):
        return None
    rows = _BY_EMAIL.all(conn, b_ws=caller.workspace_pk, b_key=key)
    if len(rows) > _EMAIL_CANDIDATES:
        return None
    member_of = _groups_of(conn, [r.pk for r in rows]) if rows else {}
    found = [
        (row, resource)
        for row in rows
        if matches(resource := render(row, base, member_of.get(row.pk, [])))
    ]
    shown = [res if query.with_members else render(row, base, None) for row, res in found]
    return Page(len(found), 1, shown[: query.count])


_BY_EXTERNAL_ID_WHERE = (
    users.c.workspace_pk == bindparam("b_ws"),
    users.c.external_id == bindparam("b_ext"),
    _LIVE_UNINDEXED,
)
_BY_EXTERNAL_ID = {
    text: Prepared(
        select(*(_TEXT_COLUMNS if text else _COLUMNS))
        .where(*_BY_EXTERNAL_ID_WHERE)
        .order_by(users.c.pk)
        .limit(bindparam("b_limit"))
    )
    for text in (False, True)
}
_COUNT_BY_EXTERNAL_ID = Prepared(
    select(func.count()).select_from(users).where(*_BY_EXTERNAL_ID_WHERE)
)


def _by_external_id(
    conn: Connection, caller: Caller, query: ListQuery, base: str, external_id: str
) -> Page:
    """The first page of the users with this externalId (caseExact): prepared, on its index."""
    rows = _BY_EXTERNAL_ID[query.as_stored].all(
        conn, b_ws=caller.workspace_pk, b_ext=external_id, b_limit=query.count
    )
    total = len(rows)
    if total == query.count:  # a full page (or none asked for): there may be more
        total = int(_COUNT_BY_EXTERNAL_ID.scalar(conn, b_ws=caller.workspace_pk, b_ext=external_id))
    member_of = _groups_of(conn, [r.pk for r in rows]) if query.with_members and rows else {}
    show = render_raw if query.as_stored else render
    return Page(total, 1, [show(r, base, member_of.get(r.pk)) for r in rows])


def _by_user_name(
    conn: Connection, caller: Caller, query: ListQuery, base: str, user_name: str
) -> Page:
    """The at most one user with this userName: one indexed look-up, no count query."""
    # As stored with its groups (what a plain look-up asks for), the groups come in the row.
    in_row = query.as_stored and query.with_members
    if in_row:
        statement = _BY_NAME_TEXT_WITH_GROUPS[conn.dialect.name]
    else:
        statement = _BY_NAME_TEXT if query.as_stored else _BY_NAME
    row = statement.first(conn, b_ws=caller.workspace_pk, b_key=user_name.lower())
    paged = query.after is not None
    if row is None:
        return Page(0, 1, [], cursor=paged)
    if query.count == 0:
        return Page(1, 1, [], cursor=paged)
    member_of: list[tuple[str, str]] | None
    if in_row:
        member_of = _member_of(row)
    else:
        member_of = _groups_of_one(conn, row.pk) if query.with_members else None
    show = render_raw if query.as_stored else render
    return Page(1, 1, [show(row, base, member_of)], cursor=paged)


def _save(
    conn: Connection,
    caller: Caller,
    row: Any,
    doc: JSON,
    active: bool | None,
    base: str,
    provisioning: Provisioning,
    action: str,
    unknown: Collection[str],
) -> Outcome:
    """Store the user's new document; one that changes nothing is not written (`none`).

    `unknown`: what `canonicalise` noted of `doc` (`extensions.record`).

    An IdP re-sending what is stored (Okta pushes the whole profile with PUT) then neither moves
    the version and `lastModified` nor writes the user, its card or an audit row.
    """
    doc = extensions.respelled(conn, caller.workspace_pk, USER_TYPE, doc)
    if doc == row.data and active == row.active:
        resource = render(row, base, _groups_of_loaded(conn, row))
        return Outcome(resource, row.version, "none")
    cols, kept = _columns(doc), _columns(row.data)
    if cols["user_name_key"] != kept["user_name_key"]:
        _claim_name(conn, caller, row.pk, doc["userName"], cols["user_name_key"])
    now = now_us()
    version = row.version + 1
    values = {"b_pk": row.pk, "b_data": doc, "b_active": active, "b_version": version, "b_now": now}
    if cols == kept:
        _SAVE.run(conn, **values)
    else:
        try:
            _SAVE_NAMES.run(
                conn,
                **values,
                b_name=cols["user_name"],
                b_key=cols["user_name_key"],
                b_ext=cols["external_id"],
            )
        except IntegrityError as exc:  # a create or rename took the name since it was checked
            raise _taken(doc["userName"], None) from exc
    _index_emails(conn, caller.workspace_pk, row.pk, email_keys(row.data), doc)
    extensions.record(conn, caller.workspace_pk, USER_TYPE, doc, row.data, unknown)
    before = {**row.data, "active": row.active}
    changed = audit.changed_attributes(before, {**doc, "active": active})
    _audit(conn, caller, row.id, action, {"attributes": changed})
    stored = _Stored(row.pk, row.id, doc, active, version, row.created, now)
    resource = render(stored, base, _groups_of_loaded(conn, row))
    was_active, is_active = row.active is not False, active is not False
    event: UserEvent = "updated"
    if was_active and not is_active:
        event = "deprovisioned"
    elif is_active and not was_active:
        event = "reactivated"
    readdressed = "emails" in changed or "userName" in changed
    events = user_written(
        conn, caller, row.pk, resource, event, provisioning, readdressed=readdressed
    )
    return Outcome(resource, version, event, events)


def _claim_name(conn: Connection, caller: Caller, pk: int, user_name: str, key: str) -> None:
    """Make sure a renamed user's new userName is free (a deleted user's name is)."""
    clash = _SAME_NAME.first(conn, b_ws=caller.workspace_pk, b_key=key)
    if clash is None or clash.pk == pk:
        return
    if not clash.deleted:
        raise _taken(user_name, clash.name)
    # Free the deleted user's key so the unique index allows the rename; only while it is
    # deleted: a create may bring it back meanwhile (PostgreSQL), and its name is then taken.
    freed = conn.execute(
        update(users)
        .where(users.c.pk == clash.pk, users.c.deleted.is_(True))
        .values(user_name_key=users.c.id + ":" + users.c.user_name_key)
    )
    if freed.rowcount != 1:
        raise _taken(user_name, None)


def replace(
    conn: Connection,
    caller: Caller,
    user_id: str,
    body: JSON,
    base: str,
    if_match: Precondition = None,
    provisioning: Provisioning = _PLAIN,
) -> Outcome:
    """Replace a user (RFC 7644 §3.5.1); attributes in `unmanaged` keep their stored value.

    An `id` in the body is ignored, whatever it says, as every readOnly value is (§3.5.1).

    Raises:
        NotFound, PreconditionFailed, Uniqueness, InvalidValue, Mutability.
    """
    row = _load(conn, caller, user_id, write=True)
    check_if_match(row.version, if_match)
    unknown: list[str] = []
    incoming = canonicalise(body, USER_TYPE, unknown=unknown)
    existing = dict(row.data)
    if row.active is not None:
        existing["active"] = row.active
    # A PUT without `active` leaves it as it was: no IdP means "deactivate" by omission.
    merged = merge_put(existing, incoming, USER_TYPE, provisioning.unmanaged)
    doc, active = _split(with_manager_ref(merged, base), row.active)
    required_missing(doc, USER_TYPE)
    return _save(conn, caller, row, doc, active, base, provisioning, "replace", unknown)


def patch(
    conn: Connection,
    caller: Caller,
    user_id: str,
    operations: list[Any],
    base: str,
    if_match: Precondition = None,
    max_operations: int = 1000,
    provisioning: Provisioning = _PLAIN,
) -> Outcome:
    """Apply a PatchOp to a user (RFC 7644 §3.5.2), all operations or none.

    Raises:
        NotFound, PreconditionFailed, Uniqueness, InvalidValue, InvalidPath, NoTarget, Mutability.
    """
    row = _load(conn, caller, user_id, write=True)
    check_if_match(row.version, if_match)
    current = dict(row.data)
    if row.active is not None:
        current["active"] = row.active
    operations = without_own_id(operations, row.id)
    patched = apply_patch(
        current,
        operations,
        USER_TYPE,
        max_operations=max_operations,
        described=partial(extensions.describes, conn, caller.workspace_pk, USER_TYPE),
        undefined=partial(extensions.undefined_type, conn, caller.workspace_pk, USER_TYPE),
    )
    unknown: list[str] = []
    doc, active = _split(
        with_manager_ref(canonicalise(patched, USER_TYPE, current, unknown), base), None
    )
    required_missing(doc, USER_TYPE, patched=True)
    return _save(conn, caller, row, doc, active, base, provisioning, "patch", unknown)


_END_MEMBERSHIPS = Prepared(delete(memberships).where(memberships.c.user_pk == bindparam("b_pk")))
#: The groups a deleted user leaves show one member fewer: a new version and lastModified for
#: each (RFC 7644 §3.14), so no client keeps a cached copy that still lists the user.
_GROUPS_LOSE_MEMBER = Prepared(
    update(groups)
    .where(
        groups.c.pk.in_(
            select(memberships.c.group_pk).where(memberships.c.user_pk == bindparam("b_pk"))
        )
    )
    .values(version=groups.c.version + 1, modified=bindparam("b_now"))
)
_MARK_DELETED = Prepared(
    update(users)
    .where(users.c.pk == bindparam("b_pk"))
    .values(deleted=True, active=False, version=bindparam("b_version"), modified=bindparam("b_now"))
)


def remove(
    conn: Connection,
    caller: Caller,
    user_id: str,
    if_match: Precondition = None,
    provisioning: Provisioning = _PLAIN,
    base: str = "",
) -> Outcome:
    """DELETE a user (RFC 7644 §3.6): it answers 404 from now on, but is kept, inactive.

    Group memberships end, and each group it was in gets a new version; a later create of the
    same userName brings the user back.

    Raises:
        NotFound, PreconditionFailed.
    """
    lock_memberships(conn, caller.workspace_pk)  # before the user's row: see its docstring
    row = _load(conn, caller, user_id, lock=True)
    check_if_match(row.version, if_match)
    now = now_us()
    _GROUPS_LOSE_MEMBER.run(conn, b_pk=row.pk, b_now=now)
    _END_MEMBERSHIPS.run(conn, b_pk=row.pk)
    _MARK_DELETED.run(conn, b_pk=row.pk, b_version=row.version + 1, b_now=now)
    _audit(conn, caller, row.id, "delete", {})
    resource = render(row, base, None)
    events = user_written(conn, caller, row.pk, resource, "deleted", provisioning)
    return Outcome(resource, row.version + 1, "deleted", events)
