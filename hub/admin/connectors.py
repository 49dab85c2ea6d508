"""Admin API: the IdPs installed plugins offer, the workspace's connectors, tokens and mappings.

Every route is under ``/api/v1/workspaces/{workspace}`` (name or id) and authenticated with an
admin key (`hub.admin.auth`). A connector is addressed by its id or its name.

* ``GET    …/idps``                                   installed IdPs an admin can enable
* ``GET    …/connectors``                             the workspace's connectors
* ``POST   …/connectors``                             enable an IdP: ``{"name": …, "idp": …}``
* ``GET    …/connectors/{connector}``                 one connector
* ``PATCH  …/connectors/{connector}``                 ``{"enabled": false}`` / ``true``
* ``DELETE …/connectors/{connector}``                 delete (tokens die; its users stay)
* ``GET    …/connectors/{connector}/mapping``         dialect mapping, overrides, effect
* ``PUT    …/connectors/{connector}/mapping``         save overrides ``{"drop", "map", …}``
* ``GET    …/connectors/{connector}/tokens``          live tokens, creator, last use
* ``POST   …/connectors/{connector}/tokens``          one more token (shown once)
* ``POST   …/connectors/{connector}/tokens/regenerate``  revoke all, make one (shown once)
* ``DELETE …/connectors/{connector}/tokens/{token}``  revoke one token
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.admin.auth import run_as_admin
from hub.core import connectors as service
from hub.core.admins import AdminCaller
from hub.core.clock import to_iso
from hub.core.errors import InvalidSyntax, InvalidValue, ScimError
from hub.core.tokens import NewToken, TokenInfo
from hub.plugins import Registry
from hub.scim.routes import Hub
from hub.scim.wire import NOT_JSON, refuse_nul

T = TypeVar("T")
_JSON = "application/json"
_encode = msgspec.json.Encoder().encode
_BASE = "/workspaces/{workspace:str}"
_ONE = _BASE + "/connectors/{connector:str}"


class NewConnector(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``POST …/connectors``."""

    name: str
    idp: str


class ConnectorChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Body of ``PATCH …/connectors/{connector}``."""

    enabled: bool


def _hub(request: Request[Any, Any, Any]) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _json(body: Any, status: int = 200) -> Response[bytes]:
    return Response(_encode(body), status_code=status, media_type=_JSON)


async def _body(
    request: Request[Any, Any, Any], kind: type[T]
) -> tuple[T | None, ScimError | None]:
    """Decode the JSON body, keeping any problem for after authentication."""
    raw = await request.body()
    try:
        value = msgspec.json.decode(raw, type=kind)
        refuse_nul(raw)
    except msgspec.ValidationError as exc:
        return None, InvalidValue(str(exc))
    except NOT_JSON as exc:
        return None, InvalidSyntax(f"the request body is not valid JSON: {exc}")
    except ScimError as exc:
        return None, exc
    return value, None


def _connector_json(registry: Registry, info: service.ConnectorInfo) -> dict[str, Any]:
    dialect = registry.dialect(info.idp)
    return {
        "id": info.id,
        "name": info.name,
        "idp": info.idp,
        "idpDisplayName": dialect.display_name if dialect is not None else None,
        "idpInstalled": dialect is not None,
        "enabled": info.enabled,
        "created": to_iso(info.created),
        "lastRequest": to_iso(info.last_request) if info.last_request else None,
        "users": info.users,
        "overrides": msgspec.to_builtins(info.overrides),
    }


def _token_json(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "connector": info.connector,
        "createdBy": info.created_by,
        "hint": f"…{info.hint}",
        "created": to_iso(info.created),
        "lastUsed": to_iso(info.last_used) if info.last_used else None,
        "alive": info.alive,
        "reason": info.reason,
    }


def _new_token_json(new: NewToken) -> dict[str, Any]:
    return {"id": new.id, "token": new.token, "note": "shown only now; store it in the IdP"}


def _ref(request: Request[Any, Any, Any]) -> str:
    ref: str = request.path_params["connector"]
    return ref


@get(_BASE + "/idps", name="admin-idps", media_type=_JSON)
async def list_idps(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The IdPs the installed plugins offer (what a new connector may use)."""
    registry = _hub(request).registry

    def work(conn: Connection, admin: AdminCaller) -> None:
        return None

    await run_as_admin(request, work, writes=False)
    versions = {info.name: info.version for info in registry.plugins}
    idps = [
        {
            "name": d.name,
            "displayName": d.display_name,
            "plugin": d.plugin,
            "version": versions.get(d.plugin, "unknown"),
            "mapping": dict(d.mapping),
            "unmanaged": list(d.unmanaged),
        }
        for d in sorted(registry.dialects.values(), key=lambda d: d.name)
    ]
    return _json({"idps": idps})


@get(_BASE + "/connectors", name="admin-connectors", media_type=_JSON)
async def list_connectors(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The workspace's connectors."""
    registry = _hub(request).registry

    def work(conn: Connection, admin: AdminCaller) -> list[service.ConnectorInfo]:
        return service.list_connectors(conn, admin.workspace_pk)

    infos = await run_as_admin(request, work, writes=False)
    return _json({"connectors": [_connector_json(registry, i) for i in infos]})


@post(_BASE + "/connectors", name="admin-connector-create", media_type=_JSON, status_code=201)
async def create_connector(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Enable an installed IdP in the workspace under a name."""
    registry = _hub(request).registry
    body, problem = await _body(request, NewConnector)

    def work(conn: Connection, admin: AdminCaller) -> service.ConnectorInfo:
        assert body is not None
        return service.create_connector(
            conn, admin.workspace_pk, name=body.name, idp=body.idp, installed=registry.dialects
        )

    info = await run_as_admin(request, work, writes=True, problem=problem)
    return _json(_connector_json(registry, info), 201)


@get(_ONE, name="admin-connector", media_type=_JSON)
async def get_connector(request: Request[Any, Any, Any]) -> Response[bytes]:
    """One connector."""
    registry = _hub(request).registry
    ref = _ref(request)

    def work(conn: Connection, admin: AdminCaller) -> service.ConnectorInfo:
        return service.get_connector(conn, admin.workspace_pk, ref)

    return _json(_connector_json(registry, await run_as_admin(request, work, writes=False)))


@patch(_ONE, name="admin-connector-change", media_type=_JSON)
async def change_connector(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Disable or re-enable a connector (a disabled connector's tokens stop working)."""
    registry = _hub(request).registry
    ref = _ref(request)
    body, problem = await _body(request, ConnectorChange)

    def work(conn: Connection, admin: AdminCaller) -> service.ConnectorInfo:
        assert body is not None
        return service.set_enabled(conn, admin.workspace_pk, ref, body.enabled)

    info = await run_as_admin(request, work, writes=True, problem=problem)
    return _json(_connector_json(registry, info))


@delete(_ONE, name="admin-connector-delete", status_code=200)
async def delete_connector(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Delete a connector: its tokens die; the users it provisioned stay, marked with it."""
    ref = _ref(request)

    def work(conn: Connection, admin: AdminCaller) -> None:
        service.delete_connector(conn, admin.workspace_pk, ref)

    await run_as_admin(request, work, writes=True)
    return Response(b"", status_code=204)


def _mapping_json(registry: Registry, info: service.ConnectorInfo) -> dict[str, Any]:
    dialect = registry.dialect(info.idp)
    return {
        "connector": info.name,
        "idp": info.idp,
        "dialect": dict(dialect.mapping) if dialect is not None else {},
        "overrides": msgspec.to_builtins(info.overrides),
        "effective": service.effective_mapping(dialect, info.overrides),
        "ignored": list(service.ignored_paths(dialect, info.overrides)),
    }


@get(_ONE + "/mapping", name="admin-connector-mapping", media_type=_JSON)
async def get_mapping(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The connector's mapping: its dialect's, its overrides, and the mapping in effect."""
    registry = _hub(request).registry
    ref = _ref(request)

    def work(conn: Connection, admin: AdminCaller) -> service.ConnectorInfo:
        return service.get_connector(conn, admin.workspace_pk, ref)

    return _json(_mapping_json(registry, await run_as_admin(request, work, writes=False)))


@put(_ONE + "/mapping", name="admin-connector-mapping-save", media_type=_JSON)
async def save_mapping(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Validate and save the connector's overrides (``drop``, ``map``, ``extensions``)."""
    registry = _hub(request).registry
    ref = _ref(request)
    body, problem = await _body(request, dict[str, Any])

    def work(conn: Connection, admin: AdminCaller) -> service.ConnectorInfo:
        return service.save_overrides(conn, admin.workspace_pk, ref, body)

    info = await run_as_admin(request, work, writes=True, problem=problem)
    return _json(_mapping_json(registry, info))


@get(_ONE + "/tokens", name="admin-connector-tokens", media_type=_JSON)
async def list_tokens(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The connector's live tokens: creator, hint, creation and last use."""
    ref = _ref(request)

    def work(conn: Connection, admin: AdminCaller) -> list[TokenInfo]:
        return service.connector_tokens(conn, admin.workspace_pk, ref)

    infos = await run_as_admin(request, work, writes=False)
    return _json({"tokens": [_token_json(i) for i in infos]})


def _token_route(
    make: Callable[[Connection, int, str, int], NewToken],
) -> Callable[[Request[Any, Any, Any]], Any]:
    async def handler(request: Request[Any, Any, Any]) -> Response[bytes]:
        ref = _ref(request)

        def work(conn: Connection, admin: AdminCaller) -> NewToken:
            return make(conn, admin.workspace_pk, ref, admin.admin_pk)

        return _json(_new_token_json(await run_as_admin(request, work, writes=True)), 201)

    return handler


generate_token = post(
    _ONE + "/tokens", name="admin-token-generate", media_type=_JSON, status_code=201
)(_token_route(service.generate_token))
regenerate_token = post(
    _ONE + "/tokens/regenerate", name="admin-token-regenerate", media_type=_JSON, status_code=201
)(_token_route(service.regenerate_token))


@delete(_ONE + "/tokens/{token:str}", name="admin-token-revoke", status_code=200)
async def revoke_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Revoke one of the connector's tokens."""
    ref = _ref(request)
    token_id: str = request.path_params["token"]

    def work(conn: Connection, admin: AdminCaller) -> None:
        service.revoke_token(conn, admin.workspace_pk, ref, token_id)

    await run_as_admin(request, work, writes=True)
    return Response(b"", status_code=204)


ROUTES: list[HTTPRouteHandler] = [
    list_idps,
    list_connectors,
    create_connector,
    get_connector,
    change_connector,
    delete_connector,
    get_mapping,
    save_mapping,
    list_tokens,
    generate_token,
    regenerate_token,
    revoke_token,
]
