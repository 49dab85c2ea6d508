"""The activation page: `GET /activate/{token}`, the link in every activation email.

It activates the account, starts the owner's session (an HttpOnly, SameSite=Lax cookie, Secure
when the hub is served over https) and says so in plain HTML. The page never shows the session or
the link; it is not cached, sends no referrer, and its path is not logged (the token is in it).
"""

from __future__ import annotations

import html
from typing import Any, Final

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from hub.core import activation, sessions
from hub.core.errors import NotFound
from hub.scim.routes import Hub

#: Route option read by the request-log middleware: log the route template, not the path.
SECRET_PATH: Final = "secret_path"

_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def _page(status: int, title: str, message: str) -> Response[bytes]:
    title, message = html.escape(title), html.escape(message)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;"
        "padding:0 1rem;line-height:1.5}</style></head>"
        f"<body><h1>{title}</h1><p>{message}</p></body></html>"
    )
    return Response(
        body.encode(), status_code=status, media_type="text/html", headers=dict(_HEADERS)
    )


@get(
    "/activate/{token:str}",
    name="activate",
    media_type="text/html",
    include_in_schema=False,
    opt={SECRET_PATH: True},
)
async def activate_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Use an activation link: 200 and a session cookie, 410 if used or expired, 404 if unknown."""
    hub: Hub = request.app.state.hub
    token: str = request.path_params["token"]
    try:
        done = await hub.db.write(activation.activate, token)
    except NotFound:
        return _page(404, "Link not recognised", "Check that you copied the whole link.")
    except activation.LinkGone as exc:
        return _page(
            410,
            "This link no longer works",
            f"{exc.detail.capitalize()}. Ask your administrator to send a new activation email.",
        )
    response = _page(
        200,
        f"Welcome, {done.name}",
        f"Your {done.workspace} account is activated and you are signed in to your card.",
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


ROUTES: list[HTTPRouteHandler] = [activate_page]
