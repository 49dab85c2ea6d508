"""activation links signed with the server secret: the outbox keeps a nonce, never a link

Revision ID: 0012
Revises: 0004

`outbox_messages.link_token` (a queued email's link secret, in clear) becomes `link_nonce`
(`hub.core.links`: useless without the server secret). Queued messages get a fresh nonce and
their link the matching digest, so they go out with a signed link; links already sent keep
working by their old digest until they expire.
"""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0004"
branch_labels = None
depends_on = None

_outbox = sa.table(
    "outbox_messages",
    sa.column("pk", sa.Integer()),
    sa.column("link_pk", sa.Integer()),
    sa.column("link_nonce", sa.String()),
)
_links = sa.table("activation_links", sa.column("pk", sa.Integer()), sa.column("digest"))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade() -> None:
    op.alter_column("outbox_messages", "link_token", new_column_name="link_nonce")
    conn = op.get_bind()
    o = _outbox.c
    rows = conn.execute(sa.select(o.pk, o.link_pk).where(o.link_nonce.is_not(None))).all()
    for pk, link_pk in rows:
        # Frozen copy of hub.core.links.new_nonce / stored_digest as of this revision.
        nonce = secrets.token_urlsafe(16)
        if link_pk is not None:
            conn.execute(
                _links.update()
                .where(_links.c.pk == link_pk)
                .values(digest=_digest(f"shact_{nonce}."))
            )
        conn.execute(_outbox.update().where(o.pk == pk).values(link_nonce=nonce))


def downgrade() -> None:
    conn = op.get_bind()
    o = _outbox.c
    rows = conn.execute(sa.select(o.pk, o.link_pk).where(o.link_nonce.is_not(None))).all()
    for pk, link_pk in rows:
        # Before 0012 a queued email carried its link secret in clear: issue one again.
        token = "shact_" + secrets.token_urlsafe(32)
        if link_pk is not None:
            conn.execute(
                _links.update().where(_links.c.pk == link_pk).values(digest=_digest(token))
            )
        conn.execute(_outbox.update().where(o.pk == pk).values(link_nonce=token))
    op.alter_column("outbox_messages", "link_nonce", new_column_name="link_token")
