"""Every failure as a SCIM Error document (RFC 7644 §3.12), including Litestar's own 404/405/413."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from hub.core.errors import InvalidToken, ScimError
from hub.core.schema import ERROR_SCHEMA
from hub.scim.response import ScimResponse

log = structlog.get_logger("hub.http")
_encode = msgspec.json.Encoder().encode

#: The bearer challenge of every 401 (RFC 6750 §3).
_CHALLENGE = 'Bearer realm="scim-hub"'
_HTTP_DETAIL = {
    404: "no such endpoint; SCIM resources live under /scim/v2 (Users, Groups, Schemas, "
    "ResourceTypes, ServiceProviderConfig)",
    405: "this method is not allowed on this endpoint",
    413: "the request body is larger than the server accepts",
}


def error_response(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """Build a SCIM Error response; `status` is rendered as a string, as RFC 7644 §3.12 shows."""
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    body["detail"] = detail
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", _CHALLENGE)
    if status == 503:
        all_headers.setdefault("Retry-After", "5")
    return ScimResponse(_encode(body), status, all_headers)


def handle_scim_error(request: Request[Any, Any, Any], exc: ScimError) -> Response[bytes]:
    """Render a domain error (and keep its detail for the provisioning log)."""
    request.state.error = exc.detail
    headers: dict[str, str] | None = getattr(exc, "headers", None)
    if isinstance(exc, InvalidToken):
        headers = {
            **(headers or {}),
            "WWW-Authenticate": f'{_CHALLENGE}, error="{exc.bearer_error}"',
        }
    return error_response(exc.status, exc.detail, exc.scim_type, headers)


def handle_http_exception(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Render Litestar's own errors (unknown route, wrong method, body too large…) the SCIM way."""
    status = exc.status_code
    detail = _HTTP_DETAIL.get(status) or str(exc.detail)
    headers = dict(exc.headers or {})
    if status == 405:
        for key in [k for k in headers if k.lower() == "allow"]:
            headers["Allow"] = _with_head(headers.pop(key))
    return error_response(status, detail, "invalidSyntax" if status == 400 else None, headers)


def _with_head(allow: str) -> str:
    """`allow` plus HEAD where it has GET: every GET is answered as HEAD too (`hub.head`).

    RFC 9110 §15.5.6: a 405 lists the methods the resource supports; Litestar lists its
    handlers' only.
    """
    methods = [m.strip() for m in allow.split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    return ", ".join(sorted(methods))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Log an unexpected error once, with its traceback, and answer a SCIM 500."""
    log.exception("unexpected error", path=request.url.path, method=request.method)
    request.state.error = f"internal error ({type(exc).__name__}); the request was not applied"
    return error_response(500, "internal error; the request was not applied")
