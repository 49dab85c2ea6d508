"""Admins and their API keys: how the admin API knows who is calling.

An admin key is shown once and stored as its SHA-256 digest, like a connector token. It works
only while its admin is active and it is not revoked.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

import msgspec
from sqlalchemy import Connection, select

from hub.core.clock import now_us
from hub.core.ids import new_id
from hub.core.models import admin_keys, admins, workspaces
from hub.core.tokens import digest

KEY_PREFIX: Final = "shadm_"


class AdminCaller(msgspec.Struct, frozen=True):
    """The admin behind an admin-API request."""

    workspace_pk: int
    workspace_id: str
    workspace_name: str
    admin_pk: int
    admin_id: str
    email: str


def create_key(conn: Connection, *, admin_pk: int) -> str:
    """Make an admin API key for an admin and return it (the only time it is visible)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        admin_keys.insert().values(
            id=new_id(),
            admin_pk=admin_pk,
            digest=digest(secret),
            hint=secret[-4:],
            created=now_us(),
        )
    )
    return secret


_AUTH = (
    select(
        admin_keys.c.digest,
        workspaces.c.pk,
        workspaces.c.id,
        workspaces.c.name,
        admins.c.pk,
        admins.c.id,
        admins.c.email,
    )
    .join(admins, admins.c.pk == admin_keys.c.admin_pk)
    .join(workspaces, workspaces.c.pk == admins.c.workspace_pk)
    .where(admin_keys.c.revoked.is_(None), admins.c.active.is_(True))
)


def authenticate_admin(conn: Connection, key_digest: str) -> AdminCaller | None:
    """Return the admin an API-key digest belongs to, or None if unknown, revoked or inactive."""
    row = conn.execute(_AUTH.where(admin_keys.c.digest == key_digest)).first()
    if row is None or not hmac.compare_digest(row[0], key_digest):
        return None
    return AdminCaller(row[1], row[2], row[3], row[4], row[5], row[6])
