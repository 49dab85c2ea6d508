"""SCIM schemas the hub supports (RFC 7643 §4, §8.7.1), as data.

One source for everything that depends on attribute characteristics: discovery documents
(`/Schemas`), case-insensitive attribute names on input, `caseExact` in filters, `mutability`
in PUT and PATCH, and `returned` in responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

USER_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA: Final = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_RESPONSE: Final = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_REQUEST: Final = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
PATCH_OP: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA: Final = "urn:ietf:params:scim:api:messages:2.0:Error"
SPC_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:Schema"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute definition (RFC 7643 §7)."""

    name: str
    type: str = "string"
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    description: str = ""
    sub_attributes: tuple[Attribute, ...] = ()
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    by_key: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for sub in self.sub_attributes:
            self.by_key[sub.name.lower()] = sub

    def sub(self, name: str) -> Attribute | None:
        """Return the sub-attribute called `name` (case-insensitive), if any."""
        return self.by_key.get(name.lower())

    def to_scim(self) -> dict[str, object]:
        """Render this definition as an RFC 7643 §7 attribute document."""
        doc: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description or self.name,
            "required": self.required,
        }
        if self.type in ("string", "reference", "binary"):
            doc["caseExact"] = self.case_exact
        if self.canonical_values:
            doc["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            doc["referenceTypes"] = list(self.reference_types)
        doc["mutability"] = self.mutability
        doc["returned"] = self.returned
        if self.type in ("string", "reference", "binary"):
            doc["uniqueness"] = self.uniqueness
        if self.sub_attributes:
            doc["subAttributes"] = [s.to_scim() for s in self.sub_attributes]
        return doc


@dataclass(frozen=True, slots=True)
class Schema:
    """A schema: an id (URN) and its top-level attributes."""

    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]
    by_key: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for attr in self.attributes:
            self.by_key[attr.name.lower()] = attr

    def attribute(self, name: str) -> Attribute | None:
        """Return the top-level attribute called `name` (case-insensitive), if any."""
        return self.by_key.get(name.lower())

    def to_scim(self, base_url: str) -> dict[str, object]:
        """Render this schema as an RFC 7643 §7 schema resource."""
        return {
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_scim() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{self.id}"},
        }


def _multi(name: str, value_type: str = "string", *, types: tuple[str, ...] = ()) -> Attribute:
    """Multi-valued attribute with the usual value/display/type/primary sub-attributes."""
    return Attribute(
        name,
        "complex",
        multi_valued=True,
        sub_attributes=(
            Attribute("value", value_type),
            Attribute("display"),
            Attribute("type", canonical_values=types),
            Attribute("primary", "boolean"),
        ),
    )


_ID = Attribute(
    "id", case_exact=True, mutability="readOnly", returned="always", uniqueness="server"
)
_EXTERNAL_ID = Attribute(
    "externalId",
    case_exact=True,
    description="An identifier for the resource as defined by the provisioning client "
    "(RFC 7643 §3.1)",
)
_META = Attribute(
    "meta",
    "complex",
    mutability="readOnly",
    sub_attributes=(
        Attribute("resourceType", case_exact=True, mutability="readOnly"),
        Attribute("created", "dateTime", mutability="readOnly"),
        Attribute("lastModified", "dateTime", mutability="readOnly"),
        Attribute("location", "reference", case_exact=True, mutability="readOnly"),
        Attribute("version", case_exact=True, mutability="readOnly"),
    ),
)
COMMON_ATTRIBUTES: Final = (_ID, _EXTERNAL_ID, _META)

USER: Final = Schema(
    USER_SCHEMA,
    "User",
    "User Account",
    (
        # A common attribute (RFC 7643 §3.1), which a schema "MAY list": Microsoft's gallery
        # validation fails a /Schemas whose User or Group lacks it.
        _EXTERNAL_ID,
        Attribute("userName", required=True, uniqueness="server"),
        Attribute(
            "name",
            "complex",
            sub_attributes=(
                Attribute("formatted"),
                Attribute("familyName"),
                Attribute("givenName"),
                Attribute("middleName"),
                Attribute("honorificPrefix"),
                Attribute("honorificSuffix"),
            ),
        ),
        Attribute("displayName"),
        Attribute("nickName"),
        Attribute("profileUrl", "reference", reference_types=("external",)),
        Attribute("title"),
        Attribute("userType"),
        Attribute("preferredLanguage"),
        Attribute("locale"),
        Attribute("timezone"),
        Attribute("active", "boolean"),
        Attribute("password", mutability="writeOnly", returned="never"),
        _multi("emails", types=("work", "home", "other")),
        _multi("phoneNumbers", types=("work", "home", "mobile", "fax", "pager", "other")),
        _multi("ims", types=("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
        Attribute(
            "photos",
            "complex",
            multi_valued=True,
            sub_attributes=(
                Attribute("value", "reference", reference_types=("external",)),
                Attribute("display"),
                Attribute("type", canonical_values=("photo", "thumbnail")),
                Attribute("primary", "boolean"),
            ),
        ),
        Attribute(
            "addresses",
            "complex",
            multi_valued=True,
            sub_attributes=(
                Attribute("formatted"),
                Attribute("streetAddress"),
                Attribute("locality"),
                Attribute("region"),
                Attribute("postalCode"),
                Attribute("country"),
                Attribute("type", canonical_values=("work", "home", "other")),
                Attribute("primary", "boolean"),
            ),
        ),
        Attribute(
            "groups",
            "complex",
            multi_valued=True,
            mutability="readOnly",
            sub_attributes=(
                Attribute("value", mutability="readOnly"),
                Attribute("$ref", "reference", reference_types=("Group",), mutability="readOnly"),
                Attribute("display", mutability="readOnly"),
                Attribute("type", canonical_values=("direct", "indirect"), mutability="readOnly"),
            ),
        ),
        _multi("entitlements"),
        _multi("roles"),
        Attribute(
            "x509Certificates",
            "complex",
            multi_valued=True,
            sub_attributes=(
                Attribute("value", "binary"),
                Attribute("display"),
                Attribute("type"),
                Attribute("primary", "boolean"),
            ),
        ),
    ),
)

ENTERPRISE_USER: Final = Schema(
    ENTERPRISE_SCHEMA,
    "EnterpriseUser",
    "Enterprise User",
    (
        Attribute("employeeNumber"),
        Attribute("costCenter"),
        Attribute("organization"),
        Attribute("division"),
        Attribute("department"),
        Attribute(
            "manager",
            "complex",
            sub_attributes=(
                Attribute("value"),
                Attribute("$ref", "reference", reference_types=("User",)),
                Attribute("displayName", mutability="readOnly"),
            ),
        ),
    ),
)

GROUP: Final = Schema(
    GROUP_SCHEMA,
    "Group",
    "Group",
    (
        _EXTERNAL_ID,  # listed as in the User schema
        # Microsoft Entra ID matches groups by it (`hub.core.groups._claim_name`).
        Attribute("displayName", required=True, uniqueness="server"),
        Attribute(
            "members",
            "complex",
            multi_valued=True,
            sub_attributes=(
                Attribute("value", mutability="immutable"),
                Attribute("$ref", "reference", reference_types=("User",), mutability="immutable"),
                Attribute("display", mutability="readOnly"),
                Attribute("type", canonical_values=("User",), mutability="immutable"),
            ),
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class ResourceType:
    """A resource type the hub serves (RFC 7643 §6)."""

    name: str
    endpoint: str
    schema: Schema
    extensions: tuple[Schema, ...] = ()
    #: each extension schema by its lower-cased id
    extension_by_key: dict[str, Schema] = field(default_factory=dict, compare=False, repr=False)
    #: every schema id a resource of this type may carry (`schema_ids`) by its lower-cased form
    schema_id_by_key: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for ext in self.extensions:
            self.extension_by_key[ext.id.lower()] = ext
        for urn in self.schema_ids:
            self.schema_id_by_key[urn.lower()] = urn

    def attribute(self, name: str) -> Attribute | None:
        """Find a top-level attribute of the core schema or the common attributes."""
        found = self.schema.attribute(name)
        if found is not None:
            return found
        return COMMON_BY_KEY.get(name.lower())

    def extension(self, urn: str) -> Schema | None:
        """Return the extension schema whose id is `urn` (case-insensitive)."""
        return self.extension_by_key.get(urn.lower())

    @property
    def schema_ids(self) -> tuple[str, ...]:
        """Every schema URN a resource of this type may carry."""
        return (self.schema.id, *(e.id for e in self.extensions))


#: The common attributes (RFC 7643 §3.1) by lower-cased name.
COMMON_BY_KEY: Final = {a.name.lower(): a for a in COMMON_ATTRIBUTES}

USER_TYPE: Final = ResourceType("User", "/Users", USER, (ENTERPRISE_USER,))
GROUP_TYPE: Final = ResourceType("Group", "/Groups", GROUP)
RESOURCE_TYPES: Final = (USER_TYPE, GROUP_TYPE)
SCHEMAS: Final = (USER, GROUP, ENTERPRISE_USER)
#: The resource type of each schema `SCHEMAS` holds, by lower-cased id.
_OWNERS: Final = {urn.lower(): rt for rt in RESOURCE_TYPES for urn in rt.schema_ids}


def schema_owner(urn: str) -> ResourceType | None:
    """The resource type whose core or extension schema `urn` is (case-insensitive), if any.

    None for every URN but the hub's own schemas: a custom extension's, a misspelt one.
    """
    return _OWNERS.get(urn.lower())
