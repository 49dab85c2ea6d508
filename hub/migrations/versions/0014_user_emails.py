"""user_emails: every user's email values, folded, for look-ups by email

Revision ID: 0014
Revises: 0002

Microsoft Entra ID can match users on their work email, `GET /Users?filter=emails[type eq "work"]
.value eq "…"`, before every create; answered from the documents it reads every user of the
workspace. This revision adds `user_emails` (see `hub.core.models.UserEmail`) and fills it from
the stored users: each string `emails[].value`, lowered with Python's `str.lower()`, up to 320
characters.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of hub.core.models.EMAIL_KEY_MAX and the key rule of hub.core.users as of this
# revision.
_KEY_MAX = 320
_BATCH = 5000

_users = sa.table(
    "users",
    sa.column("pk", sa.Integer),
    sa.column("workspace_pk", sa.Integer),
    sa.column("data", sa.JSON),
)


def _keys(data: Any) -> set[str]:
    emails = data.get("emails") if isinstance(data, dict) else None
    if not isinstance(emails, list):
        return set()
    values = (e.get("value") for e in emails if isinstance(e, dict))
    return {k for v in values if isinstance(v, str) and len(k := v.lower()) <= _KEY_MAX}


def upgrade() -> None:
    """Create `user_emails` and fill it from every stored user."""
    emails = op.create_table(
        "user_emails",
        sa.Column("workspace_pk", sa.Integer(), nullable=False),
        sa.Column("value_key", sa.String(_KEY_MAX), nullable=False),
        sa.Column(
            "user_pk",
            sa.Integer(),
            sa.ForeignKey("users.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("workspace_pk", "value_key", "user_pk"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_user_emails_user", "user_emails", ["user_pk"])
    conn = op.get_bind()
    last = 0
    while True:
        batch = conn.execute(
            sa.select(_users.c.pk, _users.c.workspace_pk, _users.c.data)
            .where(_users.c.pk > last)
            .order_by(_users.c.pk)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        rows = [
            {"workspace_pk": ws, "value_key": key, "user_pk": pk}
            for pk, ws, data in batch
            for key in _keys(data)
        ]
        if rows:
            conn.execute(emails.insert(), rows)
        last = batch[-1][0]


def downgrade() -> None:
    """Drop `user_emails`."""
    op.drop_index("ix_user_emails_user", table_name="user_emails")
    op.drop_table("user_emails")
