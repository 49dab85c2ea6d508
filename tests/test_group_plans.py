"""The statements that ask about one membership read it by key, not every member (SQLite plans).

Entra ID checks a membership with `GET /Groups?filter=id eq "G" and members eq "U"` before it
adds or removes a member. A member's `value` is caseExact=false (RFC 7643 §8.7.1), and compared
as `lower(users.id)` the user's index was of no use: SQLite walked every member of the group
(20 ms a check in a group of 50,000 on SQLite, 56 ms on PostgreSQL). These tests read the plan of
the statements such filters run (`EXPLAIN QUERY PLAN`), as `tests/test_user_plans.py` does.
"""

from __future__ import annotations

from sqlalchemy import Connection

from hub.core import groups as group_service
from hub.core import tokens
from hub.core import users as user_service
from hub.core.resources import ListQuery
from hub.core.tenants import InitResult
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


async def test_a_members_filter_reads_one_membership(db_url: str, tenant: InitResult) -> None:
    queries = [
        f'id eq "{ID}" and members eq "{ID}"',  # Entra ID's membership check
        f'members.value eq "{ID.upper()}"',
        f'members[value eq "{ID}"]',
    ]

    def search(conn: Connection, caller: tokens.Caller) -> None:
        for text in queries:
            group_service.search(conn, caller, ListQuery(filter=text, with_members=False), BASE)

    plans = plans_about(await plans_of(db_url, tenant.token, search), "users")
    assert len(plans) >= len(queries), plans
    for plan in plans:
        assert not scans(plan, "users"), plan
        assert not scans(plan, "memberships"), plan


async def test_a_groups_filter_reads_one_membership(db_url: str, tenant: InitResult) -> None:
    def search(conn: Connection, caller: tokens.Caller) -> None:
        query = ListQuery(filter=f'groups eq "{ID.upper()}"', with_members=False)
        user_service.search(conn, caller, query, BASE)

    plans = plans_about(await plans_of(db_url, tenant.token, search), "groups")
    assert plans, plans
    for plan in plans:
        assert not scans(plan, "groups"), plan
        assert not scans(plan, "memberships"), plan  # not every group of each user
