"""PostgreSQL: require the ICU root collation the hub lowers text with

Revision ID: 0020
Revises: 0019

From this revision the hub lowers text on PostgreSQL with `lower()` under the ICU root collation
`und-x-icu` (`hub.core.filtering`), so a case-insensitive filter value always matches itself
whatever the database's LC_CTYPE ("İ" and a word-final "Σ" lower as Python lowers them). A server
built without ICU has no such collation and every such filter would fail: this revision stops
`scim-hub db upgrade` there with a message saying so instead. SQLite needs nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Refuse a PostgreSQL server without the `und-x-icu` collation."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    found = bind.execute(sa.text("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'")).first()
    if found is None:
        raise RuntimeError(
            "this PostgreSQL server has no ICU collation 'und-x-icu': scim-hub lowers text with "
            "it (case-insensitive filters). Use a server built with ICU (--with-icu; Debian's, "
            "the official images' and the major cloud services' are)."
        )


def downgrade() -> None:
    """Nothing to undo: the revision only checks."""
