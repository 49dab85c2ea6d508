# scim_hub_humble_hr.py — imports only the contract (and msgspec for its settings)
import re

import msgspec

from hub.hookspecs import Dialect, JSONObject, RequestContext, hookimpl


class HumbleSettings(msgspec.Struct, frozen=True):
    login_attribute: str = "login"  # SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATTRIBUTE


def normalise(body: JSONObject, context: RequestContext) -> JSONObject:
    """POST/PUT bodies: {"login": "ada"} -> {"userName": "ada"}."""
    login = context.settings.login_attribute
    if context.resource_type != "User" or login not in body:
        return body
    return {**{k: v for k, v in body.items() if k != login}, "userName": body[login]}


def normalise_query(query: dict[str, str], context: RequestContext) -> dict[str, str]:
    """filter=login eq "ada"  ->  userName eq "ada"."""
    login = re.escape(context.settings.login_attribute)
    if context.resource_type != "User" or "filter" not in query:
        return query
    operator = r"(?=\s+(?:eq|ne|co|sw|ew|pr|gt|ge|lt|le)\b)"
    filter_ = re.sub(rf'(?<![\w."]){login}{operator}', "userName", query["filter"])
    return {**query, "filter": filter_}


def render(resource: JSONObject, context: RequestContext) -> JSONObject:
    """Echo userName as "login", where Humble HR reads it."""
    if context.resource_type != "User" or "userName" not in resource:
        return resource
    return {**resource, context.settings.login_attribute: resource["userName"]}


@hookimpl
def register_idps() -> list[Dialect]:
    return [
        Dialect(
            name="humble_hr",
            display_name="Humble HR",
            mapping={"display_name": "displayName", "job_title": "title"},
            normalise=normalise,
            normalise_query=normalise_query,
            render=render,
            settings=HumbleSettings,
        )
    ]
