"""admin dashboard: passwords, failed sign-in counters, sessions

Revision ID: 0007
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_credentials",
        sa.Column("admin_pk", sa.Integer(), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("password_set", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure", sa.BigInteger(), nullable=True),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["admin_pk"], ["admins.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("admin_pk"),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("admin_pk", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("revoked", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["admin_pk"], ["admins.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index("ix_admin_sessions_admin_pk", "admin_sessions", ["admin_pk"])


def downgrade() -> None:
    op.drop_index("ix_admin_sessions_admin_pk", table_name="admin_sessions")
    op.drop_table("admin_sessions")
    op.drop_table("admin_credentials")
