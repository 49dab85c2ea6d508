"""Admin API: the audit trail — every change over SCIM or the admin API, newest first.

`GET /api/v1/workspaces/{workspace}/audit?resource=<id>&actor=<id>&before=<record id>&limit=<n>`
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.auth import run_as_admin
from hub.admin.cards import WORKSPACE, json_response
from hub.core import audit
from hub.core.admins import AdminCaller
from hub.core.errors import InvalidValue, ScimError


def int_param(name: str, raw: str | None, default: int | None) -> int | None:
    """Parse an optional integer query parameter.

    Raises:
        InvalidValue: it is not an integer.
    """
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidValue(f"{name} must be an integer, got {raw!r}") from None


@get(WORKSPACE + "/audit", name="admin-audit")
async def list_audit(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Audit records of the workspace, filterable by resource and actor, paged by `before`."""
    params = request.query_params
    problem: ScimError | None = None
    limit, before = 100, None
    try:
        limit = max(1, min(1000, int_param("limit", params.get("limit"), 100) or 100))
        before = int_param("before", params.get("before"), None)
    except ScimError as exc:
        problem = exc

    def work(conn: Connection, admin: AdminCaller) -> list[audit.AuditEntry]:
        return audit.entries(
            conn,
            workspace_pk=admin.workspace_pk,
            resource_id=params.get("resource"),
            actor_id=params.get("actor"),
            before=before,
            limit=limit,
        )

    records = await run_as_admin(request, work, writes=False, problem=problem)
    next_before = records[-1].id if len(records) == limit else None
    return json_response({"records": records, "next_before": next_before})


ROUTES: list[HTTPRouteHandler] = [list_audit]
