"""Admin API: the workspace's per-token rate limit for SCIM requests.

`GET|PUT /api/v1/workspaces/{workspace}/rate-limit` — `{"requests_per_second": int | null}`;
null means the hub's default (`SCIM_HUB_RATE_LIMIT_PER_SECOND`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, put
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.auth import run_as_admin
from hub.admin.cards import WORKSPACE, json_response, read_body
from hub.core import ratelimit
from hub.core.admins import AdminCaller
from hub.scim.routes import Hub


class RateLimit(msgspec.Struct, forbid_unknown_fields=True):
    """The workspace's limit; None: the hub's default."""

    requests_per_second: int | None


def _answer(request: Request[Any, Any, Any], own: int | None) -> dict[str, Any]:
    hub: Hub = request.app.state.hub
    default = hub.settings.rate_limit_per_second
    return {"requests_per_second": own, "effective": default if own is None else own}


@get(WORKSPACE + "/rate-limit", name="admin-rate-limit-get")
async def read_limit(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The workspace's per-token limit and the one in effect."""

    def work(conn: Connection, admin: AdminCaller) -> int | None:
        return ratelimit.workspace_limit(conn, admin.workspace_pk)

    return json_response(_answer(request, await run_as_admin(request, work, writes=False)))


@put(WORKSPACE + "/rate-limit", name="admin-rate-limit-put")
async def write_limit(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Set the workspace's per-token limit (null: back to the default)."""
    body, problem = await read_body(request, RateLimit)

    def work(conn: Connection, admin: AdminCaller) -> int | None:
        assert body is not None  # a parse problem is raised before the work runs
        ratelimit.set_workspace_limit(conn, admin.workspace_pk, body.requests_per_second)
        return body.requests_per_second

    own = await run_as_admin(request, work, writes=True, problem=problem)
    return json_response(_answer(request, own))


ROUTES: list[HTTPRouteHandler] = [read_limit, write_limit]
