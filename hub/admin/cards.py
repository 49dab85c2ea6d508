"""Admin API: team cards, their fields, hand-assigned templates, seats and user counts.

Every route lives under `/api/v1/workspaces/{workspace}` and runs as one unit of work through
`run_as_admin`. Cards are addressed by card id or by their user's SCIM id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.auth import run_as_admin
from hub.core import cards, users
from hub.core.admins import AdminCaller
from hub.core.errors import InvalidSyntax, InvalidValue, ScimError
from hub.scim.routes import Hub
from hub.scim.wire import NOT_JSON, refuse_nul

T = TypeVar("T")
JSON = dict[str, Any]
WORKSPACE = "/workspaces/{workspace:str}"
CARD = WORKSPACE + "/cards/{card:str}"
FIELD = CARD + "/fields/{field:str}"
_encode = msgspec.json.Encoder().encode


def json_response(body: Any, status: int = 200) -> Response[bytes]:
    """Encode an admin API answer as JSON."""
    return Response(_encode(body), status_code=status, media_type="application/json")


async def read_body(
    request: Request[Any, Any, Any], kind: type[T]
) -> tuple[T | None, ScimError | None]:
    """Decode a JSON body into `kind`; a problem is returned (raised once authenticated)."""
    raw = await request.body()
    try:
        value = msgspec.json.decode(raw, type=kind)
        refuse_nul(raw)
    except msgspec.ValidationError as exc:
        return None, InvalidValue(f"invalid request body: {exc}")
    except NOT_JSON as exc:
        return None, InvalidSyntax(f"the request body is not JSON: {exc}")
    except ScimError as exc:
        return None, exc
    return value, None


def announce(request: Request[Any, Any, Any], hook: str, **kwargs: Any) -> None:
    """Broadcast an event hook after the unit of work committed."""
    hub: Hub = request.app.state.hub
    hub.registry.broadcast(hook, **kwargs)


class FieldValue(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a field edit: the new value (null clears it)."""

    value: str | None


class TemplateRef(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a template assignment: the template's id."""

    template: str


def _card_query(request: Request[Any, Any, Any]) -> tuple[cards.CardQuery, ScimError | None]:
    params = request.query_params
    try:
        return cards.CardQuery(
            limit=int(params.get("limit", 50)),
            offset=int(params.get("offset", 0)),
            q=params.get("q") or None,
            status=params.get("status") or None,
            template=params.get("template") or None,
        ), None
    except ValueError:
        return cards.CardQuery(), InvalidValue("limit and offset must be integers")


@get(WORKSPACE + "/cards", name="admin-cards-list")
async def list_cards(request: Request[Any, Any, Any]) -> Response[bytes]:
    """List team cards: `limit`/`offset` paging, `q` search, `status` and `template` filters."""
    query, problem = _card_query(request)

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        return cards.list_cards(conn, admin.workspace_pk, query)

    return json_response(await run_as_admin(request, work, writes=False, problem=problem))


@get(CARD, name="admin-cards-get")
async def read_card(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Read one card: each field's value, source, locked and linked flags."""
    ref: str = request.path_params["card"]

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        return cards.get_card(conn, admin.workspace_pk, ref)

    return json_response(await run_as_admin(request, work, writes=False))


@patch(FIELD, name="admin-cards-field-edit")
async def edit_field(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Set a field's value (`{"value": …}`): it becomes manual and unlinked."""
    ref: str = request.path_params["card"]
    name: str = request.path_params["field"]
    body, problem = await read_body(request, FieldValue)

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        assert body is not None  # a parse problem is raised before the work runs
        return cards.edit_field(conn, admin.workspace_pk, ref, name, body.value)

    return json_response(await run_as_admin(request, work, writes=True, problem=problem))


def _field_action(
    action: Callable[[Connection, int, str, str], JSON], verb: str
) -> HTTPRouteHandler:
    async def handler(request: Request[Any, Any, Any]) -> Response[bytes]:
        ref: str = request.path_params["card"]
        name: str = request.path_params["field"]

        def work(conn: Connection, admin: AdminCaller) -> JSON:
            return action(conn, admin.workspace_pk, ref, name)

        return json_response(await run_as_admin(request, work, writes=True))

    handler.__doc__ = f"{verb.capitalize()} a card field."
    return post(f"{FIELD}/{verb}", name=f"admin-cards-field-{verb}", status_code=200)(handler)


@put(CARD + "/template", name="admin-cards-assign")
async def assign_template(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Make a card inherit a template by hand (`{"template": id}`)."""
    ref: str = request.path_params["card"]
    body, problem = await read_body(request, TemplateRef)

    hub: Hub = request.app.state.hub

    def work(conn: Connection, admin: AdminCaller) -> tuple[JSON, JSON, JSON, str]:
        assert body is not None  # a parse problem is raised before the work runs
        card, template = cards.assign_template(conn, admin.workspace_pk, ref, body.template)
        user = users.render(cards.user_row(conn, card["user"]["id"]), hub.base, None)
        return card, template, user, admin.workspace_id

    card, template, user, workspace = await run_as_admin(
        request, work, writes=True, problem=problem
    )
    announce(request, "template_applied", workspace=workspace, user=user, template=template)
    return json_response(card)


@delete(CARD + "/template", name="admin-cards-unassign", status_code=200)
async def unassign_template(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Undo a card's template by hand."""
    ref: str = request.path_params["card"]

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        return cards.unassign_template(conn, admin.workspace_pk, ref)

    return json_response(await run_as_admin(request, work, writes=True))


def _stats(conn: Connection, admin: AdminCaller) -> JSON:
    return cards.stats(conn, admin.workspace_pk)


@get(WORKSPACE + "/stats", name="admin-stats")
async def read_stats(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Seat count (active users) and user counts by status."""
    return json_response(await run_as_admin(request, _stats, writes=False))


@get(WORKSPACE + "/seats", name="admin-seats")
async def read_seats(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Seat count: active users only."""
    result = await run_as_admin(request, _stats, writes=False)
    return json_response({"seats": result["seats"]})


ROUTES: list[HTTPRouteHandler] = [
    list_cards,
    read_card,
    edit_field,
    _field_action(cards.unlock_field, "unlock"),
    _field_action(cards.lock_field, "lock"),
    _field_action(cards.relink_field, "relink"),
    assign_template,
    unassign_template,
    read_stats,
    read_seats,
]
