"""HEAD requests, answered as the GET of the same URL would be, without its body.

RFC 9110 §9.3.2: a HEAD response carries the header fields a GET would (status, `ETag`,
`Content-Length`…) and no content; health probes and uptime monitors use it. The app runs the GET
on a copy of the request's scope, so the server still knows the request was a HEAD, and the body
is dropped here whatever the server does with it. A URL without a GET answers 405 naming the
methods it has, as before.
"""

from __future__ import annotations

from typing import Any, Final

from litestar.types import ASGIApp, Message, Receive, Send

#: The scope key saying a GET scope stands for a HEAD request (what logs and metrics report).
_HEAD: Final = "hub.head"


def is_head(scope: Any) -> bool:
    """Say whether this HTTP scope is a HEAD request (answered as a GET)."""
    return bool(scope["method"] == "HEAD")


async def serve_head(app: ASGIApp, scope: Any, receive: Receive, send: Send) -> None:
    """Answer a HEAD request with `app`'s answer to the same GET, less its body."""

    async def without_body(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    get_scope: Any = {**scope, "method": "GET", _HEAD: True}
    await app(get_scope, receive, without_body)


def method_of(scope: Any) -> str:
    """The request's method as the client sent it: HEAD for a HEAD served as a GET."""
    return "HEAD" if scope.get(_HEAD) else str(scope.get("method", "?"))
