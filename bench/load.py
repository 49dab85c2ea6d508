"""The load generator: a separate process driving one server over keep-alive HTTP (aiohttp).

Run by the harness as ``python -m bench.load --base-url ... --users N --concurrency C``. It reads
one phase name per line on stdin, runs that phase and answers with one JSON line on stdout, so that
the harness can read the server's CPU counters right before and right after each phase while this
process keeps its connections and the ids it created. ``quit`` (or end of input) ends it.

Every phase is bounded: a fixed number of requests, a per-request timeout and a per-phase deadline.
Only 127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import msgspec
import uvloop
from yarl import URL

PHASES = ("create", "get", "filter", "patch", "list", "deactivate")
#: Run only when asked, after the others: "dupes" POSTs every one of users/10 new userNames twice,
#: both copies in flight together; exactly one of each pair must be created (201), the other 409.
OPTIONAL_PHASES = ("dupes",)
ALL_PHASES = PHASES + OPTIONAL_PHASES
PAGE_SIZE = 100
MIN_LIST_REQUESTS = 200
ERROR_SAMPLES = 3
REQUEST_TIMEOUT_S = 30.0

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def entra_user(i: int, tag: str) -> dict[str, Any]:
    """The body Microsoft Entra ID sends to create a user (its default attribute mapping)."""
    given, family = f"Given{i}", f"Family{i}"
    upn = f"{given.lower()}.{family.lower()}.{tag}@contoso.example"
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": f"{tag}-{i:08d}",
        "userName": upn,
        "active": True,
        "displayName": f"{given} {family}",
        "title": "Engineer",
        "emails": [{"primary": True, "type": "work", "value": upn}],
        "phoneNumbers": [
            {"type": "work", "value": f"+1 425 555 {i % 10000:04d}"},
            {"type": "mobile", "value": f"+1 206 555 {i % 10000:04d}"},
        ],
        "addresses": [
            {
                "type": "work",
                "formatted": "1 Microsoft Way, Redmond, WA 98052, US",
                "streetAddress": "1 Microsoft Way",
                "locality": "Redmond",
                "region": "WA",
                "postalCode": "98052",
                "country": "US",
                "primary": False,
            }
        ],
        "name": {"formatted": f"{given} {family}", "familyName": family, "givenName": given},
        ENTERPRISE_SCHEMA: {
            "employeeNumber": f"{i:08d}",
            "department": f"Department {i % 20}",
            "organization": "Contoso",
        },
    }


def entra_patch(path: str, value: Any, op: str = "Replace") -> bytes:
    """An Entra-style PatchOp: Entra capitalises ``op`` ("Replace")."""
    return _encode(
        {"schemas": [PATCH_SCHEMA], "Operations": [{"op": op, "path": path, "value": value}]}
    )


@dataclass
class Request:
    method: str
    url: URL
    body: bytes | None = None
    check: Callable[[bytes], str | None] | None = None
    index: int = 0
    also_ok: tuple[int, ...] = ()


@dataclass
class PhaseResult:
    phase: str
    requests: int = 0
    ok: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    status_counts: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False
    #: objects in reference cycles the phase left for the collector (see `run_phase`)
    cycles_collected: int = 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "phase": self.phase,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 4),
            "rps": round(self.requests / self.wall_s, 1) if self.wall_s > 0 else 0.0,
            "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "status_counts": self.status_counts,
            "error_samples": self.error_samples,
            "timed_out": self.timed_out,
            "cycles_collected": self.cycles_collected,
            # The four slowest requests as (ms, n): the n-th to complete. Outliers bunched at
            # the start are the phase's warm-up; spaced ~concurrency apart, one connection.
            "slowest": sorted(
                ((round(ms, 2), i) for i, ms in enumerate(self.latencies_ms)), reverse=True
            )[:4],
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class CollectorPaused:
    """Keep this process's garbage collector out of a timed run.

    A collection stops every request in flight at once. During list pages (thousands of objects
    decoded a page) the load generator's full passes (~24 ms) stopped all 16 requests in flight:
    its own time, counted as the server's latency while the server sat idle. Reference counting
    still frees what a run makes; what only the collector can free (objects in reference cycles)
    waits for a collection after the run, outside its clock (`run_phase` counts them).
    """

    def __init__(self) -> None:
        self._was_enabled = False

    def __enter__(self) -> CollectorPaused:
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()


class LoadGenerator:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        users: int,
        concurrency: int,
        tag: str,
        phase_timeout_s: float,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.hostname != "127.0.0.1" or parts.scheme != "http":
            raise SystemExit(f"refusing to load anything but http://127.0.0.1: {base_url}")
        self.base = base_url.rstrip("/")
        self.users = users
        self.concurrency = concurrency
        self.tag = tag
        self.phase_timeout_s = phase_timeout_s
        self.headers = {"Content-Type": SCIM_JSON, "Accept": SCIM_JSON}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.user_names = [entra_user(i, tag)["userName"] for i in range(users)]
        self.ids: list[str | None] = [None] * users
        self.session: aiohttp.ClientSession | None = None

    def url(self, path_and_query: str) -> URL:
        return URL(self.base + path_and_query, encoded=True)

    async def __aenter__(self) -> LoadGenerator:
        connector = aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(
            connector=connector,
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            skip_auto_headers=("User-Agent",),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    # -- the phases: each builds its whole request list before the clock starts ----------------

    def requests_for(self, phase: str) -> list[Request]:
        if phase == "create":
            return [
                Request("POST", self.url("/Users"), _encode(entra_user(i, self.tag)), index=i)
                for i in range(self.users)
            ]
        ids = [(i, uid) for i, uid in enumerate(self.ids) if uid is not None]
        if phase == "get":
            return [Request("GET", self.url(f"/Users/{uid}"), index=i) for i, uid in ids]
        if phase == "filter":
            return [
                Request(
                    "GET",
                    self.url("/Users?filter=" + quote(f'userName eq "{name}"', safe="")),
                    check=_expect_total(1),
                )
                for name in self.user_names
            ]
        if phase == "patch":
            return [
                Request("PATCH", self.url(f"/Users/{uid}"), entra_patch("title", f"Title {i}"))
                for i, uid in ids
            ]
        if phase == "list":
            pages = max(1, math.ceil(self.users / PAGE_SIZE))
            total = max(pages, MIN_LIST_REQUESTS)
            return [
                Request(
                    "GET",
                    self.url(f"/Users?startIndex={(n % pages) * PAGE_SIZE + 1}&count={PAGE_SIZE}"),
                    check=_expect_page(min(PAGE_SIZE, self.users - (n % pages) * PAGE_SIZE)),
                )
                for n in range(total)
            ]
        if phase == "dupes":
            pairs = max(1, self.users // 10)
            out = []
            for i in range(pairs):
                body = _encode(
                    {"schemas": [USER_SCHEMA], "userName": f"dup-{i}.{self.tag}@x.example"}
                )
                out += [
                    Request("POST", self.url("/Users"), body, index=i, also_ok=(409,))
                    for _ in range(2)
                ]
            return out
        if phase == "deactivate":
            return [
                Request("PATCH", self.url(f"/Users/{uid}"), entra_patch("active", False))
                for _, uid in ids
            ]
        raise ValueError(f"unknown phase {phase!r}")

    async def run_phase(self, phase: str) -> PhaseResult:
        assert self.session is not None
        session = self.session
        todo = self.requests_for(phase)
        result = PhaseResult(phase)
        if not todo:
            result.errors = 1
            result.error_samples.append(
                "no request to send (did the create phase run and succeed?)"
            )
            return result
        cursor = iter(todo)
        latencies = result.latencies_ms
        keep_ids = phase == "create"
        created: dict[int, int] = {}
        gc.collect()  # the phase's clock starts on a clean heap (see `CollectorPaused`)
        start = time.perf_counter()
        deadline = start + self.phase_timeout_s

        def record_error(status: int | str, body: bytes | str) -> None:
            result.errors += 1
            if len(result.error_samples) < ERROR_SAMPLES:
                text = body if isinstance(body, str) else body[:500].decode(errors="replace")
                result.error_samples.append(f"{status}: {text}")

        async def worker() -> None:
            for req in cursor:
                if time.perf_counter() > deadline:
                    result.timed_out = True
                    return
                t0 = time.perf_counter()
                status: int | str
                try:
                    async with session.request(req.method, req.url, data=req.body) as resp:
                        body = await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    result.requests += 1
                    key = type(exc).__name__
                    result.status_counts[key] = result.status_counts.get(key, 0) + 1
                    record_error(key, repr(exc))
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                result.requests += 1
                result.status_counts[str(status)] = result.status_counts.get(str(status), 0) + 1
                if status in req.also_ok:
                    result.ok += 1
                    continue
                if not 200 <= status < 300:
                    record_error(status, body)
                    continue
                if req.also_ok:
                    created[req.index] = created.get(req.index, 0) + 1
                problem = req.check(body) if req.check is not None else None
                if keep_ids:
                    try:
                        self.ids[req.index] = _decode(body)["id"]
                    except (msgspec.DecodeError, KeyError, TypeError):
                        problem = "no id in the created resource"
                if problem is not None:
                    record_error(f"{status} but {problem}", body)
                    continue
                result.ok += 1

        with CollectorPaused():
            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
            result.wall_s = time.perf_counter() - start
        result.cycles_collected = gc.collect()
        if phase == "dupes" and not result.timed_out:
            for i in {r.index for r in todo}:
                if created.get(i, 0) != 1:
                    record_error("dupes", f"userName #{i} created {created.get(i, 0)} times")
        return result


def _expect_total(total: int) -> Callable[[bytes], str | None]:
    def check(body: bytes) -> str | None:
        try:
            found = _decode(body).get("totalResults")
        except (msgspec.DecodeError, AttributeError):
            return "not a ListResponse"
        return None if found == total else f"totalResults {found}, expected {total}"

    return check


def _expect_page(size: int) -> Callable[[bytes], str | None]:
    def check(body: bytes) -> str | None:
        try:
            found = len(_decode(body).get("Resources") or [])
        except (msgspec.DecodeError, AttributeError, TypeError):
            return "not a ListResponse"
        return None if found == size else f"{found} resources, expected {size}"

    return check


async def serve_commands(gen: LoadGenerator) -> None:
    loop = asyncio.get_running_loop()
    out = sys.stdout
    out.write(_encode({"ready": True}).decode() + "\n")
    out.flush()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if not command or command == "quit":
            return
        if command not in ALL_PHASES:
            out.write(_encode({"phase": command, "fatal": "unknown phase"}).decode() + "\n")
        else:
            result = await gen.run_phase(command)
            out.write(_encode(result.summary()).decode() + "\n")
        out.flush()


async def amain(args: argparse.Namespace) -> None:
    gen = LoadGenerator(
        args.base_url, args.token, args.users, args.concurrency, args.tag, args.phase_timeout
    )
    async with gen:
        await serve_commands(gen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--base-url", required=True, help="SCIM root, http://127.0.0.1:PORT/...")
    parser.add_argument(
        "--token", default=os.environ.get("BENCH_TOKEN"), help="bearer token ($BENCH_TOKEN)"
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tag", default="bench")
    parser.add_argument("--phase-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    uvloop.run(amain(args))


if __name__ == "__main__":
    main()
