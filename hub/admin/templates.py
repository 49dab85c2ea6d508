"""Admin API: templates — create, list, read, edit, delete, reorder, and preview a rule.

Routes live under `/api/v1/workspaces/{workspace}/templates`. An invalid rule is refused with
400 `invalidFilter` whose detail gives the parser's position and a caret excerpt.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.auth import run_as_admin
from hub.admin.cards import WORKSPACE, json_response, read_body
from hub.core import templates
from hub.core.admins import AdminCaller
from hub.core.templates import TemplateChanges

JSON = dict[str, Any]
TEMPLATES = WORKSPACE + "/templates"
TEMPLATE = TEMPLATES + "/{template:str}"


class Order(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a reorder: every template id once, first match first."""

    order: list[str]


class Rule(msgspec.Struct, forbid_unknown_fields=True):
    """Body of a preview: the rule to count matches of."""

    rule: str


@get(TEMPLATES, name="admin-templates-list")
async def list_templates(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Every template, in the admin's order."""

    def work(conn: Connection, admin: AdminCaller) -> list[JSON]:
        return templates.list_templates(conn, admin.workspace_pk)

    return json_response({"templates": await run_as_admin(request, work, writes=False)})


@post(TEMPLATES, name="admin-templates-create", status_code=201)
async def create_template(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Create a template (`name`, `rule`, `fields`) at the end of the order."""
    body, problem = await read_body(request, TemplateChanges)

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        assert body is not None  # a parse problem is raised before the work runs
        return templates.create_template(conn, admin.workspace_pk, body)

    result = await run_as_admin(request, work, writes=True, problem=problem)
    return json_response(result, 201)


@get(TEMPLATE, name="admin-templates-get")
async def read_template(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Read one template."""
    template_id: str = request.path_params["template"]

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        return templates.get_template(conn, admin.workspace_pk, template_id)

    return json_response(await run_as_admin(request, work, writes=False))


@patch(TEMPLATE, name="admin-templates-edit")
async def edit_template(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Change a template's name, rule or fields; inheriting cards follow."""
    template_id: str = request.path_params["template"]
    body, problem = await read_body(request, TemplateChanges)

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        assert body is not None  # a parse problem is raised before the work runs
        return templates.edit_template(conn, admin.workspace_pk, template_id, body)

    return json_response(await run_as_admin(request, work, writes=True, problem=problem))


@delete(TEMPLATE, name="admin-templates-delete", status_code=204)
async def delete_template(request: Request[Any, Any, Any]) -> None:
    """Delete a template; its cards keep their current values."""
    template_id: str = request.path_params["template"]

    def work(conn: Connection, admin: AdminCaller) -> None:
        templates.delete_template(conn, admin.workspace_pk, template_id)

    await run_as_admin(request, work, writes=True)


@put(TEMPLATES + "/order", name="admin-templates-reorder")
async def reorder(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Set the order in which rules are tried (`{"order": [id, …]}`)."""
    body, problem = await read_body(request, Order)

    def work(conn: Connection, admin: AdminCaller) -> list[JSON]:
        assert body is not None  # a parse problem is raised before the work runs
        return templates.reorder(conn, admin.workspace_pk, body.order)

    result = await run_as_admin(request, work, writes=True, problem=problem)
    return json_response({"templates": result})


@post(TEMPLATES + "/preview", name="admin-templates-preview", status_code=200)
async def preview(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Count the current (active) users a rule would match (`{"rule": …}`)."""
    body, problem = await read_body(request, Rule)

    def work(conn: Connection, admin: AdminCaller) -> JSON:
        assert body is not None  # a parse problem is raised before the work runs
        return templates.preview(conn, admin.workspace_pk, body.rule)

    return json_response(await run_as_admin(request, work, writes=False, problem=problem))


ROUTES: list[HTTPRouteHandler] = [
    list_templates,
    create_template,
    reorder,
    preview,
    read_template,
    edit_template,
    delete_template,
]
