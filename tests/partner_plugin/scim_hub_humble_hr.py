"""Humble HR: a made-up HR system that provisions over almost-SCIM (scim-hub's partner example).

Humble HR's quirk: it calls ``userName`` "login" — in the bodies it sends (``"login": "ada"``),
in its list filters (``filter=login eq "ada"``), and in what it reads back (it looks for
``login`` in every user it receives). The name of that key is a setting, because some Humble HR
installations were customised: ``SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATTRIBUTE`` (default "login").
"""

from __future__ import annotations

import re

import msgspec

from hub.hookspecs import Dialect, JSONObject, RequestContext, hookimpl


class HumbleSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of the Humble HR dialect, read from ``SCIM_HUB_PLUGIN_HUMBLE_HR_<FIELD>``."""

    login_attribute: str = "login"
    #: How many requests per second Humble HR may send (validated, shown as an example).
    max_rate: int = 10


def _login(context: RequestContext) -> str:
    settings = context.settings
    return settings.login_attribute if isinstance(settings, HumbleSettings) else "login"


def normalise(body: JSONObject, context: RequestContext) -> JSONObject:
    """Rename the login key to ``userName`` in users Humble HR sends (POST and PUT)."""
    login = _login(context)
    if context.resource_type != "User" or context.method == "PATCH" or login not in body:
        return body
    fixed = {k: v for k, v in body.items() if k != login}
    fixed["userName"] = body[login]
    return fixed


def normalise_query(query: dict[str, str], context: RequestContext) -> dict[str, str]:
    """Rewrite ``login eq "…"`` in a list filter into ``userName eq "…"``."""
    flt = query.get("filter")
    if context.resource_type != "User" or not flt:
        return query
    login = re.escape(_login(context))
    pattern = rf'(?<![\w."]){login}(?=\s+(?:eq|ne|co|sw|ew|pr|gt|ge|lt|le)\b)'
    return {**query, "filter": re.sub(pattern, "userName", flt)}


def render(resource: JSONObject, context: RequestContext) -> JSONObject:
    """Echo ``userName`` under the login key too, where Humble HR reads it."""
    if context.resource_type != "User" or "userName" not in resource:
        return resource
    return {**resource, _login(context): resource["userName"]}


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the Humble HR dialect."""
    return [
        Dialect(
            name="humble_hr",
            display_name="Humble HR",
            mapping={
                "display_name": "displayName",
                "email": "emails[primary eq true].value",
                "job_title": "title",
            },
            normalise=normalise,
            normalise_query=normalise_query,
            render=render,
            settings=HumbleSettings,
        )
    ]
