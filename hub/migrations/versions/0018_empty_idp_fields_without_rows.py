"""card_fields: a mapped field the IdP left empty may have no row either

Revision ID: 0018
Revises: 0017

From this revision a card stores no row for a profile field the connector maps and the IdP sent
no value for (locked, linked, managed, empty): a read finds the field's null in the card's
`profile`, as it finds an IdP value there since 0017 (`hub.core.cards`). Most IdPs map the
photo and few send one, so a create wrote that one row; it now writes none. Rows stored before
stay valid as they are, so the upgrade changes nothing. The downgrade writes the missing rows
back, since code before this revision shows a field with neither row nor value as no field.
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: The card profile fields as of this revision (`hub.core.dialects.PROFILE_FIELDS`).
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


def upgrade() -> None:
    """Nothing to change: rows stored before this revision read as they did."""


def downgrade() -> None:
    """Store a row for every profile field a card holds as a null in its profile alone."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    true = "true" if postgresql else "1"
    for name in _PROFILE_FIELDS:
        empty = (
            f"jsonb_typeof(c.profile -> '{name}') = 'null'"
            if postgresql
            else f"json_type(c.profile, '$.{name}') = 'null'"
        )
        op.execute(
            "INSERT INTO card_fields"
            " (card_pk, name, value, source, locked, linked, managed, idp_value)"
            f" SELECT c.pk, '{name}', NULL, 'idp', {true}, {true}, {true}, NULL"
            f" FROM cards c WHERE {empty} AND NOT EXISTS"
            f" (SELECT 1 FROM card_fields f WHERE f.card_pk = c.pk AND f.name = '{name}')"
        )
