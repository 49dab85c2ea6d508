"""The tolerant dialect: the RFCs as generic_scim reads them, plus Entra ID's and Okta's quirks.

For a connector that does not know which IdP will call it, such as the demo workspace `make run`
creates, where the first requests may come from Entra ID, Okta, Microsoft's SCIM Validator or a
conformance suite. A request the RFCs allow is read exactly as generic_scim reads it, with the
same mapping (photos included). A request that only an IdP's documented quirk makes invalid is
read as that IdP means it, through the azure_ad and okta dialects' own normalisation:

* Entra ID ([KNOWN-ISSUES] and [TUTORIAL] in `plugins.azure_ad`): ``"True"``/``"False"``
  strings for booleans (``{"op": "Replace", "path": "active", "value": "False"}`` is how Entra
  disables a user by default), the same strings in path filters, a manager sent as a bare id,
  a single-valued attribute's value wrapped in a one-element list.
* Okta ([OKTA-BUILD] in `plugins.okta`): custom-attribute extension objects whose namespace the
  body's ``schemas`` does not list.

A connector made for one IdP keeps that IdP's dialect (Entra's leaves photos alone), and "Other
SCIM client" (generic_scim) stays strict.
"""

from __future__ import annotations

from hub.hookspecs import Dialect, JSONObject, RequestContext, hookimpl
from plugins.azure_ad import normalise as entra_normalise
from plugins.generic_scim import GENERIC_MAPPING
from plugins.okta import normalise as okta_normalise


def normalise(body: JSONObject, context: RequestContext) -> JSONObject:
    """Read Entra ID's and Okta's quirks in `body` as each IdP means them (see the module)."""
    fixed = entra_normalise(body, context)
    # Okta's PATCH fix (dropping an echoed id) is the core's own rule now: the resource's own id
    # is accepted and any other refused, so only its body fix applies.
    return fixed if context.method == "PATCH" else okta_normalise(fixed, context)


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the tolerant dialect."""
    return [
        Dialect(
            name="any_scim",
            display_name="Any SCIM client (tolerates Entra ID and Okta quirks)",
            mapping=GENERIC_MAPPING,
            normalise=normalise,
        )
    ]
