"""activity: the indexes the user filter can use

Revision ID: 0015
Revises: 0008

The provisioning log's user filter (`lower(user_name) = … OR resource_id = …`) could use neither
index of revision 0008: one was on `user_name` itself, not its lower-cased form, and an `OR`
across two columns is read from indexes only when both terms are. It read every record of the
workspace newest first, while every request paid to keep both indexes. The name is now indexed
lower-cased, and each index holds only the records that have a value (a list or a `userName eq`
query records neither). The failures (the `outcome=error` filter, which also walked every record)
get an index of their own, which only failures pay for.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0008"
branch_labels = None
depends_on = None

_NAMED = sa.text("user_name IS NOT NULL")
_IDENTIFIED = sa.text("resource_id IS NOT NULL")
_FAILED = sa.text("status >= 400")


def upgrade() -> None:
    """Replace the two look-up indexes with lower-cased, partial ones; index the failures."""
    op.drop_index("ix_activity_user", table_name="activity")
    op.drop_index("ix_activity_resource", table_name="activity")
    op.create_index(
        "ix_activity_user_name",
        "activity",
        ["workspace_pk", sa.text("lower(user_name)")],
        sqlite_where=_NAMED,
        postgresql_where=_NAMED,
    )
    op.create_index(
        "ix_activity_resource_id",
        "activity",
        ["workspace_pk", "resource_id"],
        sqlite_where=_IDENTIFIED,
        postgresql_where=_IDENTIFIED,
    )
    op.create_index(
        "ix_activity_errors",
        "activity",
        ["workspace_pk", "pk"],
        sqlite_where=_FAILED,
        postgresql_where=_FAILED,
    )


def downgrade() -> None:
    """Put revision 0008's indexes back."""
    op.drop_index("ix_activity_errors", table_name="activity")
    op.drop_index("ix_activity_resource_id", table_name="activity")
    op.drop_index("ix_activity_user_name", table_name="activity")
    op.create_index("ix_activity_resource", "activity", ["workspace_pk", "resource_id"])
    op.create_index("ix_activity_user", "activity", ["workspace_pk", "user_name"])
