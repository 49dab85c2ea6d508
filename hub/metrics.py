"""`/metrics` in the Prometheus text format: requests, latency, outbox, database use.

The hot path is one ASGI middleware that, per HTTP request, reads the clock twice, looks up one
dict entry keyed by (route template, method, status, connector id) and bumps three plain
counters; no lock (it runs on the event loop), no prometheus-client object. Everything else is
computed only when `/metrics` is scraped: a custom collector turns the counters into Prometheus
families, the outbox figures come from two cheap indexed queries, and the database gauges are
read from the database object's executors / pool.

Labels never carry ids of users or groups: `route` is the route *template*
(`/scim/v2/Users/{user_id:str}`), `connector` the connector's id (bounded by the number of
connectors; `-` for requests without a SCIM caller). Requests that match no route (404 before
routing) are not seen by route middleware and are not counted.

Processes: the figures are per process. With `scim-hub serve --workers N` each worker answers
`/metrics` with its own counters (a scrape lands on whichever worker accepts it); the gauges read
from the database (outbox) are global. prometheus-client's multiprocess mode is not used: it would
put a memory-mapped file write on every request and needs a shared directory and clean-up hooks.

`SCIM_HUB_METRICS_TOKEN`: when set, `/metrics` requires `Authorization: Bearer <token>`; unset,
it is open (it shows no secret, but it does show connector ids and traffic volumes, so set it
whenever the port is reachable from outside).
"""

from __future__ import annotations

import hmac
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from hub.core.models import outbox_messages
from hub.head import method_of

#: Upper bounds (seconds) of the latency histogram's buckets.
BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_LABELS = ("route", "method", "status", "connector")
_NO_CONNECTOR = "-"
_UNMATCHED = "unmatched"


class _Series:
    """Counters of one label set: request count, latency sum, per-bucket (non-cumulative) counts."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf


class Metrics:
    """One app's metrics: the request counters, the middleware that fills them, the endpoint."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, int, str], _Series] = {}
        self.in_flight = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_RequestCollector(self))
        ProcessCollector(namespace="scim_hub", registry=self.registry)
        self._scraped: list[Metric] = []
        self.registry.register(_ScrapeCollector(self))

    # -- hot path ---------------------------------------------------------------------------

    def observe(self, route: str, method: str, status: int, connector: str, seconds: float) -> None:
        """Count one request (called by the middleware; cheap: a dict lookup and three adds)."""
        key = (route, method, status, connector)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()
        series.count += 1
        series.total += seconds
        series.buckets[bisect_left(BUCKETS, seconds)] += 1

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """The ASGI middleware counting every routed HTTP request."""
        observe = self.observe
        clock = time.perf_counter

        async def metrics_middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = clock()
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            self.in_flight += 1
            try:
                await app(scope, receive, send_status)
            finally:
                self.in_flight -= 1
                state = scope.get("state")
                caller = state.get("caller") if isinstance(state, dict) else None
                observe(
                    scope.get("path_template") or _UNMATCHED,
                    method_of(scope),
                    status,
                    getattr(caller, "connector_id", None) or _NO_CONNECTOR,
                    clock() - started,
                )

        return metrics_middleware

    # -- scrape -----------------------------------------------------------------------------

    async def render(self, hub: Any) -> bytes:
        """The exposition text: refresh the database-backed gauges, then every collector."""
        families: list[Metric] = []
        db = getattr(hub, "db", None)
        if db is not None:
            families.extend(database_gauges(db))
            families.extend(await outbox_gauges(db))
        self._scraped = families
        try:
            return generate_latest(self.registry)
        finally:
            self._scraped = []

    def route(self) -> HTTPRouteHandler:
        """`GET /metrics`, bound to this instance."""

        @get("/metrics", include_in_schema=False, name="metrics")
        async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
            hub = request.app.state.hub
            expected = getattr(hub.settings, "metrics_token", "")
            if expected and not _bearer_matches(request.headers.get("authorization"), expected):
                return Response(
                    b"metrics need 'Authorization: Bearer <SCIM_HUB_METRICS_TOKEN>'\n",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
            body = await self.render(hub)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        return metrics_endpoint


def _bearer_matches(header: str | None, expected: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    )


class _RequestCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "scim_hub_http_requests",
            "HTTP requests answered, by route template, method, status and connector id.",
            labels=_LABELS,
        )
        latency = HistogramMetricFamily(
            "scim_hub_http_request_duration_seconds",
            "Time from the request reaching the app to the end of its response.",
            labels=_LABELS,
        )
        bounds = [*(repr(b) for b in BUCKETS), "+Inf"]
        for (route, method, status, connector), series in list(self.metrics.series.items()):
            labels = [route, method, str(status), connector]
            requests.add_metric(labels, series.count)
            cumulative, running = [], 0
            for bound, count in zip(bounds, series.buckets, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            latency.add_metric(labels, cumulative, series.total)
        yield requests
        yield latency
        in_flight = GaugeMetricFamily(
            "scim_hub_http_requests_in_flight", "HTTP requests being answered right now."
        )
        in_flight.add_metric([], self.metrics.in_flight)
        yield in_flight


class _ScrapeCollector(Collector):
    """Families computed by the scrape itself (database and outbox), handed over by `render`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics._scraped


# --- database use ------------------------------------------------------------------------------


def _executor_figures(executor: Any) -> tuple[int, int, int] | None:
    """(threads, busy, queued) of a ThreadPoolExecutor, from its internals; None if unreadable."""
    try:
        threads = len(executor._threads)
        idle = executor._idle_semaphore._value
        queued = executor._work_queue.qsize()
    except (AttributeError, TypeError):
        return None
    return threads, max(0, threads - idle), queued


def database_gauges(db: Any) -> list[Metric]:
    """Database use: SQLite writer/reader threads and queues, or the PostgreSQL pool."""
    threads = GaugeMetricFamily(
        "scim_hub_db_threads", "Database threads started (SQLite).", labels=["pool"]
    )
    busy = GaugeMetricFamily(
        "scim_hub_db_units_in_flight",
        "Units of work running on a database thread now (SQLite; estimated from idle threads).",
        labels=["pool"],
    )
    queued = GaugeMetricFamily(
        "scim_hub_db_queue_length",
        "Units of work waiting for a database thread (SQLite).",
        labels=["pool"],
    )
    found = False
    for pool, attribute in (("writer", "_writer"), ("reader", "_readers")):
        figures = _executor_figures(getattr(db, attribute, None))
        if figures is None:
            continue
        found = True
        threads.add_metric([pool], figures[0])
        busy.add_metric([pool], figures[1])
        queued.add_metric([pool], figures[2])
    if found:
        return [threads, busy, queued]
    pool_obj = getattr(getattr(getattr(db, "_engine", None), "sync_engine", None), "pool", None)
    if pool_obj is None:
        return []
    families: list[Metric] = []
    for name, help_text, method in (
        ("scim_hub_db_pool_size", "Connections the pool keeps (PostgreSQL).", "size"),
        (
            "scim_hub_db_pool_checked_out",
            "Connections in use by a unit of work now (PostgreSQL).",
            "checkedout",
        ),
        ("scim_hub_db_pool_overflow", "Connections opened beyond the pool size.", "overflow"),
    ):
        reader = getattr(pool_obj, method, None)
        if reader is None:
            continue
        gauge = GaugeMetricFamily(name, help_text)
        gauge.add_metric([], float(reader()))
        families.append(gauge)
    return families


# --- outbox ------------------------------------------------------------------------------------


def _outbox_counts(conn: Connection) -> dict[str, int]:
    """Queued / retrying / failed messages: range scans of the (status, next_attempt) index."""
    ob = outbox_messages
    queued = conn.execute(select(func.count()).where(ob.c.status == "queued")).scalar_one()
    retrying = conn.execute(
        select(func.count()).where(ob.c.status == "queued", ob.c.attempts > 0)
    ).scalar_one()
    failed = conn.execute(select(func.count()).where(ob.c.status == "failed")).scalar_one()
    return {"queued": int(queued), "retrying": int(retrying), "failed": int(failed)}


async def outbox_gauges(db: Any) -> list[Metric]:
    """Outbox depth and delivery failures; nothing if the outbox table does not exist."""
    try:
        counts: dict[str, int] = await db.read(_outbox_counts)
    except DBAPIError:
        return []  # no outbox table (an older schema) or the database is unreachable
    depth = GaugeMetricFamily(
        "scim_hub_outbox_depth", "Emails waiting to be delivered (queued, incl. retrying)."
    )
    depth.add_metric([], counts["queued"])
    retrying = GaugeMetricFamily(
        "scim_hub_outbox_retrying", "Queued emails that failed at least one delivery attempt."
    )
    retrying.add_metric([], counts["retrying"])
    failed = GaugeMetricFamily(
        "scim_hub_outbox_failed", "Emails given up on (permanent refusal or attempts exhausted)."
    )
    failed.add_metric([], counts["failed"])
    return [depth, retrying, failed]
