"""``python -m bench.tenants``: many workspaces provisioned at once, each like an Entra cycle.

T workspaces (each with an Entra ID connector and its own token) are provisioned concurrently,
one keep-alive connection each: for every user, ``GET /Users?filter=userName eq "…"`` (expect no
result) then ``POST /Users`` with the body Entra sends. Reports the aggregate req/s and each
workspace's p99 against the median workspace's p99 (issue 5 target: none above 3x). Default 100
workspaces x 200 users; ``--full`` is issue 5's 100 x 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from bench import common, servers
from bench.load import entra_user, percentile

FAIRNESS_TARGET = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tenants", description=__doc__)
    parser.add_argument("--tenants", type=int, default=None, help="workspaces (100)")
    parser.add_argument("--users", type=int, default=None, help="users per workspace (200)")
    parser.add_argument("--full", action="store_true", help="issue 5's size: 100 x 1,000")
    parser.add_argument("--smoke", action="store_true", help="2 workspaces x 20 users")
    parser.add_argument("--connections", type=int, default=1, help="connections per workspace")
    parser.add_argument("--idp", default="azure_ad", help="the connectors' IdP plugin")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tmpdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    tenants, users = (2, 20) if args.smoke else ((100, 1000) if args.full else (100, 200))
    args.tenants = args.tenants or tenants
    args.users = args.users or users
    if args.tenants < 1 or args.users < 1 or args.connections < 1:
        parser.error("--tenants, --users and --connections must be at least 1")
    return args


async def provision(
    tenant: servers.Tenant, base_url: str, index: int, args: argparse.Namespace
) -> common.Recorder:
    """One workspace's initial cycle: query then create each user; returns its recorder."""
    client = common.Client(base_url, tenant.token, args.connections)
    rec = common.Recorder(tenant.workspace)
    todo = iter(range(args.users))
    tag = f"w{index:03d}"

    async def worker() -> None:
        for i in todo:
            body = entra_user(i, tag)
            query = "/Users?filter=" + quote(f'userName eq "{body["userName"]}"', safe="")
            found = await client.call(rec, "GET", query)
            if found is not None and found.get("totalResults") != 0:
                rec.errors += 1
            await client.call(rec, "POST", "/Users", msgspec.json.encode(body), (201,))

    try:
        await asyncio.gather(*(worker() for _ in range(args.connections)))
    finally:
        rec.stop()
        await client.close()
    return rec


async def run(server: servers.Server, args: argparse.Namespace) -> list[common.Recorder]:
    jobs = [provision(t, server.base_url, n, args) for n, t in enumerate(server.tenants)]
    results: list[common.Recorder] = []

    async def keep(job: Any) -> None:
        results.append(await job)

    finished = await common.bounded([keep(j) for j in jobs], args.timeout)
    if not finished:
        common.say(f"[tenants] deadline of {args.timeout:.0f}s reached: some workspaces cut off")
    return results


def summarise(recs: list[common.Recorder], wall_s: float, cpu_s: float) -> dict[str, Any]:
    all_ms = sorted(ms for r in recs for ms in r.latencies_ms)
    p99s = sorted(percentile(sorted(r.latencies_ms), 99) for r in recs)
    median = statistics.median(p99s) if p99s else 0.0
    worst = p99s[-1] if p99s else 0.0
    requests = len(all_ms)
    return {
        "workspaces": len(recs),
        "requests": requests,
        "errors": sum(r.errors for r in recs),
        "wall_s": round(wall_s, 2),
        "rps": round(requests / wall_s, 1) if wall_s else 0.0,
        "p50_ms": round(percentile(all_ms, 50), 2),
        "p99_ms": round(percentile(all_ms, 99), 2),
        "cpu_ms_per_req": round(cpu_s * 1000 / max(1, requests), 3),
        "workspace_p99_ms": {
            "min": round(p99s[0], 2) if p99s else 0.0,
            "median": round(median, 2),
            "max": round(worst, 2),
        },
        "max_over_median": round(worst / median, 2) if median else 0.0,
        "above_3x_median": sum(1 for p in p99s if median and p > FAIRNESS_TARGET * median),
        "per_workspace_wall_s": {
            "min": round(min((r.wall_s for r in recs), default=0.0), 2),
            "max": round(max((r.wall_s for r in recs), default=0.0), 2),
        },
        "error_samples": [s for r in recs for s in r.error_samples][:3],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = common.base_result(
        "tenants",
        argv,
        {"tenants": args.tenants, "users": args.users, "connections": args.connections},
    )
    try:
        with common.workdir(args.tmpdir, args.keep) as work:
            common.say(f"[tenants] {args.tenants} workspaces x {args.users} users")
            server = servers.start_hub(
                work, args.database_url, args.workers, tenants=args.tenants, idp=args.idp
            )
            with server:
                origin = common.origin_of(server.base_url)
                before = common.counted_requests(common.scrape(origin))
                cpu_before = server.cpu_seconds()
                started = time.perf_counter()
                recs = asyncio.run(run(server, args))
                wall = time.perf_counter() - started
                cpu = server.cpu_seconds() - cpu_before
                summary = summarise(recs, wall, cpu)
                result["metrics_check"] = common.metrics_check(
                    origin, summary["requests"], before, args.workers
                )
                result["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
            result["summary"] = summary
    except KeyboardInterrupt:
        common.say("interrupted: servers stopped")
        return 130
    except (servers.ServerError, TimeoutError) as exc:
        common.say(f"[tenants] FAILED: {exc}")
        return 1
    s = result["summary"]
    complete = s["workspaces"] == args.tenants and s["requests"] == 2 * args.tenants * args.users
    s["complete"] = complete
    s["fairness_met"] = s["above_3x_median"] == 0
    print(
        f"{s['workspaces']} workspaces x {args.users} users: {s['requests']:,} requests in "
        f"{s['wall_s']:.1f}s = {s['rps']:,.1f} req/s, p50 {s['p50_ms']:.2f} ms, p99 "
        f"{s['p99_ms']:.2f} ms, errors {s['errors']}, cpu {s['cpu_ms_per_req']:.2f} ms/req\n"
        f"per-workspace p99: {s['workspace_p99_ms']}; max/median {s['max_over_median']:.2f}x; "
        f"above 3x median: {s['above_3x_median']} "
        f"({'met' if s['fairness_met'] else 'MISSED'}); complete: {complete}\n"
        f"/metrics cross-check: {result.get('metrics_check')}"
    )
    common.save(result, "tenants", args.json, args.smoke)
    bad = s["errors"] or not complete or result["metrics_check"]["match"] is False
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
