"""The tolerant dialect: the RFCs as generic_scim reads them, plus Entra ID's and Okta's quirks.

For a connector that does not know which IdP will call it, such as the demo workspace `make run`
creates, where the first requests may come from Entra ID, Okta, Microsoft's SCIM Validator or a
conformance suite. A request the RFCs allow is read exactly as generic_scim reads it, with the
standard mapping (photos included). A request that only an IdP's documented quirk makes invalid
is read as that IdP means it:

* Entra ID: the azure_ad dialect's own normalisation runs first (``extends``), so its
  ``"True"``/``"False"`` strings (``{"op": "Replace", "path": "active", "value": "False"}`` is
  how Entra disables a user by default), the same strings in path filters, a manager sent as a
  bare id and a single-valued attribute's value wrapped in a one-element list are read as the
  azure_ad dialect reads them. Without that plugin installed, this dialect reads RFC requests
  only.
* Okta: custom-attribute extension objects whose namespace the body's ``schemas`` does not list
  are listed, as the okta dialect does. Its PATCH fix (dropping an echoed id) is not taken: the
  core accepts the resource's own id and refuses any other.

A connector made for one IdP keeps that IdP's dialect (Entra's leaves photos alone), and "Other
SCIM client" (generic_scim) stays strict.
"""

from __future__ import annotations

from hub.hookspecs import (
    STANDARD_MAPPING,
    Dialect,
    JSONObject,
    RequestContext,
    hookimpl,
    with_extensions_listed,
)


def normalise(body: JSONObject, context: RequestContext) -> JSONObject:
    """List the extension objects of a resource body in its ``schemas`` (Okta's quirk)."""
    return body if context.method == "PATCH" else with_extensions_listed(body)


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the tolerant dialect."""
    return [
        Dialect(
            name="any_scim",
            display_name="Any SCIM client (tolerates Entra ID and Okta quirks)",
            mapping=STANDARD_MAPPING,
            normalise=normalise,
            extends=("azure_ad",),
        )
    ]
