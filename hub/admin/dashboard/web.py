"""What every dashboard page shares: the session cookie, CSRF checks, flash messages, rendering.

A page request is one unit of work, like an admin API request: the session is checked (and, on a
POST, the form's CSRF token), the page's work runs on the same connection, and a write leaves an
audit record in the same transaction. Failures are plain HTML pages, never SCIM JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import quote

import msgspec
import structlog
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from sqlalchemy import Connection

from hub.admin.auth import nul_in_query
from hub.core import admin_sessions, audit
from hub.core.admin_sessions import SessionAdmin
from hub.core.admins import AdminCaller
from hub.core.clock import now_us
from hub.core.errors import InvalidValue, ScimError
from hub.logging import current_request_id
from hub.scim.routes import Hub

T = TypeVar("T")
log = structlog.get_logger("hub.dashboard")
Req = Request[Any, Any, Any]

PREFIX: Final = "/admin"
SESSION_COOKIE: Final = "scim_hub_admin"
SIGNIN_COOKIE: Final = "scim_hub_signin"
FLASH_COOKIE: Final = "scim_hub_flash"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"

#: Sent with every dashboard response. Scripts and styles come only from /admin/static, so an
#: injected tag could not run; pages are never cached (a token's secret is shown on one).
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""


class CsrfRefused(Exception):
    """A POST without the session's CSRF token (a forged or stale form)."""


def hub_of(request: Req) -> Hub:
    """The hub state the app built at start-up."""
    hub: Hub = request.app.state.hub
    return hub


def secure_cookies(request: Req) -> bool:
    """Cookies are Secure when the hub is served over https (its base URL says so)."""
    return hub_of(request).settings.base_url.startswith("https://")


def cookie(request: Req, key: str, value: str, *, max_age: int | None = None) -> Cookie:
    """An HttpOnly, SameSite=Lax cookie scoped to the dashboard (Secure over https)."""
    return Cookie(
        key=key,
        value=value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        secure=secure_cookies(request),
        samesite="lax",
    )


def expired(request: Req, key: str) -> Cookie:
    """A cookie that deletes `key`."""
    return cookie(request, key, "", max_age=0)


# --------------------------------------------------------------------------- flash messages


def flash(request: Req, kind: str, text: str) -> Cookie:
    """A one-shot message ("ok" or "error") shown by the next page rendered."""
    raw = json.dumps({"kind": kind, "text": text[:500]}).encode()
    return cookie(request, FLASH_COOKIE, base64.urlsafe_b64encode(raw).decode(), max_age=60)


def read_flash(request: Req) -> dict[str, str] | None:
    """The pending flash message, if any (ignored when malformed)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(value, dict) or value.get("kind") not in ("ok", "error"):
        return None
    return {"kind": str(value["kind"]), "text": str(value.get("text", ""))}


def redirect(request: Req, to: str, *, ok: str | None = None, error: str | None = None) -> Redirect:
    """303 to a dashboard page (Post/Redirect/Get), carrying a flash message."""
    response = Redirect(path=to, status_code=303)
    if ok is not None:
        response.set_cookie(flash(request, "ok", ok))
    if error is not None:
        response.set_cookie(flash(request, "error", error))
    return response


# --------------------------------------------------------------------------- signed-in units


class _Change(msgspec.Struct, frozen=True):
    action: str
    resource_type: str
    resource_id: str
    fields: list[str]


def _signed_in(
    conn: Connection,
    token: str,
    csrf: str | None,
    post: bool,
    work: Callable[[Connection, AdminCaller], T],
    change: _Change | None,
    request_id: str,
    problem: ScimError | None,
) -> tuple[SessionAdmin, T]:
    session = admin_sessions.session_admin(conn, token)
    if session is None:
        raise SignInRequired
    if post and not admin_sessions.check_csrf(session, csrf):
        raise CsrfRefused
    if problem is not None:
        raise problem
    result = work(conn, session.admin)
    if change is not None:
        audit.record(
            conn,
            workspace_pk=session.admin.workspace_pk,
            actor_kind="admin",
            actor_id=session.admin.admin_id,
            request_id=request_id,
            resource_type=change.resource_type,
            resource_id=change.resource_id,
            action=f"dashboard {change.action}",
            changes={"fields": change.fields},
        )
    return session, result


async def form_of(request: Req) -> dict[str, Any]:
    """The posted form (urlencoded); repeated names keep every value as a list."""
    form = await request.form()
    result: dict[str, Any] = {}
    for key in form:
        values = form.getall(key)
        result[key] = values if len(values) > 1 else values[0]
    return result


async def run_signed_in(
    request: Req,
    work: Callable[[Connection, AdminCaller], T],
    *,
    action: str | None = None,
    resource: tuple[str, str] = ("workspace", "-"),
    form: Mapping[str, Any] | None = None,
) -> tuple[SessionAdmin, T]:
    """Check the session (and, on POST, the CSRF token) and run `work` in one unit of work.

    `action` names a write for its audit record (with `resource`, its type and id, and the
    names of the form's fields, never their values); without it the work runs read-only.

    Raises:
        SignInRequired: no live session. CsrfRefused: a POST without the session's token.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    post = request.method == "POST"
    csrf: str | None = None
    if post:
        csrf = request.headers.get(CSRF_HEADER)
        if csrf is None and form is not None:
            value = form.get(CSRF_FIELD)
            csrf = value if isinstance(value, str) else None
    fields = sorted(k for k in (form or {}) if k != CSRF_FIELD)
    change = _Change(action, resource[0], resource[1], fields) if action else None
    request_id = current_request_id()
    problem = nul_in_query(request) or _nul_in_form(form or {})
    hub = hub_of(request)
    run = hub.db.write if action and problem is None else hub.db.read
    return await run(_signed_in, token, csrf, post, work, change, request_id, problem)


def _nul_in_form(form: Mapping[str, Any]) -> ScimError | None:
    """A form holding U+0000 is refused, as a query holding one is (`nul_in_query`)."""
    for key, value in form.items():
        if any("\x00" in text for text in (key, *(value if isinstance(value, list) else [value]))):
            return InvalidValue("form fields must not contain U+0000 (NUL); remove it")
    return None


def page(
    request: Req,
    session: SessionAdmin,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
) -> Template:
    """Render a dashboard page with the shared context (who, where, CSRF token, flash)."""
    response = Template(
        template_name=template,
        context={
            "admin": session.admin,
            "csrf": session.csrf,
            "flash": read_flash(request),
            "path": request.url.path,
            **context,
        },
        status_code=status,
    )
    if request.cookies.get(FLASH_COOKIE):
        response.set_cookie(expired(request, FLASH_COOKIE))
    return response


def text_field(form: Mapping[str, Any], name: str) -> str:
    """One text field of a posted form ('' when absent; the first value when repeated)."""
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value)


def list_field(form: Mapping[str, Any], name: str) -> list[str]:
    """Every value posted under `name` (checkboxes)."""
    value = form.get(name)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


# --------------------------------------------------------------------------- failures as HTML


def _error_page(request: Req, status: int, title: str, message: str) -> Response[Any]:
    return Template(
        template_name="error.html",
        context={"title": title, "message": message, "status": status},
        status_code=status,
        headers=SECURITY_HEADERS,
    )


def on_sign_in_required(request: Req, _exc: SignInRequired) -> Response[Any]:
    """Send the browser to the sign-in page, coming back here afterwards (GET only)."""
    target = PREFIX + "/sign-in"
    if request.method == "GET" and request.url.path != PREFIX + "/sign-in":
        target += "?next=" + quote(request.url.path, safe="/")
    response = Redirect(path=target, status_code=303, headers=SECURITY_HEADERS)
    if request.cookies.get(SESSION_COOKIE):
        response.set_cookie(expired(request, SESSION_COOKIE))
    return response


def on_csrf_refused(request: Req, _exc: CsrfRefused) -> Response[Any]:
    """403: the form did not carry this session's CSRF token."""
    return _error_page(
        request,
        403,
        "This form could not be accepted",
        "It did not carry this session's security token (it may be from an old page, or from "
        "another site). Go back, reload the page and try again.",
    )


def on_scim_error(request: Req, exc: ScimError) -> Response[Any]:
    """A domain error on a page that cannot go back to a form."""
    return _error_page(request, exc.status, "That did not work", exc.detail)


def on_http_exception(request: Req, exc: HTTPException) -> Response[Any]:
    """Litestar's own errors (unknown page, wrong method, body too large) as HTML."""
    status = exc.status_code
    message = "There is no such page." if status == 404 else str(exc.detail)
    return _error_page(request, status, f"Error {status}", message)


def on_unexpected(request: Req, exc: Exception) -> Response[Any]:
    """Log an unexpected error once, with its traceback, and answer a plain 500 page."""
    log.exception("unexpected dashboard error", path=request.url.path, method=request.method)
    return _error_page(
        request, 500, "Something went wrong", "The change was not applied. Try again later."
    )


def add_security_headers(response: Response[Any]) -> Response[Any]:
    """After-request hook: the dashboard's security headers on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def when(us: int | None) -> str:
    """Render microseconds as a short UTC time for tables ("never" when None)."""
    if not us:
        return "never"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_when(text: str | None) -> str:
    """Render an ISO timestamp as a short UTC time ("never" when None)."""
    if not text:
        return "never"
    return text[:16].replace("T", " ") + " UTC"


def seconds_until(us: int) -> int:
    """Whole seconds from now until `us` (at least 1)."""
    return max(1, -(-(us - now_us()) // 1_000_000))
