"""The admin REST API under /api/v1: one router assembled from the per-noun modules."""

from __future__ import annotations

from typing import Any

from litestar import Router
from litestar.handlers import HTTPRouteHandler

from hub.admin import activate, activity, audit, cards, connectors, emails, limits, owner, templates


class OwnRouter(Router):
    """A Router built for one app, which that app takes as it is.

    Litestar deep-copies a Router it registers (so one Router can serve several apps): ~25% of
    `create_app`. Ours are built afresh by each `create_app` and registered once, so the copy
    is the router itself. The route handlers it is given are copied by Litestar as before.

    Each handler's signature is parsed here, on the handler given (memoised on it), before
    Litestar copies it: the copies carry the parse, done once per process instead of once per
    app (~30% of `create_app`). No layer adds to the signature namespace, so the parse is the
    one registration would make.
    """

    def __init__(self, path: str, route_handlers: list[Any], **options: Any) -> None:
        for handler in route_handlers:
            if isinstance(handler, HTTPRouteHandler):
                handler.parsed_fn_signature  # noqa: B018 - memoised on the handler
        super().__init__(path, route_handlers=route_handlers, **options)

    def __deepcopy__(self, memo: dict[int, Any]) -> OwnRouter:
        return self


def admin_router() -> Router:
    """Every admin API route, under /api/v1."""
    handlers: list[HTTPRouteHandler] = [
        *connectors.ROUTES,
        *cards.ROUTES,
        *templates.ROUTES,
        *emails.ROUTES,
        *audit.ROUTES,
        *activity.ROUTES,
        *limits.ROUTES,
    ]
    return OwnRouter(path="/api/v1", route_handlers=handlers)


def owner_router() -> Router:
    """The card owner's API (authenticated by the session started on activation)."""
    return OwnRouter(path="/api/v1/me", route_handlers=list(owner.ROUTES))


def pages_router() -> Router:
    """Pages outside the API: the activation link's landing page."""
    return OwnRouter(path="/", route_handlers=list(activate.ROUTES))
