"""The RFC-pure dialect: the fallback for any SCIM-compliant client (RFC 7643/7644)."""

from __future__ import annotations

from hub.hookspecs import Dialect, hookimpl

GENERIC_MAPPING = {
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


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the generic SCIM dialect."""
    return [Dialect(name="generic_scim", display_name="Other SCIM client", mapping=GENERIC_MAPPING)]
