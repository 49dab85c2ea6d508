"""``python -m bench.templates``: edit a template that 100,000 seeded cards inherit, over HTTP.

Serves a fresh hub (``scim-hub serve``), makes an admin key (``scim-hub admin key``), creates a
template over the admin API whose rule matches the users about to be seeded, then seeds them with
their cards (``scim-hub seed``, not HTTP: the rule gives each card the template, as provisioning
would). An admin edits a field on a few cards (unlinked: they must keep it). Then, one request at
a time, it times

* ``edit``: ``PATCH /templates/{id}`` changing two values and adding a field;
* ``drop_field``: ``PATCH /templates/{id}`` leaving a field out (the cards lose it),

each from sending the request until it has answered (committed), plus until a first page of
sampled cards read over the API shows the change; then every sampled card is checked (new values,
admin edits kept, a ``modified`` time no earlier than the edited template's). Cards read their
template's values (``hub.core.cards``), so an edit writes the template row, not the 100,000 cards.
Issue 5 target: an edit of a template inherited by 100,000 cards in ≤ 2 s.
``--spread 7`` (rule on the department) or ``--spread 10`` (on the office phone: 1,000,000 users,
the scale benchmark's size) seeds that many users per inheriting card, so the inheriting cards lie
scattered among the others instead of side by side. ``--profile`` records the server with py-spy
during each edit and prints its hottest frames.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from bench import common, servers

TARGET_CARDS = 100_000
TARGET_S = 2.0
#: --spread -> the rule that picks one seeded user in `spread` (see hub.core.seed.user_document).
RULES = {
    1: 'company_name eq "Contoso"',
    7: 'department eq "Engineering"',
    10: 'office_phone ew "0"',
}
BEFORE = {
    "company_name": "Contoso Ltd",
    "logo_url": "https://cdn.contoso.example/logo-1.png",
    "website": "https://contoso.example",
}
#: The edit: two values change, one field is added, one stays.
EDIT = {
    **BEFORE,
    "company_name": "Contoso Group",
    "logo_url": "https://cdn.contoso.example/logo-2.png",
    "brand_colour": "#0055ff",
}
DROP = {k: v for k, v in EDIT.items() if k != "website"}
ADMIN_VALUE = "Kept by the admin"
JSON_TYPE = "application/json"
PAGE = 50


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.templates", description=__doc__)
    parser.add_argument("--cards", type=int, default=None, help="cards inheriting (100,000)")
    parser.add_argument("--spread", type=int, choices=sorted(RULES), default=1)
    parser.add_argument("--samples", type=int, default=None, help="cards read back (200)")
    parser.add_argument("--smoke", action="store_true", help="300 cards, 20 samples")
    parser.add_argument("--profile", action="store_true", help="py-spy the server per edit")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--seed-timeout", type=float, default=3600.0)
    parser.add_argument("--json", type=Path, default=None, help="append the JSON line to PATH")
    parser.add_argument("--tmpdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    args.cards = args.cards or (300 if args.smoke else TARGET_CARDS)
    args.samples = args.samples or (20 if args.smoke else 200)
    if args.cards < 100 or not 20 <= args.samples <= args.cards:
        parser.error("--cards must be at least 100 and --samples 20 to --cards")
    args.users = args.cards * args.spread
    return args


class Admin:
    """Admin API calls for one workspace, recorded like the SCIM benchmarks' requests."""

    def __init__(self, origin: str, workspace: str, key: str) -> None:
        self.client = common.Client(f"{origin}/api/v1/workspaces/{workspace}", key, 1)
        self.client.session.headers.update({"Content-Type": JSON_TYPE, "Accept": JSON_TYPE})
        self.sent = 0

    async def call(self, rec: common.Recorder, method: str, path: str, body: Any = None) -> Any:
        """One request; its decoded body, or None after recording an error."""
        self.sent += 1
        data = None if body is None else msgspec.json.encode(body)
        return await self.client.call(rec, method, path, data)

    async def close(self) -> None:
        await self.client.close()


def admin_key(env: dict[str, str], workspace: str) -> str:
    out = servers.run_hub_cli(["admin", "key", "--workspace", workspace], env)
    found = re.search(r"admin key: (\S+)", out)
    if found is None:
        raise servers.ServerError(f"scim-hub admin key printed no key:\n{out}")
    return found.group(1)


async def create_template(admin: Admin, spread: int) -> str:
    rec = common.Recorder("setup")
    body = {"name": "Contoso brand", "rule": RULES[spread], "fields": BEFORE}
    made = await admin.call(rec, "POST", "/templates", body)
    if made is None:
        raise servers.ServerError(f"template not created: {rec.error_samples}")
    template_id: str = made["id"]
    return template_id


async def measure(
    server: servers.Server, admin: Admin, template_id: str, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    rng = random.Random(5)
    setup = common.Recorder("setup")
    listed = await admin.call(setup, "GET", f"/cards?template={template_id}&limit=1")
    inheriting = None if listed is None else listed["total"]
    # The sample: pages of 50 of the template's cards at random places, read through the list
    # (reads by card id cost a scan at a million cards: see the report).
    pages: list[str] = []
    sample: list[str] = []
    while len(sample) < args.samples:
        offset = rng.randrange(max(1, (inheriting or 0) - PAGE))
        path = f"/cards?template={template_id}&limit={PAGE}&offset={offset}"
        page = await admin.call(setup, "GET", path)
        if not page or not page["cards"]:
            break
        pages.append(path)
        sample.extend(c["id"] for c in page["cards"] if c["id"] not in sample)
    # Admin edits on a few sampled cards each: a value set by hand, a field unlocked.
    few = min(5, max(1, len(sample) // 10))
    edited, unlocked = set(sample[:few]), set(sample[few : 2 * few])
    for card in edited:
        await admin.call(
            setup, "PATCH", f"/cards/{card}/fields/company_name", {"value": ADMIN_VALUE}
        )
    for card in unlocked:
        await admin.call(setup, "POST", f"/cards/{card}/fields/logo_url/unlock")
    await admin.call(setup, "GET", f"/templates/{template_id}")  # warm-up
    phases: dict[str, Any] = {}
    for name, fields in (("edit", EDIT), ("drop_field", DROP)):
        phases[name] = await timed_edit(server, admin, template_id, name, fields, work, args)
        expected = {card: _expected(fields, card in edited, card in unlocked) for card in sample}
        edited_at = phases[name].pop("template_modified")
        phases[name].update(await verify(admin, pages, expected, edited_at))
        phases[name]["visible_ms"] = round(
            phases[name]["wall_ms"] + phases[name]["first_read_ms"], 1
        )
        common.say(
            f"[templates] {name:<10} {phases[name]['wall_ms']:,.0f} ms (server CPU "
            f"{phases[name]['server_cpu_s']:.2f} s); visible on a card after "
            f"{phases[name]['visible_ms']:,.0f} ms; {phases[name]['verified']} sampled cards"
            f" right, {phases[name]['errors']} wrong"
        )
    return {
        "inheriting": inheriting,
        "sample": len(sample),
        "admin_edited": len(edited),
        "admin_unlocked": len(unlocked),
        "setup_errors": setup.errors + (inheriting != args.cards),
        "setup_error_samples": setup.error_samples,
        "phases": phases,
    }


async def timed_edit(
    server: servers.Server,
    admin: Admin,
    template_id: str,
    name: str,
    fields: dict[str, str],
    work: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    rec = common.Recorder(name)
    raw = work / f"profile-{name}.txt" if args.profile else None
    with common.PySpy(server.pid, raw):
        cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        answer = await admin.call(rec, "PATCH", f"/templates/{template_id}", {"fields": fields})
        wall = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu_before
    figures: dict[str, Any] = {
        "wall_ms": round(wall * 1000, 1),
        "server_cpu_s": round(cpu, 3),
        "answered": answer is not None and answer.get("fields") == fields,
        "request_errors": rec.error_samples,
        "template_modified": "" if answer is None else answer.get("modified", ""),
    }
    if raw is not None:
        figures["profile_top"] = common.top_frames(raw)
    return figures


def _expected(fields: dict[str, str], edited: bool, unlocked: bool) -> dict[str, Any]:
    """What a sampled card's fields must show after the template has `fields`."""
    want: dict[str, Any] = {
        name: {"value": value, "source": "template", "locked": True, "linked": True}
        for name, value in fields.items()
    }
    if edited:
        want["company_name"] = {"value": ADMIN_VALUE, "source": "manual", "linked": False}
    if unlocked:
        want["logo_url"] = {"value": BEFORE["logo_url"], "locked": False, "linked": False}
    if "website" not in fields:
        want["website"] = None  # a template-only field the template dropped: gone
    return want


async def verify(
    admin: Admin, pages: list[str], expected: dict[str, dict[str, Any]], edited_at: str
) -> dict[str, Any]:
    """Read the sample's pages again; every sampled card must show what `expected` says.

    A card's `modified` must be no earlier than `edited_at`, the edited template's (RFC 3339
    UTC timestamps of one fixed width, so they compare as strings).
    """
    rec = common.Recorder("verify")
    first_read_ms = 0.0
    seen: set[str] = set()
    wrong = 0
    problems: list[str] = []
    for i, path in enumerate(pages):
        started = time.perf_counter()
        page = await admin.call(rec, "GET", path)
        if i == 0:
            first_read_ms = (time.perf_counter() - started) * 1000
        for card in (page or {}).get("cards", []):
            want = expected.get(card["id"])
            if want is None or card["id"] in seen:
                continue
            seen.add(card["id"])
            got = card["fields"]
            bad = [
                name
                for name, spec in want.items()
                if (spec is None and name in got)
                or (
                    spec is not None and any(got.get(name, {}).get(k) != v for k, v in spec.items())
                )
            ]
            if card.get("modified", "") < edited_at:
                bad.append("modified")
            if bad:
                wrong += 1
                if len(problems) < 3:
                    seen_values = [got.get(n, card.get(n)) for n in bad]
                    problems.append(f"{card['id']}: {bad} -> {seen_values}")
    missing = len(expected) - len(seen)
    if missing:
        problems.append(f"{missing} sampled cards no longer listed under the template")
    return {
        "first_read_ms": round(first_read_ms, 1),
        "verified": len(seen) - wrong,
        "errors": wrong + missing + rec.errors,
        "error_samples": problems + rec.error_samples,
        "page_read_p50_ms": rec.summary()["p50_ms"],
    }


def _last_json(out: str) -> dict[str, Any]:
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    value: dict[str, Any] = msgspec.json.decode(line)
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = common.base_result(
        "templates",
        argv,
        {"cards": args.cards, "spread": args.spread, "users": args.users, "samples": args.samples},
    )
    try:
        with common.workdir(args.tmpdir, args.keep) as work:
            server = servers.start_hub(work, args.database_url)
            with server:
                origin = common.origin_of(server.base_url)
                workspace = server.tenants[0].workspace
                port = urlsplit(origin).port or 0
                env = servers.hub_env(work, args.database_url, port)
                key = admin_key(env, workspace)

                async def setup() -> str:
                    admin = Admin(origin, workspace, key)
                    try:
                        return await create_template(admin, args.spread)
                    finally:
                        await admin.close()

                template_id = asyncio.run(setup())
                common.say(
                    f"[templates] seeding {args.users:,} users with cards "
                    f"({args.cards:,} inheriting the template)"
                )
                seed_args = ["seed", "--workspace", workspace, "--users", str(args.users), "--json"]
                out = servers.run_hub_cli(seed_args, env, timeout_s=args.seed_timeout)
                result["seed"] = _last_json(out)
                common.say(f"[templates] seeded: {result['seed']}")
                before = common.counted_requests(common.scrape(origin), "/api/v1")

                async def run() -> tuple[dict[str, Any], int]:
                    admin = Admin(origin, workspace, key)
                    try:
                        return await measure(server, admin, template_id, args, work), admin.sent
                    finally:
                        await admin.close()

                figures, sent = asyncio.run(run())
                result.update(figures)
                counted = common.counted_requests(common.scrape(origin), "/api/v1") - before
                result["metrics_check"] = {
                    "sent": sent,
                    "counted": counted,
                    "match": counted == sent,
                }
                result["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
    except KeyboardInterrupt:
        common.say("interrupted: servers stopped")
        return 130
    except (servers.ServerError, TimeoutError) as exc:
        common.say(f"[templates] FAILED: {exc}")
        return 1
    edit = result["phases"]["edit"]
    result["target"] = {
        "target_s": TARGET_S,
        "cards": args.cards,
        "edit_s": round(edit["wall_ms"] / 1000, 3),
        "met": None if args.cards != TARGET_CARDS else edit["wall_ms"] <= TARGET_S * 1000,
    }
    print(text(result))
    common.save(result, "templates", args.json, args.smoke)
    errors = result["setup_errors"] + sum(p["errors"] for p in result["phases"].values())
    answered = all(p["answered"] for p in result["phases"].values())
    return 1 if errors or not answered or result["metrics_check"]["match"] is False else 0


def text(result: dict[str, Any]) -> str:
    seed = result.get("seed") or {}
    a = result["args"]
    lines = [
        f"{a['cards']:,} cards inherit the template among {a['users']:,} seeded users "
        f"(spread {a['spread']}); seeded with cards in {seed.get('seconds', 0):.1f}s "
        f"({seed.get('users_per_second', 0):,.0f} users/s), "
        f"{seed.get('bytes_per_user', 0):,.0f} database bytes per user; server RSS "
        f"{result.get('rss_mb')} MB",
        f"sample: {result['sample']} cards ({result['admin_edited']} with an admin edit, "
        f"{result['admin_unlocked']} unlocked)",
        "",
    ]
    widths = [11, 9, 13, 12, 10, 8, 9, 7]
    header = ["phase", "wall ms", "server CPU s", "visible ms", "verified", "errors", "target"]
    lines.append(common.fmt_row([*header, "status"], widths))
    target = result["target"]
    for name, p in result["phases"].items():
        limit = f"{target['target_s']:g} s" if name == "edit" else "-"
        status = common.mark(target["met"]) if name == "edit" else "-"
        cells = [
            name,
            f"{p['wall_ms']:,.0f}",
            f"{p['server_cpu_s']:.2f}",
            f"{p['visible_ms']:,.0f}",
            p["verified"],
            p["errors"],
            limit,
            status,
        ]
        lines.append(common.fmt_row(cells, widths))
        for sample in p.get("error_samples", []):
            lines.append(f"    {sample}")
        for frame, share in p.get("profile_top", [])[:15]:
            lines.append(f"    {share:5.1f}%  {frame}")
    if target["met"] is None:
        lines.append(f"(target applies at {TARGET_CARDS:,} cards)")
    lines.append(f"/metrics cross-check (admin API): {result.get('metrics_check')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
