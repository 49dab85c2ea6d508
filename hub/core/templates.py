"""Templates: shared card fields and the rule that picks the users who get them.

A rule is a SCIM filter (RFC 7644 §3.4.2.2) over the card profile: the profile field names
(`department`, `job_title`…) and `userName`, e.g. `department eq "Marketing" or department eq
"Sales"`. At provisioning only, the first template in the admin's order whose rule matches the new
user's profile applies (`first_match`). A card that inherits a template shows the template's value
for every field the template sets, over the IdP's value, for as long as it inherits it.

Cards do not store their template's values: a card read lays them over the card's linked fields
(`hub.core.cards`), and a card's modified time is the later of its own and its template's. So an
edit that changes or adds values writes the template row alone. Dropping a profile field the IdP
does not map, and deleting a template, reach the inheriting cards through a fixed number of
set-based statements (`revert_fields`, `detach`), never a loop over cards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    null,
    select,
    update,
)

import rules
from hub.core.clock import now_us, to_iso
from hub.core.dialects import PROFILE_FIELDS
from hub.core.errors import Conflict, InvalidFilter, InvalidValue, NotFound
from hub.core.ids import new_id
from hub.core.models import card_fields, cards, templates
from hub.core.profile import describe_profile
from hub.core.sql import Prepared

JSON = dict[str, Any]

#: Card fields only a template (or an admin, or the owner) sets; the IdP never sends them.
TEMPLATE_ONLY_FIELDS: Final = ("logo_url", "website", "address", "brand_colour")
#: Every field a card can hold.
CARD_FIELDS: Final = (*PROFILE_FIELDS, *TEMPLATE_ONLY_FIELDS)
MAX_VALUE_LENGTH: Final = 2048
MAX_NAME_LENGTH: Final = 200

_COLUMNS = (
    templates.c.pk,
    templates.c.id,
    templates.c.name,
    templates.c.rule,
    templates.c.position,
    templates.c.fields,
    templates.c.created,
    templates.c.modified,
)


class TemplateChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A template as an admin sends it; on edit, attributes left out stay as they are.

    `fields` replaces the template's whole field map; `rule` null means "never applies on its
    own" (the template can still be assigned by hand).
    """

    name: str | msgspec.UnsetType = msgspec.UNSET
    rule: str | msgspec.UnsetType | None = msgspec.UNSET
    fields: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


def check_field_name(name: str) -> str:
    """Return `name` if it is a card field.

    Raises:
        InvalidValue: it is not one of `CARD_FIELDS`.
    """
    if name not in CARD_FIELDS:
        raise InvalidValue(
            f"unknown card field {name!r}; card fields are: {', '.join(CARD_FIELDS)}"
        )
    return name


def check_value(name: str, value: str | None) -> str | None:
    """Return a field value if it is acceptable (a string of at most 2048 characters, or null).

    Raises:
        InvalidValue: it is too long.
    """
    if value is not None and len(value) > MAX_VALUE_LENGTH:
        raise InvalidValue(f"{name} is longer than {MAX_VALUE_LENGTH} characters")
    return value


def parse_rule(text: str) -> rules.Filter:
    """Parse and check a template rule.

    Raises:
        InvalidFilter: the rule is not valid SCIM filter syntax (the detail gives the position
            and shows it with a caret), or names an attribute rules cannot use.
    """
    try:
        parsed = rules.parse_filter(text)
        rules.compile_predicate(parsed, describe_profile)
    except rules.FilterSyntaxError as exc:
        raise InvalidFilter(f"invalid rule: {exc}") from exc
    except rules.UnknownAttribute as exc:
        usable = ", ".join(sorted({*PROFILE_FIELDS, "userName"}))
        raise InvalidFilter(f"invalid rule: {exc}; rules may use {usable}") from exc
    except rules.InvalidComparison as exc:
        raise InvalidFilter(f"invalid rule: {exc}") from exc
    return parsed


@lru_cache(maxsize=512)
def _predicate(text: str) -> Callable[[Mapping[str, Any]], bool]:
    return rules.compile_predicate(parse_rule(text), describe_profile)


def matches(rule: str | None, document: Mapping[str, Any]) -> bool:
    """Say whether a stored rule matches a rule document (see `hub.core.profile.rule_input`)."""
    if not rule:
        return False
    try:
        return _predicate(rule)(document)
    except InvalidFilter:  # rules are checked on save; a stored bad rule matches nobody
        return False


def render(row: Any) -> JSON:
    """A template as the admin API shows it."""
    return {
        "id": row.id,
        "name": row.name,
        "rule": row.rule,
        "position": row.position,
        "fields": dict(row.fields),
        "created": to_iso(row.created),
        "modified": to_iso(row.modified),
    }


#: Templates with a rule, in the admin's order: what every provisioned user is tried against.
_WITH_RULES = Prepared(
    select(*_COLUMNS)
    .where(templates.c.workspace_pk == bindparam("b_ws"), templates.c.rule.is_not(None))
    .order_by(templates.c.position, templates.c.pk)
)


def first_match(conn: Connection, workspace_pk: int, document: Mapping[str, Any]) -> Any | None:
    """The first template, in the admin's order, whose rule matches a new user's profile."""
    rows = _WITH_RULES.all(conn, b_ws=workspace_pk)
    return next((row for row in rows if matches(row.rule, document)), None)


def rule_templates(conn: Connection, workspace_pk: int) -> list[Any]:
    """The templates with a rule, in the admin's order: what `first_match` tries (bulk paths)."""
    return _WITH_RULES.all(conn, b_ws=workspace_pk)


def first_of(candidates: Sequence[Any], document: Mapping[str, Any]) -> Any | None:
    """The first of `rule_templates` whose rule matches a new user's rule document."""
    return next((row for row in candidates if matches(row.rule, document)), None)


def list_templates(conn: Connection, workspace_pk: int) -> list[JSON]:
    """Every template of the workspace, in the admin's order."""
    rows = conn.execute(
        select(*_COLUMNS)
        .where(templates.c.workspace_pk == workspace_pk)
        .order_by(templates.c.position, templates.c.pk)
    ).all()
    return [render(row) for row in rows]


def load(conn: Connection, workspace_pk: int, template_id: str, *, lock: bool = False) -> Any:
    """One template row of the workspace; `lock` holds it until commit (PostgreSQL).

    Raises:
        NotFound: there is no such template in this workspace.
    """
    stmt = select(*_COLUMNS).where(
        templates.c.workspace_pk == workspace_pk, templates.c.id == template_id
    )
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"no template with id {template_id!r}")
    return row


def get_template(conn: Connection, workspace_pk: int, template_id: str) -> JSON:
    """Read one template.

    Raises:
        NotFound: there is no such template in this workspace.
    """
    return render(load(conn, workspace_pk, template_id))


def _checked_name(name: str) -> str:
    clean = name.strip()
    if not clean or len(clean) > MAX_NAME_LENGTH:
        raise InvalidValue(f"a template name must be 1 to {MAX_NAME_LENGTH} characters")
    return clean


def _checked_fields(fields: Mapping[str, str]) -> dict[str, str]:
    return {check_field_name(k): v for k, v in fields.items() if check_value(k, v) is not None}


def _checked_rule(rule: str | None) -> str | None:
    if rule is None or not rule.strip():
        return None
    parse_rule(rule)
    return rule


def _name_taken(conn: Connection, workspace_pk: int, name: str, but: int | None = None) -> None:
    where = [templates.c.workspace_pk == workspace_pk, templates.c.name == name]
    if but is not None:
        where.append(templates.c.pk != but)
    if conn.execute(select(templates.c.pk).where(*where)).first() is not None:
        raise Conflict(f"a template named {name!r} already exists in this workspace")


def create_template(conn: Connection, workspace_pk: int, body: TemplateChanges) -> JSON:
    """Create a template at the end of the admin's order.

    Raises:
        InvalidValue: no name, or an unknown card field.
        InvalidFilter: the rule is not valid (the detail gives the position).
        Conflict: another template has that name.
    """
    if isinstance(body.name, msgspec.UnsetType):
        raise InvalidValue("a template needs a name")
    name = _checked_name(body.name)
    rule = _checked_rule(None if isinstance(body.rule, msgspec.UnsetType) else body.rule)
    fields = _checked_fields({} if isinstance(body.fields, msgspec.UnsetType) else body.fields)
    _name_taken(conn, workspace_pk, name)
    last = conn.execute(
        select(func.max(templates.c.position)).where(templates.c.workspace_pk == workspace_pk)
    ).scalar()
    now = now_us()
    pk = conn.execute(
        templates.insert()
        .values(
            id=new_id(),
            workspace_pk=workspace_pk,
            name=name,
            rule=rule,
            position=0 if last is None else last + 1,
            fields=fields,
            created=now,
            modified=now,
        )
        .returning(templates.c.pk)
    ).scalar_one()
    return render(conn.execute(select(*_COLUMNS).where(templates.c.pk == pk)).one())


def edit_template(
    conn: Connection, workspace_pk: int, template_id: str, body: TemplateChanges
) -> JSON:
    """Change a template; every inheriting card shows the change at its next read.

    Only dropping or adding a profile field the IdP does not map writes the inheriting cards (one
    set-based statement, `revert_fields` or `adopt_fields`); values changed or added are read
    from the template.

    Raises:
        NotFound, InvalidValue, InvalidFilter, Conflict.
    """
    # Locked: the fields it reverts are those no concurrent edit or delete has changed since.
    row = load(conn, workspace_pk, template_id, lock=True)
    values: dict[str, Any] = {"modified": now_us()}
    if not isinstance(body.name, msgspec.UnsetType):
        values["name"] = _checked_name(body.name)
        _name_taken(conn, workspace_pk, values["name"], but=row.pk)
    if not isinstance(body.rule, msgspec.UnsetType):
        values["rule"] = _checked_rule(body.rule)
    if not isinstance(body.fields, msgspec.UnsetType):
        new = _checked_fields(body.fields)
        # Changed and added values reach the cards through the template row (and `modified`).
        inheriting = cards.c.template_pk == row.pk
        revert_fields(conn, inheriting, [k for k in row.fields if k not in new])
        adopt_fields(conn, inheriting, [k for k in new if k not in row.fields])
        values["fields"] = new
    conn.execute(update(templates).where(templates.c.pk == row.pk).values(**values))
    return render(conn.execute(select(*_COLUMNS).where(templates.c.pk == row.pk)).one())


def delete_template(conn: Connection, workspace_pk: int, template_id: str) -> None:
    """Delete a template; its cards keep their current values but no longer inherit.

    Raises:
        NotFound: there is no such template in this workspace.
    """
    # Locked: the values the cards keep are the template's last, not one a concurrent edit replaces.
    row = load(conn, workspace_pk, template_id, lock=True)
    detach(conn, cards.c.template_pk == row.pk, row.fields)
    conn.execute(delete(templates).where(templates.c.pk == row.pk))


def reorder(conn: Connection, workspace_pk: int, order: Sequence[str]) -> list[JSON]:
    """Set the admin's order: `order` lists every template id once, first match first.

    Raises:
        InvalidValue: `order` misses a template, repeats one, or names an unknown one.
    """
    rows = conn.execute(
        select(templates.c.pk, templates.c.id).where(templates.c.workspace_pk == workspace_pk)
    ).all()
    known = {row.id: row.pk for row in rows}
    missing = [tid for tid in known if tid not in order]
    unknown = [tid for tid in order if tid not in known]
    if missing or unknown or len(set(order)) != len(order):
        raise InvalidValue(
            "order must list every template id exactly once"
            f" (missing: {missing}, unknown: {unknown})"
        )
    if order:
        stmt = (
            update(templates)
            .where(templates.c.pk == bindparam("t_pk"))
            .values(position=bindparam("t_position"))
        )
        conn.execute(stmt, [{"t_pk": known[tid], "t_position": i} for i, tid in enumerate(order)])
    return list_templates(conn, workspace_pk)


def preview(conn: Connection, workspace_pk: int, rule: str) -> JSON:
    """Count the workspace's current (active) users a rule would match at provisioning.

    One query reads the stored rule documents of active cards; the rule is compiled once and
    evaluated in memory by the same evaluator provisioning uses, so the count cannot disagree.

    Raises:
        InvalidFilter: the rule is not valid.
    """
    predicate = rules.compile_predicate(parse_rule(rule), describe_profile)
    rows = conn.execute(
        select(cards.c.profile).where(cards.c.workspace_pk == workspace_pk, cards.c.active)
    )
    total = matched = 0
    for (document,) in rows:
        total += 1
        matched += predicate(document)
    return {"rule": rule, "matches": matched, "activeUsers": total}


# --- set-based card updates ----------------------------------------------------------------


def _fields_of(where: ColumnElement[bool]) -> ColumnElement[bool]:
    return card_fields.c.card_pk.in_(select(cards.c.pk).where(where))


def revert_fields(conn: Connection, where: ColumnElement[bool], names: Sequence[str]) -> None:
    """Undo template fields `names` on the cards selected by `where` (linked fields only).

    A field the IdP manages goes back to the IdP's last value, and a template-only field goes
    away, with no write: a linked field stores its IdP side and template-only fields have no row
    (`hub.core.cards`). An unmanaged profile field's placeholder goes back to empty and editable:
    one UPDATE, run only when such a field is dropped.
    """
    when = (card_fields.c.linked, card_fields.c.source == "template")
    _set_unmanaged(
        conn, where, names, when, value=None, source="manual", locked=False, linked=False
    )


def adopt_fields(conn: Connection, where: ColumnElement[bool], names: Sequence[str]) -> None:
    """Lay template fields `names` over the empty, editable ones of the cards selected by `where`.

    The inverse of `revert_fields`: a profile field the IdP does not manage has an empty,
    unlocked row for the owner to fill; while a card inherits a template setting the field,
    the template's value shows (locked) in its place. A card given the template at its creation
    gets that placeholder at once (`hub.core.cards`); a template assigned by hand, or one
    that gains the field, turns the empty rows into it here (one UPDATE, only for such fields).
    A row holding a value (an admin or owner edit) keeps it.
    """
    when = (
        ~card_fields.c.linked,
        ~card_fields.c.locked,
        card_fields.c.source == "manual",
        card_fields.c.value.is_(None),
    )
    _set_unmanaged(conn, where, names, when, source="template", locked=True, linked=True)


def _set_unmanaged(
    conn: Connection,
    where: ColumnElement[bool],
    names: Sequence[str],
    when: Sequence[ColumnElement[bool]],
    **values: Any,
) -> None:
    """Set `values` on the rows of profile fields `names` the IdP does not manage, `when` true."""
    profile = [name for name in names if name in PROFILE_FIELDS]
    if profile:
        conn.execute(
            update(card_fields)
            .where(
                _fields_of(where), card_fields.c.name.in_(profile), ~card_fields.c.managed, *when
            )
            .values(**values)
        )


def detach(conn: Connection, where: ColumnElement[bool], fields: Mapping[str, str]) -> None:
    """Make the cards selected by `where` stop inheriting `fields`, keeping the values they show.

    Each field the cards showed from the template gets the template's value stored, unlinked
    (still locked): one UPDATE of the linked rows and one INSERT … SELECT per field for cards
    without a row for it. A card without a row may still have the field from the IdP (its
    profile's value, `hub.core.cards`): the new row stays managed and keeps that value as the
    IdP's, so relinking brings it back.
    """
    if fields:
        conn.execute(
            update(card_fields)
            .where(_fields_of(where), card_fields.c.name.in_(list(fields)), card_fields.c.linked)
            .values(
                value=case(dict(fields), value=card_fields.c.name),
                source="template",
                linked=False,
            )
        )
        for name, value in fields.items():
            has_field = exists().where(
                card_fields.c.card_pk == cards.c.pk, card_fields.c.name == name
            )
            idp_value: ColumnElement[Any] = (
                cards.c.profile[name].as_string() if name in PROFILE_FIELDS else null()
            )
            missing = select(
                cards.c.pk,
                literal(name),
                literal(value),
                literal("template"),
                literal(True),
                literal(False),
                idp_value.is_not(None),
                idp_value,
            ).where(where, ~has_field)
            conn.execute(
                card_fields.insert().from_select(
                    [
                        "card_pk",
                        "name",
                        "value",
                        "source",
                        "locked",
                        "linked",
                        "managed",
                        "idp_value",
                    ],
                    missing,
                )
            )
    conn.execute(update(cards).where(where).values(template_pk=None, modified=now_us()))
