"""The activation pages: `/activate/{token}`, the link in every activation email.

Mail security scanners (Microsoft Defender Safe Links, Proofpoint…) fetch every link of a message
before the person clicks, so following the link changes nothing:

* `GET` (and `HEAD`, served as the GET without its body: `hub.head`) checks the link and
  answers a confirmation page naming the card and the workspace, with one button: a plain HTML
  form that posts back to the same URL (no JavaScript). A used, replaced, withdrawn, expired or
  re-keyed link answers 410 saying so; an unknown one 404.
* `POST` uses the link: marks the account activated, starts the owner's session (an HttpOnly,
  SameSite=Lax cookie, Secure when the hub is served over https) and redirects (303) to
  `/activated`, which greets the owner by name.

The link itself is the credential, and there is no session yet to ride on, so the only forgery
left is "login CSRF": another site posting *its own* link from the victim's browser to sign them
in to the wrong card. A POST is therefore refused (403) unless the browser says it came from this
origin: `Sec-Fetch-Site` `same-origin` (or `none`: typed or bookmarked), or, from browsers that do
not send that header, an `Origin` naming this host. Clients that send neither are not browsers.

The pages never show the session or the link; they are not cached, send no referrer, and the
request log shows the route template instead of the path (the token is in it).
"""

from __future__ import annotations

import html
from typing import Any, Final
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from hub.core import activation, secret, sessions
from hub.core.errors import NotFound
from hub.core.mailer import one_line
from hub.logging import current_request_id
from hub.scim.routes import Hub

#: Route option read by the request-log middleware: log the route template, not the path.
SECRET_PATH: Final = "secret_path"
#: Where a successful activation lands.
WELCOME_PATH: Final = "/activated"

_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Frame-Options": "DENY",
    # The pages show what the IdP sent (the user's name): a browser must not read them as
    # anything but the HTML they say they are.
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;"
    "line-height:1.5}button{font:inherit;padding:.6rem 1.2rem;border-radius:.4rem;border:0;"
    "background:#1f5fbf;color:#fff;cursor:pointer}"
)
_NOT_RECOGNISED: Final = ("Link not recognised", "Check that you copied the whole link.")
_CONFIRM_FORM: Final = (
    # No action: the form posts to this page's own URL, the link.
    '<form method="post"><button type="submit">Activate my card</button></form>'
)


def _page(status: int, title: str, message: str, extra: str = "") -> Response[bytes]:
    # The title and message name the user as the IdP sent it: one line, its bidi kept to itself.
    title, message = html.escape(one_line(title)), html.escape(one_line(message))
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{title}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{title}</h1><p>{message}</p>{extra}</body></html>"
    )
    return Response(
        body.encode(), status_code=status, media_type="text/html", headers=dict(_HEADERS)
    )


def _gone(exc: activation.LinkGone) -> Response[bytes]:
    return _page(
        410,
        "This link no longer works",
        f"{exc.detail.capitalize()}. Ask your administrator to send a new activation email.",
    )


def _link_key(hub: Hub) -> bytes:
    return secret.derive_key(hub.settings, secret.ACTIVATION_LINKS)


async def _confirmation(request: Request[Any, Any, Any]) -> Response[bytes]:
    hub: Hub = request.app.state.hub
    token: str = request.path_params["token"]
    try:
        info = await hub.db.read(activation.check, token, key=_link_key(hub))
    except NotFound:
        return _page(404, *_NOT_RECOGNISED)
    except activation.LinkGone as exc:
        return _gone(exc)
    return _page(
        200,
        f"Activate your {info.workspace} business card",
        f"This activates the account and business card of {info.name} in {info.workspace}, "
        "and signs you in to your card. The link works once.",
        _CONFIRM_FORM,
    )


@get(
    "/activate/{token:str}",
    name="activate",
    media_type="text/html",
    include_in_schema=False,
    opt={SECRET_PATH: True},
)
async def confirm_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The link's page: 200 and a confirmation form, 410 if used or expired, 404 if unknown."""
    return await _confirmation(request)


def _same_origin(request: Request[Any, Any, Any], base_url: str) -> bool:
    """Whether the browser says this POST comes from one of our own pages (see module doc)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or one too old to say: the link is still the credential
    if origin == "null":  # a sandboxed or privacy-sensitive context: not one of our pages
        return False
    return urlsplit(origin).netloc in (request.headers.get("host"), urlsplit(base_url).netloc)


@post(
    "/activate/{token:str}",
    name="activate-use",
    media_type="text/html",
    include_in_schema=False,
    opt={SECRET_PATH: True},
)
async def activate(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Use the link: 303 to the welcome page with a session cookie; 410, 404 or 403 otherwise."""
    hub: Hub = request.app.state.hub
    if not _same_origin(request, hub.settings.base_url):
        return _page(
            403,
            "Open the link from your email",
            "This activation was sent from another site, so it was not used. "
            "Open the link in your activation email and press the button there.",
        )
    token: str = request.path_params["token"]
    try:
        done = await hub.db.write(
            activation.activate, token, key=_link_key(hub), request_id=current_request_id()
        )
    except NotFound:
        return _page(404, *_NOT_RECOGNISED)
    except activation.LinkGone as exc:
        return _gone(exc)
    response = Response(
        b"", status_code=303, headers={**_HEADERS, "Location": WELCOME_PATH}, media_type="text/html"
    )
    response.set_cookie(
        key=sessions.SESSION_COOKIE,
        value=done.session_token,
        max_age=sessions.SESSION_TTL_US // 1_000_000,
        path="/",
        httponly=True,
        samesite="lax",
        secure=hub.settings.base_url.startswith("https://"),
    )
    return response


@get(WELCOME_PATH, name="activated", media_type="text/html", include_in_schema=False)
async def welcome_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Where an activation lands: greets the signed-in owner; 403 without a session."""
    hub: Hub = request.app.state.hub
    session = request.cookies.get(sessions.SESSION_COOKIE, "").strip()
    info = await hub.db.read(activation.signed_in, session) if session else None
    if info is None:
        return _page(
            403,
            "You are not signed in",
            "Open the link in your activation email to activate your account and card.",
        )
    return _page(
        200,
        f"Welcome, {info.name}",
        f"Your {info.workspace} account is activated and you are signed in to your card.",
    )


ROUTES: list[HTTPRouteHandler] = [confirm_page, activate, welcome_page]
