"""cards stop storing their template's values: a card read lays them over the linked fields

Revision ID: 0013
Revises: 0007b

Before 0013 every card inheriting a template stored a copy of each template value on its own
field row (linked, source "template"), so a template edit rewrote every such card. From 0013 on
(`hub.core.cards`) a linked field stores its IdP side and the card's template is read with the
card. This revision carries the stored cards over, for the rows a card's template sets and the
card still follows (linked, source "template"):

* a field the IdP manages stores the IdP's last value again (source "idp");
* a profile field the IdP does not map becomes an empty placeholder (still linked and locked);
* a template-only field's row goes (no row: the card shows its template's value).

Every card shows exactly what it showed before. Downgrading copies the template values back onto
the linked rows and gives cards a row for each template-only field they show.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0007b"
branch_labels = None
depends_on = None

# Frozen copy of hub.core.dialects.PROFILE_FIELDS as of this revision.
_PROFILE_FIELDS = (
    "display_name",
    "first_name",
    "last_name",
    "job_title",
    "department",
    "company_name",
    "office_phone",
    "mobile_phone",
    "email",
    "photo_url",
)
_PROFILE = ", ".join(f"'{name}'" for name in _PROFILE_FIELDS)


def _sets(field: str) -> str:
    """SQL: the template of the card owning `card_fields` sets field `field` (an SQL expression)."""
    if op.get_bind().dialect.name == "postgresql":
        return f"(t.fields -> {field}) IS NOT NULL"
    return f"json_type(t.fields, '$.' || {field}) IS NOT NULL"


def _value(field: str) -> str:
    """SQL: the value the card's template (alias `t`) sets for `field`."""
    if op.get_bind().dialect.name == "postgresql":
        return f"t.fields ->> {field}"
    return f"json_extract(t.fields, '$.' || {field})"


def _inherited() -> str:
    """SQL condition on `card_fields`: a linked row its card's template sets."""
    return f"""card_fields.linked AND EXISTS (
        SELECT 1 FROM cards c JOIN templates t ON t.pk = c.template_pk
        WHERE c.pk = card_fields.card_pk AND {_sets("card_fields.name")})"""


def upgrade() -> None:
    ours = f"{_inherited()} AND card_fields.source = 'template'"
    op.execute(f"UPDATE card_fields SET value = idp_value, source = 'idp' WHERE {ours} AND managed")
    op.execute(
        f"UPDATE card_fields SET value = NULL WHERE {ours} AND NOT managed AND name IN ({_PROFILE})"
    )
    op.execute(f"DELETE FROM card_fields WHERE {ours} AND NOT managed AND name NOT IN ({_PROFILE})")


def downgrade() -> None:
    op.execute(
        f"""UPDATE card_fields SET source = 'template', value = (
            SELECT {_value("card_fields.name")} FROM cards c JOIN templates t
            ON t.pk = c.template_pk WHERE c.pk = card_fields.card_pk)
        WHERE {_inherited()}"""
    )
    if op.get_bind().dialect.name == "postgresql":
        each = "jsonb_each_text(t.fields) AS f(key, value)"
    else:
        each = "json_each(t.fields) AS f"
    op.execute(
        f"""INSERT INTO card_fields
            (card_pk, name, value, source, locked, linked, managed, idp_value)
        SELECT c.pk, f.key, f.value, 'template', TRUE, TRUE, FALSE, NULL
        FROM cards c JOIN templates t ON t.pk = c.template_pk, {each}
        WHERE NOT EXISTS (
            SELECT 1 FROM card_fields o WHERE o.card_pk = c.pk AND o.name = f.key)"""
    )
