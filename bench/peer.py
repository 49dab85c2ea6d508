"""The peer: python-scim's ``scim2-server`` as an ASGI app, its data in memory.

Built the way its own ``scim2-server`` command builds its application (default RFC 7643
schemas, including the enterprise User extension, default resource types and service provider
config), but over its ASGI application and asynchronous in-memory storage so that uvicorn + uvloop
serve it in one process, like the hub and the floor. No authentication.

Serve with ``uvicorn bench.peer:app --loop uvloop --http httptools``; the SCIM root is ``/v2``.
"""

from __future__ import annotations

import logging
import secrets

from scim2_models import ScimProvider
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.service import ScimService
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)


def build_app() -> ASGIApplication:
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=load_default_service_provider_config(),
    )
    service = ScimService(provider, secret=secrets.token_urlsafe(32))
    return ASGIApplication(AsyncInMemoryStorage(), provider, service=service)


# Client errors are logged at INFO by scim2-server; keep the log quiet like the other servers.
logging.getLogger("scim2_server").setLevel(logging.WARNING)
app = build_app()
