"""``python -m bench.groups``: group membership sync the way Entra ID and Okta do it.

An IdP keeps a group's members in step one change at a time: each user assigned to a group is one
``PATCH /Groups/{id}`` adding that one member, each unassignment one PATCH removing it. A server
whose PATCH costs grow with the group (it reads, rewrites or answers with the whole member list
on every change) makes building a group of N members cost O(N²): the thousandth member is added
far more slowly than the first. This benchmark shows that, hub and peer side by side:

1. users: ``POST /Users`` with the body Entra sends, ``--users`` of them (recorded, not the point);
2. groups: per group, Entra's look-up ``GET /Groups?filter=displayName eq "…"
   &excludedAttributes=members`` (expect none) then ``POST /Groups`` with no members;
3. members: one PATCH per membership, Entra's form (``{"op":"Add","path":"members",
   "value":[{"value":"<id>"}]}``, 200 or 204): every user joins the first ("large") group, which
   grows to ``--users`` members, and one of the other groups round-robin. The large group's first
   10% and last 10% of PATCHes are also reported apart: their p50 ratio is the growth in cost;
4. remove: every 10th member leaves the large group with the filtered path Okta and Entra send
   (``{"op":"remove","path":"members[value eq \\"<id>\\"]"}``, 200 or 204);
5. verify: ``GET /Groups/{large id}`` must list exactly the members expected (an error if not).

Server CPU (from /proc) is read around each phase. For the hub, /metrics is read afterwards and
its request count checked against the requests sent (one worker only: each worker counts its own).
``--postgres --workers 1,2`` runs the hub on a throwaway PostgreSQL cluster (durable commits) with
each number of worker processes in turn, a fresh database each, and reports the 1→N scaling: the
membership writes of a workspace take turns on PostgreSQL (an advisory lock), so this is where a
second worker's help shows or does not. Exit status 1 on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from bench import common, report, servers
from bench.load import PATCH_SCHEMA, entra_user

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PHASES = ("users", "groups", "members", "remove")
EDGE_SHARE = 10  # the large group's first and last 1/10 of PATCHes are reported apart
REMOVE_EVERY = 10  # every 10th member of the large group is removed
OUTBOX_GAUGE = "scim_hub_outbox_depth"

_encode = msgspec.json.encode
#: (recorder, path, body) of one PATCH.
Patch = tuple[common.Recorder, str, bytes]
#: (label, server, worker processes) of one server's run.
Run = tuple[str, str, int]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.groups", description=__doc__)
    parser.add_argument("--users", type=int, default=None, help="users (2,000)")
    parser.add_argument("--groups", type=int, default=None, help="groups (10)")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (16)")
    parser.add_argument("--servers", default="hub,peer", help="comma list of hub,peer")
    parser.add_argument("--smoke", action="store_true", help="60 users, 3 groups, concurrency 4")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per server")
    parser.add_argument("--json", type=Path, default=None, help="append the JSON line to PATH")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the work directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--workers", default="1", help="hub worker processes; a comma list benches each (1,2)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="the hub on a throwaway PostgreSQL cluster"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.users = args.users if args.users is not None else (60 if smoke else 2000)
    args.groups = args.groups if args.groups is not None else (3 if smoke else 10)
    args.concurrency = args.concurrency if args.concurrency is not None else (4 if smoke else 16)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.server_list:
        if name not in ("hub", "peer"):
            parser.error(f"unknown server {name!r}; expected hub or peer")
    if args.users < 1 or args.groups < 1 or args.concurrency < 1:
        parser.error("--users, --groups and --concurrency must be at least 1")
    args.worker_list = common.worker_counts(parser, args.workers)
    return args


def flag(rec: common.Recorder, problem: str) -> None:
    """Count an error found in an accepted answer (a wrong total, a missing id …)."""
    rec.errors += 1
    if len(rec.error_samples) < 3:
        rec.error_samples.append(problem[:300])


def merged(name: str, recs: list[common.Recorder], wall_s: float) -> common.Recorder:
    out = common.Recorder(name, wall_s=wall_s)
    for rec in recs:
        out.latencies_ms += rec.latencies_ms
        out.errors += rec.errors
        out.error_samples += rec.error_samples
        for status, n in rec.status_counts.items():
            out.status_counts[status] = out.status_counts.get(status, 0) + n
    out.error_samples = out.error_samples[:3]
    return out


def latency_only(rec: common.Recorder) -> dict[str, Any]:
    """A sub-series interleaved with others: its latencies count, its own req/s would not."""
    summary = rec.summary()
    for key in ("wall_s", "rps"):
        summary.pop(key)
    return summary


def group_body(g: int, tag: str) -> dict[str, Any]:
    return {
        "schemas": [GROUP_SCHEMA],
        "displayName": f"Bench group {tag} {g:03d}",
        "externalId": f"{tag}-group-{g:03d}",
    }


def add_member(user_id: str) -> bytes:
    op = {"op": "Add", "path": "members", "value": [{"value": user_id}]}
    return _encode({"schemas": [PATCH_SCHEMA], "Operations": [op]})


def remove_member(user_id: str) -> bytes:
    op = {"op": "remove", "path": f'members[value eq "{user_id}"]'}
    return _encode({"schemas": [PATCH_SCHEMA], "Operations": [op]})


class GroupSync:
    """One server's run: its client, the ids it created and the figures of each phase."""

    def __init__(
        self, server: servers.Server, args: argparse.Namespace, tag: str, label: str
    ) -> None:
        self.server, self.args, self.tag, self.label = server, args, tag, label
        self.client = common.Client(server.base_url, server.token, args.concurrency)
        self.deadline: float = time.perf_counter() + args.timeout
        self.user_ids: list[str | None] = [None] * args.users
        self.group_ids: list[str | None] = [None] * args.groups
        self.removed: list[str] = []
        self.phases: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, dict[str, Any]] = {}

    def left(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    def late(self) -> bool:
        return time.perf_counter() > self.deadline

    # -- phase runner -------------------------------------------------------------------------

    async def phase(
        self,
        name: str,
        workers: Callable[[], list[Awaitable[None]]],
        recs: list[common.Recorder],
    ) -> None:
        """Run `workers` to completion (or the deadline), then record the phase's figures."""
        cpu_before = self.server.cpu_seconds()
        started = time.perf_counter()
        finished = await common.bounded(workers(), self.left())
        wall_s = time.perf_counter() - started
        await self.drain_outbox()  # a hub phase's queued emails are its work too
        cpu_s = self.server.cpu_seconds() - cpu_before
        total = merged(name, recs, wall_s)
        if not finished:
            flag(total, f"deadline of {self.args.timeout:.0f}s reached: phase cut off")
        summary = total.summary()
        summary["timed_out"] = not finished
        summary["cpu_s"] = round(cpu_s, 3)
        summary["cpu_ms_per_req"] = round(cpu_s * 1000 / max(1, summary["requests"]), 4)
        self.phases[name] = summary
        common.say(
            f"[{self.label}] {name:<8} {summary['requests']:>6} req"
            f" {summary['rps']:>9,.1f} req/s  p99 {summary['p99_ms']:.1f} ms"
            f"  errors {summary['errors']}"
        )

    async def drain_outbox(self) -> None:
        """Wait (bounded) until the hub's /metrics shows no activation email left to send."""
        if self.server.name != "hub":
            return
        origin = common.origin_of(self.server.base_url)
        deadline = time.perf_counter() + min(120.0, self.left())
        while time.perf_counter() < deadline:
            text = await asyncio.to_thread(common.scrape, origin)
            if not common.gauge(text, OUTBOX_GAUGE):
                return
            await asyncio.sleep(0.1)

    def workers(self, make: Callable[[], Awaitable[None]], count: int) -> list[Awaitable[None]]:
        return [make() for _ in range(max(1, min(count, self.args.concurrency)))]

    # -- users --------------------------------------------------------------------------------

    async def users(self) -> None:
        rec = common.Recorder("users")
        todo = iter(range(self.args.users))

        def make() -> list[Awaitable[None]]:
            return self.workers(lambda: self.create_users(todo, rec), self.args.users)

        await self.phase("users", make, [rec])

    async def create_users(self, todo: Iterator[int], rec: common.Recorder) -> None:
        for i in todo:
            if self.late():
                return
            body = _encode(entra_user(i, self.tag))
            made = await self.client.call(rec, "POST", "/Users", body, (201,))
            if made is not None and isinstance(made.get("id"), str):
                self.user_ids[i] = made["id"]
            elif made is not None:
                flag(rec, "201 without an id")

    # -- groups -------------------------------------------------------------------------------

    async def groups(self) -> None:
        lookup, create = common.Recorder("lookup"), common.Recorder("create")
        todo = iter(range(self.args.groups))

        def make() -> list[Awaitable[None]]:
            return self.workers(lambda: self.create_groups(todo, lookup, create), self.args.groups)

        await self.phase("groups", make, [lookup, create])
        self.steps["lookup"], self.steps["create"] = latency_only(lookup), latency_only(create)

    async def create_groups(
        self, todo: Iterator[int], lookup: common.Recorder, create: common.Recorder
    ) -> None:
        for g in todo:
            if self.late():
                return
            body = group_body(g, self.tag)
            query = quote(f'displayName eq "{body["displayName"]}"', safe="")
            path = f"/Groups?filter={query}&excludedAttributes=members"
            found = await self.client.call(lookup, "GET", path, expect=(200,))
            if found is not None and found.get("totalResults") != 0:
                flag(lookup, f"look-up found {found.get('totalResults')!r} groups, expected 0")
            made = await self.client.call(create, "POST", "/Groups", _encode(body), (201,))
            if made is not None and isinstance(made.get("id"), str):
                self.group_ids[g] = made["id"]
            elif made is not None:
                flag(create, "201 without an id")

    # -- membership ---------------------------------------------------------------------------

    def membership_plan(self, recs: dict[str, common.Recorder]) -> list[Patch]:
        """Each user into the large group and into one other group (round-robin), interleaved."""
        users = [u for u in self.user_ids if u is not None]
        large, others = self.group_ids[0], [g for g in self.group_ids[1:] if g is not None]
        edge = max(1, len(users) // EDGE_SHARE)
        plan: list[Patch] = []
        for k, uid in enumerate(users):
            if large is not None:
                part = "first" if k < edge else ("last" if k >= len(users) - edge else "middle")
                plan.append((recs[part], f"/Groups/{large}", add_member(uid)))
            if others:
                plan.append((recs["others"], f"/Groups/{others[k % len(others)]}", add_member(uid)))
        return plan

    async def members(self) -> None:
        recs = {n: common.Recorder(n) for n in ("first", "middle", "last", "others")}
        plan = self.membership_plan(recs)
        todo = iter(plan)
        await self.phase(
            "members",
            lambda: self.workers(lambda: self.send_patches(todo), len(plan)),
            list(recs.values()),
        )
        self.steps["large_first_10pct"] = latency_only(recs["first"])
        self.steps["large_last_10pct"] = latency_only(recs["last"])

    async def send_patches(self, todo: Iterator[Patch]) -> None:
        for rec, path, body in todo:
            if self.late():
                return
            await self.client.call(rec, "PATCH", path, body, (200, 204))

    # -- removal and check --------------------------------------------------------------------

    async def remove(self) -> None:
        rec = common.Recorder("remove")
        large = self.group_ids[0]
        users = [u for u in self.user_ids if u is not None]
        self.removed = users[::REMOVE_EVERY] if large is not None else []
        plan: list[Patch] = [(rec, f"/Groups/{large}", remove_member(u)) for u in self.removed]
        if large is None:
            flag(rec, "the large group was not created: nothing to remove from")
        todo = iter(plan)
        await self.phase(
            "remove", lambda: self.workers(lambda: self.send_patches(todo), len(plan)), [rec]
        )

    async def verify(self) -> dict[str, Any]:
        rec = common.Recorder("verify")
        expected = sorted(set(u for u in self.user_ids if u is not None) - set(self.removed))
        want = self.args.users - len(self.removed)
        found: list[str] | None = None
        if self.group_ids[0] is not None:
            group = await self.client.call(rec, "GET", f"/Groups/{self.group_ids[0]}", None, (200,))
            if group is not None:
                found = sorted(str(m.get("value")) for m in group.get("members") or [])
        count = None if found is None else len(found)
        if found is None:
            flag(rec, "the large group could not be read")
        elif count != want or found != expected:
            flag(rec, f"the large group has {count} members, expected {want}")
        rec.stop()
        return {**rec.summary(), "member_count": count, "expected_members": want}

    async def run(self) -> dict[str, Any]:
        try:
            await self.users()
            await self.groups()
            await self.members()
            await self.remove()
            verify = await self.verify()
        finally:
            await self.client.close()
        return {"phases": self.phases, "steps": self.steps, "verify": verify}


# --- one server, the table, main ----------------------------------------------------------------


async def sync(
    server: servers.Server, args: argparse.Namespace, tag: str, label: str
) -> dict[str, Any]:
    return await GroupSync(server, args, tag, label).run()  # its aiohttp session needs a loop


def bench_server(
    run: Run, work: Path, args: argparse.Namespace, tag: str, database_url: str | None = None
) -> dict[str, Any]:
    """Start the run's server, sync against it, stop it; for the hub also cross-check /metrics."""
    label, name, workers = run
    directory = work / label
    directory.mkdir()
    server = servers.start(name, directory, database_url, workers)
    common.say(f"[{label}] up at {server.base_url}")
    with server:
        origin = common.origin_of(server.base_url)
        before = common.counted_requests(common.scrape(origin)) if name == "hub" else 0
        out: dict[str, Any] = {"base_url": server.base_url, "notes": server.notes}
        out.update(asyncio.run(sync(server, args, tag, label)))
        if server.process.poll() is not None:
            raise servers.ServerError(f"{label} died during the run:\n{server.log_tail()}")
        out["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
        if name == "hub":
            out["workers"] = workers
            sent = sum(p["requests"] for p in out["phases"].values()) + out["verify"]["requests"]
            out["metrics_check"] = common.metrics_check(origin, sent, before, workers)
    out["growth_p50"] = growth(out["steps"])
    out["errors"] = server_errors(out)
    return out


def growth(steps: dict[str, dict[str, Any]]) -> float | None:
    """p50 of the large group's last 10% of adds over its first 10%'s."""
    first, last = steps.get("large_first_10pct"), steps.get("large_last_10pct")
    if not first or not last or not first["p50_ms"]:
        return None
    return round(float(last["p50_ms"]) / float(first["p50_ms"]), 2)


def server_errors(out: dict[str, Any]) -> int:
    errors: int = sum(p["errors"] for p in out["phases"].values()) + out["verify"]["errors"]
    return errors + (1 if out.get("metrics_check", {}).get("match") is False else 0)


ROW_WIDTHS = [6, 18, 8, 9, 8, 8, 8, 6, 10]


def fmt_row(cells: list[Any]) -> str:
    """Server and phase left-aligned, figures right-aligned."""
    left = [f"{c:<{w}}" for c, w in zip(cells[:2], ROW_WIDTHS[:2], strict=True)]
    right = [f"{c:>{w}}" for c, w in zip(cells[2:], ROW_WIDTHS[2:], strict=True)]
    return " ".join(left + right)


def rows(name: str, server: dict[str, Any]) -> list[list[Any]]:
    def row(phase: str, s: dict[str, Any], sub: bool = False) -> list[Any]:
        rps = "-" if sub else f"{s['rps']:,.1f}"
        cpu = "-" if sub or "cpu_ms_per_req" not in s else f"{s['cpu_ms_per_req']:.3f}"
        pcts = [f"{s[k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")]
        return [name, phase, s["requests"], rps, *pcts, s["errors"], cpu]

    out = []
    for phase, s in server["phases"].items():
        out.append(row(phase, s))
        if phase == "members":
            out.append(row("  large first 10%", server["steps"]["large_first_10pct"], True))
            out.append(row("  large last 10%", server["steps"]["large_last_10pct"], True))
    out.append(row("verify", server["verify"], True))
    return out


def text_table(result: dict[str, Any]) -> str:
    head = ["server", "phase", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"]
    lines = [fmt_row([*head, "cpu ms/req"])]
    for name, server in result["servers"].items():
        if "error" in server:
            lines.append(f"{name:<6} FAILED: {server['error'].splitlines()[0]}")
            continue
        lines += [fmt_row(r) for r in rows(name, server)]
    for phase, ratio in result["ratios"].get("hub/peer", {}).items():
        lines.append(f"hub/peer req/s {phase:<8} {ratio:.2f}x")
    for pair, phases in result.get("scaling", {}).items():
        lines += [f"{pair} req/s {phase:<8} {ratio:.2f}x" for phase, ratio in phases.items()]
    for name, server in result["servers"].items():
        if "error" in server:
            continue
        first, last = (
            server["steps"][k]["p50_ms"] for k in ("large_first_10pct", "large_last_10pct")
        )
        lines.append(
            f"{name}: large group PATCH p50, last 10% vs first 10%: {last:.2f} / {first:.2f} ms"
            f" = {server['growth_p50']}x; members at the end {server['verify']['member_count']}"
            f" (expected {server['verify']['expected_members']})"
        )
    if "hub" in result["servers"] and "metrics_check" in result["servers"]["hub"]:
        lines.append(f"hub /metrics cross-check: {result['servers']['hub']['metrics_check']}")
    return "\n".join(lines)


def planned_runs(args: argparse.Namespace) -> list[Run]:
    """(label, server, workers) of each run: the hub once per worker count ("hub", "hub-2w")."""
    out: list[Run] = []
    for name in args.server_list:
        if name != "hub":
            out.append((name, name, 1))
            continue
        out += [("hub" if w == 1 else f"hub-{w}w", "hub", w) for w in args.worker_list]
    return out


def run_all(args: argparse.Namespace, result: dict[str, Any]) -> None:
    tag = f"g{int(time.time())}"
    with common.workdir(args.tmpdir, args.keep) as work, _cluster(args.postgres) as cluster:
        for run in planned_runs(args):
            label = run[0]
            common.say(f"[{label}] {args.users:,} users, {args.groups} groups, c{args.concurrency}")
            try:
                database_url = _database(cluster) if run[1] == "hub" else None
                result["servers"][label] = bench_server(run, work, args, tag, database_url)
            except (servers.ServerError, TimeoutError, OSError, RuntimeError) as exc:
                common.say(f"[{label}] FAILED: {exc}")
                result["servers"][label] = {"error": str(exc)}


@contextlib.contextmanager
def _cluster(wanted: bool) -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for the hub's runs when `wanted`, else None."""
    if not wanted:
        yield None
        return
    from bench import pg

    cluster = pg.BenchCluster()
    cluster.start()
    common.say(f"[postgres] throwaway cluster at {cluster.url}")
    try:
        yield cluster
    finally:
        cluster.stop()


def _database(cluster: Any) -> str | None:
    """A fresh database on `cluster` for one run, or None (SQLite in the run's directory)."""
    if cluster is None:
        return None
    from bench import pg

    return pg.create_database(cluster.url)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = {
        "users": args.users,
        "groups": args.groups,
        "concurrency": args.concurrency,
        "workers": args.worker_list,
        "database": "postgresql" if args.postgres else "sqlite",
    }
    result = common.base_result("groups", argv, {**settings, "servers": args.server_list})
    result["servers"] = {}
    try:
        run_all(args, result)
    except KeyboardInterrupt:
        common.say("interrupted: servers stopped")
        return 130
    result["ratios"] = report.ratios(result["servers"])
    result["scaling"] = report.scaling(result["servers"])
    failed = [n for n, s in result["servers"].items() if "error" in s]
    result["failed_servers"] = failed
    result["errors_total"] = sum(s.get("errors", 0) for s in result["servers"].values())
    print(text_table(result))
    common.save(result, "groups-postgres" if args.postgres else "groups", args.json, args.smoke)
    return 1 if failed or result["errors_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
