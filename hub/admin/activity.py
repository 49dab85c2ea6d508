"""Admin API: the provisioning log — each SCIM request with its outcome and error detail.

`GET /api/v1/workspaces/{workspace}/activity?connector=<id>&outcome=ok|error&user=<userName or
id>&before=<record id>&limit=<n>`, newest first.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.audit import int_param
from hub.admin.auth import run_as_admin
from hub.admin.cards import WORKSPACE, json_response
from hub.core import activity
from hub.core.admins import AdminCaller
from hub.core.errors import InvalidValue, ScimError


@get(WORKSPACE + "/activity", name="admin-activity")
async def list_activity(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The workspace's SCIM requests, filterable by connector, outcome and user."""
    params = request.query_params
    problem: ScimError | None = None
    limit, before = 100, None
    outcome = params.get("outcome") or None
    try:
        limit = max(1, min(1000, int_param("limit", params.get("limit"), 100) or 100))
        before = int_param("before", params.get("before"), None)
        if outcome not in (None, "ok", "error"):
            raise InvalidValue("outcome must be 'ok' or 'error'")
    except ScimError as exc:
        problem = exc

    def work(conn: Connection, admin: AdminCaller) -> list[activity.ActivityEntry]:
        return activity.entries(
            conn,
            workspace_pk=admin.workspace_pk,
            connector_id=params.get("connector") or None,
            outcome=outcome,
            user=params.get("user") or None,
            before=before,
            limit=limit,
        )

    found = await run_as_admin(request, work, writes=False, problem=problem)
    next_before = found[-1].id if len(found) == limit else None
    return json_response({"records": found, "next_before": next_before})


ROUTES: list[HTTPRouteHandler] = [list_activity]
