"""``python -m bench.soak``: mixed SCIM traffic for minutes; the server's RSS must stay flat.

After creating a pool of users, C connections send a weighted mix for ``--minutes`` (10): get
35%, filter 25%, patch 15%, create 10% (half of them bring back a deleted user), list page 5%,
deactivate/reactivate 5%, delete 5%. The server's RSS (process tree) is sampled every
``--sample-s`` seconds; growth = median of the last fifth of the samples over the median of the
first fifth (issue 5 target: < 10%, no error). Bounded in time and in requests.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from bench import common, servers
from bench.load import entra_patch, entra_user

GROWTH_TARGET = 0.10
MIX = (
    ("get", 35),
    ("filter", 25),
    ("patch", 15),
    ("create", 10),
    ("list", 5),
    ("toggle", 5),
    ("delete", 5),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=None, help="duration (10)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pool", type=int, default=None, help="users created first (2000)")
    parser.add_argument("--sample-s", type=float, default=None, help="RSS sampling period (5)")
    parser.add_argument("--smoke", action="store_true", help="10 seconds, 100 users")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tmpdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.minutes = args.minutes or (1 / 6 if args.smoke else 10.0)
    args.pool = args.pool or (100 if args.smoke else 2000)
    args.sample_s = args.sample_s or (1.0 if args.smoke else 5.0)
    if args.minutes <= 0 or args.concurrency < 1 or args.pool < 1:
        parser.error("--minutes, --concurrency and --pool must be positive")
    return args


class Soak:
    def __init__(self, server: servers.Server, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.client = common.Client(server.base_url, server.token, args.concurrency)
        self.rng = random.Random(7)
        self.recs = {name: common.Recorder(name) for name, _ in MIX}
        self.ids: list[str] = []
        self.names: dict[str, str] = {}
        self.deleted: list[str] = []
        #: users with a request in flight: the harness never deletes one of those (its own race).
        self.busy: collections.Counter[str] = collections.Counter()
        self.next_user = 0
        self.rss: list[tuple[float, int]] = []
        ops, weights = zip(*MIX, strict=True)
        self.ops: list[str] = list(ops)
        self.weights: list[int] = list(weights)

    async def create(self, rec: common.Recorder) -> None:
        if self.deleted and self.rng.random() < 0.5:
            name = self.deleted.pop()
            body: dict[str, Any] = {"schemas": entra_user(0, "s")["schemas"], "userName": name}
        else:
            body = entra_user(self.next_user, "soak")
            self.next_user += 1
        made = await self.client.call(rec, "POST", "/Users", msgspec.json.encode(body), (201,))
        if made is not None and made.get("id"):
            self.ids.append(made["id"])
            self.names[made["id"]] = body["userName"]

    async def one(self, op: str) -> None:
        rec = self.recs[op]
        if op == "create" or not self.ids:
            await self.create(self.recs["create"])
            return
        uid = self.rng.choice(self.ids)
        if op == "delete" and self.busy[uid]:
            op, rec = "get", self.recs["get"]  # deleting a user another request is using races
        self.busy[uid] += 1
        try:
            await self._on(op, rec, uid)
        finally:
            self.busy[uid] -= 1
            if not self.busy[uid]:
                del self.busy[uid]

    async def _on(self, op: str, rec: common.Recorder, uid: str) -> None:
        if op == "get":
            await self.client.call(rec, "GET", f"/Users/{uid}")
        elif op == "filter":
            name = self.names[uid]
            path = "/Users?filter=" + quote(f'userName eq "{name}"', safe="")
            await self.client.call(rec, "GET", path)
        elif op == "patch":
            body = entra_patch("title", f"Title {self.rng.randrange(1000)}")
            await self.client.call(rec, "PATCH", f"/Users/{uid}", body)
        elif op == "list":
            start = self.rng.randrange(max(1, len(self.ids) - 100)) + 1
            await self.client.call(rec, "GET", f"/Users?startIndex={start}&count=100")
        elif op == "toggle":
            body = entra_patch("active", self.rng.random() < 0.5)
            await self.client.call(rec, "PATCH", f"/Users/{uid}", body)
        elif op == "delete":
            self.ids.remove(uid)
            await self.client.call(rec, "DELETE", f"/Users/{uid}", None, (204,))
            self.deleted.append(self.names.pop(uid))

    async def sample(self, stop: asyncio.Event) -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            self.rss.append((round(time.perf_counter() - t0, 1), self.server.rss_bytes()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.args.sample_s)

    async def run(self) -> dict[str, Any]:
        args = self.args
        try:
            pool = iter(range(args.pool))

            async def fill() -> None:
                for _ in pool:
                    await self.create(self.recs["create"])

            await common.bounded([fill() for _ in range(args.concurrency)], 600)
            self.recs = {name: common.Recorder(name) for name, _ in MIX}  # the soak proper
            stop = asyncio.Event()
            sampler = asyncio.ensure_future(self.sample(stop))
            seconds = args.minutes * 60
            deadline = time.perf_counter() + seconds
            budget = iter(range(int(seconds * 5000)))  # a hard cap on requests as well

            async def worker() -> None:
                for _ in budget:
                    if time.perf_counter() > deadline:
                        return
                    await self.one(self.rng.choices(self.ops, self.weights)[0])

            started = time.perf_counter()
            await common.bounded([worker() for _ in range(args.concurrency)], seconds + 60)
            wall = time.perf_counter() - started
            stop.set()
            await sampler
        finally:
            await self.client.close()
        for rec in self.recs.values():
            rec.wall_s = wall
        return self.figures(wall)

    def figures(self, wall: float) -> dict[str, Any]:
        values = [rss for _, rss in self.rss]
        fifth = max(1, len(values) // 5)
        first = statistics.median(values[:fifth]) if values else 0
        last = statistics.median(values[-fifth:]) if values else 0
        growth = (last - first) / first if first else 0.0
        steps = {name: rec.summary() for name, rec in self.recs.items()}
        requests = sum(s["requests"] for s in steps.values())
        return {
            "wall_s": round(wall, 1),
            "requests": requests,
            "rps": round(requests / wall, 1) if wall else 0.0,
            "errors": sum(s["errors"] for s in steps.values()),
            "rss_first_mb": round(first / 2**20, 1),
            "rss_last_mb": round(last / 2**20, 1),
            "rss_max_mb": round(max(values, default=0) / 2**20, 1),
            "rss_growth": round(growth, 4),
            "rss_samples_mb": [(t, round(v / 2**20, 1)) for t, v in self.rss],
            "users_at_end": len(self.ids),
            "steps": steps,
        }


async def soak(server: servers.Server, args: argparse.Namespace) -> dict[str, Any]:
    return await Soak(server, args).run()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = common.base_result(
        "soak",
        argv,
        {"minutes": args.minutes, "concurrency": args.concurrency, "pool": args.pool},
    )
    try:
        with common.workdir(args.tmpdir, args.keep) as work:
            common.say(f"[soak] {args.minutes:g} minutes at concurrency {args.concurrency}")
            server = servers.start_hub(work, args.database_url, args.workers)
            with server:
                origin = common.origin_of(server.base_url)
                before = common.counted_requests(common.scrape(origin))
                cpu_before = server.cpu_seconds()
                figures = asyncio.run(soak(server, args))
                figures["cpu_ms_per_req"] = round(
                    (server.cpu_seconds() - cpu_before) * 1000 / max(1, figures["requests"]), 3
                )
                sent = figures["requests"] + args.pool
                result["metrics_check"] = common.metrics_check(origin, sent, before, args.workers)
            result["soak"] = figures
    except KeyboardInterrupt:
        common.say("interrupted: servers stopped")
        return 130
    except (servers.ServerError, TimeoutError) as exc:
        common.say(f"[soak] FAILED: {exc}")
        return 1
    s = result["soak"]
    s["target_met"] = s["rss_growth"] < GROWTH_TARGET and s["errors"] == 0
    print(
        f"soak {s['wall_s']:.0f}s: {s['requests']:,} requests = {s['rps']:,.1f} req/s, "
        f"errors {s['errors']}, cpu {s['cpu_ms_per_req']:.2f} ms/req\n"
        f"RSS {s['rss_first_mb']} MB -> {s['rss_last_mb']} MB (max {s['rss_max_mb']} MB): "
        f"growth {100 * s['rss_growth']:.1f}% (target < {100 * GROWTH_TARGET:g}%, no error): "
        f"{'met' if s['target_met'] else 'MISSED'}\n"
        f"/metrics cross-check: {result.get('metrics_check')}"
    )
    for name, step in s["steps"].items():
        print(
            f"  {name:<8} {step['requests']:>7} req  p50 {step['p50_ms']:.2f} ms"
            f"  p99 {step['p99_ms']:.2f} ms  errors {step['errors']}  {step['error_samples'][:1]}"
        )
    common.save(result, "soak", args.json, args.smoke)
    return 0 if s["errors"] == 0 and result["metrics_check"]["match"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
