"""Admin API authentication: `Authorization: Bearer <admin key>` scoped to one workspace.

Every write through `run_as_admin` leaves an audit record in the same transaction: the admin,
the route, the resource and the names of the fields the body set (never their values).

The workspace in the path (`/api/v1/workspaces/{workspace}/…`, by name or id) must be the key's
own; any other workspace answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException
from sqlalchemy import Connection

from hub.core import audit
from hub.core.admins import AdminCaller, authenticate_admin
from hub.core.errors import InvalidValue, NotFound, ScimError, Unauthorized
from hub.core.tokens import digest
from hub.logging import current_request_id
from hub.scim.routes import Hub
from hub.scim.wire import NOT_JSON

T = TypeVar("T")


def _key_digest(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send 'Authorization: Bearer <admin key>' (see `scim-hub admin key`)")
    return digest(key.strip())


class _Change(msgspec.Struct, frozen=True):
    """What an admin write is, for its audit record (names only, never values)."""

    action: str
    resource_type: str
    resource_id: str
    fields: list[str]
    request_id: str


def _as_admin(
    conn: Connection,
    key_digest: str,
    workspace: str,
    work: Callable[[Connection, AdminCaller], T],
    problem: ScimError | None,
    change: _Change | None,
) -> T:
    admin = authenticate_admin(conn, key_digest)
    if admin is None:
        raise Unauthorized("the admin key is unknown, revoked, or its admin is deactivated")
    if workspace not in (admin.workspace_name, admin.workspace_id):
        raise NotFound(f"no workspace {workspace!r}")
    if problem is not None:
        raise problem
    result = work(conn, admin)
    if change is not None:
        audit.record(
            conn,
            workspace_pk=admin.workspace_pk,
            actor_kind="admin",
            actor_id=admin.admin_id,
            request_id=change.request_id,
            resource_type=change.resource_type,
            resource_id=change.resource_id,
            action=change.action,
            changes={"fields": change.fields},
        )
    return result


async def _describe_change(request: Request[Any, Any, Any]) -> _Change:
    """Name an admin write from its route and body keys (the body is cached by Litestar)."""
    handler = request.route_handler.name or request.url.path
    parts = [p for p in request.url.path.split("/") if p]
    # /api/v1/workspaces/{w}/<noun>[/<id>[/...]]
    noun = parts[4] if len(parts) > 4 else "workspace"
    resource_id = parts[5] if len(parts) > 5 else parts[3] if len(parts) > 3 else "-"
    fields: list[str] = []
    try:
        body = msgspec.json.decode(await request.body()) if request.method != "DELETE" else None
    except (*NOT_JSON, HTTPException):
        body = None
    if len(parts) > 7 and parts[6] == "fields":
        # …/cards/{card}/fields/{field}[/unlock|lock|relink]: the field is what changed, not
        # the body's one key ("value") or the empty body of an unlock.
        fields = [parts[7]]
    elif isinstance(body, dict):
        fields = sorted(str(k) for k in body)
    request_id = current_request_id()
    return _Change(f"{request.method} {handler}", noun, resource_id, fields, request_id)


def nul_in_query(request: Request[Any, Any, Any]) -> ScimError | None:
    """A query holding U+0000 is refused (400) on every database.

    PostgreSQL stores and compares no NUL in text: a parameter holding one (`?q=a%00`) failed
    there with a 500 and matched nothing on SQLite. (A path's NUL never gets here: the request
    middleware makes it U+FFFD, which matches no id.) The query is searched still encoded, where
    a NUL can only be `%00`.
    """
    if b"%00" in request.scope["query_string"]:
        return InvalidValue("query parameters must not contain U+0000 (NUL); remove it")
    return None


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
    problem = problem or nul_in_query(request)
    change = await _describe_change(request) if writes and problem is None else None
    run = hub.db.write if writes and problem is None else hub.db.read
    result: T = await run(_as_admin, key_digest, workspace, work, problem, change)
    return result
