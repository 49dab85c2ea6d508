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


#: The mapping of the RFC 7643 §4.1 / §4.3 attributes: what a dialect without one reads, and what
#: a dialect for RFC clients may declare.
STANDARD_MAPPING: Mapping[str, str] = {
    "display_name": "displayName",
    "first_name": "name.givenName",
    "last_name": "name.familyName",
    "job_title": "title",
    "department": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "company_name": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization",
    "office_phone": 'phoneNumbers[type eq "work"].value',
    "mobile_phone": 'phoneNumbers[type eq "mobile"].value',
    "email": "emails[primary eq true].value",
    "photo_url": 'photos[type eq "photo"].value',
}


def with_extensions_listed(body: JSONObject) -> JSONObject:
    """`body` with every extension object it carries listed in its ``schemas``.

    RFC 7643 §3 wants the URN of each extension a resource carries in ``schemas``; a client that
    leaves one out (Okta, for its custom attributes) would have the object refused. Returns
    `body` itself when nothing is missing, else a shallow copy with the URNs appended.
    """
    # Most bodies carry no extension object, or list it as sent: look at the keys first. The
    # fourth character is tested before the lower-cased prefix: most keys are not URNs, and a
    # one-character slice makes no new string (~14% of the call for Entra's user).
    extensions = [
        k
        for k, v in body.items()
        if k[3:4] == ":" and k[:4].lower() == "urn:" and isinstance(v, dict)
    ]
    if not extensions:
        return body
    schemas_key = (
        "schemas" if "schemas" in body else next((k for k in body if k.lower() == "schemas"), None)
    )
    schemas = body.get(schemas_key) if schemas_key is not None else None
    if not isinstance(schemas, list):
        return body
    listed = {s.lower() for s in schemas if isinstance(s, str)}
    missing = [key for key in extensions if key.lower() not in listed]
    if not missing:
        return body
    return {**body, schemas_key: [*schemas, *missing]}  # type: ignore[dict-item]


def _identity(body: JSONObject, context: RequestContext) -> JSONObject:
    return body


def _query_identity(query: dict[str, str], context: RequestContext) -> dict[str, str]:
    return query


def _render_identity(resource: JSONObject, context: RequestContext) -> JSONObject:
    return resource


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a dialect hook learns of the request it is normalising or rendering for.

    Attributes:
        method: the HTTP method (``"POST"``, ``"PATCH"``…).
        resource_type: ``"User"`` or ``"Group"``.
        operation: ``"request"`` (normalising a body), ``"query"`` (normalising list query
            parameters) or ``"response"`` (rendering).
        query: the request's query-string parameters as sent (e.g. Entra's
            ``aadOptscim062020`` flag appears here when the tenant URL carries it).
        settings: the plugin's settings, an instance of `Dialect.settings`, validated at
            start-up; None when the dialect declares no settings struct.
    """

    method: str
    resource_type: str
    operation: str
    query: Mapping[str, str] = msgspec.field(default_factory=dict)
    settings: Any = None


class Dialect(msgspec.Struct, frozen=True, kw_only=True):
    """One IdP's dialect of SCIM, registered by a plugin through `register_idps`.

    Every callable must be synchronous and pure (no I/O): it runs inside the request's database
    transaction. An exception in one is reported to that request as a SCIM 500 naming the plugin.

    Attributes:
        name: stable identifier stored on connectors (e.g. ``"azure_ad"``); lower-case letters,
            digits and underscores.
        display_name: what admins see (e.g. ``"Microsoft Entra ID"``).
        mapping: card profile field (one of `PROFILE_FIELDS`) -> SCIM attribute path it is read
            from, e.g. ``{"mobile_phone": 'phoneNumbers[type eq "mobile"].value'}``.
        unmanaged: SCIM attribute paths the IdP never manages (e.g. ``"photos"`` for Entra ID).
            The hub ignores them in this IdP's requests and a PUT leaves their stored value alone.
        normalise: rewrites a request body (a resource for POST/PUT, a PatchOp for PATCH) into
            RFC form before the SCIM layer parses it. Returns a JSON object; may return its input.
        normalise_query: rewrites the query-string parameters of a list request (``filter``,
            ``startIndex``…) into RFC form. Returns the parameters to use.
        render: rewrites an outgoing resource into what this IdP expects.
        settings: the plugin's own settings struct type (a frozen `msgspec.Struct` whose fields
            all have defaults or are given in the environment), validated at start-up. Values
            come from ``SCIM_HUB_PLUGIN_<PLUGIN>_<FIELD>`` environment variables.
        extends: names of other dialects whose own ``normalise`` (and ``normalise_query``)
            runs on a request before this dialect's, in order, with this dialect's context. The
            registry joins them at start-up; a name no installed plugin registers is skipped
            with a warning. How one dialect reuses another's quirks without importing its plugin.
        plugin: the name of the plugin that registered it (filled in by the registry).
    """

    name: str
    display_name: str
    mapping: Mapping[str, str] = msgspec.field(default_factory=dict)
    unmanaged: tuple[str, ...] = ()
    normalise: Callable[[JSONObject, RequestContext], JSONObject] = _identity
    normalise_query: Callable[[dict[str, str], RequestContext], dict[str, str]] = _query_identity
    render: Callable[[JSONObject, RequestContext], JSONObject] = _render_identity
    settings: type[msgspec.Struct] | None = None
    extends: tuple[str, ...] = ()
    plugin: str = ""


def renders_as_stored(dialect: Dialect | None) -> bool:
    """Say whether responses to this dialect's IdP are the hub's own rendering (no `render`)."""
    return dialect is None or dialect.render is _render_identity


def rewrites_queries(dialect: Dialect | None) -> bool:
    """Say whether this dialect rewrites list query parameters (has a `normalise_query`)."""
    return dialect is not None and dialect.normalise_query is not _query_identity
