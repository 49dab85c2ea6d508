"""The admin dashboard: server-rendered pages for workspace admins, on the core services.

`dashboard_router()` holds the pages under /admin, `static_files()` serves its stylesheet and
script, `template_config()` is the Jinja2 setup the app is built with. See `web` for sessions and
CSRF, `auth` for signing in and out, `pages` for the pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Router
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from hub.admin.dashboard import auth, pages, web
from hub.core.errors import ScimError
from hub.router import OwnRouter

ADMIN = Path(__file__).resolve().parent.parent


def dashboard_router() -> Router:
    """Every dashboard page and form; failures render as HTML, not SCIM JSON."""
    return OwnRouter(
        path="/",
        route_handlers=[*auth.ROUTES, *pages.ROUTES],
        exception_handlers={
            web.SignInRequired: web.on_sign_in_required,
            web.CsrfRefused: web.on_csrf_refused,
            ScimError: web.on_scim_error,
            HTTPException: web.on_http_exception,
            Exception: web.on_unexpected,
        },
        after_request=web.add_security_headers,
        include_in_schema=False,
    )


def static_files() -> Router:
    """The dashboard's CSS and JavaScript under /admin/static (no build step)."""
    return create_static_files_router(
        path=web.PREFIX + "/static",
        directories=[ADMIN / "static"],
        name="dashboard-static",
        include_in_schema=False,
    )


def _configure(engine: JinjaTemplateEngine) -> None:
    env: Any = engine.engine
    env.filters["when"] = web.when
    env.filters["iso_when"] = web.iso_when
    env.filters["label"] = lambda name: str(name).replace("_", " ").capitalize()


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 over hub/admin/templates, autoescaping on, with the dashboard's filters."""
    return TemplateConfig(
        directory=ADMIN / "templates", engine=JinjaTemplateEngine, engine_callback=_configure
    )
