"""Groups over SCIM (RFC 7643 §4.2, RFC 7644 §3.3-§3.6); members are users of the same workspace.

Membership lives in its own table, so a PATCH that adds or removes members (what Entra ID and
Okta send, often hundreds at a time) is a set of row inserts and deletes, never a rewrite of the
whole member list; every other attribute goes through the generic PATCH engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import partial
from typing import Any, NamedTuple, overload

import msgspec
from sqlalchemy import (
    Connection,
    Integer,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.types import NullType

import rules
from hub.core import audit, extensions
from hub.core.attributes import (
    MAX_KEY_LENGTH,
    bounded,
    canonicalise,
    merge_put,
    required_missing,
)
from hub.core.clock import now_us, to_iso
from hub.core.errors import (
    InvalidFilter,
    InvalidPath,
    InvalidValue,
    Mutability,
    NoTarget,
    NotFound,
    ScimError,
    Uniqueness,
)
from hub.core.filtering import compile_member_filter
from hub.core.ids import new_id
from hub.core.models import groups, memberships, users, workspaces
from hub.core.patch import apply_patch, without_own_id
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
from hub.core.schema import GROUP_TYPE
from hub.core.sql import Prepared, PreparedInsert, fixed_in, fixed_in_params
from hub.core.tokens import Caller

_COLUMNS = (
    groups.c.pk,
    groups.c.id,
    groups.c.data,
    groups.c.version,
    groups.c.created,
    groups.c.modified,
)

Member = tuple[str, str | None]  # (user id, display as the client sent it)


class _Matching(NamedTuple):
    """A PATCH path `members[filter]` other than `value eq` ones: the members it selects.

    `value` is a replace's value (the members to put in their place); a remove has none.
    """

    filter: rules.Filter
    path: str
    value: list[Member]


#: What one membership operation names: listed members, those a filter selects, or (None) all.
_Named = list[Member] | _Matching | None


def render(row: Any, base: str, members: Sequence[Member] | None) -> JSON:
    """Render a stored group as its SCIM resource (RFC 7643 §4.2)."""
    data: JSON = row.data
    resource: JSON = {"schemas": data.get("schemas", [GROUP_TYPE.schema.id]), "id": row.id}
    resource.update(data)
    if members:
        resource["members"] = [_member(base, uid, display) for uid, display in members]
    resource["meta"] = {
        "resourceType": "Group",
        "created": to_iso(row.created),
        "lastModified": to_iso(row.modified),
        "location": f"{base}/Groups/{row.id}",
        "version": etag(row.version),
    }
    return resource


def _member(base: str, user_id: str, display: str | None) -> JSON:
    member: JSON = {"value": user_id, "$ref": f"{base}/Users/{user_id}", "type": "User"}
    if display is not None:
        member["display"] = display
    return member


_MEMBERS_OF_ONE = Prepared(
    select(users.c.id, memberships.c.display)
    .join(users, users.c.pk == memberships.c.user_pk)
    .where(memberships.c.group_pk == bindparam("b_pk"), users.c.deleted.is_(False))
    .order_by(memberships.c.user_pk)  # the primary key's order: no sort
)


#: A group's members after a user pk, `b_limit` of them: a large group read a batch at a time.
_MEMBERS_AFTER = Prepared(
    select(users.c.id, memberships.c.display, memberships.c.user_pk)
    .join(users, users.c.pk == memberships.c.user_pk)
    .where(
        memberships.c.group_pk == bindparam("b_pk"),
        memberships.c.user_pk > bindparam("b_after"),
        users.c.deleted.is_(False),
    )
    .order_by(memberships.c.user_pk)
    .limit(bindparam("b_limit", type_=Integer))
)


def _members_of_one(conn: Connection, group_pk: int, limit: int | None = None) -> list[Member]:
    """The group's members; with `limit`, at most `limit + 1` of them (enough to see it is over)."""
    if limit is None:
        rows = _MEMBERS_OF_ONE.all(conn, b_pk=group_pk)
    else:
        rows = _MEMBERS_AFTER.all(conn, b_pk=group_pk, b_after=0, b_limit=limit + 1)
    return [(row.id, row.display) for row in rows]


#: Members read and rendered at a time when a large group is sent in pieces (`member_batches`).
MEMBER_BATCH = 1_000


def member_batches(conn: Connection, group_pk: int, base: str) -> Iterator[list[JSON]]:
    """The group's members as `render` shows them, in its order, `MEMBER_BATCH` at a time.

    Each batch is a keyset read after the last one's user: inside one transaction that keeps
    its snapshot (`Database.stream`), the batches are the members `render` would show.
    """
    size, after = MEMBER_BATCH, 0
    while True:
        rows = _MEMBERS_AFTER.all(conn, b_pk=group_pk, b_after=after, b_limit=size)
        if rows:
            yield [_member(base, row.id, row.display) for row in rows]
        if len(rows) < size:
            return
        after = rows[-1].user_pk


def render_around_members(row: Any, base: str, members: Any) -> JSON:
    """`render` of a group with `members` (any value) where its member list goes."""
    resource = render(row, base, [("", None)])
    resource["members"] = members
    return resource


def _members_of(
    conn: Connection, group_pks: Sequence[int], limit: int | None = None
) -> dict[int, list[Member]] | None:
    """The members of the groups by group pk; None when they are more than `limit`."""
    result: dict[int, list[Member]] = {}
    if not group_pks:
        return result
    if len(group_pks) == 1:
        (pk,) = group_pks
        members = _members_of_one(conn, pk, limit)
        if limit is not None and len(members) > limit:
            return None
        return {pk: members} if members else result
    statement = (
        select(memberships.c.group_pk, users.c.id, memberships.c.display)
        .join(users, users.c.pk == memberships.c.user_pk)
        .where(memberships.c.group_pk.in_(group_pks), users.c.deleted.is_(False))
        .order_by(memberships.c.group_pk, memberships.c.user_pk)
    )
    if limit is not None:
        # One row past the limit says the page is over it, without reading the rest.
        statement = statement.limit(limit + 1)
    rows = conn.execute(statement).all()
    if limit is not None and len(rows) > limit:
        return None
    for group_pk, user_id, display in rows:
        result.setdefault(group_pk, []).append((user_id, display))
    return result


_BY_ID = (groups.c.workspace_pk == bindparam("b_ws"), groups.c.id == bindparam("b_id"))
_LOAD = Prepared(select(*_COLUMNS).where(*_BY_ID))
_LOAD_FOR_UPDATE = Prepared(select(*_COLUMNS).where(*_BY_ID).with_for_update())
_LOAD_PK = Prepared(select(*_COLUMNS).where(groups.c.pk == bindparam("b_pk")))


#: The PostgreSQL advisory lock (class, workspace pk) of a workspace's membership writes.
_MEMBERSHIPS_LOCK_CLASS = 0x5C1B
_LOCK_MEMBERSHIPS = Prepared(
    select(
        func.pg_advisory_xact_lock(
            literal(_MEMBERSHIPS_LOCK_CLASS, Integer), bindparam("b_ws", type_=Integer)
        )
    )
)


def lock_memberships(conn: Connection, workspace_pk: int) -> None:
    """Take the workspace's membership lock until the transaction ends (PostgreSQL only).

    Every write that may start or end memberships (a group's create with members, PUT,
    PATCH and DELETE, a user's DELETE) takes it before any row lock. They lock a group and
    the users joining or leaving it in whatever order their request lists them, so two of them
    sharing users, or a group's writer and a DELETE of its member, deadlocked on a two-worker
    server (PostgreSQL picked a victim after its deadlock_timeout, and under load requests
    waited so long for connections that they answered 503). SQLite runs one write at a time
    already; on PostgreSQL these writes of one workspace now do too, as they commit in
    milliseconds, while other workspaces and every other write run beside them.
    """
    if conn.dialect.name == "postgresql":
        _LOCK_MEMBERSHIPS.all(conn, b_ws=workspace_pk)


def _load(conn: Connection, caller: Caller, group_id: str, *, lock: bool = False) -> Any:
    if lock:
        lock_memberships(conn, caller.workspace_pk)
    statement = _LOAD_FOR_UPDATE if lock else _LOAD
    row = statement.first(conn, b_ws=caller.workspace_pk, b_id=group_id)
    if row is None:
        raise NotFound(f"no Group with id {group_id!r}")
    return row


def _member_ids(value: Any) -> list[Member]:
    """The (user id, display) pairs of a `members` value (a list of {"value": id} objects).

    The ids come lowered, as the hub writes them (RFC 7643 §8.7.1: `value` is caseExact=false).
    """
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidValue("members must be objects with a 'value' holding a User id")
        member = {k.lower(): v for k, v in item.items()}
        member_type = member.get("type")
        if member_type is not None and str(member_type).lower() != "user":
            raise InvalidValue(f"members of type {member_type!r} are not supported; only User")
        member_id = member.get("value")
        if not isinstance(member_id, str) or not member_id:
            raise InvalidValue("each member needs a 'value' holding a User id")
        display = member.get("display")
        # readOnly (RFC 7643 §4.2), echoed when it fits its column, else ignored (§3.5.1).
        fits = isinstance(display, str) and len(display) <= MAX_KEY_LENGTH
        # `value` is caseExact=false (RFC 7643 §8.7.1) and `new_id` writes ids in lower case:
        # lowered, an id in any letters is the user's own, looked up, stored and rendered as
        # the hub's, and two spellings of one user are one member (as `_filtered_member_ids`).
        ids.append((member_id.lower(), display if fits else None))
    return ids


def _user_pks(
    conn: Connection, caller: Caller, members: Sequence[Member]
) -> list[tuple[int, str | None]]:
    """Resolve user ids of the caller's workspace; an unknown id is an error (RFC 7644 §3.12)."""
    displays = dict(members)
    wanted = list(displays)
    if not wanted:
        return []
    found = dict(_ids_to_pks(conn, caller, wanted, live=True))
    missing = [uid for uid in wanted if uid not in found]
    if missing:
        raise InvalidValue(f"members refer to unknown User ids: {', '.join(missing[:5])}")
    return [(found[uid], displays[uid]) for uid in wanted]


#: User ids one `_USERS_BY_ID` resolves (a fixed `IN` list, padded with the id ""). The id alone
#: is in the WHERE clause (ids are unique across workspaces): given the workspace too, SQLite
#: picks the workspace's index for a long IN list and scans every user of it.
_IDS_CHUNK = 100
_USERS_BY_ID_SELECT = select(users.c.id, users.c.pk, users.c.workspace_pk, users.c.deleted).where(
    fixed_in(users.c.id, _IDS_CHUNK)
)
_USERS_BY_ID = Prepared(_USERS_BY_ID_SELECT)
#: The users a membership is about to name, read FOR SHARE on PostgreSQL: a DELETE of one of
#: them (which locks its row FOR UPDATE) either ends before, and the user is seen deleted, or
#: waits for this transaction and then ends the new membership too. Read without the lock, the
#: membership of a user deleted meanwhile was kept, hidden, and came back when the user did.
_LIVE_USERS_BY_ID = Prepared(_USERS_BY_ID_SELECT.with_for_update(read=True))


def _pg_array(name: str, item: Any) -> Any:
    """The bind parameter `name`, a list, as a PostgreSQL array of `item`.

    Cast in SQL, the parameter untyped: ARRAY's bind processor would keep the statement off the
    raw driver path (`Prepared`), and asyncpg encodes a list for the array type itself.
    """
    return cast(bindparam(name, type_=NullType()), ARRAY(item))


#: PostgreSQL: `_USERS_BY_ID` and `_LIVE_USERS_BY_ID` of any number of ids, an array `b_ids`.
_USERS_BY_IDS_SELECT = select(users.c.id, users.c.pk, users.c.workspace_pk, users.c.deleted).where(
    users.c.id == any_(_pg_array("b_ids", Text))
)
_USERS_BY_IDS = {
    False: {"postgresql": Prepared(_USERS_BY_IDS_SELECT)},
    True: {"postgresql": Prepared(_USERS_BY_IDS_SELECT.with_for_update(read=True))},
}


def _ids_to_pks(
    conn: Connection, caller: Caller, ids: Sequence[str], *, live: bool
) -> list[tuple[str, int]]:
    """(id, pk) of the listed users of the caller's workspace; `live` skips deleted ones.

    `live` is for users about to become members: their rows are read FOR SHARE. On PostgreSQL,
    more ids than one `IN` list holds are one statement over an array: 20,000 ids took 200
    round trips (0.27 s).
    """
    if conn.dialect.name == "postgresql" and len(ids) > _IDS_CHUNK:
        rows = _USERS_BY_IDS[live]["postgresql"].all(conn, b_ids=list(ids))
        # In the order asked, as the audit lists a remove's members: the plan's order (a scan
        # of the table, or of the index) is not the order of the ids.
        position = {uid: i for i, uid in enumerate(ids)}
        rows.sort(key=lambda row: position[row.id])
    else:
        statement = _LIVE_USERS_BY_ID if live else _USERS_BY_ID
        rows = [
            row
            for params in fixed_in_params(ids, _IDS_CHUNK, "")
            for row in statement.all(conn, **params)
        ]
    return [
        (row.id, row.pk)
        for row in rows
        if row.workspace_pk == caller.workspace_pk and not (live and row.deleted)
    ]


def _add_statement(insert: Any) -> Prepared:
    values: dict[str, Any] = {
        "group_pk": bindparam("b_group"),
        "user_pk": bindparam("b_user"),
        "display": bindparam("b_display"),
    }
    return Prepared(insert(memberships).values(**values).on_conflict_do_nothing())


_ADD_MEMBER = {"sqlite": _add_statement(sqlite_insert), "postgresql": _add_statement(pg_insert)}


def _add_members(
    conn: Connection, group_pk: int, members: Sequence[tuple[int, str | None]]
) -> None:
    """Make the users members (none of them is one yet); each gets a new version.

    On PostgreSQL, more than one member is one INSERT over arrays of user pks and displays
    (`_ADD_EACH`), and one UPDATE of their users: a statement per member took 2.8 s for 20,000.
    """
    if not members:
        return
    if conn.dialect.name == "postgresql" and len(members) > 1:
        user_pks = [pk for pk, _ in members]
        displays = [display for _, display in members]
        _ADD_EACH["postgresql"].run(conn, b_group=group_pk, b_users=user_pks, b_displays=displays)
        _touch_users(conn, user_pks)
        return
    rows = [{"b_group": group_pk, "b_user": pk, "b_display": display} for pk, display in members]
    _ADD_MEMBER[conn.dialect.name].run_many(conn, rows)
    _touch_users(conn, [pk for pk, _ in members])


#: One membership ended by its whole key. Ending listed memberships as `group_pk = … AND user_pk
#: IN (…)` read every member of the group on PostgreSQL, whose planner, with statistics taken
#: while the group was small, preferred the key's first column: 2,200 index entries to remove 100
#: members of a group of 2,000.
_REMOVE_MEMBER = Prepared(
    delete(memberships).where(
        memberships.c.group_pk == bindparam("b_group"),
        memberships.c.user_pk == bindparam("b_user"),
    )
)


def _remove_members(conn: Connection, group_pk: int, user_pks: Sequence[int] | None) -> int:
    """End the listed memberships (None: every one); return how many there were.

    The users leaving get a new version; `user_pks` must all be members.
    """
    if user_pks is None:
        _touch_members(conn, group_pk)
        stmt = delete(memberships).where(memberships.c.group_pk == group_pk)
        return int(conn.execute(stmt).rowcount)
    if conn.dialect.name == "postgresql" and len(user_pks) > SHORT_UNIT_MEMBERS:
        # Past what Entra ID and Okta send in one PATCH, one statement for all (`_remove_each`)
        # beats one per member, even should it read the group's whole key range.
        _remove_each(conn, group_pk, user_pks)
        return len(user_pks)
    _touch_users(conn, user_pks)
    _REMOVE_MEMBER.run_many(conn, [{"b_group": group_pk, "b_user": pk} for pk in user_pks])
    return len(user_pks)


#: A user's `groups` is part of it: a membership that starts or ends, or a group renamed, gives
#: each user concerned a new version and `lastModified` (RFC 7644 §3.14: the ETag must change
#: with the representation, or `If-None-Match` answers 304 over stale groups).
_USER_CHANGED = {"version": users.c.version + 1, "modified": bindparam("b_now")}
_TOUCH_USER = Prepared(update(users).where(users.c.pk == bindparam("b_user")).values(_USER_CHANGED))
_TOUCH_MEMBERS = Prepared(
    update(users)
    .where(
        users.c.pk.in_(
            select(memberships.c.user_pk).where(memberships.c.group_pk == bindparam("b_group"))
        )
    )
    .values(_USER_CHANGED)
)


def _users_array() -> Any:
    """`= ANY` of the bind parameter `b_users`, a list of user pks, as PostgreSQL's INTEGER[]."""
    return any_(_pg_array("b_users", Integer))


#: PostgreSQL: the memberships of one group ended, and their users touched, by a list of user
#: pks in one statement each (`_remove_each`); kept by dialect, as `_PRESENT_EACH`: the
#: statements are PostgreSQL's alone (INTEGER[]).
_REMOVE_EACH = {
    "postgresql": Prepared(
        delete(memberships).where(
            memberships.c.group_pk == bindparam("b_group"), memberships.c.user_pk == _users_array()
        )
    )
}
_TOUCH_EACH = {
    "postgresql": Prepared(update(users).where(users.c.pk == _users_array()).values(_USER_CHANGED))
}


def _each_member() -> Any:
    """The rows (pk, display) of the arrays `b_users` and `b_displays`, side by side."""
    return (
        func.unnest(_pg_array("b_users", Integer), _pg_array("b_displays", Text))
        .table_valued("pk", "display")
        .render_derived(name="each_member")
    )


def _add_each() -> Prepared:
    """PostgreSQL: the memberships of group `b_group` for the users and displays of the arrays."""
    each = _each_member()
    # Cast in SQL: in a select list, an untyped parameter would be text.
    group = cast(bindparam("b_group", type_=NullType()), Integer)
    rows = select(group, each.c.pk, each.c.display)
    return Prepared(
        pg_insert(memberships)
        .from_select(["group_pk", "user_pk", "display"], rows)
        .on_conflict_do_nothing()
    )


#: kept by dialect, as `_PRESENT_EACH`: PostgreSQL's alone (unnest, arrays)
_ADD_EACH = {"postgresql": _add_each()}


def _redisplay_each() -> Prepared:
    """PostgreSQL: the displays of group `b_group`'s members, by the arrays' user pk."""
    each = _each_member()
    return Prepared(
        update(memberships)
        .where(memberships.c.group_pk == bindparam("b_group"), memberships.c.user_pk == each.c.pk)
        .values(display=each.c.display)
    )


_REDISPLAY_EACH = {"postgresql": _redisplay_each()}


def _redisplay(conn: Connection, group_pk: int, displays: dict[int, str | None]) -> None:
    """Set the display of the group's members `displays` names (user pk -> display)."""
    if conn.dialect.name == "postgresql" and len(displays) > 1:
        _REDISPLAY_EACH["postgresql"].run(
            conn, b_group=group_pk, b_users=list(displays), b_displays=list(displays.values())
        )
        return
    _REDISPLAY.run_many(
        conn, [{"b_group": group_pk, "b_user": pk, "b_display": d} for pk, d in displays.items()]
    )


def _remove_matched(conn: Connection, group_pk: int, user_pks: Sequence[int]) -> None:
    """`_remove_members` of members a filter read from the group (`_matching_members`).

    On PostgreSQL, one statement ends them all and one touches their users: a statement per
    member (`_remove_members`) took 3.4 s to remove 20,000, these ~1 s, about what removing
    every member costs (0.8 s). The delete may read the group's whole key range, as the filter
    that found them just did.
    """
    if conn.dialect.name == "postgresql" and len(user_pks) > 1:
        _remove_each(conn, group_pk, user_pks)
    else:
        _remove_members(conn, group_pk, user_pks)


def _remove_each(conn: Connection, group_pk: int, user_pks: Sequence[int]) -> None:
    """PostgreSQL: end the memberships of the users (more than one) in one statement."""
    _touch_users(conn, user_pks)
    _REMOVE_EACH["postgresql"].run(conn, b_group=group_pk, b_users=list(user_pks))


def _touch_users(conn: Connection, user_pks: Sequence[int]) -> None:
    """Give the users (distinct pks) a new version: on PostgreSQL, one UPDATE for more than one."""
    now = now_us()
    if conn.dialect.name == "postgresql" and len(user_pks) > 1:
        _TOUCH_EACH["postgresql"].run(conn, b_users=list(user_pks), b_now=now)
        return
    _TOUCH_USER.run_many(conn, [{"b_user": pk, "b_now": now} for pk in user_pks])


def _touch_members(conn: Connection, group_pk: int) -> None:
    _TOUCH_MEMBERS.run(conn, b_group=group_pk, b_now=now_us())


_MEMBERSHIPS = Prepared(
    select(memberships.c.user_pk, memberships.c.display).where(
        memberships.c.group_pk == bindparam("b_group")
    )
)


def _memberships_of(conn: Connection, group_pk: int) -> dict[int, str | None]:
    """The group's memberships as user pk -> display, what a PUT's member list resolves to."""
    return {row.user_pk: row.display for row in _MEMBERSHIPS.all(conn, b_group=group_pk)}


_REDISPLAY = Prepared(
    update(memberships)
    .where(
        memberships.c.group_pk == bindparam("b_group"),
        memberships.c.user_pk == bindparam("b_user"),
    )
    .values(display=bindparam("b_display"))
)


def _too_many_members(limit: int) -> InvalidValue:
    return InvalidValue(f"at most {limit} members may change in one PATCH request")


class _Replaced(NamedTuple):
    """What a replace of the members changed: the user pks that joined, left, or got a display."""

    joined: list[int]
    gone: list[int]
    redisplayed: list[int]

    def changed(self) -> bool:
        return bool(self.joined or self.gone or self.redisplayed)


def _replace_members(
    conn: Connection,
    group_pk: int,
    members: Sequence[tuple[int, str | None]],
    max_changes: int | None = None,
    changed_elsewhere: int = 0,
) -> _Replaced:
    """Make `members` (user pk, display) the group's members; say what changed.

    Only the users who join or leave get a new version: one who stays has the same `groups`,
    and a new ETag would cost an IdP that sends `If-Match` a needless 412.

    Raises:
        InvalidValue: more than `max_changes` users would join or leave, with the
            `changed_elsewhere` of the same request (nothing is written).
    """
    current = _memberships_of(conn, group_pk)
    wanted = dict(members)
    gone = [pk for pk in current if pk not in wanted]
    joining = [(pk, display) for pk, display in wanted.items() if pk not in current]
    if max_changes is not None and changed_elsewhere + len(gone) + len(joining) > max_changes:
        raise _too_many_members(max_changes)
    redisplayed = [pk for pk, display in wanted.items() if pk in current and current[pk] != display]
    _remove_members(conn, group_pk, gone)
    _add_members(conn, group_pk, joining)
    _redisplay(conn, group_pk, {pk: wanted[pk] for pk in redisplayed})
    return _Replaced([pk for pk, _ in joining], gone, redisplayed)


def _replaced_ops(
    conn: Connection, replaced: _Replaced, ids: dict[int, str]
) -> list[tuple[str, list[Member] | None]]:
    """A replace as the members it added, removed and redisplayed, for the audit record.

    Recording the whole new list made each push of a large group's membership (Okta sends
    them as a PUT or a `members` replace) write every member's id, ~45 bytes a member, into
    the audit trail, however few changed. `ids`: user pk -> id of the users listed.
    """
    unlisted = [pk for pk in replaced.gone if pk not in ids]
    ids = {**ids, **_ids_of(conn, unlisted)}
    changes = zip(("add", "remove", "redisplay"), replaced, strict=True)
    return [(op, [(ids[pk], None) for pk in pks]) for op, pks in changes if pks]


_IDS_OF = Prepared(select(users.c.pk, users.c.id).where(fixed_in(users.c.pk, _IDS_CHUNK)))


def _ids_of(conn: Connection, user_pks: Sequence[int]) -> dict[int, str]:
    """The ids of users by pk (0 is no user's pk: the lists' padding)."""
    found: dict[int, str] = {}
    for params in fixed_in_params(user_pks, _IDS_CHUNK, 0):
        found.update((row.pk, row.id) for row in _IDS_OF.all(conn, **params))
    return found


#: Which of some users are a group's members already: one of them, or up to `_IDS_CHUNK`
#: (more than one on PostgreSQL: `_PRESENT_EACH`).
_PRESENT = {
    size: Prepared(
        select(memberships.c.user_pk).where(
            memberships.c.group_pk == bindparam("b_group"), fixed_in(memberships.c.user_pk, size)
        )
    )
    for size in (1, _IDS_CHUNK)
}


def _probe_each() -> Prepared:
    """PostgreSQL: which of the users `b_users` (an array) are members of group `b_group`.

    One look-up of the primary key per user, whatever the planner believes of the group's size.
    As `group_pk = … AND user_pk IN (…)` (`_PRESENT`), a plan made while the group was small, or
    before any statistics, read every member of the group and kept those listed: in a group of
    50,000, 50 ms for each 100 users, so a PATCH adding 1,000 members took 0.6 s and Okta's
    push of a large group grew with it. A LATERAL subquery with a LIMIT is never turned into a
    join, so it runs once per user, on the key (group_pk, user_pk).
    """
    asked = (
        func.unnest(_pg_array("b_users", Integer)).table_valued("pk").render_derived(name="asked")
    )
    member = (
        select(memberships.c.user_pk)
        .where(memberships.c.group_pk == bindparam("b_group"), memberships.c.user_pk == asked.c.pk)
        .limit(literal_column("1", Integer))
        .lateral("member")
    )
    return Prepared(select(member.c.user_pk).select_from(asked).join(member, true()))


#: kept by dialect, as `_ADD_MEMBER`: the statement is PostgreSQL's alone (unnest, INTEGER[])
_PRESENT_EACH = {"postgresql": _probe_each()}


def _present(conn: Connection, group_pk: int, user_pks: Sequence[int]) -> set[int]:
    """The members of the group among `user_pks` (0 is no user's pk: the lists' padding)."""
    if len(user_pks) > 1 and conn.dialect.name == "postgresql":
        rows = _PRESENT_EACH["postgresql"].all(conn, b_group=group_pk, b_users=list(user_pks))
        return {row.user_pk for row in rows}
    size = 1 if len(user_pks) == 1 else _IDS_CHUNK
    found: set[int] = set()
    for params in fixed_in_params(user_pks, size, 0):
        found.update(row.user_pk for row in _PRESENT[size].all(conn, b_group=group_pk, **params))
    return found


def _split_members(body: JSON) -> tuple[JSON, list[Member] | None]:
    """Take `members` out of a POST or PUT body before it is canonicalised.

    Canonicalising drops every readOnly value, a member's `display` among them; taken out first,
    each member keeps the display it was sent with, as a PATCH adding it keeps it, so a group
    PUT back as a GET showed it changes nothing.
    """
    if not isinstance(body, dict):
        return body, None  # `canonicalise` says what is wrong with it
    keys = [key for key in body if key.lower() in _MEMBERS_KEYS]
    if not keys:
        return body, None
    if len(keys) > 1:
        raise InvalidValue(f"members is given twice: {', '.join(map(repr, keys))}")
    rest = {key: value for key, value in body.items() if key != keys[0]}
    members = body[keys[0]]
    if members is not None and not isinstance(members, list):
        raise InvalidValue(f"{keys[0]!r} is multi-valued and must be a list")
    # Unassigned elements (null, {}) are dropped, as at any depth of a resource (RFC 7643 §2.5).
    return rest, _member_ids([m for m in members or () if m is not None and m != {}])


_INSERT = PreparedInsert(
    groups.insert().values(
        id=bindparam("b_id"),
        workspace_pk=bindparam("b_ws"),
        connector_pk=bindparam("b_connector"),
        data=bindparam("b_data", type_=groups.c.data.type),
        version=1,
        created=bindparam("b_now"),
        modified=bindparam("b_now"),
        display_name=bindparam("b_name"),
        display_name_key=bindparam("b_name_key"),
        external_id=bindparam("b_external"),
    ),
    groups.c.pk,
    json_params=("b_data",),
)


def create(conn: Connection, caller: Caller, body: JSON, base: str) -> Outcome:
    """Create a group with its members (RFC 7644 §3.3).

    Raises:
        InvalidValue: not a valid Group, or a member is not a user of this workspace.
        Uniqueness: another group of the workspace has this displayName (in any case).
    """
    rest, member_ids = _split_members(body)
    unknown: list[str] = []
    doc = canonicalise(rest, GROUP_TYPE, unknown=unknown)
    required_missing(doc, GROUP_TYPE)
    doc = extensions.respelled(conn, caller.workspace_pk, GROUP_TYPE, doc)
    if member_ids:
        lock_memberships(conn, caller.workspace_pk)
    user_pks = _user_pks(conn, caller, member_ids or [])
    now = now_us()
    group_id = new_id()
    columns = _columns(doc)
    _claim_name(conn, caller.workspace_pk, columns, 0)
    pk = _INSERT.run(
        conn,
        b_id=group_id,
        b_ws=caller.workspace_pk,
        b_connector=caller.connector_pk,
        b_data=doc,
        b_now=now,
        b_name=columns["display_name"],
        b_name_key=columns["display_name_key"],
        b_external=columns["external_id"],
    )
    _add_members(conn, pk, user_pks)
    extensions.record(conn, caller.workspace_pk, GROUP_TYPE, doc, unknown=unknown)
    changes = {"attributes": sorted(doc), "members_added": _ids(member_ids)}
    _audit(conn, caller, group_id, "create", changes)
    return _outcome(conn, pk, base, "provisioned", with_members=True)


def _audit(
    conn: Connection, caller: Caller, group_id: str, action: str, changes: dict[str, Any]
) -> None:
    audit.by_connector(conn, caller, "Group", group_id, action, changes)


def _ids(members: Sequence[Member] | None) -> list[str]:
    return [uid for uid, _ in members or ()]


#: Name changes of one workspace's groups take turns on its row: FOR NO KEY UPDATE on PostgreSQL
#: (it does not wait for the key-share locks every insert's foreign key takes on the row);
#: SQLite's single writer already serialises them.
_NAME_TURN = Prepared(
    select(workspaces.c.pk)
    .where(workspaces.c.pk == bindparam("b_ws"))
    .with_for_update(key_share=True)
)
_NAMED = Prepared(
    select(groups.c.id)
    .where(
        groups.c.workspace_pk == bindparam("b_ws"),
        groups.c.display_name_key == bindparam("b_key"),
        groups.c.pk != bindparam("b_own"),
    )
    .limit(1)
)


def _claim_name(conn: Connection, workspace_pk: int, columns: dict[str, Any], own: int) -> None:
    """Refuse a displayName another group of the workspace has, in any case.

    Not an RFC 7643 rule (a Group's displayName has no uniqueness), but Microsoft Entra ID's: it
    matches groups by `displayName eq`, so a second group of one name (a POST retried after a
    timeout) leaves it two matches and no way to pick. `own` is the renamed group's key (0 for
    a new one). Groups that already shared a name keep it; only new clashes are refused.

    Raises:
        Uniqueness: the name is taken (409, RFC 7644 §3.3).
    """
    _NAME_TURN.first(conn, b_ws=workspace_pk)
    taken = _NAMED.first(conn, b_ws=workspace_pk, b_key=columns["display_name_key"], b_own=own)
    if taken is not None:
        raise Uniqueness(
            f"displayName {columns['display_name']!r} is already the name of group "
            f"{taken.id!r} in this workspace"
        )


def _columns(doc: JSON) -> dict[str, Any]:
    display_name = bounded("displayName", doc["displayName"])
    external_id = doc.get("externalId")
    return {
        "display_name": display_name,
        "display_name_key": display_name.lower(),
        "external_id": bounded("externalId", external_id) if isinstance(external_id, str) else None,
    }


def _outcome(conn: Connection, pk: int, base: str, event: Any, *, with_members: bool) -> Outcome:
    row = _LOAD_PK.first(conn, b_pk=pk)
    members = _members_of_one(conn, pk) if with_members else None
    return Outcome(render(row, base, members), row.version, event)


def get(
    conn: Connection,
    caller: Caller,
    group_id: str,
    base: str,
    with_members: bool = True,
    member_limit: int | None = None,
) -> Outcome:
    """Read one group (RFC 7644 §3.4.1); `with_members=False` skips loading members.

    With `member_limit`, a group having more members than that comes back without them
    (`Outcome.held` False, its version known): send it with `load` and `member_batches`.

    Raises:
        NotFound: no such group in this workspace.
    """
    row = _load(conn, caller, group_id)
    members = _members_of_one(conn, row.pk, member_limit) if with_members else None
    if member_limit is not None and members is not None and len(members) > member_limit:
        return Outcome(render(row, base, None), row.version, "none", held=False)
    return Outcome(render(row, base, members), row.version, "none")


def load(conn: Connection, caller: Caller, group_id: str) -> Any:
    """The stored row of one group of the caller's workspace (`pk`, `id`, `version`, …).

    Raises:
        NotFound: no such group in this workspace.
    """
    return _load(conn, caller, group_id)


#: Members a page of groups, or one group, may hold and still be built whole. Past it, the
#: answer is sent in pieces (`search_lazily`, `member_batches`; `Page.held`, `Outcome.held`):
#: a member costs ~760 bytes of memory while its answer is built (20 groups of 20,000: 305 MB
#: over the process's 100), so an answer held whole costs at most ~8 MB here. Pages of
#: IdP-sized groups stay far below it and keep the one-query path; users have no members.
STREAM_MEMBERS = 10_000


def search(
    conn: Connection,
    caller: Caller,
    query: ListQuery,
    base: str,
    member_limit: int | None = None,
) -> Page:
    """List the workspace's groups matching a query (RFC 7644 §3.4.2).

    With `member_limit`, a page of groups having more members than that comes back
    without its resources (`Page.held` False): read it with `search_lazily` instead.

    Raises:
        InvalidFilter: the filter or sortBy is not valid for Groups.
    """
    left_out = False

    def rendered(rows: Sequence[Any]) -> list[JSON]:
        nonlocal left_out
        if not query.with_members:
            return [render(r, base, None) for r in rows]
        members = _members_of(conn, [r.pk for r in rows], member_limit)
        if members is None:
            left_out = True
            return []
        return [render(r, base, members.get(r.pk)) for r in rows]

    page = _fetch(conn, caller, query, base, rendered)
    return msgspec.structs.replace(page, held=False) if left_out else page


def search_lazily(conn: Connection, caller: Caller, query: ListQuery, base: str) -> Page:
    """`search`, each group read with its members only when its page is iterated to it.

    For a page too large to hold (`search`'s `member_limit`): iterated while `conn`'s
    transaction lasts, it holds one group's members at a time. The resources and their order
    are `search`'s.
    """

    def rendered(rows: Sequence[Any]) -> Sequence[JSON]:
        return LazyGroups(conn, rows, base, query.with_members)

    return _fetch(conn, caller, query, base, rendered)


def _fetch(
    conn: Connection,
    caller: Caller,
    query: ListQuery,
    base: str,
    rendered: Callable[[Sequence[Any]], Sequence[JSON]],
) -> Page:
    where = [groups.c.workspace_pk == caller.workspace_pk]
    described = partial(extensions.undefined_type, conn, caller.workspace_pk, GROUP_TYPE)
    dialect = conn.dialect.name
    clause = filter_clause(query, GROUP_TYPE, dialect, described=described, base=base)
    if clause is not None:
        where.append(clause)
    return fetch_page(
        conn, query, GROUP_TYPE, groups, _COLUMNS, where, rendered, described=described, base=base
    )


class LazyGroups(Sequence[JSON]):
    """A page's groups rendered one at a time, each with its members, as they are asked for.

    `rows` are the groups' stored rows, for sending a large group in pieces (`member_batches`).
    """

    def __init__(self, conn: Connection, rows: Sequence[Any], base: str, with_members: bool):
        self._conn = conn
        self.rows = self._rows = rows
        self._base = base
        self._with_members = with_members

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> JSON: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[JSON]: ...

    def __getitem__(self, index: int | slice) -> JSON | Sequence[JSON]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = self._rows[index]
        members = _members_of_one(self._conn, row.pk) if self._with_members else None
        return render(row, self._base, members)


_TOUCH = Prepared(
    update(groups)
    .where(groups.c.pk == bindparam("b_pk"))
    .values(version=bindparam("b_version"), modified=bindparam("b_now"))
)


def _touch(
    conn: Connection, caller: Caller, row: Any, doc: JSON | None, unknown: Collection[str] = ()
) -> None:
    """Store the group's new `doc`, or only a new version (None).

    `unknown`: what `canonicalise` noted of `doc` (`extensions.record`).
    """
    if doc is None:
        # What a membership PATCH does: a new version, nothing else of the row.
        _TOUCH.run(conn, b_pk=row.pk, b_version=row.version + 1, b_now=now_us())
        return
    doc = extensions.respelled(conn, caller.workspace_pk, GROUP_TYPE, doc)
    columns = _columns(doc)
    if columns["display_name_key"] != str(row.data.get("displayName", "")).lower():
        _claim_name(conn, caller.workspace_pk, columns, row.pk)
    if columns["display_name"] != row.data.get("displayName"):
        _touch_members(conn, row.pk)  # their `groups[].display` is the group's new name
    values = {"version": row.version + 1, "modified": now_us(), "data": doc, **columns}
    conn.execute(update(groups).where(groups.c.pk == row.pk).values(**values))
    extensions.record(conn, caller.workspace_pk, GROUP_TYPE, doc, row.data, unknown)


def replace(
    conn: Connection,
    caller: Caller,
    group_id: str,
    body: JSON,
    base: str,
    if_match: Precondition = None,
) -> Outcome:
    """Replace a group, members included (RFC 7644 §3.5.1); a body's `id` is ignored (readOnly).

    Raises:
        NotFound, PreconditionFailed, InvalidValue, Mutability, Uniqueness (the new
        displayName is another group's).
    """
    row = _load(conn, caller, group_id, lock=True)
    check_if_match(row.version, if_match)
    rest, member_ids = _split_members(body)
    unknown: list[str] = []
    doc = merge_put(dict(row.data), canonicalise(rest, GROUP_TYPE, unknown=unknown), GROUP_TYPE)
    doc.pop("members", None)
    required_missing(doc, GROUP_TYPE)
    user_pks = _user_pks(conn, caller, member_ids or [])
    replaced = _replace_members(conn, row.pk, user_pks)
    if doc == row.data and not replaced.changed():
        # Okta pushes whole groups with PUT, changed or not: nothing is written.
        return _outcome(conn, row.pk, base, "none", with_members=True)
    _touch(conn, caller, row, doc, unknown)
    ids = {pk: uid for (pk, _), uid in zip(user_pks, dict(member_ids or []), strict=True)}
    member_ops = _replaced_ops(conn, replaced, ids)
    changes = {
        "attributes": audit.changed_attributes(row.data, doc),
        **_patch_changes(row.data, None, member_ops),
    }
    _audit(conn, caller, row.id, "replace", changes)
    return _outcome(conn, row.pk, base, "updated", with_members=True)


def patch(
    conn: Connection,
    caller: Caller,
    group_id: str,
    operations: list[Any],
    base: str,
    if_match: Precondition = None,
    max_operations: int = 1000,
    max_members: int = 1000,
    with_members: bool = True,
    quiet: bool = False,
) -> Outcome:
    """Apply a PatchOp to a group (RFC 7644 §3.5.2), all operations or none.

    Membership operations (`add`/`replace`/`remove` on `members` with a value list, `remove`
    and `replace` on `members[filter]`) change rows; the others go through the PATCH engine.
    With `quiet`, a PATCH that changes only members yields an outcome without content (the
    route answers 204): rendering every member would make adding one to a group of n cost
    O(n), and building a large group one PATCH at a time quadratic.

    Raises:
        NotFound, PreconditionFailed, InvalidValue, InvalidPath, NoTarget, Mutability,
        Uniqueness (the new displayName is another group's).
    """
    row = _load(conn, caller, group_id, lock=True)
    check_if_match(row.version, if_match)
    if not isinstance(operations, list):
        raise InvalidValue("Operations must be a list")
    operations = without_own_id(operations, row.id)
    if len(operations) > max_operations:
        raise InvalidValue(f"at most {max_operations} operations per PATCH request")
    other_ops: list[Any] = []
    member_ops: list[tuple[str, _Named]] = []
    for operation in operations:
        other_ops.extend(_split_operation(operation, member_ops))
    # An add or a remove changes at most the members it lists. A replace lists the whole group
    # (Okta's "full push of the membership"), however few of them change: it counts the users
    # who join or leave, as a PUT of the group is not limited by its size either. A filter lists
    # no one: a remove through one is bounded by the group, as a remove of every member is.
    listed = sum(len(ids) for op, ids in member_ops if op != "replace" and isinstance(ids, list))
    if listed > max_members:
        raise _too_many_members(max_members)
    doc: JSON | None = None
    unknown: list[str] = []
    if other_ops:
        patched = apply_patch(
            dict(row.data),
            other_ops,
            GROUP_TYPE,
            max_operations=max_operations,
            described=partial(extensions.describes, conn, caller.workspace_pk, GROUP_TYPE),
            undefined=partial(extensions.undefined_type, conn, caller.workspace_pk, GROUP_TYPE),
        )
        doc = canonicalise(patched, GROUP_TYPE, row.data, unknown)
        doc.pop("members", None)
        required_missing(doc, GROUP_TYPE, patched=True)
        if doc == row.data:
            doc = None  # Okta re-sends a pushed group's name, changed or not
    applied = [
        change
        for op, members in member_ops
        for change in _apply_member_op(
            conn, caller, row.pk, op, members, (max_members, listed), base
        )
    ]
    # Adding a member twice, removing a non-member or setting a value the group has changes
    # nothing: no new version, no audit row (IdPs re-send what they believe is there).
    event = "updated" if doc is not None or applied else "none"
    if event == "updated":
        _touch(conn, caller, row, doc, unknown)
        _audit(conn, caller, row.id, "patch", _patch_changes(row.data, doc, applied))
    if quiet and member_ops and not other_ops:
        outcome = _outcome(conn, row.pk, base, event, with_members=False)
        return msgspec.structs.replace(outcome, content=False)
    return _outcome(conn, row.pk, base, event, with_members=with_members)


def _apply_member_op(
    conn: Connection,
    caller: Caller,
    group_pk: int,
    op: str,
    members: _Named,
    limit: tuple[int, int],
    base: str,
) -> list[tuple[str, list[Member] | None]]:
    """Apply one membership operation; return the changes it made to the group (none: []).

    An add keeps only the users not yet members, a remove only those that were (`members` None:
    every member); a replace is the users it added and removed (and redisplayed: `redisplay`).
    `members[filter]` paths are `_apply_matching`'s, at `base`.

    Raises:
        InvalidValue: an add or replace names a user the workspace does not have, or a replace
            would make more users join or leave than `limit` (the most a request may change,
            the members its adds and removes list) leaves it.
        InvalidPath, NoTarget: see `_apply_matching`.
    """
    if isinstance(members, _Matching):
        return _apply_matching(conn, caller, group_pk, op, members, limit, base)
    if op == "remove":
        if members is None:
            return [(op, None)] if _remove_members(conn, group_pk, None) else []
        # Unknown ids are skipped: IdPs retry removals of users deleted meanwhile.
        known = dict(_ids_to_pks(conn, caller, [uid for uid, _ in members], live=False))
        present = _present(conn, group_pk, list(known.values()))
        gone = [(uid, pk) for uid, pk in known.items() if pk in present]
        if not gone:
            return []
        _remove_members(conn, group_pk, [pk for _, pk in gone])
        return [(op, [(uid, None) for uid, _ in gone])]
    resolved = _user_pks(conn, caller, members or [])
    if op == "replace":
        # IdPs re-send the whole list, changed or not.
        replaced = _replace_members(conn, group_pk, resolved, *limit)
        ids = {pk: uid for (pk, _), uid in zip(resolved, dict(members or []), strict=True)}
        return _replaced_ops(conn, replaced, ids)
    present = _present(conn, group_pk, [pk for pk, _ in resolved])
    # `_user_pks` answers in the order of the distinct ids.
    new = [
        (uid, (pk, display))
        for uid, (pk, display) in zip(dict(members or []), resolved, strict=True)
        if pk not in present
    ]
    if not new:
        return []
    _add_members(conn, group_pk, [member for _, member in new])
    return [(op, [(uid, display) for uid, (_, display) in new])]


def _apply_matching(
    conn: Connection,
    caller: Caller,
    group_pk: int,
    op: str,
    matching: _Matching,
    limit: tuple[int, int],
    base: str,
) -> list[tuple[str, list[Member] | None]]:
    """Remove or replace the members a `members[filter]` path selects; return the changes.

    A remove takes every member the filter matches, and matching none changes nothing (RFC
    7644 §3.5.2.2), as removing a non-member does. A replace puts the members of its value in
    the place of those matched (§3.5.2.3): matched members it does not list leave, listed users
    not yet members join, matched ones it lists keep their membership with the display it
    sends, and listed members the filter did not match stay as they are. A replace matching no
    member is `noTarget` (§3.5.2.3).

    Raises:
        InvalidPath: the filter names a sub-attribute members do not have, or compares one in
            a way its type forbids (as `hub.core.patch` answers for any path's filter).
        NoTarget: a replace whose filter matches no member.
        InvalidValue: a replace names a user the workspace does not have, or more users would
            join or leave than `limit` allows (see `_apply_member_op`).
    """
    matched = _matching_members(conn, group_pk, matching, base)
    if op == "remove":
        if not matched:
            return []
        _remove_matched(conn, group_pk, list(matched))
        return [(op, [(uid, None) for uid, _ in matched.values()])]
    if not matched:
        raise NoTarget(f"no member matches the path {matching.path!r}")
    resolved = _user_pks(conn, caller, matching.value)
    wanted = dict(resolved)
    others = [pk for pk in wanted if pk not in matched]
    present = _present(conn, group_pk, others)
    joining = [(pk, wanted[pk]) for pk in others if pk not in present]
    gone = [pk for pk in matched if pk not in wanted]
    max_changes, changed_elsewhere = limit
    if changed_elsewhere + len(gone) + len(joining) > max_changes:
        raise _too_many_members(max_changes)
    redisplayed = [pk for pk in wanted if pk in matched and matched[pk][1] != wanted[pk]]
    _remove_matched(conn, group_pk, gone)
    _add_members(conn, group_pk, joining)
    _redisplay(conn, group_pk, {pk: wanted[pk] for pk in redisplayed})
    # `_user_pks` answers in the order of the distinct ids.
    ids = {pk: uid for pk, (uid, _) in matched.items()}
    ids.update((pk, uid) for (pk, _), uid in zip(resolved, dict(matching.value), strict=True))
    return _replaced_ops(conn, _Replaced([pk for pk, _ in joining], gone, redisplayed), ids)


def _matching_members(
    conn: Connection, group_pk: int, matching: _Matching, base: str
) -> dict[int, tuple[str, str | None]]:
    """The group's members `matching` selects: user pk -> (id, display), in the group's order.

    The filter runs in the database over the group's membership rows (its primary key's range)
    joined to their users, each member compared as `render` shows it at `base`.

    Raises:
        InvalidPath: the filter names an unknown sub-attribute or makes a forbidden comparison.
    """
    try:
        selects = compile_member_filter(matching.filter, conn.dialect.name, base)
    except InvalidFilter as exc:
        raise InvalidPath(f"invalid path {matching.path!r}: {exc.detail}") from exc
    statement = (
        select(memberships.c.user_pk, users.c.id, memberships.c.display)
        .join(users, users.c.pk == memberships.c.user_pk)
        .where(memberships.c.group_pk == group_pk, users.c.deleted.is_(False), selects)
        .order_by(memberships.c.user_pk)
    )
    return {row.user_pk: (row.id, row.display) for row in conn.execute(statement)}


#: Members a POST or PATCH may name and still run as a short unit (`small_create`, …).
SHORT_UNIT_MEMBERS = 100


def small_create(body: Any) -> bool:
    """Say whether a group's POST body lists at most `SHORT_UNIT_MEMBERS` members."""
    if not isinstance(body, dict):
        return False
    members = next((v for k, v in body.items() if k.lower() == "members"), None)
    return members is None or (isinstance(members, list) and len(members) <= SHORT_UNIT_MEMBERS)


def small_member_patch(body: Any) -> bool:
    """Say whether a PATCH body only adds or removes up to `SHORT_UNIT_MEMBERS` listed members.

    Such a PATCH is a few indexed statements whatever the group's size (with `quiet`), so it may
    run without a thread hand-off. Removing every member or replacing them touches every
    membership row and is not small, nor is a remove through a filter other than `value eq`
    ones, which reads every member. A body this cannot read is not small; `patch` judges it.
    """
    if not isinstance(body, dict):
        return False
    operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        return False
    named = 0
    for operation in operations:
        if not isinstance(operation, dict):
            return False
        fields = {k.lower(): v for k, v in operation.items()}
        path, value = fields.get("path"), fields.get("value")
        if str(fields.get("op", "")).lower() not in ("add", "remove"):
            return False
        if not isinstance(path, str) or not path.strip().lower().startswith("members"):
            return False
        if path.strip().lower() == "members":
            if not isinstance(value, list):
                return False
            named += len(value)
        elif _VALUE_EQ_PATH.fullmatch(path):
            named += path.lower().count("value")
        else:
            return False
    return named <= SHORT_UNIT_MEMBERS


#: `members[value eq "…" or value eq "…"]` as Entra ID and Okta write it, told apart by a regular
#: expression: ~1.5 µs an operation, where parsing the path here too cost ~6 µs. A path it
#: misses (an id with a quote in it) only runs with a thread hand-off.
_VALUE_EQ_PATH = re.compile(
    r'\s*members\[\s*value\s+eq\s+"[^"]*"'
    r'(?:\s+or\s+value\s+eq\s+"[^"]*")*\s*\]\s*',
    re.IGNORECASE,
)


_CHANGE_KEYS = {
    "add": "members_added",
    "remove": "members_removed",
    "redisplay": "members_redisplayed",
}


def _patch_changes(
    before: JSON, after: JSON | None, member_ops: list[tuple[str, list[Member] | None]]
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if after is not None:
        changes["attributes"] = audit.changed_attributes(before, after)
    for op, members in member_ops:
        key = _CHANGE_KEYS[op]
        changes.setdefault(key, []).extend(_ids(members) if members is not None else ["*"])
    return changes


def _split_operation(operation: Any, member_ops: list[tuple[str, _Named]]) -> list[Any]:
    """Take membership changes out of one operation; return what is left for the PATCH engine."""
    if not isinstance(operation, dict):
        raise InvalidValue("each operation must be an object with 'op'")
    fields = {k.lower(): v for k, v in operation.items()}
    op = str(fields.get("op", "")).lower()
    path = fields.get("path")
    value = fields.get("value")
    if op not in ("add", "replace", "remove"):
        return [operation]
    if path is None:
        if op == "remove" or not isinstance(value, dict):
            return [operation]
        rest = {k: v for k, v in value.items() if k.lower() not in _MEMBERS_KEYS}
        member_value = next((v for k, v in value.items() if k.lower() in _MEMBERS_KEYS), None)
        if member_value is not None or len(rest) != len(value):
            member_ops.append((op, _member_ids(member_value)))
        return [{**operation, "value": rest}] if rest else []
    if not isinstance(path, str):
        raise InvalidPath("path must be a string")
    try:
        parsed = rules.parse_path(path)
    except rules.FilterSyntaxError as exc:
        raise InvalidPath(f"invalid path {path!r}: {exc}") from exc
    urn = parsed.attr.urn
    if (urn is not None and urn.lower() != _GROUP_URN) or parsed.attr.name.lower() != "members":
        return [operation]
    sub = parsed.attr.sub or parsed.sub
    if sub is not None:
        raise _member_sub_attribute_error(sub)
    if parsed.filter is None:
        if op != "remove" and "value" not in fields:
            # As the PATCH engine answers for any other attribute; a replace read as an empty
            # list removed every member.
            raise InvalidValue(f"{op} requires a value (RFC 7644 §3.5.2)")
        member_ops.append((op, None if op == "remove" and value is None else _member_ids(value)))
        return []
    if op == "add":
        # RFC 7644 §3.5.2.1 adds values to an attribute; a filter selects values that exist.
        raise InvalidPath(
            "add of members takes the path 'members' and a value list; a filter selects members"
            " to remove or replace"
        )
    listed = _filtered_member_ids(parsed.filter) if op == "remove" else None
    if listed is not None:
        member_ops.append(("remove", listed))
        return []
    if op == "replace" and "value" not in fields:
        raise InvalidValue(f"{op} requires a value (RFC 7644 §3.5.2)")
    matching = _Matching(parsed.filter, path, _member_ids(value) if op == "replace" else [])
    member_ops.append((op, matching))
    return []


def _member_sub_attribute_error(name: str) -> ScimError:
    """Why a PATCH path into a member's sub-attribute (`members[value eq "…"].display`) fails.

    A member is its user's id: `value`, `$ref` and `type` are immutable and `display` readOnly,
    as discovery shows, so changing one is a `mutability` error (RFC 7644 §3.12); a name the
    schema does not define is an `invalidPath`.
    """
    defined = _MEMBERS.sub(name)
    if defined is None:
        return InvalidPath(f"members have no sub-attribute {name!r}")
    return Mutability(
        f"'members.{defined.name}' is {defined.mutability}; add or remove the member instead"
    )


#: `members` as a path-less value may name it, with or without its schema's URN (RFC 7644 §3.10).
_GROUP_URN = GROUP_TYPE.schema.id.lower()
_MEMBERS_KEYS = frozenset({"members", f"{_GROUP_URN}:members"})
_MEMBERS = GROUP_TYPE.schema.by_key["members"]


def _filtered_member_ids(flt: rules.Filter) -> list[Member] | None:
    """Member ids selected by `members[value eq "…" or value eq "…"]`; None for another filter.

    What Entra ID and Okta send to remove members: their ids are looked up by key, without
    reading the group's other members (`_matching_members` reads them for any other filter).
    The ids come lowered, as `_matching_members` compares them.
    """
    ids: list[Member] = []
    pending: list[rules.Filter] = [flt]
    while pending:
        node = pending.pop()
        if isinstance(node, rules.Or):
            pending.extend((node.left, node.right))
        elif (
            isinstance(node, rules.Compare)
            and node.op == "eq"
            and node.path.name.lower() == "value"
            and node.path.sub is None
            and isinstance(node.value, str)
        ):
            # `value` is caseExact=false (RFC 7643 §8.7.1) and ids are written in lower case
            # (`new_id`): lowered, the id is the key to look up, as list filters compare it.
            ids.append((node.value.lower(), None))
        else:
            return None
    return ids


def remove(
    conn: Connection, caller: Caller, group_id: str, if_match: Precondition = None
) -> Outcome:
    """DELETE a group and its memberships (RFC 7644 §3.6).

    Raises:
        NotFound, PreconditionFailed.
    """
    row = _load(conn, caller, group_id, lock=True)
    check_if_match(row.version, if_match)
    _remove_members(conn, row.pk, None)
    conn.execute(delete(groups).where(groups.c.pk == row.pk))
    _audit(conn, caller, row.id, "delete", {})
    return Outcome({"id": row.id, **row.data}, row.version, "deleted")
