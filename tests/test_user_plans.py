"""The statements that find one user by externalId read its index, not every user (SQLite plans).

Without statistics SQLite weighs the (workspace_pk, deleted, pk) index the same as
(workspace_pk, external_id), and the first also gives a page its order: a look-up by externalId
then reads every live (or every deleted) user of the workspace. These tests read the plan of the
statements a create and an `externalId eq` filter run (`EXPLAIN QUERY PLAN`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from hub.core import tokens
from hub.core import users as user_service
from hub.core.database import open_database
from hub.core.resources import ListQuery
from hub.core.tenants import InitResult
from tests.conftest import ONLY_SQLITE, user_body

pytestmark = ONLY_SQLITE
BASE = "http://testserver/scim/v2"


async def plans_of(db_url: str, token: str, unit: Any) -> list[list[str]]:
    """Run `unit(conn, caller)` with SQLite tracing on; return the plan of each SELECT on users.

    A SQLite database only: a test using it is marked `ONLY_SQLITE`.
    """
    db = open_database(db_url)

    def traced(conn: Connection) -> list[list[str]]:
        caller = tokens.authenticate(conn, tokens.digest(token))
        assert caller is not None
        dbapi: Any = conn.connection.dbapi_connection
        seen: list[str] = []
        dbapi.set_trace_callback(seen.append)
        try:
            unit(conn, caller)
        finally:
            dbapi.set_trace_callback(None)
        statements = [s for s in seen if s.lstrip().startswith("SELECT") and "users" in s]
        return [
            [str(row[-1]) for row in dbapi.execute("EXPLAIN QUERY PLAN " + s).fetchall()]
            for s in statements
        ]

    try:
        return await db.write(traced)
    finally:
        await db.close()


def reads_external_id_index(plan: list[str]) -> bool:
    users_steps = [step for step in plan if " users " in f" {step} "]
    return any("ix_users_workspace_external" in step for step in users_steps) and not any(
        "ix_users_workspace_pk" in step or step.startswith("SCAN users") for step in users_steps
    )


async def test_a_create_finds_a_deleted_external_id_by_its_index(
    db_url: str, tenant: InitResult
) -> None:
    def create(conn: Connection, caller: tokens.Caller) -> None:
        user_service.create(conn, caller, user_body("p@example.com", externalId="ext-p"), BASE)

    plans = await plans_of(db_url, tenant.token, create)
    lookups = [plan for plan in plans if any("external" in step for step in plan)]
    assert lookups, plans
    assert all(reads_external_id_index(plan) for plan in lookups), lookups


async def test_an_external_id_filter_reads_its_index(db_url: str, tenant: InitResult) -> None:
    queries = ['externalId eq "ext-p"', 'externalId eq "ext-p" and active eq true']

    def search(conn: Connection, caller: tokens.Caller) -> None:
        for text in queries:
            user_service.search(conn, caller, ListQuery(filter=text), BASE)

    plans = await plans_of(db_url, tenant.token, search)
    assert len(plans) >= len(queries), plans
    assert all(reads_external_id_index(plan) for plan in plans), plans


async def test_an_email_filter_reads_the_email_index(db_url: str, tenant: InitResult) -> None:
    text = 'emails[type eq "work"].value eq "p@example.com"'
    queries = [
        ListQuery(filter=text),  # the holders by pk, the filter in memory
        ListQuery(filter='emails.value eq "p@example.com" and active eq true'),
        ListQuery(filter=text, sort_by="userName"),  # the SQL filter, on the holders only
        ListQuery(filter=text, start_index=2),
    ]

    def search(conn: Connection, caller: tokens.Caller) -> None:
        for query in queries:
            user_service.search(conn, caller, query, BASE)

    plans = await plans_of(db_url, tenant.token, search)
    pages = [plan for plan in plans if any("user_emails" in step for step in plan)]
    assert len(pages) >= len(queries), plans  # a page past the first is counted too
    for plan in pages:
        assert not any(
            step.startswith("SCAN users") or "ix_users_workspace_pk" in step for step in plan
        ), plan
