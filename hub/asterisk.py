"""The asterisk request target: `OPTIONS *` asks what the server as a whole supports.

RFC 9110 §9.3.7: `OPTIONS *` applies to the server rather than to a resource, a "ping"; it was
routed like a path and answered 404. RFC 9112 §3.2.4: the asterisk form is for OPTIONS only, so
any other method with it is a bad request.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Send

from hub.core.schema import ERROR_SCHEMA
from hub.head import method_of

#: Every method some resource of the hub answers (HEAD wherever there is a GET).
ALLOW: Final = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
_NOT_OPTIONS: Final = msgspec.json.encode(
    {
        "schemas": [ERROR_SCHEMA],
        "status": "400",
        "scimType": "invalidSyntax",
        "detail": "the request target * is for OPTIONS only (RFC 9112 §3.2.4)",
    }
)


def is_asterisk(scope: Any) -> bool:
    """Say whether the request's target is `*` (the asterisk form)."""
    return bool(scope["path"] == "*")


async def serve_asterisk(scope: Any, _receive: Receive, send: Send) -> None:
    """Answer `OPTIONS *` with the server's methods (204, `Allow`); anything else with `*`: 400."""
    if method_of(scope) == "OPTIONS":
        status, headers, body = 204, [(b"allow", ALLOW)], b""
    else:
        status, body = 400, _NOT_OPTIONS
        headers = [
            (b"content-type", b"application/scim+json"),
            (b"content-length", str(len(body)).encode()),
        ]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
