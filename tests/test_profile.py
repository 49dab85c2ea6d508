"""Reading card profiles out of SCIM Users through mapping paths (`hub.core.profile`).

Paths name attributes case-insensitively (RFC 7643 §2.1). A schema attribute is read by the
spelling a canonical User stores it under; an IdP's custom extension, kept as it was sent, by
comparing names.
"""

from __future__ import annotations

from hub.core.attributes import canonicalise
from hub.core.profile import read_profile
from hub.core.schema import USER_TYPE

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CUSTOM = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"


def _user() -> dict[str, object]:
    return canonicalise(
        {
            "SCHEMAS": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE.upper(), CUSTOM],
            "USERNAME": "ada@example.com",
            "Title": "Engineer",
            "NAME": {"GIVENNAME": "Ada"},
            "PhoneNumbers": [
                {"TYPE": "mobile", "VALUE": "+1 555"},
                {"type": "work", "value": "+2"},
            ],
            ENTERPRISE.upper(): {"Department": "R&D"},
            CUSTOM: {"CostCenter": "42", "Nested": {"DeskCode": "B7"}},
        },
        USER_TYPE,
    )


def test_paths_in_any_case_read_what_the_user_holds() -> None:
    mapping = {
        "job_title": "TITLE",
        "first_name": "Name.GivenName",
        "mobile_phone": 'PHONENUMBERS[TYPE eq "mobile"].VALUE',
        "office_phone": 'phoneNumbers[type eq "work"].value',
        "department": f"{ENTERPRISE.lower()}:DEPARTMENT",
        "display_name": "displayName",
        "photo_url": 'photos[type eq "photo"].value',
        "company_name": f"{CUSTOM.lower()}:costcenter",
        "last_name": f"{CUSTOM}:nested.deskcode",
    }
    assert read_profile(_user(), mapping) == {
        "job_title": "Engineer",
        "first_name": "Ada",
        "mobile_phone": "+1 555",
        "office_phone": "+2",
        "department": "R&D",
        "display_name": None,  # not sent
        "photo_url": None,  # not sent
        "company_name": "42",  # a custom extension: its names as sent, matched in any case
        "last_name": "B7",
    }
