"""The admin REST API under /api/v1: one router assembled from the per-noun modules."""

from __future__ import annotations

from litestar import Router
from litestar.handlers import HTTPRouteHandler

from hub.admin import activate, activity, audit, cards, connectors, emails, limits, owner, templates
from hub.router import OwnRouter


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
