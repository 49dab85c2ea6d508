"""Discovery documents (RFC 7644 §4; RFC 7643 §5-§7): what the hub supports, exactly."""

from __future__ import annotations

from typing import Any

from hub.core.schema import (
    LIST_RESPONSE,
    RESOURCE_TYPE_SCHEMA,
    RESOURCE_TYPES,
    SCHEMAS,
    SPC_SCHEMA,
    ResourceType,
)
from hub.settings import Settings

JSON = dict[str, Any]


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


def resource_type(rt: ResourceType, base: str) -> JSON:
    """One ResourceType resource (RFC 7643 §6)."""
    return {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.schema.description,
        "schema": rt.schema.id,
        "schemaExtensions": [{"schema": ext.id, "required": False} for ext in rt.extensions],
        "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{rt.name}"},
    }


def resource_types(base: str) -> list[JSON]:
    """Every ResourceType the hub serves."""
    return [resource_type(rt, base) for rt in RESOURCE_TYPES]


def schemas(base: str) -> list[JSON]:
    """Every schema the hub supports (core User, Group, Enterprise User)."""
    return [schema.to_scim(base) for schema in SCHEMAS]


def list_response(resources: list[JSON]) -> JSON:
    """Wrap discovery resources in a ListResponse (RFC 7644 §4)."""
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": len(resources),
        "itemsPerPage": len(resources),
        "startIndex": 1,
        "Resources": resources,
    }


def documents(settings: Settings, base: str) -> dict[str, JSON]:
    """Every discovery document by its path under the SCIM base, e.g. `Schemas/<urn>`."""
    types = resource_types(base)
    all_schemas = schemas(base)
    return {
        "ServiceProviderConfig": service_provider_config(settings, base),
        "ResourceTypes": list_response(types),
        "Schemas": list_response(all_schemas),
        **{f"ResourceTypes/{doc['id']}": doc for doc in types},
        **{f"Schemas/{doc['id']}": doc for doc in all_schemas},
    }
