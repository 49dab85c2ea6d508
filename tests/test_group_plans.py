"""The statements that ask about one membership read it by key, not every member.

Entra ID checks a membership with `GET /Groups?filter=id eq "G" and members eq "U"` before it
adds or removes a member. A member's `value` is caseExact=false (RFC 7643 §8.7.1), and compared
as `lower(users.id)` the user's index was of no use: SQLite walked every member of the group
(20 ms a check in a group of 50,000 on SQLite, 56 ms on PostgreSQL). These tests read the plan of
the statements such filters run (`EXPLAIN QUERY PLAN`), as `tests/test_user_plans.py` does.

On PostgreSQL a PATCH adding or removing listed members asks which of them are members already;
as `group_pk = … AND user_pk IN (…)` the planner, with statistics taken while the group was small,
read every member of the group for each 100 users. That test counts the index entries read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from hub.core import groups as group_service
from hub.core import tokens
from hub.core import users as user_service
from hub.core.database import open_database
from hub.core.resources import ListQuery
from hub.core.seed import seed_users
from hub.core.tenants import InitResult
from tests.conftest import ONLY_POSTGRESQL, ONLY_SQLITE, ScimClient, group_body
from tests.conftest import patch_op as ops
from tests.test_user_plans import BASE, plans_of

ID = "0190a3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"


def scans(plan: list[str], table: str) -> bool:
    """Say whether a plan reads `table` by a scan, or `memberships` by less than its whole key."""
    steps = [step for step in plan if f" {table} " in f" {step} "]
    return any(
        step.startswith(f"SCAN {table}")
        or (table == "memberships" and "(group_pk=? AND user_pk=?)" not in step)
        for step in steps
    )


def plans_about(plans: list[list[str]], table: str) -> list[list[str]]:
    return [plan for plan in plans if any(f" {table} " in f" {step} " for step in plan)]


@ONLY_SQLITE  # the plan is checked on SQLite (EXPLAIN QUERY PLAN)
async def test_a_members_filter_reads_one_membership(db_url: str, tenant: InitResult) -> None:
    queries = [
        f'id eq "{ID}" and members eq "{ID}"',  # Entra ID's membership check
        f'members.value eq "{ID.upper()}"',
        f'members[value eq "{ID}"]',
    ]

    def search(conn: Connection, caller: tokens.Caller) -> None:
        for query in queries:
            group_service.search(conn, caller, ListQuery(filter=query, with_members=False), BASE)

    plans = plans_about(await plans_of(db_url, tenant.token, search), "users")
    assert len(plans) >= len(queries), plans
    for plan in plans:
        assert not scans(plan, "users"), plan
        assert not scans(plan, "memberships"), plan


@ONLY_SQLITE  # the plan is checked on SQLite (EXPLAIN QUERY PLAN)
async def test_a_groups_filter_reads_one_membership(db_url: str, tenant: InitResult) -> None:
    def search(conn: Connection, caller: tokens.Caller) -> None:
        query = ListQuery(filter=f'groups eq "{ID.upper()}"', with_members=False)
        user_service.search(conn, caller, query, BASE)

    plans = plans_about(await plans_of(db_url, tenant.token, search), "groups")
    assert plans, plans
    for plan in plans:
        assert not scans(plan, "groups"), plan
        assert not scans(plan, "memberships"), plan  # not every group of each user


_MEMBERSHIP_ENTRIES_READ = text(
    "SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index"
    " WHERE indrelid = 'memberships'::regclass"
)


async def user_ids(scim: ScimClient, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        query = {"startIndex": len(ids) + 1, "count": 1000, "attributes": "id"}
        page = (await scim.get("/Users", params=query)).json()["Resources"]
        ids.extend(user["id"] for user in page)
    return ids[:count]


@ONLY_POSTGRESQL  # PostgreSQL's planner; SQLite reads the key (group_pk, user_pk) anyway
async def test_a_member_patch_reads_the_members_it_names(
    db_url: str, tenant: InitResult, scim: ScimClient
) -> None:
    """A PATCH adding 100 users to a group of 2,000 reads about 100 index entries, not 2,000."""
    db = open_database(db_url)
    try:
        await seed_users(db, "acme", 2100, cards=False)
        ids = await user_ids(scim, 2100)
        # Statistics taken while groups were small: the planner then expects a few members.
        for _ in range(20):
            await scim.post("/Groups", group_body(members=[{"value": u} for u in ids[:5]]))
        await db.write(lambda conn: conn.execute(text("ANALYZE memberships")))
        made = await scim.post("/Groups", group_body(members=[{"value": u} for u in ids[:1000]]))
        gid = made.json()["id"]
        add = ops({"op": "add", "path": "members", "value": [{"value": u} for u in ids[1000:2000]]})
        assert (await scim.patch(f"/Groups/{gid}", add)).status_code == 204

        def entries_read(conn: Connection, op: str, members: list[str]) -> Any:
            caller = tokens.authenticate(conn, tokens.digest(tenant.token))
            assert caller is not None
            # Counts a backend has not reported yet, of earlier transactions too: the difference.
            before = conn.execute(_MEMBERSHIP_ENTRIES_READ).scalar_one()
            values = [{"value": u} for u in members]
            operation = {"op": op, "path": "members", "value": values}
            group_service.patch(conn, caller, gid, [operation], BASE, quiet=True)
            return conn.execute(_MEMBERSHIP_ENTRIES_READ).scalar_one() - before

        assert await db.write(lambda conn: entries_read(conn, "add", ids[2000:2100])) < 1000
        assert await db.write(lambda conn: entries_read(conn, "remove", ids[1900:2000])) < 1000
    finally:
        await db.close()
    members = (await scim.get(f"/Groups/{gid}")).json()["members"]
    assert {m["value"] for m in members} == set(ids[:1900] + ids[2000:2100])
