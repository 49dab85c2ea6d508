"""Concurrency: racing SCIM writes end exactly as the rules say, with nothing lost.

Each test runs against four targets: the in-process app on SQLite and on PostgreSQL, a real
`scim-hub serve` on SQLite, and a real server with 2 worker processes on PostgreSQL (so the
race crosses processes and connections, as behind a load balancer).

* 64 concurrent creates of one userName: exactly one 201, the others 409 `uniqueness`; the same
  for 32 creates of one group displayName.
* 50 concurrent PATCHes with one `If-Match`: one 200, the others 412; then 50 writers retrying
  on 412: exactly one success per version, and every write lands.
* Concurrent PATCHes without `If-Match` on different attributes: no lost update.
* Group member adds and removes racing: the membership equals the serial result.
* 20 creates meeting one deleted user (by userName or externalId): it comes back once, with the
  document of its one 201; renames and creates racing onto one name: one holder, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    GROUP_URN,
    PATCH_URN,
    SCIM_JSON,
    TEST_BASE_URL,
    USER_URN,
    assert_scim_error,
    create_workspace,
    main_in_thread,
)
from tests.hubprocess import HubProcess
from tests.pg import create_database, drop_database
from tests.pg_pool import DatabasePool

#: writers of the If-Match retry race: each retries on 412, so the cost grows with the square;
#: 20 in CI, the issue's 50 (or more) in a soak run. The one-shot race always sends 50.
WRITERS = int(os.environ.get("SCIM_HUB_TEST_RACE_WRITERS", "20"))
#: rounds of the group-membership race.
ROUNDS = int(os.environ.get("SCIM_HUB_TEST_RACE_ROUNDS", "2"))
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class Api:
    """SCIM calls of one workspace on one target (the app in-process or a real server)."""

    def __init__(self, http: httpx.AsyncClient, prefix: str, token: str, name: str) -> None:
        self.http = http
        self.prefix = prefix.rstrip("/")
        self.token = token
        self.name = name

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        all_headers = {"Authorization": f"Bearer {self.token}", "Accept": SCIM_JSON}
        if body is not None:
            all_headers["Content-Type"] = SCIM_JSON
        all_headers.update(headers or {})
        return await self.http.request(
            method, self.prefix + path, json=body, headers=all_headers, timeout=60
        )

    async def create_user(self, user_name: str, **attributes: Any) -> dict[str, Any]:
        body = {"schemas": [USER_URN], "userName": user_name, **attributes}
        response = await self.call("POST", "/Users", body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def patch(
        self, path: str, *operations: dict[str, Any], if_match: str | None = None
    ) -> httpx.Response:
        headers = {"If-Match": if_match} if if_match else None
        body = {"schemas": [PATCH_URN], "Operations": list(operations)}
        return await self.call("PATCH", path, body, headers)

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.call("GET", path)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def version(etag: str) -> int:
    """The number in a `W/"n"` ETag."""
    match = re.fullmatch(r'(?:W/)?"(\d+)"', etag)
    assert match, etag
    return int(match.group(1))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- targets


def _prepare(hub: HubProcess) -> None:
    """Create the workspace `HubProcess.prepare` would, on a database already migrated.

    The database is a copy of the session's migrated one, and `init` runs in-process
    (`main_in_thread`): the race is between the server's workers, not in the set-up.
    """
    made = main_in_thread(["init", "--workspace", "live", "--json"], hub.env)
    hub.init = json.loads(made.stdout)


@pytest.fixture(scope="module")
def sqlite_server(
    migrated_sqlite_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """A real server (1 worker) on a SQLite file, shared by this module's tests."""
    workdir = tmp_path_factory.mktemp("race-sqlite")
    shutil.copyfile(migrated_sqlite_file, workdir / "hub.db")
    hub = HubProcess(f"sqlite+aiosqlite:///{workdir / 'hub.db'}", workdir)
    _prepare(hub)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def postgres_server(
    postgres_server_url: str,
    migrated_postgres_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HubProcess]:
    """A real server with 2 worker processes on a PostgreSQL database."""
    url = create_database(postgres_server_url, template=migrated_postgres_template)
    hub = HubProcess(url, tmp_path_factory.mktemp("race-pg"), workers=2)
    try:
        _prepare(hub)
        hub.start()
        yield hub
    finally:
        hub.stop()
        drop_database(postgres_server_url, url.rsplit("/", 1)[1])


TARGETS = [
    "app-sqlite",
    pytest.param("app-postgresql", marks=pytest.mark.postgres),
    pytest.param("server-sqlite", marks=pytest.mark.server),
    pytest.param("server-postgresql-2-workers", marks=[pytest.mark.server, pytest.mark.postgres]),
]


@pytest.fixture(params=TARGETS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """SCIM calls on one target; a fresh database for the app, a shared server otherwise."""
    target: str = request.param
    if target.startswith("server-"):
        fixture = "sqlite_server" if "sqlite" in target else "postgres_server"
        hub: HubProcess = request.getfixturevalue(fixture)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            yield Api(http, hub.tenant_url, hub.token, target)
        return
    from litestar.testing import AsyncTestClient

    from hub.app import create_app
    from hub.settings import load_settings

    # A copy of the session's migrated database, as `db_url` gives (tests.conftest).
    pool: DatabasePool | None = None
    if target == "app-sqlite":
        target_file = tmp_path / "hub.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), target_file)
        url = f"sqlite+aiosqlite:///{target_file}"
    else:
        pool = request.getfixturevalue("postgres_database_pool")
        url = pool.take()
    try:
        tenant = await create_workspace(url, "acme")
        settings = load_settings(
            environ={},
            database_url=url,
            base_url=TEST_BASE_URL,
            outbox_dir=str(tmp_path / "outbox"),
        )
        async with AsyncTestClient(app=create_app(settings), base_url=TEST_BASE_URL) as http:
            yield Api(http, "/scim/v2", tenant.token, target)
    finally:
        if pool is not None:
            pool.give_back(url)


def _assert_one_created(responses: Sequence[Any]) -> None:
    """One 201; every other answer a 409 ``uniqueness`` SCIM Error."""
    statuses = sorted(r.status_code for r in responses)
    expected = [201] + [409] * (len(responses) - 1)
    assert statuses == expected, [(r.status_code, r.text[:200]) for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_scim_error(response, 409, "uniqueness")


# --------------------------------------------------------------------------- uniqueness


async def test_64_concurrent_creates_of_one_user_name_make_one_user(api: Api) -> None:
    user_name = unique("racer") + "@example.com"
    bodies = [
        # Same name, different case: the uniqueness is case-insensitive (RFC 7643 §4.1.1).
        {"schemas": [USER_URN], "userName": user_name.upper() if n % 2 else user_name}
        for n in range(64)
    ]
    responses = await asyncio.gather(*(api.call("POST", "/Users", body) for body in bodies))
    _assert_one_created(responses)
    found = await api.get(f'/Users?filter=userName eq "{user_name}"')
    assert found["totalResults"] == 1
    created = next(r for r in responses if r.status_code == 201).json()
    assert found["Resources"][0]["id"] == created["id"]


async def test_32_concurrent_creates_of_one_group_name_make_one_group(api: Api) -> None:
    name = unique("racing-group")
    bodies = [
        {"schemas": [GROUP_URN], "displayName": name.upper() if n % 2 else name} for n in range(32)
    ]
    responses = await asyncio.gather(*(api.call("POST", "/Groups", body) for body in bodies))
    _assert_one_created(responses)
    found = await api.get(f'/Groups?filter=displayName eq "{name}"')
    assert found["totalResults"] == 1


async def test_concurrent_creates_of_different_users_all_succeed(api: Api) -> None:
    names = [unique(f"crowd{n}") + "@example.com" for n in range(40)]
    responses = await asyncio.gather(
        *(api.call("POST", "/Users", {"schemas": [USER_URN], "userName": n}) for n in names)
    )
    assert [r.status_code for r in responses] == [201] * len(names)
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == len(names)


# --------------------------------------------------------------------------- If-Match


async def test_concurrent_patches_with_one_if_match_let_exactly_one_through(api: Api) -> None:
    user = await api.create_user(unique("etag") + "@example.com")
    path = f"/Users/{user['id']}"
    etag = user["meta"]["version"]
    responses = await asyncio.gather(
        *(
            api.patch(path, {"op": "replace", "path": "title", "value": f"t{n}"}, if_match=etag)
            for n in range(50)
        )
    )
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1, [(r.status_code, r.text[:200]) for r in responses]
    for response in responses:
        if response.status_code != 200:
            assert_scim_error(response, 412)
    stored = await api.get(path)
    assert stored["title"] == winners[0].json()["title"]
    assert version(stored["meta"]["version"]) == version(etag) + 1


async def test_if_match_writers_retrying_get_one_success_per_version(api: Api) -> None:
    """Optimistic writers: each success consumed a distinct version and no write was lost."""
    user = await api.create_user(unique("optimist") + "@example.com")
    path = f"/Users/{user['id']}"
    first = version(user["meta"]["version"])
    consumed: list[int] = []

    async def writer(n: int) -> None:
        etag = user["meta"]["version"]
        for _ in range(10 * WRITERS):
            response = await api.patch(
                path,
                {"op": "add", "path": "emails", "value": [{"value": f"w{n}@example.com"}]},
                if_match=etag,
            )
            if response.status_code == 200:
                consumed.append(version(etag))
                assert version(response.headers["etag"]) == version(etag) + 1
                return
            assert_scim_error(response, 412)
            etag = (await api.call("GET", path)).headers["etag"]
            await asyncio.sleep(0)
        raise AssertionError(f"writer {n} never got through")

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    assert sorted(consumed) == list(range(first, first + WRITERS))
    stored = await api.get(path)
    assert version(stored["meta"]["version"]) == first + WRITERS
    emails = {e["value"] for e in stored["emails"]}
    assert emails == {f"w{n}@example.com" for n in range(WRITERS)}


# --------------------------------------------------------------------------- lost updates

DIFFERENT_ATTRIBUTES = [
    "displayName",
    "nickName",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "profileUrl",
    "name.givenName",
    "name.familyName",
    "name.middleName",
    "name.honorificPrefix",
    f"{ENT}:department",
    f"{ENT}:costCenter",
    f"{ENT}:organization",
    f"{ENT}:division",
    f"{ENT}:employeeNumber",
]


async def test_concurrent_patches_of_different_attributes_all_land(api: Api) -> None:
    user = await api.create_user(unique("many") + "@example.com")
    path = f"/Users/{user['id']}"
    changes = {attr: f"v-{n}" for n, attr in enumerate(DIFFERENT_ATTRIBUTES)}
    emails = [f"e{n}@example.com" for n in range(30)]
    responses = await asyncio.gather(
        *(api.patch(path, {"op": "replace", "path": a, "value": v}) for a, v in changes.items()),
        *(
            api.patch(path, {"op": "add", "path": "emails", "value": [{"value": e}]})
            for e in emails
        ),
    )
    assert [r.status_code for r in responses] == [200] * len(responses), [
        r.text[:200] for r in responses if r.status_code != 200
    ]
    stored = await api.get(path)
    for attr, value in changes.items():
        if attr.startswith("urn:"):
            assert stored[ENT][attr.rsplit(":", 1)[1]] == value, attr
        elif "." in attr:
            parent, child = attr.split(".")
            assert stored[parent][child] == value, attr
        else:
            assert stored[attr] == value, attr
    assert {e["value"] for e in stored["emails"]} == set(emails)
    assert version(stored["meta"]["version"]) == 1 + len(responses)


# --------------------------------------------------------------------------- group members


async def test_racing_member_adds_and_removes_end_in_the_serial_result(api: Api) -> None:
    people = await asyncio.gather(
        *(api.create_user(unique(f"member{n}") + "@example.com") for n in range(30))
    )
    ids = [p["id"] for p in people]
    for round_number in range(ROUNDS):
        initial = ids[:15]
        group = await api.call(
            "POST",
            "/Groups",
            {
                "schemas": [GROUP_URN],
                "displayName": unique(f"race-group-{round_number}"),
                "members": [{"value": uid} for uid in initial],
            },
        )
        assert group.status_code == 201, group.text
        path = f"/Groups/{group.json()['id']}"
        added, removed, kept = ids[15:], ids[:8], ids[8:15]
        new_name = unique(f"renamed-{round_number}")  # a group name is taken once a workspace

        def add(uid: str, path: str = path) -> Any:
            return api.patch(path, {"op": "add", "path": "members", "value": [{"value": uid}]})

        def remove(uid: str, path: str = path) -> Any:
            return api.patch(path, {"op": "remove", "path": f'members[value eq "{uid}"]'})

        requests = [
            *(add(uid) for uid in added),
            *(remove(uid) for uid in removed),
            *(add(uid) for uid in kept),  # already members: idempotent
            *(remove(uid) for uid in removed[:4]),  # removed twice: idempotent
            api.patch(path, {"op": "replace", "path": "displayName", "value": new_name}),
        ]
        responses = await asyncio.gather(*requests)
        # Member-only PATCHes answer 204; the rename answers 200 with the group.
        expected = [204] * (len(responses) - 1) + [200]
        assert [r.status_code for r in responses] == expected, [
            r.text[:200] for r in responses if r.status_code >= 300
        ]
        stored = await api.get(path)
        members = [m["value"] for m in stored.get("members", [])]
        assert sorted(members) == sorted(kept + added), f"round {round_number}"
        assert stored["displayName"] == new_name
        # Both sides of the membership agree.
        for uid in (*removed[:2], *kept[:2], *added[:2]):
            user = await api.get(f"/Users/{uid}")
            member_of = {g["value"] for g in user.get("groups", [])}
            assert (stored["id"] in member_of) == (uid in members), uid


async def test_a_user_deleted_while_added_to_a_group_leaves_no_membership(api: Api) -> None:
    """A DELETE of a user racing a PATCH adding it to a group ends as one order or the other:
    the add refused (400), or the membership ended by the DELETE with a new group version. No
    membership of the deleted user is left behind, hidden (it came back with the user)."""
    group = await api.call("POST", "/Groups", {"schemas": [GROUP_URN], "displayName": unique("g")})
    path = f"/Groups/{group.json()['id']}"
    for _ in range(8):
        uid = (await api.create_user(unique("leaving") + "@example.com"))["id"]
        start = version((await api.call("GET", path)).headers["etag"])
        add = {"op": "add", "path": "members", "value": [{"value": uid}]}
        deleted, added = await asyncio.gather(
            api.call("DELETE", f"/Users/{uid}"), api.patch(path, add)
        )
        assert deleted.status_code == 204, deleted.text
        assert added.status_code in (204, 400), added.text
        shown = await api.call("GET", path)
        assert "members" not in shown.json()
        # Added first, then ended by the DELETE: two versions; refused: none.
        assert version(shown.headers["etag"]) == start + (2 if added.status_code == 204 else 0)
        # Removing the deleted user finds no membership to end.
        probe = await api.patch(path, {"op": "remove", "path": f'members[value eq "{uid}"]'})
        assert probe.status_code == 204, probe.text
        assert probe.headers["etag"] == shown.headers["etag"]


async def _users_and_groups(
    api: Api, users: int, groups: int, prefix: str
) -> tuple[list[str], list[str]]:
    """Create `users` users and `groups` empty groups; return their ids."""
    ids = [(await api.create_user(unique(prefix)))["id"] for _ in range(users)]
    gids = []
    for _ in range(groups):
        body = {"schemas": [GROUP_URN], "displayName": unique("g")}
        gids.append((await api.call("POST", "/Groups", body)).json()["id"])
    return ids, gids


async def _assert_members_exist(api: Api, gids: Sequence[str]) -> None:
    """No deleted user is left a member of these groups."""
    for gid in gids:
        for member in (await api.get(f"/Groups/{gid}")).get("members", []):
            assert (await api.call("GET", f"/Users/{member['value']}")).status_code == 200


async def test_member_writes_racing_user_deletes_never_answer_500(api: Api) -> None:
    """Group PUTs and member PATCHes racing DELETEs and deactivations of their members.

    On PostgreSQL with two workers they deadlock (a group's writer locks the group, then its
    members; a DELETE the user, then its groups), and a unit that deadlocked three times answered
    500. Every answer is now the write's own (200, 204, 400 for a member deleted meanwhile, 404)
    or a 503 with Retry-After, and no deleted user is left a member.
    """
    rng = random.Random(11)
    ids, gids = await _users_and_groups(api, 60, 3, "racer")
    calls: list[Any] = []
    for n in range(80):
        gid, sample = rng.choice(gids), rng.sample(ids, 40)
        members = [{"value": uid} for uid in sample]
        if n % 5 == 0:
            add = {"op": "add", "path": "members", "value": members}
            calls.append(api.patch(f"/Groups/{gid}", add))
        elif n % 5 == 1:
            body = {"schemas": [GROUP_URN], "displayName": unique("g"), "members": members}
            calls.append(api.call("PUT", f"/Groups/{gid}", body))
        elif n % 5 == 2:
            calls.append(api.call("DELETE", f"/Users/{rng.choice(ids)}"))
        elif n % 5 == 3:
            off = {"op": "replace", "path": "active", "value": False}
            calls.append(api.patch(f"/Users/{rng.choice(ids)}", off))
        else:
            remove = {"op": "remove", "path": "members", "value": members[:20]}
            calls.append(api.patch(f"/Groups/{gid}", remove))
    for response in await asyncio.gather(*calls):
        assert response.status_code in (200, 204, 400, 404, 503), response.text
        if response.status_code == 503:
            assert response.headers["retry-after"], response.headers
    await _assert_members_exist(api, gids)


async def test_member_patches_racing_deletes_of_members_never_deadlock(api: Api) -> None:
    """Member PATCHes of one group racing DELETEs of its members all end as their own answer.

    A group's writer locks the group, then its members; a DELETE locked the user, then its
    groups, and on a two-worker PostgreSQL server the two deadlocked until the DELETE failed
    three times (500, then 503). Both now take the workspace's membership lock first.
    """
    rng = random.Random(3)
    ids, gids = await _users_and_groups(api, 60, 1, "member")
    path = f"/Groups/{gids[0]}"
    calls: list[Any] = []
    for n in range(60):
        members = [{"value": uid} for uid in rng.sample(ids, 30)]
        if n % 3 == 0:
            calls.append(api.patch(path, {"op": "add", "path": "members", "value": members}))
        elif n % 3 == 1:
            calls.append(api.call("DELETE", f"/Users/{rng.choice(ids)}"))
        else:
            remove = {"op": "remove", "path": "members", "value": members[:10]}
            calls.append(api.patch(path, remove))
    for response in await asyncio.gather(*calls):
        # 400: an add naming a user deleted meanwhile; 404: a user deleted twice.
        assert response.status_code in (204, 400, 404), response.text
    await _assert_members_exist(api, gids)


async def test_writes_of_groups_sharing_members_never_deadlock(api: Api) -> None:
    """Member PATCHes, PUTs and renames of six groups sharing most of their members, at once.

    Each locks its group, then the users joining or leaving it (a new version for each), in the
    order its request lists them: on a two-worker PostgreSQL server two such writes deadlocked,
    each deadlock held its connections for the server's deadlock_timeout, and requests waiting
    for a connection answered 503 (28 of 72). They now take turns per workspace and all succeed.
    """
    rng = random.Random(5)
    ids, gids = await _users_and_groups(api, 50, 6, "shared")
    calls: list[Any] = []
    for n in range(72):
        path, members = f"/Groups/{gids[n % 6]}", [{"value": u} for u in rng.sample(ids, 40)]
        if n % 4 == 0:
            calls.append(api.patch(path, {"op": "add", "path": "members", "value": members}))
        elif n % 4 == 1:
            remove = {"op": "remove", "path": "members", "value": members[:25]}
            calls.append(api.patch(path, remove))
        elif n % 4 == 2:
            rename = {"op": "replace", "path": "displayName", "value": unique("n")}
            calls.append(api.patch(path, rename))
        else:
            body = {"schemas": [GROUP_URN], "displayName": unique("p"), "members": members}
            calls.append(api.call("PUT", path, body))
    for response in await asyncio.gather(*calls):
        assert response.status_code in (200, 204), response.text
    listed: dict[str, set[str]] = {}
    for gid in gids:
        listed[gid] = {m["value"] for m in (await api.get(f"/Groups/{gid}")).get("members", [])}
    for uid in ids[:10]:
        member_of = {g["value"] for g in (await api.get(f"/Users/{uid}")).get("groups", [])}
        assert member_of == {gid for gid, members in listed.items() if uid in members}, uid


async def test_concurrent_creates_bringing_back_one_deleted_user_make_one_201(api: Api) -> None:
    """A deleted user created again by 20 requests at once comes back once: one 201 (whose
    document is what is stored), the others 409, as if they had come one after another."""
    for key in ("userName", "externalId"):
        name = unique("revived")
        gone = await api.create_user(name, externalId=f"ext-{name}")
        assert (await api.call("DELETE", f"/Users/{gone['id']}")).status_code == 204

        bodies = [_reviving(name, j, same_name=key == "userName") for j in range(20)]
        answers = await asyncio.gather(*(api.call("POST", "/Users", b) for b in bodies))
        assert sorted({r.status_code for r in answers}) in ([201], [201, 409]), [
            r.text for r in answers if r.status_code not in (201, 409)
        ]
        created = [r.json() for r in answers if r.status_code == 201]
        revived = [c for c in created if c["id"] == gone["id"]]
        assert len(revived) == 1, (key, [c["id"] for c in created])
        stored = await api.get(f"/Users/{gone['id']}")
        assert stored["title"] == revived[0]["title"]
        # Every other acknowledged create is a user of its own, findable by its userName.
        for other in created:
            mine = await api.get(f"/Users/{other['id']}")
            assert mine["userName"] == other["userName"]
            assert mine["title"] == other["title"]


def _reviving(name: str, j: int, *, same_name: bool) -> dict[str, Any]:
    """The j-th create meeting the deleted user `name`: by its userName, or its externalId."""
    user_name = name if same_name else f"{name}-{j}"
    return {
        "schemas": [USER_URN],
        "userName": user_name,
        "externalId": f"ext-{name}",
        "title": f"r{j}",
    }


async def test_renames_racing_creates_onto_one_name_end_with_one_holder(api: Api) -> None:
    """PATCH renames of several users and creates, all onto one name (a deleted user's or a
    new one): never a 500, and afterwards exactly one active user holds the name."""
    for reuse in (True, False) * 4:
        name = unique("contested")
        if reuse:
            gone = await api.create_user(name)
            assert (await api.call("DELETE", f"/Users/{gone['id']}")).status_code == 204
        movers = [await api.create_user(unique("mover")) for _ in range(4)]
        rename = {"op": "replace", "path": "userName", "value": name}
        answers = await asyncio.gather(
            *(api.patch(f"/Users/{m['id']}", rename) for m in movers),
            *(
                api.call("POST", "/Users", {"schemas": [USER_URN], "userName": name})
                for _ in range(4)
            ),
        )
        assert all(r.status_code in (200, 201, 409) for r in answers), [
            (r.status_code, r.text) for r in answers if r.status_code not in (200, 201, 409)
        ]
        assert sum(r.status_code in (200, 201) for r in answers) == 1
        holders = []
        for user_id in {m["id"] for m in movers} | {
            r.json()["id"] for r in answers if r.status_code == 201
        }:
            if (await api.get(f"/Users/{user_id}"))["userName"].lower() == name.lower():
                holders.append(user_id)
        assert len(holders) == 1, holders
        found = await api.call("GET", f'/Users?filter=userName eq "{name}"')
        assert [u["id"] for u in found.json()["Resources"]] == holders
