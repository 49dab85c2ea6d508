"""Discovery documents (RFC 7644 §4; RFC 7643 §5-§7): what the hub supports, exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hub.core.connectors import attribute_key
from hub.core.schema import (
    GROUP_SCHEMA,
    LIST_RESPONSE,
    RESOURCE_TYPE_SCHEMA,
    RESOURCE_TYPES,
    SCHEMAS,
    SPC_SCHEMA,
    USER_SCHEMA,
    Attribute,
    ResourceType,
    Schema,
)
from hub.settings import Settings

JSON = dict[str, Any]
#: Custom extension schemas by the name of the resource type they extend (`hub.core.extensions`).
Custom = Mapping[str, Sequence[Schema]]
#: Attributes the hub's own schemas lack that the workspace's resources hold, by schema id
#: (`hub.core.extensions.additions`).
Added = Mapping[str, Sequence[Attribute]]


def service_provider_config(settings: Settings, base: str) -> JSON:
    """The ServiceProviderConfig resource (RFC 7643 §5), with the hub's real limits."""
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": settings.max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "pagination": {
            "cursor": True,
            "index": True,
            "defaultPaginationMethod": "index",
            "defaultPageSize": settings.default_count,
            "maxPageSize": settings.max_results,
        },
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A connector token from `scim-hub init` or the admin console, "
                "sent as 'Authorization: Bearer <token>'.",
                "specUri": "https://datatracker.ietf.org/doc/html/rfc6750",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": f"{base}/ServiceProviderConfig",
        },
    }


def resource_type(rt: ResourceType, base: str, custom: Sequence[Schema] = ()) -> JSON:
    """One ResourceType resource (RFC 7643 §6); `custom`: its custom extensions."""
    return {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.schema.description,
        "schema": rt.schema.id,
        "schemaExtensions": [
            {"schema": ext.id, "required": False} for ext in (*rt.extensions, *custom)
        ],
        "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{rt.name}"},
    }


def resource_types(base: str, custom: Custom | None = None) -> list[JSON]:
    """Every ResourceType the hub serves."""
    custom = custom or {}
    return [resource_type(rt, base, custom.get(rt.name, ())) for rt in RESOURCE_TYPES]


def schemas(
    base: str,
    ignored: Sequence[str] = (),
    custom: Custom | None = None,
    added: Added | None = None,
) -> list[JSON]:
    """Every schema the hub supports (core User, Group, Enterprise User) and the custom ones.

    `custom`: the custom extensions the workspace's resources hold (`hub.core.extensions`),
    described so that a client can read every resource the hub returns (RFC 7643 §3, §7).
    `added`: what those resources hold under the hub's own schemas that the schemas do not
    define, added to them; an attribute the hub defines is never changed or shown twice.

    `ignored` names User attributes (paths, as a connector's `unmanaged` holds them) that the
    hub ignores in the caller's requests: they are shown `readOnly` (RFC 7643 §7: the client
    cannot change them, the server may return a value), which is how they behave for it.
    """
    docs = [schema.to_scim(base) for schema in SCHEMAS]
    for schema, doc in zip(SCHEMAS, docs, strict=True):
        extra = (added or {}).get(schema.id)
        if extra:
            attributes = doc["attributes"]
            assert isinstance(attributes, list)
            _add(attributes, extra)
    for extension in _distinct(custom or {}):
        docs.append(extension.to_scim(base))
    for path in ignored:
        target = _attribute_doc(docs, path)
        if target is not None:
            _read_only(target)
    return docs


def _attribute_doc(docs: list[JSON], path: str) -> JSON | None:
    """The attribute (or sub-attribute) document a User attribute path names, if any."""
    key = attribute_key(path)
    if key is None:
        return None
    urn, name, sub = key
    urn = urn or USER_SCHEMA.lower()
    schema = next((doc for doc in docs if doc["id"].lower() == urn), None)
    if schema is None or urn == GROUP_SCHEMA.lower():
        return None  # a custom extension nothing holds yet, or a Group's
    found = _named(schema["attributes"], name)
    if found is not None and sub is not None:
        found = _named(found.get("subAttributes", []), sub)
    return found


def _add(attributes: list[JSON], extra: Sequence[Attribute]) -> None:
    """Add to a schema's `attributes` the `extra` ones, and sub-attributes, it does not name."""
    for one in extra:
        same = _named(attributes, one.name)
        if same is None:
            attributes.append(one.to_scim())
        elif same["type"] == "complex":
            subs = same.setdefault("subAttributes", [])
            for sub in one.sub_attributes:
                if _named(subs, sub.name) is None:
                    subs.append(sub.to_scim())


def _distinct(custom: Custom) -> list[Schema]:
    """Each custom schema once, though it may extend both Users and Groups."""
    seen: dict[str, Schema] = {}
    for extensions in custom.values():
        for extension in extensions:
            seen.setdefault(extension.id.lower(), extension)
    return list(seen.values())


def _named(attributes: list[JSON], name: str) -> JSON | None:
    return next((a for a in attributes if a["name"].lower() == name.lower()), None)


def _read_only(attribute: JSON) -> None:
    attribute["mutability"] = "readOnly"
    for sub in attribute.get("subAttributes", []):
        _read_only(sub)


def list_response(resources: list[JSON]) -> JSON:
    """Wrap discovery resources in a ListResponse (RFC 7644 §4)."""
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": len(resources),
        "itemsPerPage": len(resources),
        "startIndex": 1,
        "Resources": resources,
    }


def documents(
    settings: Settings,
    base: str,
    ignored: Sequence[str] = (),
    custom: Custom | None = None,
    added: Added | None = None,
) -> dict[str, JSON]:
    """Every discovery document by its path under the SCIM base, e.g. `Schemas/<urn>`.

    `ignored`: the User attributes the caller's connector does not manage; `custom`: the
    workspace's custom extensions; `added`: what its resources hold that the hub's schemas
    lack (see `schemas`).
    """
    types = resource_types(base, custom)
    all_schemas = schemas(base, ignored, custom, added)
    return {
        "ServiceProviderConfig": service_provider_config(settings, base),
        "ResourceTypes": list_response(types),
        "Schemas": list_response(all_schemas),
        **{f"ResourceTypes/{doc['id']}": doc for doc in types},
        **{f"Schemas/{doc['id']}": doc for doc in all_schemas},
    }
