"""card_fields: on SQLite, a table clustered on its primary key (WITHOUT ROWID)

Revision ID: 0016
Revises: 0013

Every create writes a card's ten field rows. As a rowid table, `card_fields` kept each row twice:
in the table, under a hidden rowid, and in the index of its primary key (card, name), which every
read goes through. Clustered on that key, a row is written once: a create's fields touch one
b-tree instead of two (2.5% less CPU per create in process, 0.15 fewer WAL pages). PostgreSQL has
no such choice: nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None

_COLUMNS = "card_pk, name, value, source, locked, linked, managed, idp_value"


def _rebuild(with_rowid: bool) -> None:
    """Copy `card_fields` into a new table of the wanted kind, in this transaction (SQLite)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    # The hub's own definition of the table, as of this revision.
    op.execute(
        f"""CREATE TABLE card_fields_new (
            card_pk INTEGER NOT NULL,
            name VARCHAR(64) NOT NULL,
            value VARCHAR,
            source VARCHAR(16) NOT NULL,
            locked BOOLEAN NOT NULL,
            linked BOOLEAN NOT NULL,
            managed BOOLEAN NOT NULL,
            idp_value VARCHAR,
            PRIMARY KEY (card_pk, name),
            FOREIGN KEY(card_pk) REFERENCES cards (pk) ON DELETE CASCADE
        ){"" if with_rowid else " WITHOUT ROWID"}"""
    )
    op.execute(f"INSERT INTO card_fields_new ({_COLUMNS}) SELECT {_COLUMNS} FROM card_fields")
    op.execute("DROP TABLE card_fields")
    op.execute("ALTER TABLE card_fields_new RENAME TO card_fields")


def upgrade() -> None:
    """Rebuild `card_fields` WITHOUT ROWID (SQLite only)."""
    _rebuild(with_rowid=False)


def downgrade() -> None:
    """Rebuild `card_fields` as a rowid table again (SQLite only)."""
    _rebuild(with_rowid=True)
