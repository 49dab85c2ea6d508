"""Admin passwords and dashboard sessions: sign-in, sessions, CSRF secrets, slowing guessers.

* Passwords are stored as argon2id hashes (argon2-cffi's RFC 9106 "low memory" profile). Hashing
  and verifying are deliberately slow (tens of milliseconds), so callers run them outside any
  unit of work (`hash_password`, `verify_password`) and keep transactions short.
* A session is a random 256-bit cookie value stored only as its SHA-256 digest (like a token: a
  secret with that much entropy needs no slow hash). It works while it is neither expired nor
  revoked and its admin is active, so deactivating an admin ends their sessions at once.
* Each session has its own CSRF secret; the dashboard puts it in every form and checks it on
  every POST (`check_csrf`).
* Five failed sign-ins in a row lock the account for `LOCK_BASE_US`, doubling with each further
  failure up to `LOCK_MAX_US`; a success resets the count. Locked accounts are refused even with
  the right password, and the caller is told when to try again.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from typing import Final

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, func, select, update

from hub.core.admins import AdminCaller
from hub.core.clock import now_us
from hub.core.errors import Conflict, InvalidValue
from hub.core.ids import new_id
from hub.core.models import admin_credentials, admin_sessions, admins, workspaces
from hub.core.tenants import admin_pk as find_admin_pk
from hub.core.tenants import checked_email
from hub.core.tokens import digest

SESSION_PREFIX: Final = "shadmses_"
#: How long a dashboard session lasts from sign-in (12 hours), whatever the activity.
SESSION_TTL_US: Final = 12 * 3600 * 1_000_000
#: Failed sign-ins in a row after which the account is locked for a while.
FREE_FAILURES: Final = 5
LOCK_BASE_US: Final = 30 * 1_000_000
LOCK_MAX_US: Final = 15 * 60 * 1_000_000
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash verified against when the email is unknown, so that costs what a known one does."""
    return _hasher.hash(secrets.token_urlsafe(16))


class Candidate(msgspec.Struct, frozen=True):
    """An active admin with a password whose email matches a sign-in attempt."""

    admin_pk: int
    admin_id: str
    workspace_pk: int
    password_hash: str
    locked_until: int | None


class SessionAdmin(msgspec.Struct, frozen=True):
    """A live dashboard session: who it belongs to and its CSRF secret."""

    admin: AdminCaller
    session_pk: int
    csrf: str


class NewSession(msgspec.Struct, frozen=True):
    """A session just started: the cookie value (visible only now) and its CSRF secret."""

    token: str
    csrf: str


# --------------------------------------------------------------------------- passwords


def check_password(password: str) -> str:
    """Return `password` if it is acceptable as an admin password.

    Raises:
        InvalidValue: it is shorter than 10 or longer than 1024 characters.
    """
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidValue(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return password


def hash_password(password: str) -> str:
    """Hash an acceptable password with argon2id (slow by design: call outside a transaction).

    Raises:
        InvalidValue: the password is too short or too long.
    """
    return _hasher.hash(check_password(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Say whether `password` matches the hash; None (unknown account) costs the same and fails."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return (
            _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def set_password(conn: Connection, admin_pk: int, password_hash: str) -> None:
    """Store an admin's password hash; the failure count resets and their sessions end."""
    now = now_us()
    updated = conn.execute(
        update(admin_credentials)
        .where(admin_credentials.c.admin_pk == admin_pk)
        .values(password_hash=password_hash, password_set=now, failures=0, locked_until=None)
    )
    if updated.rowcount == 0:
        conn.execute(
            admin_credentials.insert().values(
                admin_pk=admin_pk, password_hash=password_hash, password_set=now, failures=0
            )
        )
    end_admin_sessions(conn, admin_pk)


def set_password_by_email(
    conn: Connection, *, workspace_pk: int, email: str, password_hash: str
) -> None:
    """Set the password of the workspace's admin with `email`.

    Raises:
        NotFound: no such admin in this workspace.
    """
    set_password(conn, find_admin_pk(conn, workspace_pk, email), password_hash)


def create_admin(
    conn: Connection, *, workspace_pk: int, email: str, password_hash: str | None
) -> str:
    """Create an active admin in a workspace (with a dashboard password if given); return its id.

    Raises:
        InvalidValue: the email is not an address. Conflict: the workspace has that admin.
    """
    email = checked_email(email)
    taken = conn.execute(
        select(admins.c.pk).where(
            admins.c.workspace_pk == workspace_pk, func.lower(admins.c.email) == email.lower()
        )
    ).first()
    if taken is not None:
        raise Conflict(f"the workspace has an admin {email!r} already")
    admin_id = new_id()
    pk = conn.execute(
        admins.insert()
        .values(id=admin_id, workspace_pk=workspace_pk, email=email, active=True, created=now_us())
        .returning(admins.c.pk)
    ).scalar_one()
    if password_hash is not None:
        set_password(conn, pk, password_hash)
    return admin_id


# --------------------------------------------------------------------------- signing in


def candidates(conn: Connection, email: str) -> list[Candidate]:
    """Active admins with a password whose email is `email` (case-insensitive), oldest first.

    An email may administer several workspaces; the password decides which account signs in.
    """
    rows = conn.execute(
        select(
            admins.c.pk,
            admins.c.id,
            admins.c.workspace_pk,
            admin_credentials.c.password_hash,
            admin_credentials.c.locked_until,
        )
        .join(admin_credentials, admin_credentials.c.admin_pk == admins.c.pk)
        .where(func.lower(admins.c.email) == email.strip().lower(), admins.c.active.is_(True))
        .order_by(admins.c.pk)
        .limit(10)
    ).all()
    return [Candidate(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def lock_delay_us(failures: int) -> int:
    """How long an account stays locked after `failures` failed sign-ins in a row."""
    if failures < FREE_FAILURES:
        return 0
    return int(min(LOCK_MAX_US, LOCK_BASE_US * 2 ** (failures - FREE_FAILURES)))


def record_failure(conn: Connection, admin_pk: int) -> int | None:
    """Count a failed sign-in; return when the account is locked until (µs), if it now is."""
    now = now_us()
    conn.execute(
        update(admin_credentials)
        .where(admin_credentials.c.admin_pk == admin_pk)
        .values(failures=admin_credentials.c.failures + 1, last_failure=now)
    )
    failures = conn.execute(
        select(admin_credentials.c.failures).where(admin_credentials.c.admin_pk == admin_pk)
    ).scalar_one()
    delay = lock_delay_us(int(failures))
    if not delay:
        return None
    until = now + delay
    conn.execute(
        update(admin_credentials)
        .where(admin_credentials.c.admin_pk == admin_pk)
        .values(locked_until=until)
    )
    return until


def record_success(conn: Connection, admin_pk: int) -> None:
    """Reset the run of failed sign-ins after a successful one."""
    conn.execute(
        update(admin_credentials)
        .where(admin_credentials.c.admin_pk == admin_pk)
        .values(failures=0, locked_until=None)
    )


def start_session(conn: Connection, admin_pk: int, *, ttl_us: int = SESSION_TTL_US) -> NewSession:
    """Start a dashboard session for an admin; the token is visible only in the result."""
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = now_us()
    conn.execute(
        admin_sessions.insert().values(
            digest=digest(token), admin_pk=admin_pk, csrf=csrf, created=now, expires=now + ttl_us
        )
    )
    return NewSession(token, csrf)


_LIVE = (
    select(
        admin_sessions.c.digest,
        admin_sessions.c.pk,
        admin_sessions.c.csrf,
        workspaces.c.pk,
        workspaces.c.id,
        workspaces.c.name,
        admins.c.pk,
        admins.c.id,
        admins.c.email,
    )
    .join(admins, admins.c.pk == admin_sessions.c.admin_pk)
    .join(workspaces, workspaces.c.pk == admins.c.workspace_pk)
    .where(admin_sessions.c.revoked.is_(None), admins.c.active.is_(True))
)


def session_admin(conn: Connection, token: str) -> SessionAdmin | None:
    """The live session a cookie value belongs to.

    None when it is unknown, expired or ended, or its admin is deactivated.
    """
    if not token.startswith(SESSION_PREFIX):
        return None
    token_digest = digest(token)
    row = conn.execute(
        _LIVE.where(admin_sessions.c.digest == token_digest, admin_sessions.c.expires > now_us())
    ).first()
    if row is None or not hmac.compare_digest(row[0], token_digest):
        return None
    caller = AdminCaller(row[3], row[4], row[5], row[6], row[7], row[8])
    return SessionAdmin(caller, row[1], row[2])


def check_csrf(session: SessionAdmin, submitted: str | None) -> bool:
    """Say whether a posted CSRF token is the session's (constant-time comparison).

    Compared as bytes: `hmac.compare_digest` refuses str holding anything but ASCII.
    """
    return submitted is not None and hmac.compare_digest(session.csrf.encode(), submitted.encode())


def end_session(conn: Connection, token: str) -> None:
    """Sign out: the session stops working at once."""
    conn.execute(
        update(admin_sessions)
        .where(admin_sessions.c.digest == digest(token), admin_sessions.c.revoked.is_(None))
        .values(revoked=now_us())
    )


def end_admin_sessions(conn: Connection, admin_pk: int) -> int:
    """End every session of an admin (deactivation, new password); return how many ended."""
    result = conn.execute(
        update(admin_sessions)
        .where(admin_sessions.c.admin_pk == admin_pk, admin_sessions.c.revoked.is_(None))
        .values(revoked=now_us())
    )
    return int(result.rowcount)
