"""Per-token rate limits (issue 6 point 5): 429 with Retry-After, per workspace, across workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from hub.app import create_app
from hub.core.ratelimit import Limiter, TooManyRequests
from hub.core.tenants import InitResult
from hub.settings import Settings
from tests.conftest import TEST_BASE_URL, ScimClient, assert_scim_error
from tests.hubprocess import HubProcess
from tests.pg import create_database, drop_database
from tests.test_cards import Admin, make_admin_key


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a default limit of 5 requests per second per token."""
    app = create_app(msgspec.structs.replace(settings, rate_limit_per_second=5))
    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as client:
        yield client


async def test_excess_requests_get_429_with_retry_after(
    limited: httpx.AsyncClient, tenant: InitResult, other_tenant: InitResult
) -> None:
    scim = ScimClient(limited, tenant.token)
    statuses = [(await scim.get("/Users")).status_code for _ in range(8)]
    assert statuses.count(200) == 5, statuses
    refused = await scim.get("/Users")
    body = assert_scim_error(refused, 429)
    assert "rate limit" in body["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    # Another workspace's token has its own bucket.
    assert (await ScimClient(limited, other_tenant.token).get("/Users")).status_code == 200
    await asyncio.sleep(1.1)
    assert (await scim.get("/Users")).status_code == 200


async def test_unknown_tokens_are_refused_by_authentication_not_counted(
    limited: httpx.AsyncClient, tenant: InitResult
) -> None:
    stranger = ScimClient(limited, "shub_not-a-token")
    assert {(await stranger.get("/Users")).status_code for _ in range(10)} == {401}
    assert (await ScimClient(limited, tenant.token).get("/Users")).status_code == 200


async def test_a_workspace_sets_its_own_limit(
    limited: httpx.AsyncClient, db_url: str, tenant: InitResult, other_tenant: InitResult
) -> None:
    admin = Admin(limited, tenant.workspace, await make_admin_key(db_url, tenant))
    bad = await admin.call("PUT", "/rate-limit", {"requests_per_second": 0})
    assert bad.status_code == 400
    changed = await admin.call("PUT", "/rate-limit", {"requests_per_second": 2})
    assert changed.json() == {"requests_per_second": 2, "effective": 2}
    scim = ScimClient(limited, tenant.token)
    statuses = [(await scim.get("/Users")).status_code for _ in range(6)]
    # The first request learns the workspace's limit; from then on 2 per second.
    assert statuses.count(429) >= 3, statuses
    other = ScimClient(limited, other_tenant.token)
    assert [(await other.get("/Users")).status_code for _ in range(4)] == [200] * 4
    back = await admin.call("PUT", "/rate-limit", {"requests_per_second": None})
    assert back.json() == {"requests_per_second": None, "effective": 5}


@pytest.mark.server
@pytest.mark.postgres
async def test_the_limit_holds_across_worker_processes(
    postgres_server_url: str, tmp_path: Path
) -> None:
    url = create_database(postgres_server_url)
    hub = HubProcess(url, tmp_path / "hub", workers=2, rate_limit_per_second="20")
    try:
        hub.prepare()
        hub.start()
        headers = {"Authorization": f"Bearer {hub.token}"}
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:

            async def one() -> int:
                return (await client.get(f"{hub.tenant_url}/Users?count=1")).status_code

            started = time.monotonic()
            statuses = await asyncio.gather(*(one() for _ in range(120)))
            elapsed = time.monotonic() - started
        accepted = statuses.count(200)
        assert set(statuses) <= {200, 429}
        # Each worker enforces half: together one burst (1 s) plus the refill while the load ran,
        # never the 120 that were sent.
        assert 1 <= accepted <= 20 * (1 + elapsed) + 2, (accepted, elapsed)
    finally:
        hub.stop()
        drop_database(postgres_server_url, url.rsplit("/", 1)[1])


def test_requests_in_flight_together_cannot_pass_on_the_last_request() -> None:
    # A token's bucket exists once one request is admitted; then each check takes a request, so
    # requests checked before any of them is answered (in flight together) share what is left.
    limiter = Limiter(4)
    limiter.admit("token", None)  # the first request: a full bucket of 4, 3 left
    counted = [limiter.check("token") for _ in range(3)]
    assert counted == [True, True, True]
    for _ in range(3):  # three more before any of the first three is answered
        with pytest.raises(TooManyRequests) as refused:
            limiter.check("token")
        assert int(refused.value.headers["Retry-After"]) >= 1
    for taken in counted:  # answered: admit does not count them twice
        limiter.admit("token", None, taken)
    time.sleep(0.3)  # 1.2 requests' worth at 4 a second: one more passes (none, counted twice)
    assert limiter.check("token") is True
