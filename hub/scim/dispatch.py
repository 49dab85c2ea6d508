"""Direct dispatch of the SCIM resource routes: a provisioning cycle's requests, in one look-up.

Every Users and Groups request (create, list, get, replace, patch, delete) takes this path; the
discovery endpoints, the admin API, the pages and anything unusual go through Litestar's router.
Per request it skips what Litestar spends on routes in general and these handlers do not use:
the routing trie and its second exception layer, guards, response caching, dependency
resolution and the signature model that turns `request` into a keyword argument (~8 µs of a
~60 µs GET by id, in process).

What the handler sees is what Litestar's router would give it: the same handler function, the
same `Request` class, `scope["route_handler"]`, `path_params` and `path_template`, the same
middleware stack around it (request log, metrics) and the same exception layer inside it (the
app's SCIM error handlers), and the response goes out through the handler's own `to_response`.
A handler is served here only if Litestar would run nothing more for it (no guards, hooks,
dependencies, cache, DTOs; no CSRF, compression or allowed-hosts set-up on the app); a request
is served here only in its canonical form (no root path, no empty, doubled or trailing slash, a
valid Host header, a `.search` segment left to its own route), so Litestar's answers to the rest
(404, 405, 400) are unchanged. Not reproduced: the app-level exception layer around the router,
which only an exception raised by the middleware itself (a bug) would reach.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from litestar import Litestar
from litestar._asgi.utils import is_valid_host, wrap_in_exception_handler
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

# `is_valid_host` and `wrap_in_exception_handler` are Litestar's own host check and exception
# layer, so that both paths answer alike: a private module, but litestar is pinned exactly and
# tests/test_dispatch.py compares the two paths.

#: The prefix every SCIM resource route shares.
PREFIX = "/scim/v2/"
#: Item paths whose last segment is a route of its own (`POST /Users/.search`), not an id.
_STATIC_ITEMS = frozenset({".search"})


class _Target:
    """One handler served directly: its ASGI stack and what the router would put in the scope."""

    __slots__ = ("exception_handlers", "handler", "param", "stack", "template")

    def __init__(
        self, app: Litestar, handler: HTTPRouteHandler, template: str, param: str | None
    ) -> None:
        self.handler = handler
        self.template = template
        #: the name of the item path's one parameter (None: the collection's path)
        self.param = param
        self.exception_handlers = handler.resolve_exception_handlers()
        # As Litestar's `build_route_middleware_stack`: the exception layer innermost, then the
        # handler's middleware, the first in the list wrapped first.
        stack = wrap_in_exception_handler(app=_endpoint(app, handler))
        for middleware in handler.resolve_middleware():
            stack = middleware(app=stack)  # type: ignore[call-arg, operator]
        self.stack = stack


def _endpoint(app: Litestar, handler: HTTPRouteHandler) -> ASGIApp:
    """The handler called with its request, answered through its own `to_response`."""
    fn: Callable[..., Any] = handler.fn
    request_class = handler.resolve_request_class()

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        request = request_class(scope=scope, receive=receive, send=send)
        data = await fn(request=request)
        response = await handler.to_response(app=app, data=data, request=request)
        await response(scope, receive, send)

    return endpoint


def _plain(app: Litestar, handler: HTTPRouteHandler) -> bool:
    """Whether Litestar would run nothing for `handler` beyond what `_Target` reproduces."""
    return (
        not handler.resolve_guards()
        and handler.resolve_before_request() is None
        and handler.resolve_after_response() is None
        and not handler.resolve_dependencies()
        and not handler.cache
        and handler.resolve_data_dto() is None
        and handler.resolve_return_dto() is None
        and not handler.has_sync_callable
        and set(handler.parsed_fn_signature.parameters) == {"request"}
        and not (app.csrf_config or app.compression_config or app.allowed_hosts)
        and not app.before_send
    )


def _shape(route: HTTPRoute, names: set[str]) -> tuple[str, str | None] | None:
    """(endpoint, its item parameter or None) of `/scim/v2/<endpoint>[/{<id>:str}]`, else None."""
    if not route.path.startswith(PREFIX):
        return None
    name, _, rest = route.path_format[len(PREFIX) :].partition("/")
    if name not in names:
        return None
    params = list(route.path_parameters.values())
    if not rest and not params:
        return name, None
    if len(params) == 1 and params[0].type is str and rest == f"{{{params[0].name}}}":
        return name, params[0].name
    return None


class Dispatch:
    """The directly served SCIM routes of one app, by (resource endpoint, item or not, method)."""

    def __init__(self, app: Litestar, endpoints: Iterable[str]) -> None:
        names = set(endpoints)
        self._targets: dict[tuple[str, bool, str], _Target] = {}
        for route in app.routes:
            if not isinstance(route, HTTPRoute) or (shape := _shape(route, names)) is None:
                continue
            name, param = shape
            for method, (handler, _) in route.route_handler_map.items():
                if _plain(app, handler):
                    target = _Target(app, handler, route.path_format, param)
                    self._targets[(name, param is not None, method)] = target

    def __len__(self) -> int:
        return len(self._targets)

    async def __call__(self, scope: HTTPScope, receive: Receive, send: Send) -> bool:
        """Serve the request if it is one of the direct routes; False: it is Litestar's."""
        path: str = scope["path"]
        if not path.startswith(PREFIX) or scope.get("root_path"):
            return False
        name, slash, rid = path[len(PREFIX) :].partition("/")
        if slash and (not rid or "/" in rid or rid in _STATIC_ITEMS):
            return False
        target = self._targets.get((name, bool(slash), scope["method"]))
        if target is None:
            return False
        host = next((value for key, value in scope["headers"] if key == b"host"), None)
        if host is not None and not is_valid_host(host):
            return False  # the router's 400
        scope["path_params"] = {target.param: rid} if target.param else {}
        scope["route_handler"] = target.handler
        scope["path_template"] = target.template
        ScopeState.from_scope(scope).exception_handlers = target.exception_handlers
        await target.stack(scope, receive, send)
        return True
