"""Crashes: SIGKILL a real server at random moments under write load; nothing acknowledged is lost.

Each round starts (or restarts) `scim-hub serve`, runs concurrent creates, PATCHes and group
membership changes against it, and kills the whole process group with SIGKILL at a random
moment. After the restart the test checks, through HTTP and in the database:

* every request answered 2xx is there: created users exist, PATCHed emails are on their user,
  added members are in their group, removed members are gone;
* nothing is half-written: no duplicate userName, no membership of a missing user or group, every
  user has its card (when the cards table exists) and every user created with a 2xx has exactly
  one activation email in the outbox (when the outbox table exists);
* no email is sent twice: once the outbox is drained, each user's invitation exists as exactly
  one delivered message file, whatever the number of crashes in between.

Runs on SQLite and PostgreSQL. `SCIM_HUB_TEST_CRASH_ROUNDS` rounds (default 3; a soak run
sets more), seeded by `SCIM_HUB_TEST_CRASH_SEED` (default: a fixed seed). The rounds' kill
moments are spread over the load's first 0.8 s, one in each equal slice of it, so a few rounds
still kill the load early, midway and late.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GROUP_URN, PATCH_URN, SCIM_JSON, USER_URN
from tests.dbstate import query, table_names
from tests.hubprocess import HubProcess
from tests.pg import create_database, drop_database

#: A round's cost is mostly the server's restart (7 starts made ~2/3 of the 38 s that 6 rounds
#: took); kill moments spread over the load's span keep its cover with fewer rounds.
ROUNDS = int(os.environ.get("SCIM_HUB_TEST_CRASH_ROUNDS", "3"))
#: The span of the load (seconds) the kill moments are spread over.
KILL_WITHIN = (0.05, 0.8)
SEED = int(os.environ.get("SCIM_HUB_TEST_CRASH_SEED", "20240607"))
WORKERS = 8  # concurrent clients during the load


@dataclass
class Acknowledged:
    """What the server answered 2xx to (so must still be there after any crash)."""

    users: dict[str, str] = field(default_factory=dict)  # id -> userName
    emails: dict[str, set[str]] = field(default_factory=dict)  # user id -> added email values
    members: dict[str, set[str]] = field(default_factory=dict)  # group id -> added user ids
    removed: dict[str, set[str]] = field(default_factory=dict)  # group id -> removed user ids
    #: group id -> user ids whose removal was sent (answered or not: it may have committed)
    removing: dict[str, set[str]] = field(default_factory=dict)
    requests: int = 0
    lost_connections: int = 0


class Client:
    """SCIM calls to the server under test; raises `httpx.TransportError` once it is dead."""

    def __init__(self, http: httpx.AsyncClient, hub: HubProcess) -> None:
        self.http = http
        self.hub = hub

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.hub.token}", "Accept": SCIM_JSON}
        if body is not None:
            headers["Content-Type"] = SCIM_JSON
        return await self.http.request(
            method, self.hub.tenant_url + path, json=body, headers=headers
        )

    async def create_user(self, tag: str) -> httpx.Response:
        user_name = f"{tag}-{uuid.uuid4().hex[:12]}@example.com"
        return await self.call(
            "POST",
            "/Users",
            {
                "schemas": [USER_URN],
                "userName": user_name,
                "name": {"givenName": "Crash", "familyName": tag},
                "emails": [{"value": user_name, "type": "work", "primary": True}],
            },
        )

    async def patch(self, path: str, *operations: dict[str, Any]) -> httpx.Response:
        body = {"schemas": [PATCH_URN], "Operations": list(operations)}
        return await self.call("PATCH", path, body)


# --------------------------------------------------------------------------- targets


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubProcess]:
    """A server (not started yet) over a fresh, prepared database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        server = None
    else:
        server = request.getfixturevalue("postgres_server_url")
        url = create_database(server)
    process = HubProcess(
        url,
        tmp_path / "server",
        mail_poll_ms="200",
        # A message claimed by a killed server is taken over when its lease ends.
        mail_lease_ms="1500",
    )
    try:
        process.prepare()
        yield process
    finally:
        process.stop()
        if server is not None:
            drop_database(server, url.rsplit("/", 1)[1])


# --------------------------------------------------------------------------- load


async def _seed_round(client: Client, tag: str, seen: Acknowledged) -> tuple[str, list[str]]:
    """Before the load: a group with five members (all acknowledged)."""
    seed = []
    for _ in range(5):
        response = await client.create_user(f"{tag}-seed")
        assert response.status_code == 201, response.text
        seed.append(response.json()["id"])
        seen.users[seed[-1]] = response.json()["userName"]
    group = await client.call(
        "POST",
        "/Groups",
        {
            "schemas": [GROUP_URN],
            "displayName": f"crash-{tag}",
            "members": [{"value": uid} for uid in seed],
        },
    )
    assert group.status_code == 201, group.text
    group_id = str(group.json()["id"])
    seen.members[group_id] = set(seed)
    seen.removed[group_id] = set()
    seen.removing[group_id] = set()
    return group_id, seed


async def _worker(
    client: Client,
    rng: random.Random,
    tag: str,
    group_id: str,
    removable: list[str],
    seen: Acknowledged,
) -> None:
    """Write until the server dies under us; record every 2xx."""
    mine: list[str] = []
    while True:
        action = rng.random()
        try:
            if action < 0.4 or not mine:
                response = await client.create_user(tag)
                seen.requests += 1
                if response.status_code == 201:
                    body = response.json()
                    seen.users[body["id"]] = body["userName"]
                    mine.append(body["id"])
            elif action < 0.7:
                uid = rng.choice(mine)
                value = f"extra-{uuid.uuid4().hex[:12]}@example.org"
                response = await client.patch(
                    f"/Users/{uid}", {"op": "add", "path": "emails", "value": [{"value": value}]}
                )
                seen.requests += 1
                if response.status_code == 200:
                    seen.emails.setdefault(uid, set()).add(value)
            elif action < 0.9 or not removable:
                uid = rng.choice(mine)
                response = await client.patch(
                    f"/Groups/{group_id}",
                    {"op": "add", "path": "members", "value": [{"value": uid}]},
                )
                seen.requests += 1
                if response.status_code == 204:  # a member-only PATCH: no body
                    seen.members[group_id].add(uid)
            else:
                uid = removable.pop()
                seen.removing[group_id].add(uid)
                response = await client.patch(
                    f"/Groups/{group_id}", {"op": "remove", "path": f'members[value eq "{uid}"]'}
                )
                seen.requests += 1
                if response.status_code == 204:
                    seen.removed[group_id].add(uid)
        except httpx.TransportError:
            seen.lost_connections += 1
            return
        assert response.status_code < 500, response.text


async def _round(hub: HubProcess, rng: random.Random, number: int, seen: Acknowledged) -> None:
    """Seed, start the load, SIGKILL the server at a random moment during it."""
    tag = f"r{number}"
    limits = httpx.Limits(max_connections=WORKERS * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        client = Client(http, hub)
        group_id, seed = await _seed_round(client, tag, seen)
        removable = list(seed)
        rng.shuffle(removable)
        workers = [
            asyncio.create_task(
                _worker(client, random.Random(rng.random()), tag, group_id, removable, seen)
            )
            for _ in range(WORKERS)
        ]
        # One kill moment in each of ROUNDS equal slices of the span, the slices taken in turn.
        low, high = KILL_WITHIN
        width = (high - low) / ROUNDS
        start = low + width * (number % ROUNDS)
        await asyncio.sleep(rng.uniform(start, start + width))
        await asyncio.to_thread(hub.kill)
        await asyncio.wait_for(asyncio.gather(*workers), 60)


# --------------------------------------------------------------------------- checks


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _check_database(hub: HubProcess, seen: Acknowledged) -> None:
    url = hub.database_url
    tables = table_names(url)
    users = {row[0]: row for row in query(url, "SELECT id, user_name_key, data, pk FROM users")}
    missing = set(seen.users) - set(users)
    assert not missing, f"{len(missing)} acknowledged users lost: {sorted(missing)[:5]}"
    keys = [row[1] for row in users.values()]
    assert len(keys) == len(set(keys)), "duplicate userName"
    for uid, added in seen.emails.items():
        stored = {e["value"] for e in _json(users[uid][2]).get("emails", [])}
        assert added <= stored, f"acknowledged emails of {uid} lost: {added - stored}"
    orphans = query(
        url,
        "SELECT m.group_pk, m.user_pk FROM memberships m "
        "LEFT JOIN users u ON u.pk = m.user_pk LEFT JOIN groups g ON g.pk = m.group_pk "
        "WHERE u.pk IS NULL OR g.pk IS NULL",
    )
    assert orphans == [], orphans
    if "cards" in tables:
        without = query(
            url,
            "SELECT u.id FROM users u LEFT JOIN cards c ON c.user_pk = u.pk WHERE c.pk IS NULL",
        )
        assert without == [], f"users without a card: {without[:5]}"
    if "outbox_messages" in tables:
        pk_of = {uid: row[3] for uid, row in users.items()}
        counts: dict[int, int] = {}
        for (user_pk,) in query(
            url, "SELECT user_pk FROM outbox_messages WHERE purpose = 'activation'"
        ):
            counts[user_pk] = counts.get(user_pk, 0) + 1
        for uid in seen.users:
            assert counts.get(pk_of[uid]) == 1, f"user {uid}: {counts.get(pk_of[uid])} emails"


async def _check_http(hub: HubProcess, seen: Acknowledged) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = Client(http, hub)
        for group_id, added in seen.members.items():
            response = await client.call("GET", f"/Groups/{group_id}")
            assert response.status_code == 200, response.text
            members = {m["value"] for m in response.json().get("members", [])}
            removed = seen.removed[group_id]
            kept = added - seen.removing[group_id]
            assert kept <= members, f"lost members: {kept - members}"
            assert not (removed & members), f"removed members back: {removed & members}"
        sample = list(seen.emails)[:40] + list(seen.users)[-40:]
        responses = await asyncio.gather(*(client.call("GET", f"/Users/{uid}") for uid in sample))
        for uid, response in zip(sample, responses, strict=True):
            assert response.status_code == 200, response.text
            assert response.json()["userName"] == seen.users[uid]
            values = {e["value"] for e in response.json().get("emails", [])}
            assert seen.emails.get(uid, set()) <= values


def _drain_outbox(hub: HubProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not query(hub.database_url, "SELECT pk FROM outbox_messages WHERE status = 'queued'"):
            return
        time.sleep(0.1)
    raise AssertionError(f"the outbox did not drain in {timeout} s\n{hub.stderr_tail()}")


def _check_emails(hub: HubProcess, seen: Acknowledged) -> None:
    """Every invitation delivered exactly once: one message file per user, none failed."""
    if "outbox_messages" not in table_names(hub.database_url):
        return
    _drain_outbox(hub)
    rows = query(
        hub.database_url,
        "SELECT o.id, o.status, o.recipient, u.id FROM outbox_messages o "
        "JOIN users u ON u.pk = o.user_pk WHERE o.purpose = 'activation'",
    )
    assert {row[1] for row in rows} == {"sent"}, sorted({row[1] for row in rows})
    files: dict[str, list[str]] = {}
    for path in (hub.workdir / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes())
        files.setdefault(str(message["To"]), []).append(str(message["Message-ID"]))
    for outbox_id, _status, recipient, user_id in rows:
        assert files.get(recipient) == [f"<{outbox_id}@localhost>"], (user_id, files.get(recipient))
    sent_to = {row[2] for row in rows}
    assert set(files) == sent_to, "a message file without an outbox row"
    assert {seen.users[uid] for uid in seen.users} <= sent_to


# --------------------------------------------------------------------------- the test


async def test_sigkill_under_load_loses_nothing_acknowledged(hub: HubProcess) -> None:
    rng = random.Random(SEED)
    seen = Acknowledged()
    await asyncio.to_thread(hub.start)
    for number in range(ROUNDS):
        await _round(hub, rng, number, seen)
        assert hub.process is not None
        assert hub.process.poll() is not None, "the server survived SIGKILL"
        await asyncio.to_thread(hub.start)
        _check_database(hub, seen)
        await _check_http(hub, seen)
    _check_emails(hub, seen)
    assert seen.lost_connections >= ROUNDS, "the kills did not interrupt the load"
    assert len(seen.users) > 10 * ROUNDS
    assert sum(len(v) for v in seen.emails.values()) > 0
    assert sum(len(v) for v in seen.removed.values()) > 0


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs to fill (mounting one needs root), unmounted at the end."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace')}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(path: Path) -> None:
    """Write zeros into `path` until its file system has no byte left."""
    chunk = bytes(64 * 1024)
    with path.open("wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError:
            pass
        try:
            while True:
                filler.write(b"\0")
        except OSError:
            return


async def test_a_full_disk_refuses_writes_with_503_and_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    """SQLite on a full disk (SQLITE_FULL): each write is a 503 SCIM error with Retry-After
    that changed nothing; reads go on; writes succeed again once space returns, and everything
    acknowledged before, during and after is there after a restart."""
    hub = HubProcess(f"sqlite+aiosqlite:///{small_disk / 'hub.db'}", tmp_path / "server")
    try:
        hub.prepare()
        await asyncio.to_thread(hub.start)
        acknowledged: dict[str, str] = {}
        refused: list[str] = []
        async with httpx.AsyncClient(timeout=30) as http:
            client = Client(http, hub)

            async def create(tag: str) -> httpx.Response:
                response = await client.create_user(tag)
                if response.status_code == 201:
                    acknowledged[response.json()["id"]] = response.json()["userName"]
                return response

            for _ in range(5):
                assert (await create("before")).status_code == 201
            _fill(small_disk / "filler")
            answers: list[httpx.Response] = []
            for _ in range(100):  # the WAL's free frames take some writes yet
                batch = await asyncio.gather(*(create("full") for _ in range(8)))
                answers += batch
                if all(r.status_code == 503 for r in batch):
                    break
            for response in answers:
                if response.status_code == 201:
                    continue
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith(SCIM_JSON)
                assert response.json()["status"] == "503"
                assert int(response.headers["retry-after"]) >= 1
                refused.append(json.loads(response.request.content)["userName"])
            assert refused, "the full disk refused nothing"
            some = next(iter(acknowledged))
            patched = await client.patch(
                f"/Users/{some}", {"op": "replace", "path": "title", "value": "Full"}
            )
            assert patched.status_code == 503, patched.text
            listed = await client.call("GET", "/Users?count=1")
            assert listed.status_code == 200, listed.text

            (small_disk / "filler").unlink()
            assert (await create("after")).status_code == 201
        await asyncio.to_thread(hub.stop)
        await asyncio.to_thread(hub.start)
        users = dict(query(hub.database_url, "SELECT id, user_name FROM users"))
        assert users == acknowledged
        assert not set(refused) & set(users.values())
        titled = query(hub.database_url, f"SELECT data FROM users WHERE id = '{some}'")
        assert "title" not in _json(titled[0][0])
    finally:
        hub.stop()
