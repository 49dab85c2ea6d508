"""Workspaces, their admins and connectors: creating a tenant and switching things off."""

from __future__ import annotations

import re
import unicodedata

import msgspec
from sqlalchemy import Connection, func, select, update

from hub.core.clock import now_us
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.core.ids import new_id
from hub.core.models import admins, connectors, workspaces
from hub.core.tokens import create_token


class InitResult(msgspec.Struct, frozen=True):
    """What `scim-hub init` prints: the token appears here and nowhere else, ever."""

    workspace: str
    workspace_id: str
    connector: str
    connector_id: str
    idp: str
    admin: str
    admin_id: str
    tenant_url: str
    token: str


class WorkspaceRef(msgspec.Struct, frozen=True):
    """A workspace's keys."""

    pk: int
    id: str
    name: str


def tenant_url(base_url: str) -> str:
    """The SCIM base URL an IdP is given: one endpoint for every workspace; the token picks it."""
    return base_url.rstrip("/") + "/scim/v2"


def find_workspace(conn: Connection, name: str) -> WorkspaceRef | None:
    """Return the workspace called `name` (as stored: without surrounding spaces), if any."""
    wanted = name.strip()
    row = conn.execute(
        select(workspaces.c.pk, workspaces.c.id, workspaces.c.name).where(
            workspaces.c.name == wanted
        )
    ).first()
    return None if row is None else WorkspaceRef(row.pk, row.id, row.name)


def require_workspace(conn: Connection, name: str) -> WorkspaceRef:
    """Return the workspace called `name`.

    Raises:
        NotFound: there is no such workspace.
    """
    found = find_workspace(conn, name)
    if found is None:
        raise NotFound(f"no workspace named {name!r}")
    return found


def checked_email(email: str) -> str:
    """An admin's email address as stored: stripped, one word holding an "@".

    Raises:
        InvalidValue: it is not an address.
    """
    email = email.strip()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidValue(f"{email!r} is not an email address")
    return email


def _default_admin(workspace: str) -> str:
    """The first admin's address when none is given: `admin@<workspace>.example`.

    The name is made a host label ("Acme Europe, Inc." gave admin@acme-europe,-inc..example,
    an address an operator had to copy down to the comma).
    """
    ascii_name = unicodedata.normalize("NFKD", workspace).encode("ascii", "ignore").decode()
    label = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower())[:63].strip("-") or "workspace"
    return f"admin@{label}.example"


def init_workspace(
    conn: Connection,
    *,
    workspace: str,
    base_url: str,
    idp: str = "generic_scim",
    admin_email: str | None = None,
    connector_name: str | None = None,
) -> InitResult:
    """Create a workspace with its first admin, a connector for `idp`, and a token.

    Raises:
        Conflict: a workspace with that name exists already.
        InvalidValue: the workspace name is empty or too long, or `admin_email` is no address.
    """
    name = workspace.strip()
    if not name or len(name) > 200:
        raise InvalidValue("workspace name must be 1 to 200 characters")
    if find_workspace(conn, name) is not None:
        raise Conflict(f"workspace {name!r} exists already")
    now = now_us()
    ws_id = new_id()
    ws_pk = conn.execute(
        workspaces.insert()
        .values(id=ws_id, name=name, created=now, send_activation_email=True)
        .returning(workspaces.c.pk)
    ).scalar_one()
    email = checked_email(admin_email) if admin_email is not None else _default_admin(name)
    admin_id = new_id()
    admin_pk = conn.execute(
        admins.insert()
        .values(id=admin_id, workspace_pk=ws_pk, email=email, active=True, created=now)
        .returning(admins.c.pk)
    ).scalar_one()
    connector = connector_name or idp
    connector_id = new_id()
    connector_pk = conn.execute(
        connectors.insert()
        .values(
            id=connector_id,
            workspace_pk=ws_pk,
            name=connector,
            idp=idp,
            enabled=True,
            created=now,
        )
        .returning(connectors.c.pk)
    ).scalar_one()
    token = create_token(conn, connector_pk=connector_pk, admin_pk=admin_pk)
    return InitResult(
        name,
        ws_id,
        connector,
        connector_id,
        idp,
        email,
        admin_id,
        tenant_url(base_url),
        token.token,
    )


def admin_pk(conn: Connection, workspace_pk: int, email: str) -> int:
    """Return the pk of the workspace's admin with `email`, matched without regard to case.

    An admin is unique per workspace in any case (`create_admin`) and signs in with the address
    in any case, so `Alice@Example.com` names the admin created as `alice@example.com`; an exact
    match wins should older data hold both.

    Raises:
        NotFound: no such admin in this workspace.
    """
    wanted = email.strip()
    pk = conn.execute(
        select(admins.c.pk)
        .where(
            admins.c.workspace_pk == workspace_pk,
            func.lower(admins.c.email) == wanted.lower(),
        )
        .order_by((admins.c.email == wanted).desc(), admins.c.pk)
        .limit(1)
    ).scalar()
    if pk is None:
        raise NotFound(f"no admin {email!r} in this workspace")
    return int(pk)


def active_admin_pk(conn: Connection, workspace_pk: int, email: str) -> int:
    """`admin_pk` of an admin who may create tokens and keys: an active one.

    A token or key a deactivated admin creates is dead from the start, so making one (and, for
    a regenerate, revoking the live ones first) would only cut the IdP off.

    Raises:
        NotFound: no such admin in this workspace.
        Conflict: the admin is deactivated.
    """
    pk = admin_pk(conn, workspace_pk, email)
    if not is_active_admin(conn, pk):
        raise Conflict(
            f"admin {email!r} is deactivated: a token or key made as them would not work; "
            "activate them first"
        )
    return pk


def is_active_admin(conn: Connection, pk: int) -> bool:
    """Whether the admin `pk` is active (may sign in, and their tokens and keys work)."""
    return bool(conn.execute(select(admins.c.active).where(admins.c.pk == pk)).scalar_one())


def first_admin_pk(conn: Connection, workspace_pk: int) -> int:
    """Return the pk of the workspace's earliest active admin.

    Raises:
        NotFound: the workspace has no active admin.
    """
    pk = conn.execute(
        select(admins.c.pk)
        .where(admins.c.workspace_pk == workspace_pk, admins.c.active.is_(True))
        .order_by(admins.c.pk)
        .limit(1)
    ).scalar()
    if pk is None:
        raise NotFound("the workspace has no active admin")
    return int(pk)


def set_admin_active(conn: Connection, *, workspace_pk: int, email: str, active: bool) -> None:
    """Activate or deactivate an admin; a deactivated admin's tokens stop working at once."""
    pk = admin_pk(conn, workspace_pk, email)
    conn.execute(update(admins).where(admins.c.pk == pk).values(active=active))


def set_connector_enabled(conn: Connection, *, workspace_pk: int, name: str, enabled: bool) -> None:
    """Enable or disable a connector; a disabled connector's tokens stop working at once.

    Raises:
        NotFound: no connector with that name in this workspace.
    """
    result = conn.execute(
        update(connectors)
        .where(connectors.c.workspace_pk == workspace_pk, connectors.c.name == name)
        .values(enabled=enabled)
    )
    if result.rowcount == 0:
        raise NotFound(f"no connector named {name!r} in this workspace")


def connector_exists(conn: Connection, workspace_pk: int, name: str) -> bool:
    """Say whether the workspace has a connector called `name`."""
    return (
        conn.execute(
            select(connectors.c.pk).where(
                connectors.c.workspace_pk == workspace_pk, connectors.c.name == name
            )
        ).first()
        is not None
    )
