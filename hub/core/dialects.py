"""Public types of the plugin contract: what an IdP dialect is.

Plugins import these (through `hub.hookspecs`) and nothing else of the hub.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

JSONObject = dict[str, Any]

#: Card profile fields the hub keeps on a card (DESIGN.md "Supported profile attributes").
PROFILE_FIELDS: tuple[str, ...] = (
    "display_name",
    "first_name",
    "last_name",
    "job_title",
    "department",
    "company_name",
    "office_phone",
    "mobile_phone",
    "email",
    "photo_url",
)


def _identity(body: JSONObject, context: RequestContext) -> JSONObject:
    return body


def _render_identity(resource: JSONObject, context: RequestContext) -> JSONObject:
    return resource


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a dialect hook learns of the request it is normalising or rendering for."""

    method: str
    resource_type: str
    operation: str
    query: Mapping[str, str] = msgspec.field(default_factory=dict)


class Dialect(msgspec.Struct, frozen=True, kw_only=True):
    """One IdP's dialect of SCIM, registered by a plugin through `register_idps`.

    Attributes:
        name: stable identifier stored on connectors (e.g. ``"azure_ad"``).
        display_name: what admins see (e.g. ``"Microsoft Entra ID"``).
        mapping: card profile field -> SCIM attribute path it is read from.
        unmanaged: SCIM attribute paths the IdP never sends; a PUT leaves them as they are.
        normalise: rewrites a request body into RFC form before the SCIM layer parses it.
        render: rewrites an outgoing resource into what this IdP expects.
        settings: the plugin's own settings struct type, validated at start-up, if any.
        plugin: the name of the plugin that registered it (filled in by the registry).
    """

    name: str
    display_name: str
    mapping: Mapping[str, str] = msgspec.field(default_factory=dict)
    unmanaged: tuple[str, ...] = ()
    normalise: Callable[[JSONObject, RequestContext], JSONObject] = _identity
    render: Callable[[JSONObject, RequestContext], JSONObject] = _render_identity
    settings: type[msgspec.Struct] | None = None
    plugin: str = ""
