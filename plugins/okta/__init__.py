"""Okta dialect: its default attribute mapping and its quirks.

Sources (Okta developer documentation):

* [OKTA-REF] "SCIM 2.0 protocol reference" (developer.okta.com, "Okta outbound SCIM") — the
  requests Okta sends: the connection test ``GET /Users?startIndex=1&count=2``, ``userName eq``
  lookups with ``startIndex=1&count=100``, user create with ``password``, ``groups`` and
  ``locale``, profile updates by PUT of the whole user (``id``, ``meta`` included), deactivation
  by ``PATCH {"op": "replace", "value": {"active": false}}``, Group Push (create, rename by PATCH
  with ``{"id": …, "displayName": …}`` or PUT, members added/removed by PATCH, delete).
* [OKTA-BUILD] "Build a SCIM provisioning integration" — custom attributes sent under the
  extension namespace the admin sets in the Profile Editor; Okta never deletes users, it
  deactivates them, and expects them to stay readable and findable by ``userName``.

What the hub core already does the RFC way and Okta relies on (replayed in
``tests/test_okta_replay.py``): ``password`` is accepted and never stored or returned (RFC 7643
§4.1.1); read-only members (``id``, ``meta``, ``groups``) in bodies are ignored; inactive users
stay in lists and lookups; member PATCHes of hundreds of members are row changes.
"""

from __future__ import annotations

from typing import Any

from hub.hookspecs import Dialect, JSONObject, RequestContext, hookimpl, with_extensions_listed

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

#: Card profile field -> SCIM attribute of Okta's default SCIM 2.0 attribute set ([OKTA-REF]:
#: userName, name.givenName, name.familyName, emails (primary), displayName, title,
#: phoneNumbers by type, the enterprise department and organization).
OKTA_MAPPING = {
    "display_name": "displayName",
    "first_name": "name.givenName",
    "last_name": "name.familyName",
    "job_title": "title",
    "department": f"{ENTERPRISE}:department",
    "company_name": f"{ENTERPRISE}:organization",
    "office_phone": 'phoneNumbers[type eq "work"].value',
    "mobile_phone": 'phoneNumbers[type eq "mobile"].value',
    "email": "emails[primary eq true].value",
    "photo_url": 'photos[type eq "photo"].value',
}


def _drop_echoed_id(operation: Any, resource_type: str) -> Any:
    """Drop the ``id`` Okta echoes inside a path-less replace value.

    [OKTA-REF] "Update a specific Group name": ``{"op": "replace", "value": {"id": "<group id>",
    "displayName": "<new name>"}}``. ``id`` is readOnly (RFC 7643 §3.1); it is the resource's own
    id, so it is dropped rather than refused.
    """
    if not isinstance(operation, dict):
        return operation
    if any(k.lower() == "path" and v for k, v in operation.items()):
        return operation
    fixed = dict(operation)
    for key, value in operation.items():
        if key.lower() == "value" and isinstance(value, dict):
            fixed[key] = {k: v for k, v in value.items() if k.lower() != "id"}
    return fixed


def normalise(body: JSONObject, context: RequestContext) -> JSONObject:
    """Rewrite an Okta request body into RFC 7643/7644 form (see the module docstring)."""
    if context.method == "PATCH":
        return {
            key: [_drop_echoed_id(op, context.resource_type) for op in value]
            if key.lower() == "operations" and isinstance(value, list)
            else value
            for key, value in body.items()
        }
    # [OKTA-BUILD]: custom attributes travel in an object keyed by the external namespace the
    # admin typed in the Profile Editor (e.g. ``urn:ietf:params:scim:schemas:extension:
    # CustomExtension:2.0:User``); Okta does not always list that URN in ``schemas``, and RFC 7643
    # §3 wants it there, so the attribute would be refused instead of stored.
    return with_extensions_listed(body)


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the Okta dialect."""
    return [Dialect(name="okta", display_name="Okta", mapping=OKTA_MAPPING, normalise=normalise)]
