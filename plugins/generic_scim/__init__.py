"""The RFC-pure dialect: the fallback for any SCIM-compliant client (RFC 7643/7644)."""

from __future__ import annotations

from hub.hookspecs import STANDARD_MAPPING, Dialect, hookimpl

#: The RFC 7643 attributes, `photos[type eq "photo"]` included (the contract's standard mapping).
GENERIC_MAPPING = dict(STANDARD_MAPPING)


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the generic SCIM dialect."""
    return [Dialect(name="generic_scim", display_name="Other SCIM client", mapping=GENERIC_MAPPING)]
