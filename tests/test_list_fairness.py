"""Pages of users are served in about the order they were asked for, over real connections.

A page runs on the event loop's thread for ~1 ms. With 16 keep-alive connections in a closed loop
(each asks for its next page when the last one arrives), a page that ran as soon as the loop took
it up let two connections fall a whole round behind the other fourteen and stay there: their
pages took twice as long, which made the list phase's p95 and p99. This test drives a real
`scim-hub serve` that way and compares each connection's mean time a page.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import aiohttp

from tests.server import LiveServer, running_server

CONNECTIONS = 16
PAGES_EACH = 30
USERS = 300
#: The slowest connection's mean against the median connection's: at most 1.02 served in order,
#: 1.9 to 2.0 with two connections a round behind (measured on this 2-core machine).
FAIRNESS_LIMIT = 1.4


async def _mean_page_times(server: LiveServer) -> list[float]:
    urls = [
        f"{server.tenant_url}/Users?startIndex={1 + 100 * (i % 3)}&count=100"
        for i in range(CONNECTIONS * PAGES_EACH)
    ]
    todo = iter(urls)
    headers = {"Authorization": f"Bearer {server.token}"}
    ready = asyncio.Barrier(CONNECTIONS)
    means: list[float] = []

    async def connection() -> None:
        # One connection each, so a connection's pages are this coroutine's pages.
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), headers=headers
        ) as session:
            async with session.get(urls[0]) as warm:
                assert warm.status == 200
                await warm.read()
            await ready.wait()
            times = []
            for url in todo:
                started = time.perf_counter()
                async with session.get(url) as response:
                    body = await response.read()
                times.append(time.perf_counter() - started)
                assert response.status == 200, body[:300]
            means.append(statistics.mean(times))

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return means


def test_no_connection_falls_a_round_behind(tmp_path: Path) -> None:
    seed = ["seed", "--workspace", "live", "--users", str(USERS)]
    with running_server(tmp_path / "hub", then=[seed]) as server:
        means = asyncio.run(_mean_page_times(server))
    assert len(means) == CONNECTIONS
    median = statistics.median(means)
    ratios = sorted(round(mean / median, 2) for mean in means)
    print(f"mean ms a page, median connection: {median * 1000:.1f}; each ÷ median: {ratios}")
    assert ratios[-1] <= FAIRNESS_LIMIT, ratios
