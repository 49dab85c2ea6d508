"""auth_stamp: on SQLite, a random stamp renewed by every write to what a token depends on

Revision ID: 0023
Revises: 0022

One row holds a random stamp. On SQLite, triggers give it a new one whenever a row of `tokens`,
`connectors`, `admins` or `workspaces` (every table a token's authentication reads) is inserted,
updated or deleted, whoever writes it: the hub, the CLI, another worker, a restore, plain SQL. A
connection that remembers a token's caller with the stamp it read then tells, reading the stamp
again inside its own transaction, that nothing the token depends on has changed since
(`hub.core.tokens.authenticate_cached`). The stamp is random rather than a counter: a
transaction rolled back after moving a counter would leave a value that a later change takes
again, and a caller remembered inside the rolled-back transaction would match it.

PostgreSQL authenticates from the token's rows on every request (a round trip either way): it gets
the table, for one schema, but no row and no trigger. A connection that finds no stamp caches
nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_TABLES = ("tokens", "connectors", "admins", "workspaces")
_OPERATIONS = ("insert", "update", "delete")


def upgrade() -> None:
    op.create_table(
        "auth_stamp",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
    )
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("INSERT INTO auth_stamp (pk, stamp) VALUES (1, randomblob(16))")
    # Row triggers (SQLite has no other kind): a statement writing many rows renews it per row.
    for table in _TABLES:
        for operation in _OPERATIONS:
            op.execute(
                f"CREATE TRIGGER auth_stamp_{table}_{operation} AFTER {operation.upper()} "
                f"ON {table} BEGIN UPDATE auth_stamp SET stamp = randomblob(16) WHERE pk = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in _TABLES:
            for operation in _OPERATIONS:
                op.execute(f"DROP TRIGGER IF EXISTS auth_stamp_{table}_{operation}")
    op.drop_table("auth_stamp")
