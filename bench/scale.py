"""``python -m bench.scale``: one workspace of 1,000,000 users, read over HTTP at concurrency 1.

Seeds the users and their cards with ``scim-hub seed`` (not HTTP), serves, then measures one
request at a time: ``filter userName eq`` on random users, the first list page (startIndex=1,
count=100), a deep page (startIndex = 90% of the users + 1), cursor pages (RFC 9865, if
ServiceProviderConfig advertises them: from the first page on), the server's RSS (now and peak)
and the database bytes per user. The template-edit target lives in ``python -m bench.templates``.
Targets (issue 5): filter p99 ≤ 5 ms, first page p99 ≤ 20 ms, deep page ≤ 100 ms, RSS ≤ 250 MB,
cursor pages ≤ 20 ms.
``--profile`` records each phase with py-spy and prints its hottest frames.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import common, servers
from hub.core.seed import external_id, user_name

#: `external_id_filter` and `email_filter` are not among issue 5's targets: held to `userName
#: eq`'s, as IdPs that match users on externalId or on their work email (Entra ID options) send
#: those instead before every create.
TARGETS_MS = {
    "filter": 5.0,
    "external_id_filter": 5.0,
    "email_filter": 5.0,
    "first_page": 20.0,
    "deep_page": 100.0,
    "cursor_page": 20.0,
}
RSS_TARGET_MB = 250.0
PAGE = 100


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--users", type=int, default=None, help="users seeded (1,000,000)")
    parser.add_argument("--filters", type=int, default=None, help="filter requests (1000)")
    parser.add_argument("--pages", type=int, default=None, help="first-page requests (200)")
    parser.add_argument("--deep", type=int, default=None, help="deep-page requests (50)")
    parser.add_argument("--smoke", action="store_true", help="300 users, a few requests")
    parser.add_argument("--profile", action="store_true", help="py-spy each phase")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--phase-timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=None, help="append the JSON line to PATH")
    parser.add_argument("--tmpdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    small = args.smoke
    args.users = args.users or (300 if small else 1_000_000)
    args.filters = args.filters or (20 if small else 1000)
    args.pages = args.pages or (5 if small else 200)
    args.deep = args.deep or (5 if small else 50)
    if args.users < PAGE:
        parser.error(f"--users must be at least {PAGE}")
    return args


async def measure(
    server: servers.Server, args: argparse.Namespace, work: Path
) -> dict[str, dict[str, Any]]:
    client = common.Client(server.base_url, server.token, connections=1)
    rng = random.Random(5)
    phases: dict[str, dict[str, Any]] = {}
    deep_start = (args.users * 9) // 10 + 1
    deep_size = min(PAGE, args.users - deep_start + 1)
    try:
        warm = common.Recorder("warm-up")
        for _ in range(10):
            await client.call(warm, "GET", _filter_path(rng.randrange(args.users)))
        phases["warm-up"] = warm.summary()

        async def filter_phase(rec: common.Recorder, path: Callable[[int], str]) -> None:
            for _ in range(args.filters):
                i = rng.randrange(args.users)
                body = await client.call(rec, "GET", path(i))
                if body is not None and body.get("totalResults") != 1:
                    rec.errors += 1

        async def page_phase(rec: common.Recorder, start: int, count: int, size: int) -> None:
            for _ in range(count):
                body = await client.call(rec, "GET", f"/Users?startIndex={start}&count={PAGE}")
                if body is not None and (
                    len(body.get("Resources") or []) != size or body.get("totalResults") is None
                ):
                    rec.errors += 1

        async def cursor_phase(rec: common.Recorder) -> None:
            """`args.pages` cursor pages (RFC 9865) from the first on, starting over at the end."""
            first = f"/Users?cursor=&count={PAGE}"
            path, seen = first, 0
            for _ in range(args.pages):
                body = await client.call(rec, "GET", path)
                if body is None:
                    return
                got = len(body.get("Resources") or [])
                seen += got
                if got != min(PAGE, args.users - seen + got):
                    rec.errors += 1
                following = body.get("nextCursor")
                if following:
                    path = f"/Users?cursor={quote(following, safe='')}&count={PAGE}"
                    continue
                if seen != args.users:  # the last page came early (or late)
                    rec.errors += 1
                path, seen = first, 0

        probe = common.Recorder("config")
        config = await client.call(probe, "GET", "/ServiceProviderConfig")
        supported = bool(((config or {}).get("pagination") or {}).get("cursor"))
        plan = [
            ("filter", lambda rec: filter_phase(rec, _filter_path)),
            ("external_id_filter", lambda rec: filter_phase(rec, _external_id_path)),
            ("email_filter", lambda rec: filter_phase(rec, _email_path)),
            ("first_page", lambda rec: page_phase(rec, 1, args.pages, PAGE)),
            ("deep_page", lambda rec: page_phase(rec, deep_start, args.deep, deep_size)),
        ]
        if supported:
            plan.append(("cursor_page", lambda rec: cursor_phase(rec)))
        for name, run in plan:
            rec = common.Recorder(name)
            cpu_before = server.cpu_seconds()
            raw = work / f"profile-{name}.txt" if args.profile else None
            with common.PySpy(server.pid, raw):
                finished = await common.bounded([run(rec)], args.phase_timeout)
            rec.stop()
            cpu = server.cpu_seconds() - cpu_before
            summary = rec.summary()
            summary["timed_out"] = not finished
            summary["cpu_ms_per_req"] = round(cpu * 1000 / max(1, summary["requests"]), 3)
            if raw is not None:
                summary["profile_top"] = common.top_frames(raw)
            phases[name] = summary
            common.say(
                f"[scale] {name:<10} p50 {summary['p50_ms']:.2f} ms  p99 {summary['p99_ms']:.2f}"
                f" ms  errors {summary['errors']}  cpu {summary['cpu_ms_per_req']:.2f} ms/req"
            )
        if supported:
            phases["cursor_page"]["supported"] = True
        else:
            phases["cursor_page"] = {"supported": False, "note": "not advertised (RFC 9865)"}
        phases["_sent"] = {"requests": sum(p.get("requests", 0) for p in phases.values())}
    finally:
        await client.close()
    return phases


def _filter_path(i: int) -> str:
    return "/Users?filter=" + quote(f'userName eq "{user_name(i)}"', safe="")


def _external_id_path(i: int) -> str:
    return "/Users?filter=" + quote(f'externalId eq "{external_id(i)}"', safe="")


def _email_path(i: int) -> str:
    # A seeded user's work email is its userName (hub.core.seed.user_document).
    email = user_name(i).upper()
    return "/Users?filter=" + quote(f'emails[type eq "work"].value eq "{email}"', safe="")


def peak_rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = common.base_result(
        "scale",
        argv,
        {"users": args.users, "filters": args.filters, "pages": args.pages, "deep": args.deep},
    )
    try:
        with common.workdir(args.tmpdir, args.keep) as work:
            common.say(f"[scale] seeding {args.users:,} users, then serving")
            server = servers.start_hub(work, args.database_url, seed_users=args.users)
            with server:
                common.say(f"[scale] seeded: {server.seed}")
                before = common.counted_requests(common.scrape(common.origin_of(server.base_url)))
                phases = asyncio.run(measure(server, args, work))
                sent = phases.pop("_sent")["requests"]
                result["metrics_check"] = common.metrics_check(
                    common.origin_of(server.base_url), sent + 1, before
                )
                result["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
                result["peak_rss_mb"] = round(peak_rss_bytes(server.pid) / 2**20, 1)
            result["seed"] = server.seed
            result["phases"] = phases
    except KeyboardInterrupt:
        common.say("interrupted: servers stopped")
        return 130
    except (servers.ServerError, TimeoutError) as exc:
        common.say(f"[scale] FAILED: {exc}")
        return 1
    result["targets"] = targets(result)
    print(text(result))
    common.save(result, "scale", args.json, args.smoke)
    errors = sum(p.get("errors", 0) for p in result["phases"].values())
    return 1 if errors or result["metrics_check"]["match"] is False else 0


def targets(result: dict[str, Any]) -> dict[str, Any]:
    phases = result["phases"]
    out: dict[str, Any] = {}
    for name, limit in TARGETS_MS.items():
        figures = phases.get(name, {})
        if name == "cursor_page" and not figures.get("supported"):
            out[name] = {"target_ms": limit, "met": False}
            continue
        out[name] = {"target_ms": limit, "p99_ms": figures.get("p99_ms"), "met": None}
        if figures.get("requests"):
            out[name]["met"] = figures["p99_ms"] <= limit
    out["rss"] = {"target_mb": RSS_TARGET_MB, "peak_mb": result.get("peak_rss_mb")}
    out["rss"]["met"] = (result.get("peak_rss_mb") or 0) <= RSS_TARGET_MB
    return out


def text(result: dict[str, Any]) -> str:
    seed = result.get("seed") or {}
    lines = [
        f"users {result['args']['users']:,}; seeded{' with cards' if seed.get('cards') else ''}"
        f" in {seed.get('seconds', 0):.1f}s "
        f"({seed.get('users_per_second', 0):,.0f}/s); "
        f"{seed.get('bytes_per_user', 0):,.0f} database bytes per user; "
        f"server RSS {result.get('rss_mb')} MB (peak {result.get('peak_rss_mb')} MB)",
        "",
    ]
    widths = [19, 6, 8, 8, 8, 8, 7, 10, 9, 7]
    lines.append(
        common.fmt_row(
            [
                "phase",
                "req",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "errors",
                "cpu ms/req",
                "target",
                "status",
            ],
            widths,
        )
    )
    for name, target in result["targets"].items():
        if name == "rss":
            continue
        p = result["phases"].get(name, {})
        if "requests" not in p:
            cells = [name, "-", "-", "-", "-", "-", "-", "-", f"{target['target_ms']:g} ms"]
            lines.append(common.fmt_row([*cells, "MISSING"], widths))
            continue
        lines.append(
            common.fmt_row(
                [
                    name,
                    p["requests"],
                    f"{p['p50_ms']:.2f}",
                    f"{p['p95_ms']:.2f}",
                    f"{p['p99_ms']:.2f}",
                    f"{p['max_ms']:.2f}",
                    p["errors"],
                    f"{p['cpu_ms_per_req']:.2f}",
                    f"{target['target_ms']:g} ms",
                    common.mark(target["met"]),
                ],
                widths,
            )
        )
    rss = result["targets"]["rss"]
    lines.append(
        f"RSS peak {rss['peak_mb']} MB (target {rss['target_mb']:g} MB): {common.mark(rss['met'])}"
    )
    lines.append(f"/metrics cross-check: {result.get('metrics_check')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
