"""Signing in and out of the dashboard.

* `GET /admin/sign-in` sets a random sign-in cookie and puts the same value in the form
  (double-submit CSRF: a form posted from another site cannot know it).
* `POST /admin/sign-in` checks email and password (argon2, verified off the event loop),
  refuses deactivated admins, counts failures (the fifth in a row locks the account for a
  while: 429 with the time to wait), and on success starts a session: an HttpOnly,
  SameSite=Lax cookie, Secure over https. Sign-ins and failures go to the audit trail.
* `POST /admin/sign-out` (CSRF-checked) ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from typing import Any, Final

import structlog
from litestar import get, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect, Response, Template
from sqlalchemy import Connection

from hub.admin.dashboard.web import (
    CSRF_FIELD,
    PREFIX,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Req,
    SignInRequired,
    cookie,
    expired,
    form_of,
    hub_of,
    read_flash,
    run_signed_in,
    seconds_until,
    text_field,
)
from hub.core import admin_sessions, audit
from hub.core.admin_sessions import Candidate, NewSession
from hub.core.admins import AdminCaller
from hub.core.clock import now_us
from hub.logging import current_request_id

log = structlog.get_logger("hub.dashboard")
WRONG: Final = "The email or password is wrong."


def _next(raw: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if raw and raw.startswith(PREFIX + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return PREFIX + "/integrations"


def _sign_in_page(
    request: Req,
    *,
    status: int = 200,
    error: str | None = None,
    email: str = "",
    next_: str | None = None,
) -> Template:
    token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    response = Template(
        template_name="sign_in.html",
        context={
            "csrf": token,
            "error": error,
            "email": email,
            "next": _next(next_ or request.query_params.get("next")),
            "flash": read_flash(request),
        },
        status_code=status,
    )
    response.set_cookie(cookie(request, SIGNIN_COOKIE, token, max_age=3600))
    return response


@get(PREFIX + "/sign-in", name="dashboard-sign-in-page")
async def sign_in_page(request: Req) -> Template:
    """The sign-in form."""
    return _sign_in_page(request)


def _audit_sign_in(conn: Connection, who: Candidate, action: str, request_id: str) -> None:
    audit.record(
        conn,
        workspace_pk=who.workspace_pk,
        actor_kind="admin",
        actor_id=who.admin_id,
        request_id=request_id,
        resource_type="admin",
        resource_id=who.admin_id,
        action=action,
    )


def _succeed(conn: Connection, who: Candidate, request_id: str) -> NewSession:
    admin_sessions.record_success(conn, who.admin_pk)
    _audit_sign_in(conn, who, "dashboard sign-in", request_id)
    return admin_sessions.start_session(conn, who.admin_pk)


def _fail(conn: Connection, tried: list[Candidate], request_id: str) -> int | None:
    """Count a failure on every account tried; return the earliest lock end, if any locked."""
    ends = []
    for who in tried:
        until = admin_sessions.record_failure(conn, who.admin_pk)
        _audit_sign_in(conn, who, "dashboard sign-in failed", request_id)
        if until is not None:
            ends.append(until)
    return min(ends) if ends else None


class _UnknownFailures:
    """Failed sign-ins for emails that match no admin, slowed down exactly like real accounts.

    Without this, the 429 after five failures would tell an attacker which emails are admins.
    Kept per process (bounded; the oldest entries go first): with several workers the pause
    starts after five failures in one worker rather than five in all.
    """

    LIMIT: Final = 10_000

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}  # digest -> (failures in a row, locked until)

    @staticmethod
    def _key(email: str) -> str:
        return hashlib.sha256(email.strip().lower().encode()).hexdigest()

    def locked_until(self, email: str, now: int) -> int | None:
        """When the pause on this unknown email ends, if one is running."""
        _, until = self._seen.get(self._key(email), (0, 0))
        return until if until > now else None

    def fail(self, email: str, now: int) -> int | None:
        """Count a failure; return when the pause ends if this failure starts one."""
        key = self._key(email)
        failures, _ = self._seen.pop(key, (0, 0))
        failures += 1
        delay = admin_sessions.lock_delay_us(failures)
        until = now + delay if delay else 0
        if len(self._seen) >= self.LIMIT:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = (failures, until)
        return until or None


_unknown_failures = _UnknownFailures()


def _locked(request: Req, email: str, until: int, next_: str) -> Template:
    wait = seconds_until(until)
    response = _sign_in_page(
        request,
        status=429,
        email=email,
        next_=next_,
        error=(
            "Too many failed sign-ins in a row for this account: sign-in is paused for "
            f"{wait} seconds. Try again after that (or ask another admin to reset your password)."
        ),
    )
    response.headers["Retry-After"] = str(wait)
    return response


@post(PREFIX + "/sign-in", name="dashboard-sign-in", status_code=303)
async def sign_in(request: Req) -> Response[Any]:
    """Check email and password and start a session."""
    form = await form_of(request)
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    posted = text_field(form, CSRF_FIELD)
    # As bytes: compare_digest refuses str holding anything but ASCII (TypeError, a 500).
    if not expected or not hmac.compare_digest(expected.encode(), posted.encode()):
        return _sign_in_page(
            request,
            status=403,
            error="This sign-in form has expired. Please enter your email and password again.",
        )
    email = text_field(form, "email").strip()
    next_ = _next(text_field(form, "next"))
    password = text_field(form, "password")
    hub = hub_of(request)
    request_id = current_request_id()
    # No admin's email holds U+0000 (and PostgreSQL compares no text holding one).
    known = bool(email) and "\x00" not in email
    found = await hub.db.read(admin_sessions.candidates, email) if known else []
    now = now_us()
    open_ = [c for c in found if not (c.locked_until and c.locked_until > now)]
    if found and not open_:
        return _locked(request, email, min(c.locked_until or now for c in found), next_)
    if not found and (until := _unknown_failures.locked_until(email, now)):
        return _locked(request, email, until, next_)
    # argon2 is slow by design: verify off the event loop.
    match = None
    if not open_:  # an unknown email costs what a known one does
        await asyncio.to_thread(admin_sessions.verify_password, None, password)
    for who in open_:
        if await asyncio.to_thread(admin_sessions.verify_password, who.password_hash, password):
            match = who
            break
    if match is None:
        if open_:
            until = await hub.db.write(_fail, open_, request_id)
        else:
            until = _unknown_failures.fail(email, now)
        if until is not None:
            return _locked(request, email, until, next_)
        return _sign_in_page(request, status=401, error=WRONG, email=email, next_=next_)
    new = await hub.db.write(_succeed, match, request_id)
    log.info("admin signed in", admin=match.admin_id)
    response = Redirect(path=next_, status_code=303)
    response.set_cookie(cookie(request, SESSION_COOKIE, new.token))
    response.set_cookie(expired(request, SIGNIN_COOKIE))
    return response


@post(PREFIX + "/sign-out", name="dashboard-sign-out", status_code=303)
async def sign_out(request: Req) -> Response[Any]:
    """End the session (the form carries the CSRF token like every other)."""
    form = await form_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")

    def work(conn: Connection, admin: AdminCaller) -> None:
        admin_sessions.end_session(conn, token)

    with contextlib.suppress(SignInRequired):  # already signed out: nothing to end
        await run_signed_in(request, work, action="sign-out", resource=("admin", "-"), form=form)
    response = Redirect(path=PREFIX + "/sign-in", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(expired(request, SESSION_COOKIE))
    return response


@get(PREFIX, name="dashboard-home")
async def home() -> Redirect:
    """The dashboard starts on the Integrations page."""
    return Redirect(path=PREFIX + "/integrations", status_code=303)


ROUTES: list[HTTPRouteHandler] = [sign_in_page, sign_in, sign_out, home]
