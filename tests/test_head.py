"""HEAD: the headers of the GET of the same URL, no body (RFC 9110 §9.3.2), over real HTTP."""

from __future__ import annotations

import httpx

from tests.conftest import ScimClient, user_body
from tests.test_metrics import named


async def test_head_answers_what_get_would_without_the_body(
    client: httpx.AsyncClient, scim: ScimClient
) -> None:
    user_id = (await scim.post("/Users", user_body("head@example.com"))).json()["id"]
    for path in (f"/Users/{user_id}", "/Users", "/ServiceProviderConfig", "/Users/nobody"):
        got = await scim.get(path)
        head = await scim.request("HEAD", path)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        for name in ("content-type", "content-length", "etag"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    assert (await scim.request("HEAD", f"/Users/{user_id}")).headers["etag"] == 'W/"1"'
    # Without credentials, as a GET: 401 and no body.
    anonymous = await scim.with_token(None).request("HEAD", "/Users")
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    # Health probes.
    for path in ("/healthz", "/readyz"):
        probe = await client.head(path)
        assert (probe.status_code, probe.content) == (200, b""), path
    # A URL without a GET still says which methods it has.
    search = await scim.request("HEAD", "/Users/.search")
    assert search.status_code == 405
    assert "POST" in search.headers["allow"]


async def test_head_requests_are_counted_as_head(
    client: httpx.AsyncClient, scim: ScimClient
) -> None:
    user_id = (await scim.post("/Users", user_body())).json()["id"]
    assert (await scim.request("HEAD", f"/Users/{user_id}")).status_code == 200
    assert (await scim.get(f"/Users/{user_id}")).status_code == 200
    counts = named((await client.get("/metrics")).text, "scim_hub_http_requests_total")
    methods = {s["method"]: v for s, v in counts if s["route"].startswith("/scim/v2/Users/{")}
    assert methods == {"HEAD": 1, "GET": 1}
