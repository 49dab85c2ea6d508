"""``python -m bench.initial``: an Entra ID initial provisioning cycle, timed end to end.

Into one workspace with an Entra ID (``azure_ad``) connector: for every user, ``GET
/Users?filter=userName eq "…"`` (no result) then ``POST /Users`` (the body Entra sends); then, once
the users exist, the references: ``PATCH`` each user's manager (Entra's form: ``Replace`` of
``urn:…:enterprise:2.0:User:manager`` with the bare id) — a tree of 10 reports per manager.
Reports the whole cycle's time (issue 5 target: 100,000 users in ≤ 100 s; a smaller ``--users``
is projected linearly and says so), req/s and latency per step.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from bench import common, servers
from bench.load import ENTERPRISE_SCHEMA, entra_patch, entra_user

TARGET_USERS = 100_000
TARGET_S = 100.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.initial", description=__doc__)
    parser.add_argument("--users", type=int, default=None, help="users (100,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--smoke", action="store_true", help="50 users, concurrency 4")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tmpdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.users = args.users or (50 if args.smoke else TARGET_USERS)
    if args.smoke:
        args.concurrency = min(args.concurrency, 4)
    if args.users < 1 or args.concurrency < 1:
        parser.error("--users and --concurrency must be at least 1")
    return args


async def cycle(server: servers.Server, args: argparse.Namespace) -> dict[str, Any]:
    client = common.Client(server.base_url, server.token, args.concurrency)
    query, create, manager = (common.Recorder(n) for n in ("query", "create", "manager"))
    ids: list[str | None] = [None] * args.users
    tag = "ic"
    deadline = time.perf_counter() + args.timeout

    async def provision(todo: Any) -> None:
        for i in todo:
            if time.perf_counter() > deadline:
                return
            body = entra_user(i, tag)
            path = "/Users?filter=" + quote(f'userName eq "{body["userName"]}"', safe="")
            found = await client.call(query, "GET", path)
            if found is not None and found.get("totalResults") != 0:
                query.errors += 1
            made = await client.call(create, "POST", "/Users", msgspec.json.encode(body), (201,))
            if made is not None:
                ids[i] = made.get("id")

    async def link(todo: Any) -> None:
        for i in todo:
            if time.perf_counter() > deadline:
                return
            boss = ids[(i - 1) // 10]
            if ids[i] is None or boss is None:
                manager.errors += 1
                continue
            body = entra_patch(f"{ENTERPRISE_SCHEMA}:manager", boss)
            await client.call(manager, "PATCH", f"/Users/{ids[i]}", body, (200, 204))

    started = time.perf_counter()
    try:
        users = iter(range(args.users))
        await common.bounded([provision(users) for _ in range(args.concurrency)], args.timeout)
        query.stop()
        create.stop()
        create_s = time.perf_counter() - started
        reports = iter(range(1, args.users))
        manager.started = time.perf_counter()
        left = max(1.0, deadline - time.perf_counter())
        await common.bounded([link(reports) for _ in range(args.concurrency)], left)
        manager.stop()
        total_s = time.perf_counter() - started
    finally:
        await client.close()
    return {
        "total_s": round(total_s, 2),
        "query_and_create_s": round(create_s, 2),
        "manager_s": round(manager.wall_s, 2),
        "steps": {r.name: r.summary() for r in (query, create, manager)},
        "created": sum(1 for x in ids if x is not None),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = common.base_result(
        "initial", argv, {"users": args.users, "concurrency": args.concurrency}
    )
    try:
        with common.workdir(args.tmpdir, args.keep) as work:
            common.say(f"[initial] {args.users:,} users at concurrency {args.concurrency}")
            server = servers.start_hub(work, args.database_url, args.workers, idp="azure_ad")
            with server:
                origin = common.origin_of(server.base_url)
                before = common.counted_requests(common.scrape(origin))
                cpu_before = server.cpu_seconds()
                figures = asyncio.run(cycle(server, args))
                figures["cpu_s"] = round(server.cpu_seconds() - cpu_before, 2)
                sent = sum(s["requests"] for s in figures["steps"].values())
                figures["requests"] = sent
                figures["rps"] = round(sent / figures["total_s"], 1) if figures["total_s"] else 0
                figures["cpu_ms_per_req"] = round(figures["cpu_s"] * 1000 / max(1, sent), 3)
                result["metrics_check"] = common.metrics_check(origin, sent, before, args.workers)
                result["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
            result["cycle"] = figures
    except KeyboardInterrupt:
        common.say("interrupted: servers stopped")
        return 130
    except (servers.ServerError, TimeoutError) as exc:
        common.say(f"[initial] FAILED: {exc}")
        return 1
    c = result["cycle"]
    projected = c["total_s"] * TARGET_USERS / args.users
    c["projected_100k_s"] = round(projected, 1)
    c["target_met"] = projected <= TARGET_S
    errors = sum(s["errors"] for s in c["steps"].values())
    lines = [
        f"initial cycle of {args.users:,} users: {c['total_s']:.1f}s "
        f"(query+create {c['query_and_create_s']:.1f}s, manager {c['manager_s']:.1f}s), "
        f"{c['requests']:,} requests = {c['rps']:,.1f} req/s, cpu {c['cpu_ms_per_req']:.2f} ms/req",
        f"{'measured' if args.users == TARGET_USERS else 'projected linearly'} for 100,000 users:"
        f" {projected:.1f}s (target {TARGET_S:g}s): {'met' if c['target_met'] else 'MISSED'}",
    ]
    for name, s in c["steps"].items():
        lines.append(
            f"  {name:<8} {s['requests']:>7} req  p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f}"
            f" ms  errors {s['errors']}"
        )
    lines.append(f"/metrics cross-check: {result.get('metrics_check')}")
    print("\n".join(lines))
    common.save(result, "initial", args.json, args.smoke)
    return 1 if errors or c["created"] != args.users else 0


if __name__ == "__main__":
    sys.exit(main())
