"""The hub's Litestar Router: one built for one app, registered without Litestar's copy."""

from __future__ import annotations

from typing import Any

from litestar import Router
from litestar.handlers import HTTPRouteHandler


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
