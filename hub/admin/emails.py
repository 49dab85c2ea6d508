"""Admin API: activation emails and the workspace's card settings.

* `POST /workspaces/{w}/activation-emails` `{"user_ids": [...]}` — send or resend (202).
* `GET  /workspaces/{w}/activation-emails?status=&user_id=&limit=&offset=` — the outbox, so
  failed deliveries and their last error are visible.
* `GET|PUT /workspaces/{w}/settings` — `{"send_activation_email": bool}`.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, Response, get, post, put
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.auth import run_as_admin
from hub.core import activation, outbox
from hub.core.admins import AdminCaller
from hub.core.errors import InvalidValue, ScimError
from hub.scim.wire import read_json

JSON_MEDIA: Final = "application/json"
MAX_PAGE: Final = 1000
_encode = msgspec.json.Encoder().encode


class SendBody(msgspec.Struct, forbid_unknown_fields=True):
    """What to send: the SCIM ids of the users to (re)invite."""

    user_ids: list[str]


class SettingsBody(msgspec.Struct, forbid_unknown_fields=True):
    """The card settings an admin may change."""

    send_activation_email: bool


def _json(value: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(value), status_code=status, media_type=JSON_MEDIA)


async def _body(request: Request[Any, Any, Any], kind: type[Any]) -> tuple[Any, ScimError | None]:
    """Decode the body as `kind`, keeping any problem to raise after authentication."""
    try:
        return msgspec.convert(await read_json(request), kind), None
    except msgspec.ValidationError as exc:
        return None, InvalidValue(f"invalid request body: {exc}")
    except ScimError as exc:
        return None, exc


def _send_problem(body: SendBody | None) -> ScimError | None:
    if body is None:
        return None
    if not body.user_ids:
        return InvalidValue("user_ids is empty: name at least one user")
    if len(body.user_ids) > activation.MAX_USERS_PER_SEND:
        return InvalidValue(f"user_ids has more than {activation.MAX_USERS_PER_SEND} users")
    return None


@post(
    "/workspaces/{workspace:str}/activation-emails",
    name="activation-emails-send",
    status_code=202,
    media_type=JSON_MEDIA,
)
async def send_activation_emails(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Send or resend activation emails; each user's previous link stops working."""
    body, problem = await _body(request, SendBody)
    problem = problem or _send_problem(body)

    def work(conn: Connection, admin: AdminCaller) -> list[activation.SendResult]:
        return activation.send(conn, workspace_pk=admin.workspace_pk, user_ids=body.user_ids)

    results = await run_as_admin(request, work, writes=True, problem=problem)
    return _json({"results": results}, 202)


def _int_param(request: Request[Any, Any, Any], name: str, default: int, top: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    # ASCII digits only (int() takes other scripts' digits too), few enough for int() to take.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(top)) or int(raw) > top:
        raise InvalidValue(f"{name} must be an integer between 0 and {top}")
    return int(raw)


def _list_problem(request: Request[Any, Any, Any]) -> tuple[dict[str, Any], ScimError | None]:
    status = request.query_params.get("status")
    try:
        if status is not None and status not in outbox.STATUSES:
            raise InvalidValue(f"status must be one of {', '.join(outbox.STATUSES)}")
        limit = _int_param(request, "limit", 100, MAX_PAGE)
        offset = _int_param(request, "offset", 0, 2**31)
    except InvalidValue as exc:
        return {}, exc
    user_id = request.query_params.get("user_id")
    return {"status": status, "user_id": user_id, "limit": limit, "offset": offset}, None


@get(
    "/workspaces/{workspace:str}/activation-emails",
    name="activation-emails-list",
    media_type=JSON_MEDIA,
)
async def list_activation_emails(request: Request[Any, Any, Any]) -> Response[bytes]:
    """List the workspace's emails, newest first, with status, attempts and last error."""
    query, problem = _list_problem(request)

    def work(conn: Connection, admin: AdminCaller) -> tuple[int, list[outbox.MessageInfo]]:
        return outbox.list_messages(conn, workspace_pk=admin.workspace_pk, **query)

    total, items = await run_as_admin(request, work, writes=False, problem=problem)
    return _json({"total": total, "items": items})


@get("/workspaces/{workspace:str}/settings", name="workspace-settings-get", media_type=JSON_MEDIA)
async def get_settings(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Read the workspace's card settings."""

    def work(conn: Connection, admin: AdminCaller) -> activation.CardSettings:
        return activation.workspace_settings(conn, admin.workspace_pk)

    return _json(await run_as_admin(request, work, writes=False))


@put("/workspaces/{workspace:str}/settings", name="workspace-settings-put", media_type=JSON_MEDIA)
async def put_settings(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Change the workspace's card settings (`send_activation_email`)."""
    body, problem = await _body(request, SettingsBody)

    def work(conn: Connection, admin: AdminCaller) -> activation.CardSettings:
        return activation.set_workspace_settings(
            conn, admin.workspace_pk, send_activation_email=body.send_activation_email
        )

    return _json(await run_as_admin(request, work, writes=True, problem=problem))


ROUTES: list[HTTPRouteHandler] = [
    send_activation_emails,
    list_activation_emails,
    get_settings,
    put_settings,
]
