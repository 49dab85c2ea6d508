"""The OpenAPI document (`GET /openapi.json`) describes exactly the app's routes.

Every route of the app's route table is in the document, except the ones listed in `EXCLUDED`
with the reason; every operation of the document is a route of the app. So neither can drift
from the other without this test failing. `tests/test_schemathesis.py` checks the hub's answers
against the document.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx

from hub.scim.openapi import document

if TYPE_CHECKING:
    from litestar import Litestar

#: Routes deliberately left out of the document, by path prefix, with the reason.
EXCLUDED = {
    "/admin": "the dashboard: server-rendered HTML pages and forms with per-session CSRF tokens, "
    "for browsers, not an API (tests/test_dashboard_http.py and the browser tests cover it)",
}
METHODS = {"get", "put", "post", "delete", "patch"}
#: The features RFC 7644 lets a service provider leave out: they answer 501 only.
NOT_OFFERED = {"/scim/v2/Bulk", "/scim/v2/Me"}


def _shape(path: str) -> str:
    """`/a/{rid:str}/b` and `/a/{id}/b` both become `/a/{}/b`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _app_operations(app: Litestar) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if any(route.path == p or route.path.startswith(p + "/") for p in EXCLUDED):
            continue
        for method in getattr(route, "methods", set()):
            if method.lower() in METHODS:
                found.add((method.lower(), _shape(route.path)))
    return found


def _document_operations() -> set[tuple[str, str]]:
    return {
        (method, _shape(path))
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_described_and_every_described_route_exists(app: Litestar) -> None:
    routes, described = _app_operations(app), _document_operations()
    assert not routes - described, f"routes missing from the OpenAPI document: {routes - described}"
    assert not described - routes, f"described but not routes of the app: {described - routes}"
    assert ("post", "/scim/v2/Users") in described  # the walk saw the SCIM routes


def test_every_operation_documents_its_errors_and_a_success() -> None:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            statuses = set(operation["responses"])
            assert any(s[0] in "23" for s in statuses) or path in NOT_OFFERED, (
                method,
                path,
            )
            guarded = operation.get("security", document()["security"]) not in ([], [{}])
            if guarded:
                assert "401" in statuses, (method, path)
            assert operation["operationId"], (method, path)


async def test_the_document_is_served_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    served = response.json()
    assert served == document()
    assert served["openapi"].startswith("3.1")
    error = served["components"]["schemas"]["ScimType"]["enum"]
    # RFC 7644 §3.12 Table 9, every one of them.
    for scim_type in (
        "invalidFilter",
        "tooMany",
        "uniqueness",
        "mutability",
        "invalidSyntax",
        "invalidPath",
        "noTarget",
        "invalidValue",
        "invalidVers",
        "sensitive",
    ):
        assert scim_type in error
