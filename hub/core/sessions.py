"""Card owners' sessions: started by following an activation link, used by the owner API.

A session token is shown once (set as a cookie by the activation page) and stored only as its
SHA-256 digest, like a connector token: 256 random bits need no slow hash. A session works while
it is neither expired nor revoked and its user is neither deprovisioned nor deleted, so an
IdP deactivation locks the owner out at once even before `end_sessions` runs.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from sqlalchemy import Connection, bindparam, or_, select, update

from hub.core.clock import now_us
from hub.core.models import owner_sessions, users
from hub.core.sql import Prepared
from hub.core.tokens import digest

SESSION_PREFIX: Final = "shses_"
#: The cookie the activation page sets; the owner API reads it (or `Authorization: Bearer`).
SESSION_COOKIE: Final = "scim_hub_session"
#: How long an owner stays signed in after activating (30 days).
SESSION_TTL_US: Final = 30 * 24 * 3600 * 1_000_000


def start_session(conn: Connection, user_pk: int, *, ttl_us: int = SESSION_TTL_US) -> str:
    """Start a session for a user and return its token (the only time it is visible).

    Raises:
        sqlalchemy.exc.NoResultFound: there is no user `user_pk`.
    """
    workspace_pk = conn.execute(
        select(users.c.workspace_pk).where(users.c.pk == user_pk)
    ).scalar_one()
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    now = now_us()
    conn.execute(
        owner_sessions.insert().values(
            digest=digest(token),
            workspace_pk=workspace_pk,
            user_pk=user_pk,
            created=now,
            expires=now + ttl_us,
        )
    )
    return token


_LIVE = (
    select(owner_sessions.c.digest, owner_sessions.c.workspace_pk, owner_sessions.c.user_pk)
    .join(users, users.c.pk == owner_sessions.c.user_pk)
    .where(
        owner_sessions.c.revoked.is_(None),
        users.c.deleted.is_(False),
        # NULL `active` (removed by the IdP) counts as active, as everywhere in the hub.
        or_(users.c.active.is_(None), users.c.active.is_(True)),
    )
)


def user_for_session(conn: Connection, session_token: str) -> tuple[int, int] | None:
    """Return `(workspace_pk, user_pk)` of a live session, or None (unknown, expired, revoked).

    Accepts the raw token as the client sent it (cookie or bearer); never logs it.
    """
    token_digest = digest(session_token.strip())
    row = conn.execute(
        _LIVE.where(owner_sessions.c.digest == token_digest, owner_sessions.c.expires > now_us())
    ).first()
    if row is None or not hmac.compare_digest(row[0], token_digest):
        return None
    return int(row[1]), int(row[2])


def end_session(conn: Connection, session_token: str) -> None:
    """Revoke one session (sign out); unknown tokens are ignored."""
    conn.execute(
        update(owner_sessions)
        .where(
            owner_sessions.c.digest == digest(session_token.strip()),
            owner_sessions.c.revoked.is_(None),
        )
        .values(revoked=now_us())
    )


_END_SESSIONS = Prepared(
    update(owner_sessions)
    .where(owner_sessions.c.user_pk == bindparam("b_user"), owner_sessions.c.revoked.is_(None))
    .values(revoked=bindparam("b_now"))
)


def end_sessions(conn: Connection, user_pk: int) -> int:
    """Revoke every live session of a user (deprovisioning, new activation); return how many."""
    return _END_SESSIONS.run(conn, b_user=user_pk, b_now=now_us())
