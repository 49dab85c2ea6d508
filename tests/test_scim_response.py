"""SCIM responses leave as they were built: media type, length and headers, each once."""

from __future__ import annotations

from collections import Counter

from litestar import Litestar, get
from litestar.datastructures import ResponseHeader
from litestar.testing import TestClient

from hub.scim.response import ScimResponse
from tests.conftest import ScimClient, user_body


def _names(raw: list[tuple[bytes, bytes]]) -> Counter[str]:
    return Counter(name.decode().lower() for name, _ in raw)


async def test_a_resource_response_carries_its_headers_once(scim: ScimClient) -> None:
    created = await scim.post("/Users", user_body("once@example.com"))
    assert created.status_code == 201
    read = await scim.get(f"/Users/{created.json()['id']}")
    for response in (created, read):
        names = _names(response.headers.raw)
        assert all(count == 1 for count in names.values()), names
        assert response.headers["content-type"] == "application/scim+json"
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.headers["etag"] == response.json()["meta"]["version"]
    assert created.headers["location"] == created.json()["meta"]["location"]
    assert "location" not in read.headers


async def test_an_error_response_carries_its_headers_once(scim: ScimClient) -> None:
    refused = await scim.with_token("not-a-token").get("/Users")
    assert refused.status_code == 401
    names = _names(refused.headers.raw)
    assert all(count == 1 for count in names.values()), names
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert int(refused.headers["content-length"]) == len(refused.content)
    assert refused.json()["status"] == "401"


def test_headers_and_cookies_a_layer_adds_are_kept() -> None:
    @get("/doc", sync_to_thread=False)
    def doc() -> ScimResponse:
        return ScimResponse(b'{"a":1}', 201, {"ETag": 'W/"1"'})

    app = Litestar(
        [doc], response_headers=[ResponseHeader(name="X-Layer", value="yes")], debug=False
    )
    with TestClient(app) as client:
        response = client.get("/doc")
    assert response.status_code == 201
    assert response.content == b'{"a":1}'
    assert response.headers["x-layer"] == "yes"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-type"] == "application/scim+json"
