"""The directly dispatched SCIM routes (`hub.scim.dispatch`) answer exactly as Litestar's router.

Every request below is sent twice through the real app: once as served (the direct dispatch on)
and once with the app's dispatch switched off, so Litestar's router serves it. Status, headers
and body must be the same; and the test counts the requests the direct dispatch took, so it
cannot pass by comparing the router with itself.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.types import Receive, Scope, Send

from hub.app import HubApp
from hub.scim.dispatch import Dispatch
from hub.scim.routes import _is_group_lookup, _is_user_lookup
from tests.conftest import TEST_BASE_URL, ScimClient, group_body, user_body

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
#: Headers that differ between any two responses.
_VOLATILE = {"x-request-id", "date"}


class _Counted:
    """The app's real dispatch, counting the requests it served."""

    def __init__(self, inner: Dispatch) -> None:
        self.inner = inner
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        served = await self.inner(scope, receive, send)
        self.served += served
        return served


def _counted(app: Litestar) -> _Counted:
    assert isinstance(app, HubApp)
    assert app.dispatch is not None
    counted = _Counted(app.dispatch)
    app.dispatch = counted  # type: ignore[assignment]
    return counted


async def _twice(
    app: HubApp, counted: _Counted, send: Any, *, direct: bool
) -> tuple[httpx.Response, httpx.Response]:
    """`send()` served as the app serves it, then by Litestar's router; checks who served it."""
    before = counted.served
    served = await send()
    assert counted.served - before == (1 if direct else 0), "unexpected dispatch"
    app.dispatch = None
    try:
        routed = await send()
    finally:
        app.dispatch = counted  # type: ignore[assignment]
    return served, routed


def _same(served: httpx.Response, routed: httpx.Response, *, body: bool = True) -> None:
    assert served.status_code == routed.status_code, (served.text, routed.text)
    if body:
        assert _stable(served.headers) == _stable(routed.headers)
        assert served.content == routed.content
    else:  # a write: the same headers and document shape, with its own version and times
        assert _stable(served.headers).keys() == _stable(routed.headers).keys()
        assert served.headers["content-type"] == routed.headers["content-type"]
        assert sorted(json.loads(served.content)) == sorted(json.loads(routed.content))


def _stable(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _VOLATILE}


async def test_direct_routes_answer_as_the_router(app: Litestar, scim: ScimClient) -> None:
    counted = _counted(app)
    assert isinstance(app, HubApp)
    user = (await scim.post("/Users", user_body("dispatch.user@example.com"))).json()
    group = (await scim.post("/Groups", group_body("Dispatchers"))).json()
    uid, gid = user["id"], group["id"]
    etag = (await scim.get(f"/Users/{uid}")).headers["etag"]
    anonymous, stranger = scim.with_token(None), scim.with_token("not-a-token")
    big = json.dumps({**user_body("big@example.com"), "displayName": "x" * 1_100_000})

    direct_reads = [
        lambda: scim.get(f"/Users/{uid}"),
        lambda: scim.get(f"/Users/{uid}", headers={"If-None-Match": etag}),
        lambda: scim.request("HEAD", f"/Users/{uid}"),  # served as the GET, less the body
        lambda: scim.get(f"/Users/{uid}", params={"attributes": "userName,emails"}),
        lambda: scim.get(f"/Users/{uid}", params={"excludedAttributes": "name"}),
        lambda: scim.get("/Users/no-such-user"),
        lambda: scim.get("/Users/nul%00byte"),
        lambda: anonymous.get(f"/Users/{uid}"),
        lambda: stranger.get(f"/Users/{uid}"),
        lambda: scim.get(f"/Users/{uid}", headers={"Accept": "text/html"}),
        lambda: scim.get("/Users", params={"filter": 'userName eq "dispatch.user@example.com"'}),
        lambda: scim.get("/Users", params={"filter": "userName eq"}),
        lambda: scim.get("/Users", params={"startIndex": "1", "count": "1"}),
        lambda: scim.get(f"/Groups/{gid}"),
        lambda: scim.get("/Groups", params={"excludedAttributes": "members"}),
        lambda: scim.post("/Users", content="{not json"),
        lambda: scim.post("/Users", content=big),
        lambda: scim.post("/Users", user_body("dispatch.user@example.com")),  # 409
        lambda: scim.put(f"/Users/{uid}", {"schemas": user["schemas"]}),  # no userName
        lambda: scim.patch(f"/Users/{uid}", {"Operations": [{"op": "jump"}]}),
        lambda: scim.delete("/Users/no-such-user"),
        lambda: scim.delete(f"/Groups/{gid}", headers={"If-Match": 'W/"999"'}),
    ]
    for send in direct_reads:
        _same(*await _twice(app, counted, send, direct=True))

    replace = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "title", "value": "T"}],
    }
    for send in (
        lambda: scim.patch(f"/Users/{uid}", replace),
        lambda: scim.put(f"/Groups/{gid}", group_body("Dispatchers")),
    ):
        _same(*await _twice(app, counted, send, direct=True), body=False)

    # Not canonical, or not these routes: Litestar's router answers, both times.
    for send in (
        lambda: scim.get("/Users/.search"),
        lambda: scim.get("/Users/"),
        lambda: scim.get(f"/Users/{uid}/extra"),
        lambda: scim.post(f"/Users/{uid}", user_body("405@example.com")),
        lambda: scim.patch("/Users", {"schemas": [PATCH_OP], "Operations": []}),
        lambda: scim.request("OPTIONS", "/Users"),
        lambda: scim.get(f"/Users/{uid}", headers={"Host": "bad host"}),
        lambda: scim.get(f"{TEST_BASE_URL}/scim/v2//Users/{uid}"),
        lambda: scim.get("/ServiceProviderConfig"),
        lambda: scim.post("/Users/.search", {"schemas": [SEARCH], "count": 1}),
    ):
        _same(*await _twice(app, counted, send, direct=False))


async def test_direct_routes_keep_their_metrics_labels(
    app: Litestar, client: httpx.AsyncClient, scim: ScimClient
) -> None:
    counted = _counted(app)
    assert isinstance(app, HubApp)
    uid = (await scim.post("/Users", user_body())).json()["id"]
    await _twice(app, counted, lambda: scim.get(f"/Users/{uid}"), direct=True)
    text = (await client.get("/metrics")).text
    gets = [
        line
        for line in text.splitlines()
        if line.startswith("scim_hub_http_requests_total{") and 'method="GET"' in line
    ]
    # One series for both: the same route template, whichever path served the request.
    assert len(gets) == 1, gets
    assert 'route="/scim/v2/Users/{rid}"' in gets[0]
    assert gets[0].endswith(" 2.0")


def test_every_resource_route_is_served_directly(app: Litestar) -> None:
    assert isinstance(app, HubApp)
    assert app.dispatch is not None
    assert len(app.dispatch) == 12  # Users and Groups: list, create, get, put, patch, delete


@pytest.mark.parametrize(
    ("text", "lookup"),
    [
        ('userName eq "a@example.com"', True),
        ('  USERNAME   EQ "a\\"b"  ', True),  # an escaped quote inside the value
        ('userName eq "a\\\\"', True),  # an escaped backslash, then the closing quote
        ('userName eq "a\\"', False),  # the closing quote is escaped: unterminated
        ('externalId eq "x-1"', True),
        ('emails[type eq "work"].value eq "a@example.com"', True),
        ('emails[type eq "w\\"k"].value eq "a@example.com"', True),
        ('emails[type eq "work"].value eq "' + "a" * 161 + '"', False),  # past the email bound
        ('userName eq "a" or userName eq "b"', False),
        ('userName eq "a" and userName eq "b"', False),
        ('userName ne "a"', False),
        ('name.givenName eq "a"', False),
    ],
)
def test_which_user_filters_are_answered_as_one_index_look_up(text: str, lookup: bool) -> None:
    """The look-up every IdP sends before a create is answered on the loop; anything else,
    however close, goes to the general filter path."""
    assert _is_user_lookup({"filter": text}) is lookup
    assert _is_user_lookup({"filter": text, "startIndex": "2"}) is False


@pytest.mark.parametrize(
    ("text", "excluded", "lookup"),
    [
        ('displayName eq "Ops"', "members", True),
        ('DisplayName eq "O\\"ps"', "members,meta", True),
        ('displayName eq "Ops"', "", False),  # members wanted: not a few indexed reads
        ('displayName eq "Ops" or displayName eq "Dev"', "members", False),
        ('displayName co "Ops"', "members", False),
    ],
)
def test_which_group_filters_are_answered_as_one_index_look_up(
    text: str, excluded: str, lookup: bool
) -> None:
    values = {"filter": text, "excludedAttributes": excluded}
    assert _is_group_lookup(values) is lookup
