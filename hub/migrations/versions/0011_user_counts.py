"""live-user counts per workspace, kept by triggers

Revision ID: 0011
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0002"
branch_labels = None
depends_on = None

# Eight shards per workspace (`pk % 8`), as hub.core.models.USER_COUNT_SHARDS says. A user
# counts while `deleted` is false; every INSERT, UPDATE OF deleted and DELETE moves the count.
# Deletes only decrement: a workspace's own deletion cascades to its counts, and an upsert there
# would recreate a row for a workspace that is going away.
_SQLITE = [
    """
    CREATE TRIGGER user_counts_insert AFTER INSERT ON users WHEN NOT NEW.deleted BEGIN
      INSERT INTO user_counts (workspace_pk, shard, live) VALUES (NEW.workspace_pk, NEW.pk % 8, 1)
      ON CONFLICT (workspace_pk, shard) DO UPDATE SET live = live + 1;
    END
    """,
    """
    CREATE TRIGGER user_counts_update AFTER UPDATE OF deleted ON users
    WHEN OLD.deleted IS NOT NEW.deleted BEGIN
      INSERT INTO user_counts (workspace_pk, shard, live)
      VALUES (NEW.workspace_pk, NEW.pk % 8, CASE WHEN NEW.deleted THEN -1 ELSE 1 END)
      ON CONFLICT (workspace_pk, shard) DO UPDATE SET live = live + excluded.live;
    END
    """,
    """
    CREATE TRIGGER user_counts_delete AFTER DELETE ON users WHEN NOT OLD.deleted BEGIN
      UPDATE user_counts SET live = live - 1
      WHERE workspace_pk = OLD.workspace_pk AND shard = OLD.pk % 8;
    END
    """,
]
_POSTGRES = [
    """
    CREATE FUNCTION user_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN
        IF NOT OLD.deleted THEN
          UPDATE user_counts SET live = live - 1
          WHERE workspace_pk = OLD.workspace_pk AND shard = OLD.pk % 8;
        END IF;
        RETURN NULL;
      END IF;
      IF TG_OP = 'INSERT' AND NEW.deleted THEN
        RETURN NULL;
      END IF;
      IF TG_OP = 'UPDATE' AND OLD.deleted = NEW.deleted THEN
        RETURN NULL;
      END IF;
      INSERT INTO user_counts (workspace_pk, shard, live)
      VALUES (NEW.workspace_pk, NEW.pk % 8, CASE WHEN NEW.deleted THEN -1 ELSE 1 END)
      ON CONFLICT (workspace_pk, shard) DO UPDATE SET live = user_counts.live + excluded.live;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER user_counts_track AFTER INSERT OR DELETE OR UPDATE OF deleted ON users
    FOR EACH ROW EXECUTE FUNCTION user_counts_track()
    """,
]


def upgrade() -> None:
    op.create_table(
        "user_counts",
        sa.Column("workspace_pk", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("live", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_pk"], ["workspaces.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_pk", "shard"),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for ddl in _SQLITE if sqlite else _POSTGRES:
        op.execute(ddl)
    op.execute(
        "INSERT INTO user_counts (workspace_pk, shard, live) "
        "SELECT workspace_pk, pk % 8, count(*) FROM users "
        f"WHERE deleted = {'0' if sqlite else 'false'} GROUP BY workspace_pk, pk % 8"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("user_counts_insert", "user_counts_update", "user_counts_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS user_counts_track ON users")
        op.execute("DROP FUNCTION IF EXISTS user_counts_track()")
    op.drop_table("user_counts")
