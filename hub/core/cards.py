"""Cards: every provisioned user's business card, kept true to the IdP profile.

Each card field has a value, a `source` (idp / template / manual), `locked` (the owner may not
edit it) and `linked` (it follows its upstream: the card's template if that sets the field, else
the IdP). Fields the connector maps are IdP-managed: locked and linked from the start, and the
IdP's last value is kept beside the shown one so relinking needs no call to the IdP.

* Provisioning creates the card in the user's transaction; the first matching template applies.
* Updates flow into linked fields only; an IdP that stops sending a value clears it.
* Deprovisioning deactivates the card; reactivation brings the same card back, edits intact.
* An admin edit or unlock unlinks a field; lock locks it; relink restores upstream's value.
* The owner may edit unlocked fields only; an owner edit unlinks too.

Template values are not copied onto cards. A stored linked field holds its IdP side (the IdP's
value, or for a profile field the IdP does not map an empty placeholder; a template-only field has
no row at all), and a read lays the card's template over it (`_shown`): a field the template sets
shows the template's value wherever the card has no row for it or its row is still linked. So a
template edit writes the template row, not its cards; only fields an admin or the owner unlinked
keep a value of their own. A card's `modified` is the later of its own and its template's.

Nor are the IdP's values copied into rows while they are all a field holds: a field the connector
maps, still locked and linked to the IdP, has no row (`_elided`), and a read takes it from the
card's `profile`, the IdP values of the last sync (`_with_elided`), where a mapped field the IdP
left empty is a null. So a create writes rows only for the profile fields the connector does not
map, and an IdP update of an IdP field, setting or clearing it, writes the card alone. A row
appears once a field holds something else: an edit, an unlock, a template detached, or the
connector no longer mapping it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect

from hub.core import templates
from hub.core.clock import now_us, to_iso
from hub.core.dialects import PROFILE_FIELDS
from hub.core.errors import Conflict, Forbidden, InvalidValue, NotFound
from hub.core.events import Event, Lazy
from hub.core.filtering import contains_folded
from hub.core.ids import new_id
from hub.core.models import activation_links, card_fields, cards, users
from hub.core.models import templates as templates_table
from hub.core.profile import Profile, effective_mapping, read_profile, rule_input
from hub.core.sql import Prepared, PreparedInsert
from hub.core.tokens import Caller

JSON = dict[str, Any]
STATUSES: Final = ("active", "inactive", "activated", "not_activated")
MAX_PAGE: Final = 500
#: The longest search: the longest value an admin or owner can give a card field. SQLite refuses a
#: LIKE pattern over 50,000 bytes (SQLITE_MAX_LIKE_PATTERN_LENGTH); 2048 characters of UTF-8,
#: escaped, stay within it.
MAX_SEARCH: Final = templates.MAX_VALUE_LENGTH

_CARD = (
    select(
        cards.c.pk,
        cards.c.id,
        cards.c.active,
        cards.c.profile,
        cards.c.created,
        cards.c.modified,
        cards.c.template_pk,
        users.c.id.label("user_id"),
        users.c.user_name,
        templates_table.c.id.label("template_id"),
        templates_table.c.name.label("template_name"),
        templates_table.c.fields.label("template_fields"),
        templates_table.c.modified.label("template_modified"),
    )
    .join(users, users.c.pk == cards.c.user_pk)
    .outerjoin(templates_table, templates_table.c.pk == cards.c.template_pk)
)


class FieldState(NamedTuple):
    """One card field, as stored or as a read shows it (`_shown`), without its card."""

    value: str | None
    source: str
    locked: bool
    linked: bool
    managed: bool
    idp_value: str | None


class CardQuery(msgspec.Struct, frozen=True, kw_only=True):
    """How an admin lists team cards.

    `q` searches names, email and userName (case-insensitive substring); `status` is active,
    inactive, activated or not_activated; `template` is a template id or "none".
    """

    limit: int = 50
    offset: int = 0
    q: str | None = None
    status: str | None = None
    template: str | None = None


# --- provisioning ----------------------------------------------------------------------------


def sync_user(
    conn: Connection,
    caller: Caller,
    user_pk: int,
    resource: dict[str, Any],
    event: str,
    mapping: Mapping[str, str],
) -> list[Event]:
    """Create or update the user's card from their SCIM resource; return events to broadcast.

    Runs inside the user write's transaction. A user without a card gets one (templates apply
    only when `event` is "provisioned"); otherwise linked fields take the IdP's values and the
    card's active flag follows the user's.
    """
    profile = read_profile(resource, effective_mapping(mapping))
    document = rule_input(profile, str(resource.get("userName", "")))
    active = event != "deleted" and resource.get("active") is not False
    if event == "provisioned":
        # A user created by this very transaction has no card yet: skip the look-up.
        return _create(conn, caller, user_pk, resource, profile, document, active, event)
    card = _CARD_OF_USER.first(conn, b_user=user_pk)
    if card is None:
        return _create(conn, caller, user_pk, resource, profile, document, active, event)
    _refresh(conn, card, profile, document, active)
    return []


_INSERT_CARD = PreparedInsert(
    cards.insert().values(
        id=bindparam("b_id"),
        workspace_pk=bindparam("b_ws"),
        user_pk=bindparam("b_user"),
        template_pk=bindparam("b_template"),
        active=bindparam("b_active"),
        profile=bindparam("b_profile", type_=cards.c.profile.type),
        created=bindparam("b_now"),
        modified=bindparam("b_now"),
    ),
    cards.c.pk,
    json_params=("b_profile",),
)
#: `_INSERT_FIELD`'s parameters in the order of a row: card, field name, the `FieldState`'s values
_FIELD_ROW: Final = ("b_card", "b_name", *(f"b_{name}" for name in FieldState._fields))
_INSERT_FIELD = Prepared(
    card_fields.insert().values(
        card_pk=bindparam("b_card"),
        name=bindparam("b_name"),
        value=bindparam("b_value"),
        source=bindparam("b_source"),
        locked=bindparam("b_locked"),
        linked=bindparam("b_linked"),
        managed=bindparam("b_managed"),
        idp_value=bindparam("b_idp_value"),
    )
)


def _create(
    conn: Connection,
    caller: Caller,
    user_pk: int,
    resource: JSON,
    profile: Profile,
    document: JSON,
    active: bool,
    event: str,
) -> list[Event]:
    template = None
    if event == "provisioned":
        template = templates.first_match(conn, caller.workspace_pk, document)
    now, card_id = now_us(), new_id()
    card_pk = _INSERT_CARD.run(
        conn,
        b_id=card_id,
        b_ws=caller.workspace_pk,
        b_user=user_pk,
        b_template=None if template is None else template.pk,
        b_active=active,
        b_profile=document,
        b_now=now,
    )
    template_fields = {} if template is None else template.fields
    _INSERT_FIELD.run_rows(
        conn,
        _FIELD_ROW,
        [(card_pk, name, *state) for name, state in _initial_rows(profile, template_fields)],
    )
    # Rendered from what was just written: no read-back on the provisioning hot path.
    head = SimpleNamespace(
        id=card_id,
        user_id=resource.get("id"),
        user_name=document["userName"],
        active=active,
        template_id=None if template is None else template.id,
        template_name=None if template is None else template.name,
        template_fields=None if template is None else template.fields,
        template_modified=None if template is None else template.modified,
        profile=document,
        created=now,
        modified=now,
    )

    def card() -> JSON:
        fields = _initial_fields(profile, template_fields)
        return _render(head, [SimpleNamespace(name=n, **f._asdict()) for n, f in fields.items()])

    events = [
        Event(
            "card_created",
            {
                "workspace": caller.workspace_id,
                "connector": caller.connector_id,
                "user": resource,
                "card": Lazy(card),
            },
        )
    ]
    if template is not None:
        events.append(
            Event(
                "template_applied",
                {
                    "workspace": caller.workspace_id,
                    "user": resource,
                    "template": Lazy(lambda: templates.render(template)),
                },
            )
        )
    return events


def _initial_fields(profile: Profile, template_fields: Mapping[str, str]) -> dict[str, FieldState]:
    """A new card's fields as it shows them: mapped fields locked and linked to the IdP.

    Only the states `_initial_rows` gives are stored. The template's values are not stored
    (`_shown` lays them over at read): a template field the IdP maps keeps its IdP value, one it
    does not map gets a linked placeholder (profile fields; a template-only field gets no row),
    so the card shows the template's value either way.
    """
    fields: dict[str, FieldState] = {}
    for name in PROFILE_FIELDS:
        if name in profile:
            value = profile[name]
            fields[name] = _from_idp(value)
        else:
            fields[name] = _PLACEHOLDER if name in template_fields else _EMPTY
    return fields


#: What a profile field the IdP does not map stores while a template sets it (locked, linked).
_PLACEHOLDER: Final = FieldState(None, "template", True, True, False, None)
#: A profile field nothing sets: empty and editable by the owner.
_EMPTY: Final = FieldState(None, "manual", False, False, False, None)


def _initial_rows(
    profile: Profile, template_fields: Mapping[str, str]
) -> list[tuple[str, FieldState]]:
    """The rows a new card stores of its `_initial_fields`: those of fields `profile` lacks.

    A field the profile holds starts as the IdP's value, which is what it shows with no row
    (`_elided_row`): neither its row nor its state is made (the card is rendered only when a
    plugin reads it), and making them was ~0.7% of a create.
    """
    return [
        (name, _PLACEHOLDER if name in template_fields else _EMPTY)
        for name in PROFILE_FIELDS
        if name not in profile
    ]


def _from_idp(value: str | None) -> FieldState:
    """A field showing the IdP's `value`: locked, linked and managed."""
    return FieldState(value, "idp", True, True, True, value)


def _elided_row(profile: Any, name: str) -> FieldState | None:
    """The row field `name` stands for when it has none, per the card's `profile`; None: none.

    A profile field the `profile` holds, a value or a null, shows the IdP's value; one it does not
    hold (not mapped at the last sync, or on a card older than the field) is no field. A
    `FieldState` has every column of a row `_shown` reads.
    """
    if not isinstance(profile, dict) or name not in PROFILE_FIELDS or name not in profile:
        return None
    return _from_idp(profile[name])


def _elided(name: str, state: FieldState, profile: Any) -> bool:
    """Is `state` what field `name` shows with no row: the IdP's value in `profile`, untouched?"""
    return state == _elided_row(profile, name)


def _with_elided(profile: Any, rows: Mapping[str, Any]) -> dict[str, Any]:
    """A card's stored field rows by name, with a row for each field stored by none."""
    found = dict(rows)
    for name in PROFILE_FIELDS:
        if name not in found and (row := _elided_row(profile, name)) is not None:
            found[name] = row
    return found


def _shown(name: str, row: Any | None, template_fields: Mapping[str, str]) -> FieldState | None:
    """Field `name` as the card shows it: its stored `row` with the card's template laid over it.

    The template's value shows (locked, linked, source "template") wherever the template sets the
    field and the card has no row for it or a linked one; an unlinked row (an admin or owner
    edit, an unlock, a deleted template's last value) shows as stored. A linked row of a field
    the IdP does not manage and no template sets is a placeholder no longer in use (not written
    by this module, which reverts them when a template drops a field): an empty profile field, or
    no field at all. None: the card has no such field.
    """
    if name in template_fields and (row is None or row.linked):
        if row is None:
            return FieldState(template_fields[name], "template", True, True, False, None)
        return FieldState(
            template_fields[name], "template", row.locked, True, row.managed, row.idp_value
        )
    if row is None:
        return None
    if row.linked and not row.managed:
        return _EMPTY if name in PROFILE_FIELDS else None
    return FieldState(row.value, row.source, row.locked, row.linked, row.managed, row.idp_value)


def _stored(name: str, state: FieldState, template_fields: Mapping[str, str]) -> FieldState | None:
    """What to store for a field meant to show `state` (the inverse of `_shown`); None: no row."""
    if not (state.linked and name in template_fields):
        return state
    if state.managed:  # the IdP side, under the template's value
        return FieldState(state.idp_value, "idp", state.locked, True, True, state.idp_value)
    if name in PROFILE_FIELDS:
        return _PLACEHOLDER._replace(locked=state.locked)
    return None


def _effective_modified(card: Any) -> int:
    """A card's modified time: its own, or its template's if that changed later."""
    modified: int = card.modified
    template_modified: int | None = card.template_modified
    return modified if template_modified is None else max(modified, template_modified)


# The IdP-sync path (every IdP update of every user) runs on prepared statements.
_IDP_VALUE = bindparam("f_idp", type_=card_fields.c.idp_value.type)
#: One field's new IdP value: a linked field shows it, an unlinked one keeps its own value.
_SYNC_FIELD = Prepared(
    update(card_fields)
    .where(card_fields.c.card_pk == bindparam("f_card"), card_fields.c.name == bindparam("f_name"))
    .values(
        value=case((card_fields.c.linked, _IDP_VALUE), else_=card_fields.c.value),
        source=case((card_fields.c.linked, literal("idp")), else_=card_fields.c.source),
        managed=True,
        idp_value=_IDP_VALUE,
    )
)
#: What an IdP sync reads of a user's card: no join, as `_refresh` needs nothing else.
_CARD_OF_USER = Prepared(
    select(cards.c.pk, cards.c.active, cards.c.profile)
    .where(cards.c.user_pk == bindparam("b_user"))
    .with_for_update(of=cards)
)
_TOUCH_CARD = Prepared(
    update(cards)
    .where(cards.c.pk == bindparam("b_card"))
    .values(
        active=bindparam("b_active"),
        profile=bindparam("b_profile", type_=cards.c.profile.type),
        modified=bindparam("b_now"),
    ),
    json_params=("b_profile",),
)


def _refresh(conn: Connection, card: Any, profile: Profile, document: JSON, active: bool) -> None:
    """Linked fields take the IdP's values (set or cleared); unlinked ones keep theirs.

    A linked field the card's template sets stores the IdP's value too: the template's is laid
    over it at read (`_shown`), and shows again once the template stops setting the field.

    The card's stored rule document holds the IdP values of the last sync, and every writer of
    field rows keeps a managed row's `idp_value` (and a linked one's value) in step with it. So
    only the fields whose IdP value differs from it are written, each by one UPDATE that needs no
    read of the rows (an IdP update usually changes one or two). A field with no row shows the
    document's value (`_elided`), a null when the IdP cleared it: the new document is its update.
    """
    if card.profile == document:
        if card.active != active:
            _TOUCH_CARD.run(
                conn, b_card=card.pk, b_active=active, b_profile=document, b_now=now_us()
            )
        return
    last = card.profile if isinstance(card.profile, dict) else {}
    for name, idp_value in profile.items():
        if name in last and last[name] == idp_value:
            continue
        _SYNC_FIELD.run(conn, f_card=card.pk, f_name=name, f_idp=idp_value)
    for name in last.keys() - profile.keys():
        # A field the connector no longer maps keeps showing the IdP's last value.
        row = _elided_row(last, name)
        if row is not None and _stored_row(conn, card.pk, name) is None:
            _insert_field(conn, card.pk, name, row)
    _TOUCH_CARD.run(conn, b_card=card.pk, b_active=active, b_profile=document, b_now=now_us())


def _insert_field(conn: Connection, card_pk: int, name: str, state: FieldState) -> None:
    _INSERT_FIELD.run(conn, **dict(zip(_FIELD_ROW, (card_pk, name, *state), strict=True)))


# --- bulk creation (seeding) ----------------------------------------------------------------


class NewUser(NamedTuple):
    """A user inserted in bulk: its storage key and its SCIM resource as `users.render` gives it."""

    pk: int
    resource: JSON


def create_many(
    conn: Connection, workspace_pk: int, new_users: Sequence[NewUser], mapping: Mapping[str, str]
) -> int:
    """Give each new user the card provisioning gives it; return how many got a template.

    The same rows and values as `sync_user` with event "provisioned": profile read through the
    connector's `mapping`, first matching template in the admin's order, fields from
    `_initial_fields` less those `_elided` stores by no row, active unless the user is not.
    Written in two executemany statements (cards with RETURNING, then every stored field), not
    per user. Emits no plugin events and no audit rows.
    """
    if not new_users:
        return 0
    effective = effective_mapping(mapping)
    candidates = templates.rule_templates(conn, workspace_pk)
    now = now_us()
    card_rows: list[JSON] = []
    fields_of: dict[int, list[tuple[str, FieldState]]] = {}
    templated = 0
    for user in new_users:
        resource = user.resource
        profile = read_profile(resource, effective)
        document = rule_input(profile, str(resource.get("userName", "")))
        template = templates.first_of(candidates, document)
        templated += template is not None
        card_rows.append(
            {
                "id": new_id(),
                "workspace_pk": workspace_pk,
                "user_pk": user.pk,
                "template_pk": None if template is None else template.pk,
                "active": resource.get("active") is not False,
                "profile": document,
                "created": now,
                "modified": now,
            }
        )
        fields_of[user.pk] = _initial_rows(profile, {} if template is None else template.fields)
    made = conn.execute(cards.insert().returning(cards.c.pk, cards.c.user_pk), card_rows)
    # Positional rows straight to the driver's executemany: up to ten fields a card.
    field_rows = [
        (card_pk, name, *state) for card_pk, user_pk in made for name, state in fields_of[user_pk]
    ]
    if field_rows:
        conn.exec_driver_sql(_bulk_fields_sql(conn.dialect), field_rows)
    return templated


_BULK_FIELDS_SQL: dict[str, str] = {}


def _bulk_fields_sql(dialect: Dialect) -> str:
    """INSERT of one card field, positional parameters in `(card_pk, name, *FieldState)` order."""
    sql = _BULK_FIELDS_SQL.get(dialect.name)
    if sql is None:
        columns = ("card_pk", "name", *FieldState._fields)
        compiled = (
            card_fields.insert().values({c: bindparam(c) for c in columns}).compile(dialect=dialect)
        )
        assert tuple(compiled.positiontup or ()) == columns, compiled.positiontup
        sql = _BULK_FIELDS_SQL[dialect.name] = compiled.string
    return sql


# --- reading -------------------------------------------------------------------------------


def _card_row(conn: Connection, where: Any, *, lock: bool = False) -> Any | None:
    stmt = _CARD.where(where)
    if lock:
        # Serialise writers of one card (IdP sync, admin, owner) on PostgreSQL.
        stmt = stmt.with_for_update(of=cards)
    return conn.execute(stmt).first()


def _fields_query(card_pks: Sequence[int]) -> Any:
    return (
        select(card_fields)
        .where(card_fields.c.card_pk.in_(card_pks))
        .order_by(card_fields.c.card_pk, card_fields.c.name)
    )


def _field_order(name: str) -> int:
    return templates.CARD_FIELDS.index(name) if name in templates.CARD_FIELDS else 999


def _shown_fields(card: Any, field_rows: Sequence[Any]) -> dict[str, FieldState]:
    """Every field the card shows, by name, in card order (`_shown` of each)."""
    template_fields: Mapping[str, str] = card.template_fields or {}
    rows = _with_elided(card.profile, {row.name: row for row in field_rows})
    shown: dict[str, FieldState] = {}
    for name in sorted(rows.keys() | template_fields.keys(), key=lambda n: (_field_order(n), n)):
        state = _shown(name, rows.get(name), template_fields)
        if state is not None:
            shown[name] = state
    return shown


def _render(card: Any, field_rows: Sequence[Any]) -> JSON:
    """A card as the APIs show it, from its `_CARD` row and its stored field rows."""
    template = None
    if card.template_id is not None:
        template = {"id": card.template_id, "name": card.template_name}
    return {
        "id": card.id,
        "user": {"id": card.user_id, "userName": card.user_name},
        "active": card.active,
        "template": template,
        "fields": {
            name: {
                "value": state.value,
                "source": state.source,
                "locked": state.locked,
                "linked": state.linked,
            }
            for name, state in _shown_fields(card, field_rows).items()
        },
        "created": to_iso(card.created),
        "modified": to_iso(_effective_modified(card)),
    }


def _render_one(conn: Connection, where: Any) -> JSON:
    card = _card_row(conn, where)
    if card is None:
        raise NotFound("no such card")
    return _render(card, conn.execute(_fields_query([card.pk])).all())


def _ref(workspace_pk: int, card_ref: str) -> Any:
    """A card of the workspace by card id or by its user's id.

    Two unique-index look-ups: an `OR` across the join would walk every card of the workspace.
    """
    by_card, by_user, owner = cards.alias(), cards.alias(), users.alias()
    card_pk = func.coalesce(
        select(by_card.c.pk).where(by_card.c.id == card_ref).scalar_subquery(),
        select(by_user.c.pk)
        .join(owner, owner.c.pk == by_user.c.user_pk)
        .where(owner.c.id == card_ref)
        .scalar_subquery(),
    )
    return (cards.c.workspace_pk == workspace_pk) & (cards.c.pk == card_pk)


def _load(conn: Connection, workspace_pk: int, card_ref: str) -> Any:
    card = _card_row(conn, _ref(workspace_pk, card_ref), lock=True)
    if card is None:
        raise NotFound(f"no card with id {card_ref!r} (card id or user id)")
    return card


def get_card(conn: Connection, workspace_pk: int, card_ref: str) -> JSON:
    """Read one card by card id or user id.

    Raises:
        NotFound: no such card in this workspace.
    """
    card = _card_row(conn, _ref(workspace_pk, card_ref))
    if card is None:
        raise NotFound(f"no card with id {card_ref!r} (card id or user id)")
    return _render(card, conn.execute(_fields_query([card.pk])).all())


def _activated() -> Any:
    return exists().where(
        activation_links.c.user_pk == cards.c.user_pk, activation_links.c.used.is_not(None)
    )


def _filters(conn: Connection, workspace_pk: int, query: CardQuery) -> list[Any]:
    where: list[Any] = [cards.c.workspace_pk == workspace_pk]
    status = query.status
    if status is not None and status not in STATUSES:
        raise InvalidValue(f"status must be one of {', '.join(STATUSES)}")
    if status in ("active", "inactive"):
        where.append(cards.c.active.is_(status == "active"))
    elif status in ("activated", "not_activated"):
        where.append(_activated() if status == "activated" else ~_activated())
    if query.template == "none":
        where.append(cards.c.template_pk.is_(None))
    elif query.template is not None:
        where.append(cards.c.template_pk == templates.load(conn, workspace_pk, query.template).pk)
    if query.q:
        if len(query.q) > MAX_SEARCH:
            raise InvalidValue(f"a search (q) is at most {MAX_SEARCH} characters")
        where.append(_search(conn, workspace_pk, query.q))
    return where


_SEARCHED: Final = ("display_name", "first_name", "last_name", "email")


def _search(conn: Connection, workspace_pk: int, text: str) -> Any:
    """Cards whose shown name or email fields, or userName, contain `text` (case-insensitive).

    A linked field a card's template sets shows the template's value, not the stored one: the
    workspace's few templates are read first, so such rows are left out of the stored-value match
    and the template's value is matched for the cards that show it. A field without a row shows
    the IdP's value in the card's profile (`_elided`), which is matched where the card has no row
    for it and no template over it.
    """
    needle = text.lower()
    dialect = conn.dialect.name
    setting: dict[str, list[int]] = {}
    template_matches: list[Any] = []
    rows = conn.execute(
        select(templates_table.c.pk, templates_table.c.fields).where(
            templates_table.c.workspace_pk == workspace_pk
        )
    )
    for template_pk, fields in rows:
        for name in _SEARCHED:
            if name not in fields:
                continue
            setting.setdefault(name, []).append(template_pk)
            overridden = exists().where(
                card_fields.c.card_pk == cards.c.pk,
                card_fields.c.name == name,
                ~card_fields.c.linked,
            )
            if needle in str(fields[name]).lower():
                template_matches.append(and_(cards.c.template_pk == template_pk, ~overridden))
    stored_match = [
        card_fields.c.card_pk == cards.c.pk,
        card_fields.c.name.in_(_SEARCHED),
        contains_folded(card_fields.c.value, text, dialect),
    ]
    if setting:
        # Without the IS NOT NULL a card with no template gets NULL from IN, and NOT NULL drops it.
        overlaid = or_(
            *(
                and_(card_fields.c.name == name, cards.c.template_pk.in_(pks))
                for name, pks in setting.items()
            )
        )
        stored_match.append(~and_(card_fields.c.linked, cards.c.template_pk.is_not(None), overlaid))
    return or_(
        exists().where(*stored_match),
        *template_matches,
        *(_profile_match(name, text, dialect, setting.get(name, [])) for name in _SEARCHED),
        users.c.user_name_key.contains(needle, autoescape=True),
    )


def _profile_match(name: str, text: str, dialect: str, overlaying: Sequence[int]) -> Any:
    """Cards showing the IdP's value of field `name` from their profile and containing `text`."""
    has_row = exists().where(card_fields.c.card_pk == cards.c.pk, card_fields.c.name == name)
    conditions = [contains_folded(cards.c.profile[name].as_string(), text, dialect), ~has_row]
    if overlaying:
        conditions.append(
            or_(cards.c.template_pk.is_(None), cards.c.template_pk.not_in(list(overlaying)))
        )
    return and_(*conditions)


def list_cards(conn: Connection, workspace_pk: int, query: CardQuery) -> JSON:
    """A page of the workspace's cards, oldest first.

    Raises:
        InvalidValue: bad paging or status, or a search over `MAX_SEARCH` characters.
        NotFound: unknown template id.
    """
    if not 1 <= query.limit <= MAX_PAGE or not 0 <= query.offset < 2**63:
        raise InvalidValue(f"limit must be 1 to {MAX_PAGE} and offset 0 to {2**63 - 1}")
    where = _filters(conn, workspace_pk, query)
    rows = conn.execute(
        _CARD.where(*where).order_by(cards.c.pk).limit(query.limit).offset(query.offset)
    ).all()
    total = conn.execute(
        select(func.count())
        .select_from(cards.join(users, users.c.pk == cards.c.user_pk))
        .where(*where)
    ).scalar_one()
    by_card: dict[int, list[Any]] = {}
    for field in conn.execute(_fields_query([row.pk for row in rows])):
        by_card.setdefault(field.card_pk, []).append(field)
    return {
        "total": total,
        "limit": query.limit,
        "offset": query.offset,
        "cards": [_render(row, by_card.get(row.pk, [])) for row in rows],
    }


def stats(conn: Connection, workspace_pk: int) -> JSON:
    """Seat count (active users) and user counts by status, in one query."""
    is_active = (users.c.deleted.is_(False)) & or_(users.c.active.is_(None), users.c.active)
    activated = exists().where(
        activation_links.c.user_pk == users.c.pk, activation_links.c.used.is_not(None)
    )

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = conn.execute(
        select(
            func.count(),
            count(is_active),
            count(users.c.deleted),
            count(is_active & activated),
        ).where(users.c.workspace_pk == workspace_pk)
    ).one()
    total, active, deleted, active_activated = (int(v) for v in row)
    return {
        "seats": active,
        "users": {
            "total": total,
            "active": active,
            "inactive": total - active,
            "deprovisioned": total - active - deleted,
            "deleted": deleted,
            "activated": active_activated,
        },
    }


def user_row(conn: Connection, user_id: str) -> Any:
    """The stored user behind a card, as `hub.core.users.render` takes it."""
    return conn.execute(
        select(
            users.c.pk,
            users.c.id,
            users.c.data,
            users.c.active,
            users.c.version,
            users.c.created,
            users.c.modified,
        ).where(users.c.id == user_id)
    ).one()


# --- admin edits -----------------------------------------------------------------------------


def _stored_row(conn: Connection, card_pk: int, name: str) -> Any | None:
    return conn.execute(
        select(card_fields).where(card_fields.c.card_pk == card_pk, card_fields.c.name == name)
    ).first()


def _field_row(conn: Connection, card: Any, name: str) -> Any | None:
    """Field `name`'s stored row, or the one it stands for without a row (`_elided_row`)."""
    return _or_elided(_stored_row(conn, card.pk, name), card, name)


def _or_elided(row: Any | None, card: Any, name: str) -> Any | None:
    """`row` if the card stores one for field `name`, else the row its profile stands for."""
    return row if row is not None else _elided_row(card.profile, name)


def _put_field(conn: Connection, card: Any, name: str, **changes: Any) -> None:
    """Change a field as the card shows it; a card without it gets it (unmanaged, unlocked).

    `changes` apply to the shown field (`_shown`: the template's value over a linked row), and
    what is stored is what shows that (`_stored`): a field still linked to the template keeps its
    IdP side, an unlinked one its own value.
    """
    template_fields: Mapping[str, str] = card.template_fields or {}
    row = _stored_row(conn, card.pk, name)
    shown = _shown(name, _or_elided(row, card, name), template_fields)
    state = (shown or _EMPTY)._replace(**changes)
    keep = _stored(name, state, template_fields)
    this_field = (card_fields.c.card_pk == card.pk) & (card_fields.c.name == name)
    if keep is None or _elided(name, keep, card.profile):
        conn.execute(delete(card_fields).where(this_field))
    elif row is None:
        conn.execute(card_fields.insert().values(card_pk=card.pk, name=name, **keep._asdict()))
    else:
        conn.execute(update(card_fields).where(this_field).values(**keep._asdict()))
    conn.execute(update(cards).where(cards.c.pk == card.pk).values(modified=now_us()))


def edit_field(
    conn: Connection, workspace_pk: int, card_ref: str, name: str, value: str | None
) -> JSON:
    """Admin edit of one field's value: it becomes manual and unlinked (lock unchanged).

    Raises:
        NotFound: no such card. InvalidValue: unknown field or value too long.
    """
    templates.check_value(templates.check_field_name(name), value)
    card = _load(conn, workspace_pk, card_ref)
    _put_field(conn, card, name, value=value, source="manual", linked=False)
    return _render_one(conn, cards.c.pk == card.pk)


def _existing(conn: Connection, workspace_pk: int, card_ref: str, name: str) -> Any:
    templates.check_field_name(name)
    card = _load(conn, workspace_pk, card_ref)
    shown = _shown(name, _field_row(conn, card, name), card.template_fields or {})
    if shown is None:
        raise NotFound(f"the card has no field {name!r}")
    return card


def unlock_field(conn: Connection, workspace_pk: int, card_ref: str, name: str) -> JSON:
    """Unlock a field for the owner; it stops following the IdP or template (unlinked).

    Raises:
        NotFound: no such card or field. InvalidValue: unknown field.
    """
    card = _existing(conn, workspace_pk, card_ref, name)
    _put_field(conn, card, name, locked=False, linked=False)
    return _render_one(conn, cards.c.pk == card.pk)


def lock_field(conn: Connection, workspace_pk: int, card_ref: str, name: str) -> JSON:
    """Lock a field against the owner (its value and link stay as they are).

    Raises:
        NotFound: no such card or field. InvalidValue: unknown field.
    """
    card = _existing(conn, workspace_pk, card_ref, name)
    _put_field(conn, card, name, locked=True)
    return _render_one(conn, cards.c.pk == card.pk)


def relink_field(conn: Connection, workspace_pk: int, card_ref: str, name: str) -> JSON:
    """Link a field again: it takes its upstream's current value and is locked and linked.

    Upstream is the card's template if that sets the field, else the IdP's last value (kept
    on the field, so no call to the IdP is needed).

    Raises:
        NotFound: no such card. InvalidValue: unknown field.
        Conflict: neither the IdP nor the card's template provides this field.
    """
    templates.check_field_name(name)
    card = _load(conn, workspace_pk, card_ref)
    template_fields: Mapping[str, str] = card.template_fields or {}
    stored = _field_row(conn, card, name)
    if name in template_fields:
        value, source = template_fields[name], "template"
    elif stored is not None and stored.managed:
        value, source = stored.idp_value, "idp"
    else:
        raise Conflict(f"{name} is neither mapped from the IdP nor set by the card's template")
    _put_field(conn, card, name, value=value, source=source, locked=True, linked=True)
    return _render_one(conn, cards.c.pk == card.pk)


def assign_template(
    conn: Connection, workspace_pk: int, card_ref: str, template_id: str
) -> tuple[JSON, JSON]:
    """Make a card inherit a template by hand; returns the card and the template.

    A previous template is undone first (see `unassign_template`). Linked fields show the
    template's values; unlinked fields (admin or owner edits) keep theirs.

    Raises:
        NotFound: no such card or template.
    """
    template = templates.load(conn, workspace_pk, template_id)
    card = _load(conn, workspace_pk, card_ref)
    this_card = cards.c.pk == card.pk
    templates.revert_fields(conn, this_card, list(card.template_fields or {}))
    templates.adopt_fields(conn, this_card, list(template.fields))
    conn.execute(update(cards).where(this_card).values(template_pk=template.pk, modified=now_us()))
    return _render_one(conn, this_card), templates.render(template)


def unassign_template(conn: Connection, workspace_pk: int, card_ref: str) -> JSON:
    """Undo a card's template by hand; edited (unlinked) fields keep their value.

    Linked template fields go back to the IdP's last value, or away for fields the IdP does not
    provide.

    Raises:
        NotFound: no such card.
    """
    card = _load(conn, workspace_pk, card_ref)
    this_card = cards.c.pk == card.pk
    templates.revert_fields(conn, this_card, list(card.template_fields or {}))
    conn.execute(update(cards).where(this_card).values(template_pk=None, modified=now_us()))
    return _render_one(conn, this_card)


# --- the owner -------------------------------------------------------------------------------


def owner_card(conn: Connection, workspace_pk: int, user_pk: int) -> JSON:
    """The card of the signed-in owner.

    Raises:
        NotFound: the user has no card.
    """
    return _render_one(conn, (cards.c.workspace_pk == workspace_pk) & (cards.c.user_pk == user_pk))


def owner_edit(
    conn: Connection, workspace_pk: int, user_pk: int, values: Mapping[str, str | None]
) -> JSON:
    """The owner edits their own card: unlocked fields only, all of them or none.

    Edited fields become manual and unlinked, so the IdP's next update leaves them alone.

    Raises:
        Forbidden: a field is locked (the detail names every locked field); nothing changes.
        InvalidValue: unknown field or value too long. NotFound: the user has no card.
    """
    for name, value in values.items():
        templates.check_value(templates.check_field_name(name), value)
    card = _card_row(
        conn, (cards.c.workspace_pk == workspace_pk) & (cards.c.user_pk == user_pk), lock=True
    )
    if card is None:
        raise NotFound("you have no card")
    shown = _shown_fields(card, conn.execute(_fields_query([card.pk])).all())
    locked = [name for name in values if name in shown and shown[name].locked]
    if locked:
        raise Forbidden(
            f"locked by your workspace admin: {', '.join(locked)}; ask an admin to unlock "
            f"{'it' if len(locked) == 1 else 'them'}. Nothing was changed"
        )
    for name, value in values.items():
        _put_field(conn, card, name, value=value, source="manual", linked=False)
    return _render_one(conn, cards.c.pk == card.pk)
