"""Admin API authentication: `Authorization: Bearer <admin key>` scoped to one workspace.

The workspace in the path (`/api/v1/workspaces/{workspace}/…`, by name or id) must be the key's
own; any other workspace answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request
from sqlalchemy import Connection

from hub.core.admins import AdminCaller, authenticate_admin
from hub.core.errors import NotFound, ScimError, Unauthorized
from hub.core.tokens import digest
from hub.scim.routes import Hub

T = TypeVar("T")


def _key_digest(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send 'Authorization: Bearer <admin key>' (see `scim-hub admin key`)")
    return digest(key.strip())


def _as_admin(
    conn: Connection,
    key_digest: str,
    workspace: str,
    work: Callable[[Connection, AdminCaller], T],
    problem: ScimError | None,
) -> T:
    admin = authenticate_admin(conn, key_digest)
    if admin is None:
        raise Unauthorized("the admin key is unknown, revoked, or its admin is deactivated")
    if workspace not in (admin.workspace_name, admin.workspace_id):
        raise NotFound(f"no workspace {workspace!r}")
    if problem is not None:
        raise problem
    return work(conn, admin)


async def run_as_admin(
    request: Request[Any, Any, Any],
    work: Callable[[Connection, AdminCaller], T],
    *,
    writes: bool,
    problem: ScimError | None = None,
) -> T:
    """Authenticate the admin and run `work` in one unit of work (one database call).

    `problem` is a request-parsing error, raised only once the admin is authenticated so that an
    unauthenticated client learns nothing about its request.
    """
    hub: Hub = request.app.state.hub
    key_digest = _key_digest(request)
    workspace: str = request.path_params["workspace"]
    run = hub.db.write if writes and problem is None else hub.db.read
    result: T = await run(_as_admin, key_digest, workspace, work, problem)
    return result
