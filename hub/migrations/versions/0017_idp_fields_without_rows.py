"""card_fields: a field showing the IdP's value, locked and linked, may have no row

Revision ID: 0017
Revises: 0016

From this revision a card stores no row for a profile field that holds what the IdP sent and
nothing else (locked, linked, managed): a read takes the value from the card's `profile`, the
IdP values of its last sync (`hub.core.cards`). A create wrote ten field rows; for a user whose
IdP fills every mapped field it now writes one or none. Rows stored before stay valid as they
are, so the upgrade changes nothing. The downgrade writes the missing rows back, since code
before this revision shows a field without a row as no field at all.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
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
    """Store a row for every profile field a card shows from its profile alone."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in _PROFILE_FIELDS:
        value = (
            f"(c.profile ->> '{name}')" if postgresql else f"json_extract(c.profile, '$.{name}')"
        )
        true = "true" if postgresql else "1"
        op.execute(
            "INSERT INTO card_fields"
            " (card_pk, name, value, source, locked, linked, managed, idp_value)"
            f" SELECT c.pk, '{name}', {value}, 'idp', {true}, {true}, {true}, {value}"
            f" FROM cards c WHERE {value} IS NOT NULL AND NOT EXISTS"
            f" (SELECT 1 FROM card_fields f WHERE f.card_pk = c.pk AND f.name = '{name}')"
        )
