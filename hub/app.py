"""The Litestar application factory: `create_app(settings)` is the only way the app is built."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from hub.admin.activate import SECRET_PATH
from hub.admin.dashboard import dashboard_router, static_files, template_config
from hub.admin.routes import admin_router, owner_router, pages_router
from hub.asterisk import is_asterisk, serve_asterisk
from hub.core import activity
from hub.core.database import open_database
from hub.core.errors import ScimError
from hub.core.outbox import start_sender
from hub.core.schema import GROUP_TYPE, USER_TYPE
from hub.core.tenants import tenant_url
from hub.core.tokens import Caller
from hub.head import is_head, method_of, serve_head
from hub.logging import bind_request_id, drain_logs, log_request
from hub.metrics import Metrics
from hub.plugins import Registry, build_registry
from hub.router import OwnRouter
from hub.scim.dispatch import Dispatch
from hub.scim.errors import handle_http_exception, handle_scim_error, handle_unexpected
from hub.scim.openapi import openapi_document
from hub.scim.routes import Hub, scim_routes
from hub.settings import Settings


@get("/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """Readiness: the database answers."""
    hub: Hub = request.app.state.hub
    if await hub.db.ping():
        return Response({"status": "ready"})
    return Response(
        {"status": "database unavailable"}, status_code=503, headers={"Retry-After": "5"}
    )


def _record_activity(
    scope: Scope, state: dict[str, Any], caller: Caller, status: int, started: float
) -> None:
    """Queue one authenticated SCIM request for the provisioning log."""
    handler = scope.get("route_handler")
    name = getattr(handler, "name", None) or "unknown"
    resource_type, resource_id, user_name = state.get("activity", (None, None, None))
    hub: Hub = scope["app"].state["hub"]  # by key, as `hub.scim.routes._hub` says
    hub.activity.add(
        activity.Entry(
            workspace_pk=caller.workspace_pk,
            connector_pk=caller.connector_pk,
            at=activity.now(),
            method=method_of(scope),
            path=scope["path"][:512],
            operation=name.split("-", 1)[-1][:32],
            resource_type=resource_type,
            # Each value cut to its column: one long id must not fail the batch it is in.
            resource_id=(resource_id or "")[:64] or None,
            user_name=(user_name or "")[:512] or None,
            status=status,
            error=(state.get("error") or "")[:2000] or None,
            request_id=caller.request_id,
            ms=int((time.perf_counter() - started) * 1000),
        )
    )


def request_log_middleware(app: ASGIApp) -> ASGIApp:
    """Bind a request id to every log line and emit one line per request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        if "\x00" in scope["path"]:
            # No id, name or log line holds U+0000 (PostgreSQL text cannot store it): such a path
            # is authenticated first, as any other, and then its id matches nothing (404).
            scope["path"] = scope["path"].replace("\x00", "\ufffd")
            params = scope.get("path_params") or {}
            for name, value in params.items():
                if isinstance(value, str):
                    params[name] = value.replace("\x00", "\ufffd")
        request_id = os.urandom(8).hex()
        bind_request_id(request_id)
        started = time.perf_counter()
        status = 0  # no head sent yet
        cut: dict[str, Any] = {}

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except BaseException as exc:
            if status:
                # The head went out, the end of the body never will (a streamed answer's
                # source failed, or its client stopped reading): the client got less than the
                # status says, and the log must not read as a whole answer.
                # The class only: the server logs the traceback, and a database error's text
                # can hold the statement's parameters.
                cut["cut"] = f"the response was cut short after its head ({type(exc).__name__})"
            raise
        finally:
            state = scope.get("state", {})
            caller = state.get("caller") if isinstance(state, dict) else None
            handler = scope.get("route_handler")
            # A path carrying a secret (an activation link) is logged as its route template.
            secret = handler is not None and handler.opt.get(SECRET_PATH, False)
            if cut and isinstance(state, dict):
                state["error"] = cut["cut"]
            if caller is not None and scope["path"].startswith("/scim/v2"):
                _record_activity(scope, state, caller, status or 500, started)
            log_request(
                method=method_of(scope),
                path=scope.get("path_template", "?") if secret else scope["path"],
                status=status or 500,
                ms=round((time.perf_counter() - started) * 1000, 2),
                workspace=getattr(caller, "workspace_id", None),
                connector=getattr(caller, "connector_id", None),
                **cut,
            )

    return middleware


async def route_identified(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve through Litestar's router (`app`); an answer it gives itself gets an id and a line.

    The request log middleware runs around a route's handler, so an answer the router gives
    before it has chosen one (404 no such route, 405 method, 400 bad Host) had no
    `x-request-id` and left no log line. Such an answer is told by the scope having no
    `route_handler` when it starts. Never on the hot path: Users and Groups are `Dispatch`'s.
    """
    started = time.perf_counter()
    status = 0

    async def send_identified(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start" and "route_handler" not in scope:
            status = message["status"]
            request_id = os.urandom(8).hex()
            bind_request_id(request_id)
            message["headers"] = [
                *message.get("headers", []),
                (b"x-request-id", request_id.encode()),
            ]
        await send(message)

    await app(scope, receive, send_identified)
    if status:
        log_request(
            method=method_of(scope),
            path=scope["path"].replace("\x00", "\ufffd"),
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )


class HubApp(Litestar):
    """The hub's Litestar app: the SCIM resource routes are dispatched directly (`Dispatch`)."""

    dispatch: Dispatch | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve a SCIM resource request directly, anything else through Litestar's router.

        A HEAD request is served as the GET of its URL, without the body (`hub.head`).
        """
        if scope["type"] == ScopeType.HTTP and is_head(scope):
            await serve_head(self, scope, receive, send)
            return
        if scope["type"] == ScopeType.HTTP and self.dispatch is not None:
            scope["app"] = scope["litestar_app"] = self
            scope.setdefault("state", {})
            if await self.dispatch(scope, receive, send):
                return
        if scope["type"] == ScopeType.HTTP:
            served = serve_asterisk if is_asterisk(scope) else super().__call__
            await route_identified(served, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _settle_heap() -> None:
    """Take what start-up built out of the cyclic garbage collector's sight.

    Start-up leaves ~150,000 container objects (modules, the route table, SQLAlchemy's metadata)
    that live as long as the process. Every full collection walked them all: 100 to 160 ms with the
    event loop stopped, and every request in flight delayed, once every few thousand writes.
    Frozen, a full collection walks what requests left behind (~2 ms).
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings, registry: Registry | None = None, *, freeze_start_up: bool = False
) -> Litestar:
    """Build the hub's ASGI app: SCIM routes, health probes, SCIM error handling, logging.

    `freeze_start_up`: the app is a server process's for its lifetime (`hub.asgi`), so what its
    start-up built is frozen out of the garbage collector's full collections. Not for an app
    among many in one process (tests): a frozen app's reference cycles are never collected.
    """
    plugins = registry if registry is not None else build_registry()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = open_database(
            settings.database_url, serving=True, pool_size=settings.database_pool_size
        )
        # Here, not in the first requests (and every request committed beside them).
        db.compile_statements()
        app.state.hub = Hub(settings, db, plugins, tenant_url(settings.base_url))
        stop_sender = start_sender(app.state.hub)
        keep_us = settings.activity_retention_days * 86_400_000_000

        async def prune_activity() -> int:
            return await db.write(activity.prune, before=activity.now() - keep_us)

        stop_activity = activity.start_writer(
            app.state.hub.activity,
            lambda batch: db.write(activity.write, batch),
            prune_activity if keep_us else None,
        )
        if freeze_start_up:
            _settle_heap()
        try:
            yield
        finally:
            await stop_activity()
            await stop_sender()
            await db.close()
            drain_logs()

    app = HubApp(
        route_handlers=[
            OwnRouter("/", route_handlers=[healthz, readyz, openapi_document, *scim_routes()]),
            admin_router(),
            owner_router(),
            pages_router(),
            dashboard_router(),
            static_files(),
            metrics.route(),
        ],
        template_config=template_config(),
        lifespan=[lifespan],
        exception_handlers={
            ScimError: handle_scim_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        middleware=[metrics.middleware, request_log_middleware],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        debug=False,
    )
    app.dispatch = Dispatch(app, (USER_TYPE.endpoint.strip("/"), GROUP_TYPE.endpoint.strip("/")))
    return app
