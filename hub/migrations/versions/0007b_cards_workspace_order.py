"""admin dashboard: Team Cards keyset paging index on cards (workspace, pk)

A revision of its own because it needs the cards table (0003), while the dashboard's other
tables (0007) need only the admins.

Revision ID: 0007b
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0007b"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cards_workspace_order", "cards", ["workspace_pk", "pk"])


def downgrade() -> None:
    op.drop_index("ix_cards_workspace_order", table_name="cards")
