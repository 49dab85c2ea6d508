"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 22:10:31.062607
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "workspaces",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("send_activation_email", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "admins",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_pk", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_pk"], ["workspaces.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("workspace_pk", "email"),
    )
    op.create_table(
        "connectors",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("idp", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("last_request", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["workspace_pk"], ["workspaces.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("workspace_pk", "name"),
    )
    op.create_table(
        "groups",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_pk", sa.Integer(), nullable=False),
        sa.Column("connector_pk", sa.Integer(), nullable=True),
        sa.Column("display_name", sa.String(length=512), nullable=False),
        sa.Column("display_name_key", sa.String(length=512), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("modified", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["connector_pk"], ["connectors.pk"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["workspace_pk"], ["workspaces.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_groups_workspace_external", ["workspace_pk", "external_id"], unique=False
        )
        batch_op.create_index(
            "ix_groups_workspace_name", ["workspace_pk", "display_name_key"], unique=False
        )

    op.create_table(
        "tokens",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_pk", sa.Integer(), nullable=False),
        sa.Column("connector_pk", sa.Integer(), nullable=False),
        sa.Column("admin_pk", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=16), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("last_used", sa.BigInteger(), nullable=True),
        sa.Column("revoked", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["admin_pk"], ["admins.pk"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["connector_pk"], ["connectors.pk"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_pk"], ["workspaces.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("digest"),
        sa.UniqueConstraint("id"),
    )
    op.create_table(
        "users",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_pk", sa.Integer(), nullable=False),
        sa.Column("connector_pk", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(length=512), nullable=False),
        sa.Column("user_name_key", sa.String(length=512), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("modified", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["connector_pk"], ["connectors.pk"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["workspace_pk"], ["workspaces.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("workspace_pk", "user_name_key", name="uq_users_workspace_username"),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(
            "ix_users_workspace_external", ["workspace_pk", "external_id"], unique=False
        )
        batch_op.create_index(
            "ix_users_workspace_pk", ["workspace_pk", "deleted", "pk"], unique=False
        )

    op.create_table(
        "memberships",
        sa.Column("group_pk", sa.Integer(), nullable=False),
        sa.Column("user_pk", sa.Integer(), nullable=False),
        sa.Column("display", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(["group_pk"], ["groups.pk"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_pk"], ["users.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_pk", "user_pk"),
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index("ix_memberships_user", ["user_pk"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_memberships_user")

    op.drop_table("memberships")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_workspace_pk")
        batch_op.drop_index("ix_users_workspace_external")

    op.drop_table("users")
    op.drop_table("tokens")
    with op.batch_alter_table("groups", schema=None) as batch_op:
        batch_op.drop_index("ix_groups_workspace_name")
        batch_op.drop_index("ix_groups_workspace_external")

    op.drop_table("groups")
    op.drop_table("connectors")
    op.drop_table("admins")
    op.drop_table("workspaces")
