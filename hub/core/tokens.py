"""Bearer tokens: generate, regenerate, list, revoke, authenticate.

A token is shown once, when it is made; only its SHA-256 digest is stored (a token has 256 bits of
entropy, so a fast hash is enough and a slow one would only cost every request). A token works
only while it is not revoked, its connector is enabled and the admin who created it is active.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, bindparam, select, update

from hub.core.clock import now_us
from hub.core.errors import NotFound
from hub.core.ids import new_id
from hub.core.models import admins, connectors, tokens, workspaces
from hub.core.sql import Prepared

TOKEN_PREFIX: Final = "shub_"
#: How stale `last_used` may get before a request refreshes it (avoids a write per request).
LAST_USED_RESOLUTION_US: Final = 60_000_000


class Caller(msgspec.Struct, frozen=True):
    """Who is calling, as established from a valid token."""

    workspace_pk: int
    workspace_id: str
    connector_pk: int
    connector_id: str
    idp: str
    token_pk: int
    last_used: int | None
    #: the connector's mapping overrides as saved (see `hub.core.connectors.Overrides`).
    overrides: dict[str, Any] | None = None
    #: the HTTP request this unit of work serves (for audit records and logs).
    request_id: str = ""
    #: the workspace's per-token rate limit (requests per second); None: the hub's default.
    rate_limit: int | None = None
    #: the workspace's name and activation-email toggle, read with the token in the same
    #: transaction as the request's work (a create needs both; reading them again cost a
    #: statement per create).
    workspace_name: str = ""
    send_activation_email: bool = False


class TokenInfo(msgspec.Struct, frozen=True):
    """A token as listed: never the secret itself."""

    id: str
    connector: str
    created_by: str
    hint: str
    created: int
    last_used: int | None
    alive: bool
    reason: str | None


class NewToken(msgspec.Struct, frozen=True):
    """A freshly made token: the only time the secret is available."""

    id: str
    token: str


def digest(token: str) -> str:
    """Return the stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _make_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(conn: Connection, *, connector_pk: int, admin_pk: int) -> NewToken:
    """Create a token for a connector on behalf of an admin; return it with its secret."""
    workspace_pk = conn.execute(
        select(connectors.c.workspace_pk).where(connectors.c.pk == connector_pk)
    ).scalar_one()
    secret = _make_secret()
    token_id = new_id()
    conn.execute(
        tokens.insert().values(
            id=token_id,
            workspace_pk=workspace_pk,
            connector_pk=connector_pk,
            admin_pk=admin_pk,
            digest=digest(secret),
            hint=secret[-4:],
            created=now_us(),
        )
    )
    return NewToken(token_id, secret)


_AUTH = Prepared(
    select(
        tokens.c.pk,
        tokens.c.digest,
        tokens.c.last_used,
        tokens.c.workspace_pk,
        workspaces.c.id,
        connectors.c.pk,
        connectors.c.id,
        connectors.c.idp,
        connectors.c.overrides,
        workspaces.c.rate_limit,
        workspaces.c.name,
        workspaces.c.send_activation_email,
    )
    .join(connectors, connectors.c.pk == tokens.c.connector_pk)
    .join(admins, admins.c.pk == tokens.c.admin_pk)
    .join(workspaces, workspaces.c.pk == tokens.c.workspace_pk)
    .where(
        tokens.c.revoked.is_(None),
        connectors.c.enabled.is_(True),
        admins.c.active.is_(True),
        tokens.c.digest == bindparam("b_digest"),
    )
)


def authenticate(conn: Connection, token_digest: str) -> Caller | None:
    """Return the caller a token digest belongs to, or None if it is unknown or dead."""
    row = _AUTH.first(conn, b_digest=token_digest)
    if row is None or not hmac.compare_digest(row[1], token_digest):
        return None
    return Caller(
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[0],
        row[2],
        row[8],
        rate_limit=row[9],
        workspace_name=row[10],
        send_activation_email=bool(row[11]),
    )


#: Tokens a SQLite connection remembers (a workspace's connectors, times a few).
_CACHED_TOKENS: Final = 256
_CACHE_KEY: Final = "hub.tokens.authenticated"
_STAMP_SQL: Final = "SELECT stamp FROM auth_stamp WHERE pk = 1"


def authenticate_cached(conn: Connection, token_digest: str) -> Caller | None:
    """`authenticate`, answered from the connection's memory while no credential changed (SQLite).

    SQLite's triggers renew a random stamp (`auth_stamp`) on every write to `tokens`,
    `connectors`, `admins` and `workspaces`, by any connection of any process. Read inside the
    unit's own transaction, the stamp the caller was remembered with says its rows are unchanged:
    so a revocation, a disabled connector or a deactivated admin is refused at the very next
    request, a write's included, also when this very connection committed it (which `PRAGMA
    data_version`, the test this replaced, does not see: writes could not be cached). The stamp is
    ~1.4 µs; the token's SELECT, its joins and the row's decoding ~9, on every write of a batch.
    Unknown tokens are not cached (no one can fill the cache with guesses), and a database without
    a stamp (PostgreSQL; SQLite before migration 0023, or migrated down) caches nothing.
    """
    dbapi = conn.connection.dbapi_connection
    if conn.dialect.name != "sqlite" or dbapi is None:
        return authenticate(conn, token_digest)
    try:
        row = dbapi.execute(_STAMP_SQL).fetchone()
    except sqlite3.OperationalError:  # no such table: a database before migration 0023
        row = None
    if row is None:
        return authenticate(conn, token_digest)
    stamp = row[0]
    cache: dict[str, tuple[bytes, Caller]] = conn.info.setdefault(_CACHE_KEY, {})
    hit = cache.get(token_digest)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    found = authenticate(conn, token_digest)
    if found is not None:
        if len(cache) >= _CACHED_TOKENS:
            cache.clear()
        cache[token_digest] = (stamp, found)
    return found


def touch(conn: Connection, caller: Caller, when: int) -> None:
    """Record that a token (and its connector) was used at `when`."""
    conn.execute(update(tokens).where(tokens.c.pk == caller.token_pk).values(last_used=when))
    conn.execute(
        update(connectors).where(connectors.c.pk == caller.connector_pk).values(last_request=when)
    )


def needs_touch(caller: Caller, when: int) -> bool:
    """Say whether `last_used` is stale enough to be worth a write."""
    return caller.last_used is None or when - caller.last_used > LAST_USED_RESOLUTION_US


def _connector_pk(conn: Connection, workspace_pk: int, connector: str) -> int:
    # Names are stored stripped (`hub.core.connectors.create_connector`).
    pk = conn.execute(
        select(connectors.c.pk).where(
            connectors.c.workspace_pk == workspace_pk,
            connectors.c.name == connector.strip(),
            connectors.c.deleted.is_(None),
        )
    ).scalar()
    if pk is None:
        raise NotFound(f"no connector named {connector!r} in this workspace")
    return int(pk)


def revoke(conn: Connection, *, workspace_pk: int, token_id: str) -> None:
    """Revoke one token of the workspace.

    Raises:
        NotFound: no live token with that id in this workspace.
    """
    result = conn.execute(
        update(tokens)
        .where(
            tokens.c.workspace_pk == workspace_pk,
            tokens.c.id == token_id,
            tokens.c.revoked.is_(None),
        )
        .values(revoked=now_us())
    )
    if result.rowcount == 0:
        raise NotFound(f"no live token {token_id!r} in this workspace")


def generate(conn: Connection, *, workspace_pk: int, connector: str, admin_pk: int) -> NewToken:
    """Make one more token for a connector (its other tokens keep working).

    Raises:
        NotFound: no such connector in this workspace.
    """
    return create_token(
        conn, connector_pk=_connector_pk(conn, workspace_pk, connector), admin_pk=admin_pk
    )


def list_tokens(
    conn: Connection, *, workspace_pk: int, connector_pk: int | None = None
) -> list[TokenInfo]:
    """List the workspace's unrevoked tokens, saying for each whether it still works and why not.

    `connector_pk` narrows the list to one connector's tokens.
    """
    scope = [tokens.c.workspace_pk == workspace_pk, tokens.c.revoked.is_(None)]
    if connector_pk is not None:
        scope.append(tokens.c.connector_pk == connector_pk)
    rows = conn.execute(
        select(
            tokens.c.id,
            connectors.c.name,
            admins.c.email,
            tokens.c.hint,
            tokens.c.created,
            tokens.c.last_used,
            connectors.c.enabled,
            admins.c.active,
        )
        .join(connectors, connectors.c.pk == tokens.c.connector_pk)
        .join(admins, admins.c.pk == tokens.c.admin_pk)
        .where(*scope)
        .order_by(tokens.c.pk)
    ).all()
    result = []
    for row in rows:
        reason = None
        if not row.active:
            reason = f"created by deactivated admin {row.email}"
        elif not row.enabled:
            reason = f"connector {row.name} is disabled"
        result.append(
            TokenInfo(
                row.id,
                row.name,
                row.email,
                row.hint,
                row.created,
                row.last_used,
                reason is None,
                reason,
            )
        )
    return result
