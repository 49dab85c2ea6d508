"""The card owner's API under `/api/v1/me`: read and edit one's own card.

Authenticated by the session started when the owner followed their activation link: the
`scim_hub_session` cookie or `Authorization: Bearer <session token>`. The owner may edit unlocked
fields only; a request touching a locked field is refused as a whole (403 naming the fields).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, get, patch
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.cards import json_response, read_body
from hub.core import audit, cards, sessions
from hub.core.errors import ScimError, Unauthorized
from hub.logging import current_request_id
from hub.scim.routes import Hub

T = TypeVar("T")
JSON = dict[str, Any]


class CardEdit(msgspec.Struct, forbid_unknown_fields=True):
    """Body of an owner edit: field -> new value (null clears it)."""

    fields: dict[str, str | None]


def _session_token(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    cookie = request.cookies.get(sessions.SESSION_COOKIE, "")
    if cookie.strip():
        return cookie.strip()
    raise Unauthorized("sign in through your activation link first (no session)")


def _as_owner(
    conn: Connection,
    token: str,
    work: Callable[[Connection, int, int], T],
    problem: ScimError | None,
) -> T:
    found = sessions.user_for_session(conn, token)
    if found is None:
        raise Unauthorized("the session is unknown, expired or signed out")
    if problem is not None:
        raise problem
    workspace_pk, user_pk = found
    return work(conn, workspace_pk, user_pk)


async def _run_as_owner(
    request: Request[Any, Any, Any],
    work: Callable[[Connection, int, int], T],
    *,
    writes: bool,
    problem: ScimError | None = None,
) -> T:
    hub: Hub = request.app.state.hub
    token = _session_token(request)
    run = hub.db.write if writes and problem is None else hub.db.read
    result: T = await run(_as_owner, token, work, problem)
    return result


@get("/card", name="owner-card-get")
async def read_card(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The owner's card: every field with its value, source, locked and linked flags."""
    return json_response(await _run_as_owner(request, cards.owner_card, writes=False))


@patch("/card", name="owner-card-edit")
async def edit_card(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Edit unlocked fields (`{"fields": {name: value}}`); any locked field -> 403, no change."""
    body, problem = await read_body(request, CardEdit)
    request_id = current_request_id()

    def work(conn: Connection, workspace_pk: int, user_pk: int) -> JSON:
        assert body is not None  # a parse problem is raised before the work runs
        card = cards.owner_edit(conn, workspace_pk, user_pk, body.fields)
        owner: str = card["user"]["id"]
        audit.record(
            conn,
            workspace_pk=workspace_pk,
            actor_kind="owner",
            actor_id=owner,
            request_id=request_id,
            resource_type="cards",
            resource_id=owner,
            action="PATCH owner-card-edit",
            changes={"fields": sorted(body.fields)},
        )
        return card

    return json_response(await _run_as_owner(request, work, writes=True, problem=problem))


ROUTES: list[HTTPRouteHandler] = [read_card, edit_card]
