"""`/metrics`: Prometheus text, route templates (never ids), connector ids, outbox, database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from hub.app import create_app
from hub.core.tenants import InitResult
from hub.metrics import Metrics
from hub.settings import load_settings
from tests.conftest import TEST_BASE_URL, ScimClient, user_body


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def named(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(labels), value) for (sample, labels), value in samples(text).items() if sample == name
    ]


async def test_requests_counted_by_route_template_method_status_connector(
    client: httpx.AsyncClient, scim: ScimClient, tenant: InitResult
) -> None:
    created = await scim.post("/Users", user_body())
    assert created.status_code == 201
    user_id = created.json()["id"]
    for _ in range(3):
        assert (await scim.get(f"/Users/{user_id}")).status_code == 200
    assert (await scim.get("/Users/not-there")).status_code == 404

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert user_id not in text  # ids never become labels
    counts = named(text, "scim_hub_http_requests_total")
    by_key = {(s["route"], s["method"], s["status"]): (s["connector"], v) for s, v in counts}
    route = next(r for r, m, s in by_key if m == "GET" and s == "200" and "{" in r)
    assert route.startswith("/scim/v2/Users/{")
    connector, value = by_key[(route, "GET", "200")]
    assert value == 3
    assert connector not in ("", "-")
    assert by_key[(route, "GET", "404")][1] == 1
    assert by_key[("/scim/v2/Users", "POST", "201")][1] == 1
    buckets = named(text, "scim_hub_http_request_duration_seconds_bucket")
    inf = [
        v for s, v in buckets if s["le"] == "+Inf" and s["route"] == route and s["status"] == "200"
    ]
    assert inf == [3]
    assert named(text, "scim_hub_http_requests_in_flight")[0][1] >= 1  # the scrape itself


async def test_database_and_outbox_gauges(client: httpx.AsyncClient, scim: ScimClient) -> None:
    assert (await scim.post("/Users", user_body())).status_code == 201
    text = (await client.get("/metrics")).text
    names = {name for name, _ in samples(text)}
    assert "scim_hub_outbox_depth" in names
    assert "scim_hub_outbox_failed" in names
    assert "scim_hub_process_resident_memory_bytes" in names
    assert names & {"scim_hub_db_queue_length", "scim_hub_db_pool_checked_out"}


async def test_outbox_gauges_absent_without_the_table(tmp_path: Any) -> None:
    # A database without the outbox table: the scrape still answers, without outbox gauges.
    from hub.core.database import open_database
    from hub.metrics import outbox_gauges

    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        assert await outbox_gauges(db) == []
    finally:
        await db.close()


async def test_metrics_token(db_url: str) -> None:
    settings = load_settings(
        environ={}, database_url=db_url, base_url=TEST_BASE_URL, metrics_token="s3cret"
    )
    async with AsyncTestClient(app=create_app(settings), base_url=TEST_BASE_URL) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await http.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert "scim_hub_http_requests_total" in right.text


def test_hot_path_cost_is_a_few_microseconds() -> None:
    """The middleware's own cost per request, against a bare ASGI app (no HTTP, no database)."""
    metrics = Metrics()

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapped = metrics.middleware(bare)
    scope = {"type": "http", "method": "GET", "path_template": "/x/{id:str}", "state": {}}

    async def noop(message: Any) -> None:
        return None

    async def receive() -> Any:
        return {}

    async def timed(app: Any, n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await app(scope, receive, noop)
        return time.perf_counter() - started

    n = 20_000
    base = min(asyncio.run(timed(bare, n)) for _ in range(3))
    with_metrics = min(asyncio.run(timed(wrapped, n)) for _ in range(3))
    per_request_us = (with_metrics - base) / n * 1e6
    assert metrics.series[("/x/{id:str}", "GET", 200, "-")].count == 3 * n
    assert per_request_us < 50, per_request_us  # generous: shared machines; ~2-4 µs measured
