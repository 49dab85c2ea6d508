"""The hub's OpenAPI 3.1 document, served at `GET /openapi.json`.

The document (`openapi.json` beside this module) is written by hand, as data: the SCIM handlers
read raw requests, so Litestar cannot describe their bodies, and the schemas say what RFC 7643
and RFC 7644 require rather than what a handler happens to return. It describes every SCIM route,
the admin and owner APIs and the operational endpoints; `tests/test_openapi.py` fails when a route
of the app is missing from it, and `tests/test_schemathesis.py` checks the hub against it.

It holds no secret, so it is public, like `/healthz`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from litestar import Response, get

MEDIA_TYPE = "application/json"
PATH = "/openapi.json"


@cache
def document_bytes() -> bytes:
    """The document as served (read once)."""
    return files("hub.scim").joinpath("openapi.json").read_bytes()


def document() -> dict[str, Any]:
    """The document, parsed (a fresh copy on every call)."""
    parsed: dict[str, Any] = json.loads(document_bytes())
    return parsed


@get(PATH, name="openapi", sync_to_thread=False, include_in_schema=False)
def openapi_document() -> Response[bytes]:
    """Serve the OpenAPI document; no credentials needed."""
    return Response(document_bytes(), media_type=MEDIA_TYPE)
