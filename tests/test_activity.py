"""The provisioning log (issue 7 point 6): each SCIM request with its outcome and error detail."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest

from hub.core.tenants import InitResult
from hub.settings import Settings
from tests.conftest import TEST_BASE_URL, ScimClient, user_body
from tests.test_cards import Admin, make_admin_key


async def wait_for(admin: Admin, count: int, **params: str) -> list[dict[str, Any]]:
    """Poll the log until `count` records match (the log is written in the background)."""
    found: list[dict[str, Any]] = []
    for _ in range(50):
        response = await admin.call("GET", "/activity", params=params)
        assert response.status_code == 200, response.text
        found = response.json()["records"]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} records, found {found}")


async def test_requests_and_failures_are_logged(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    created = await scim.post("/Users", user_body("why@example.com"))
    assert created.status_code == 201
    uid = created.json()["id"]
    again = await scim.post("/Users", user_body("WHY@example.com"))
    assert again.status_code == 409
    assert (await scim.get(f"/Users/{uid}")).status_code == 200

    mine = await wait_for(admin, 3, user="why@example.com")
    failed = [r for r in mine if r["outcome"] == "error"]
    assert len(failed) == 1
    assert failed[0]["status"] == 409
    assert failed[0]["operation"] == "create"
    assert "already in use" in failed[0]["error"]
    assert failed[0]["request_id"] == again.headers["x-request-id"]
    ok = [r for r in mine if r["outcome"] == "ok"]
    assert [r["operation"] for r in ok] == ["get", "create"]
    assert {r["resource_id"] for r in ok} == {uid}
    assert ok[0]["connector_id"] == tenant.connector_id
    by_id = await wait_for(admin, 1, user=uid)
    assert {r["operation"] for r in by_id} >= {"create", "get"}

    errors = await wait_for(admin, 1, outcome="error")
    assert all(r["status"] >= 400 for r in errors)
    assert await wait_for(admin, 1, connector=tenant.connector_id)


async def test_unauthenticated_requests_are_not_attributed(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    assert (await scim.with_token("wrong").get("/Users")).status_code == 401
    assert (await scim.get("/Users")).status_code == 200
    found = await wait_for(admin, 1)
    assert [r["status"] for r in found] == [200]


async def test_bad_outcome_filter_and_other_workspaces(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult, other_tenant: InitResult
) -> None:
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    bad = await admin.call("GET", "/activity", params={"outcome": "maybe"})
    assert bad.status_code == 400
    other_key = await make_admin_key(db_url, other_tenant)
    assert (
        await Admin(client, tenant.workspace, other_key).call("GET", "/activity")
    ).status_code == 404


async def test_a_nul_in_a_request_costs_no_record(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    """A path or an echoed detail holding U+0000 is logged (PostgreSQL text cannot store it, and
    one bad record must not lose the rest of its batch)."""
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    assert (await scim.get("/Users/nul%00id")).status_code == 404
    bad = await scim.get("/Users", params={"filter": 'userName eq "a\x00b"'})
    assert bad.status_code == 400
    assert (await scim.post("/Users", user_body("after-nul@example.com"))).status_code == 201
    records = await wait_for(admin, 3)
    paths = [r["path"] for r in records]
    assert "/scim/v2/Users/nul\ufffdid" in paths
    assert any(r["user_name"] == "after-nul@example.com" for r in records)
    assert all("\x00" not in (r["error"] or "") for r in records)


async def test_over_long_values_cost_no_record(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    """A requested id, path or name longer than its column is cut, not the batch lost (on
    PostgreSQL a longer value fails the insert of every record written with it)."""
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    long_id = "i" * 100
    assert (await scim.get(f"/Users/{long_id}")).status_code == 404
    assert (await scim.get("/Users/" + "p" * 700)).status_code == 404
    assert (await scim.post("/Users", user_body("after-long@example.com"))).status_code == 201
    records = await wait_for(admin, 3)
    assert any(r["path"] == f"/scim/v2/Users/{long_id}" for r in records)
    assert any(r["user_name"] == "after-long@example.com" for r in records)


async def test_the_user_filter_folds_case_as_the_database_stores_it(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    """Both sides are lower-cased by the database, so a name is found as it was sent.

    Lower-casing the filter in Python (Unicode) but the stored names in SQL (ASCII only on
    SQLite) lost every name with a capital letter outside ASCII on SQLite.
    """
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    name = "Åsa.ÖBERG@example.com"
    assert (await scim.post("/Users", user_body(name))).status_code == 201
    for asked in (name, "ÅSA.ÖBERG@EXAMPLE.COM", "Åsa.Öberg@Example.com"):
        found = await wait_for(admin, 1, user=asked)
        assert [r["user_name"] for r in found] == [name]
    other = await admin.call("GET", "/activity", params={"user": "asa.oberg@example.com"})
    assert other.json()["records"] == []


async def test_a_refused_request_is_named_by_its_body_in_any_spelling(
    scim: ScimClient, client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    """Attribute names are case-insensitive (RFC 7643 §2.1): a refused create that spells
    `USERNAME`, or a group's `DISPLAYNAME`, is still logged under the name it sent."""
    admin = Admin(client, tenant.workspace, await make_admin_key(db_url, tenant))
    assert (await scim.post("/Users", user_body("shout@example.com"))).status_code == 201
    loud = {"schemas": [user_body()["schemas"][0]], "USERNAME": "Shout@example.com"}
    assert (await scim.post("/Users", loud)).status_code == 409
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "DISPLAYNAME": "Ops"}
    group["members"] = [{"value": "no-such-user"}]
    refused = await scim.post("/Groups", group)
    assert refused.status_code == 400, refused.text

    failed = await wait_for(admin, 2, outcome="error")
    assert {(r["operation"], r["user_name"]) for r in failed} == {
        ("create", "Shout@example.com"),
        ("create", "Ops"),
    }


@pytest.mark.parametrize(
    ("filters", "indexes"),
    [
        ({"user": "someone@example.com"}, {"ix_activity_user_name", "ix_activity_resource_id"}),
        ({"user": "someone", "before": 1000}, {"ix_activity_user_name", "ix_activity_resource_id"}),
        ({"outcome": "error"}, {"ix_activity_errors"}),
    ],
)
async def test_the_filters_are_read_from_indexes(
    db_url: str, tenant: InitResult, filters: dict[str, Any], indexes: set[str]
) -> None:
    """The dashboard's "why did this user not get a card?" stays an index look-up.

    Thirty days of log are millions of records: the user filter walked every record of the
    workspace (an `OR` across two columns, one compared lower-cased, used neither index).
    """
    from sqlalchemy import text

    from hub.core import activity
    from hub.core.database import open_database

    statement = activity.query(workspace_pk=1, **filters).limit(100)

    def plan(conn: Any) -> str:
        sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql)).all()
            return "\n".join(str(row[-1]) for row in rows)
        # An empty table is read whole. Plain SET: `read` is autocommit, where SET LOCAL does
        # nothing and the plan followed the pooled database's statistics (a flake under load).
        conn.execute(text("SET enable_seqscan = off"))
        return "\n".join(str(row[0]) for row in conn.execute(text("EXPLAIN " + sql)).all())

    db = open_database(db_url)
    try:
        shown = await db.read(plan)
    finally:
        await db.close()
    for index in indexes:
        assert index in shown, shown


async def test_a_backlog_is_written_whole_in_order_in_bounded_units(
    db_url: str, tenant: InitResult
) -> None:
    """A backlog, even one queued before the writer first ran, lands whole and in order.

    `stop()` writes what is left; no transaction takes more than `CHUNK` records.
    """
    from sqlalchemy import text

    from hub.core import activity
    from hub.core.database import open_database

    db = open_database(db_url)
    try:
        workspace_pk = await db.read(
            lambda conn: conn.execute(text("SELECT pk FROM workspaces")).scalar_one()
        )
        buffer = activity.Buffer()
        count = activity.CHUNK * 2 + 37
        for i in range(count):
            buffer.add(_entry(workspace_pk, i, activity.now()))
        units: list[int] = []

        async def write(batch: list[activity.Entry]) -> None:
            units.append(len(batch))
            await db.write(activity.write, batch)

        stop = activity.start_writer(buffer, write)
        await stop()  # flushes what is queued
        stored = await _rows(db, "SELECT request_id, path, resource_id FROM activity ORDER BY pk")
    finally:
        await db.close()
    # Every value in its column, whether its record went in a multi-row statement or alone.
    assert [tuple(row) for row in stored] == [
        (f"{i:016x}", f"/scim/v2/Users/{i}", str(i)) for i in range(count)
    ]
    assert units == [activity.CHUNK, activity.CHUNK, 37]


@pytest.mark.parametrize("count", [1, 64 + 3], ids=["alone", "in-a-multi-row-statement"])
async def test_a_record_holding_a_nul_is_stored_with_a_replacement_character(
    db_url: str, tenant: InitResult, count: int
) -> None:
    """U+0000 in a client's userName or an echoed detail: PostgreSQL text cannot hold it, and
    the record must not fail the batch it is written in, alone or in a 64-row statement."""
    from sqlalchemy import text

    from hub.core import activity
    from hub.core.database import open_database

    db = open_database(db_url)
    try:
        workspace_pk = await db.read(
            lambda conn: conn.execute(text("SELECT pk FROM workspaces")).scalar_one()
        )
        batch = [_entry(workspace_pk, i, activity.now()) for i in range(count)]
        batch[-1] = msgspec.structs.replace(batch[-1], user_name="a\x00b", error="bad \x00")
        await db.write(activity.write, batch)
        stored = await _rows(db, "SELECT user_name, error FROM activity ORDER BY pk DESC")
    finally:
        await db.close()
    assert tuple(stored[0]) == ("a\ufffdb", "bad \ufffd")


async def _rows(db: Any, sql: str) -> list[Any]:
    from sqlalchemy import text

    return list(await db.read(lambda conn: conn.execute(text(sql)).all()))


def _entry(workspace_pk: int, i: int, at: int) -> Any:
    from hub.core import activity

    return activity.Entry(
        workspace_pk=workspace_pk,
        connector_pk=None,
        at=at,
        method="GET",
        path=f"/scim/v2/Users/{i}",
        operation="get",
        resource_type="User",
        resource_id=str(i),
        user_name=None,
        status=200,
        error=None,
        request_id=f"{i:016x}",
        ms=1,
    )


@pytest.mark.parametrize("days", [30, 0])
async def test_records_older_than_the_retention_are_pruned(
    settings: Settings, db_url: str, tenant: InitResult, days: int
) -> None:
    """A serving hub drops records older than `SCIM_HUB_ACTIVITY_RETENTION_DAYS` (0 keeps all)."""
    from litestar.testing import AsyncTestClient
    from sqlalchemy import text

    from hub.app import create_app
    from hub.core import activity
    from hub.core.database import open_database

    day_us = 86_400_000_000
    db = open_database(db_url)
    try:
        workspace_pk = await db.read(
            lambda conn: conn.execute(text("SELECT pk FROM workspaces")).scalar_one()
        )
        now = activity.now()
        old = [_entry(workspace_pk, i, now - 31 * day_us) for i in range(activity.PRUNE_CHUNK + 7)]
        recent = [_entry(workspace_pk, 10_000 + i, now - 29 * day_us) for i in range(3)]
        await db.write(activity.write, old + recent)
    finally:
        await db.close()

    async def stored() -> list[str]:
        db = open_database(db_url)
        try:
            rows = await db.read(
                lambda conn: conn.execute(text("SELECT request_id FROM activity ORDER BY pk")).all()
            )
        finally:
            await db.close()
        return [row[0] for row in rows]

    app = create_app(msgspec.structs.replace(settings, activity_retention_days=days))
    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL):
        kept = [e.request_id for e in recent]
        expected = kept if days else [e.request_id for e in old + recent]
        for _ in range(50):
            await asyncio.sleep(0.1)
            if await stored() == expected:
                break
        await asyncio.sleep(0.6)  # a turn more: nothing else goes
        assert await stored() == expected


def test_the_retention_setting_is_checked() -> None:
    from hub.settings import SettingsError, load_settings

    for bad in ("-1", "36501"):
        with pytest.raises(SettingsError, match="SCIM_HUB_ACTIVITY_RETENTION_DAYS must be between"):
            load_settings(environ={"SCIM_HUB_ACTIVITY_RETENTION_DAYS": bad})
    with pytest.raises(SettingsError, match="SCIM_HUB_ACTIVITY_RETENTION_DAYS"):
        load_settings(environ={"SCIM_HUB_ACTIVITY_RETENTION_DAYS": "a week"})
    assert load_settings(environ={}).activity_retention_days == 30
    assert (
        load_settings(environ={"SCIM_HUB_ACTIVITY_RETENTION_DAYS": "0"}).activity_retention_days
        == 0
    )


async def test_a_spell_of_failed_writes_is_logged_once_and_its_losses_when_it_ends(
    db_url: str, tenant: InitResult
) -> None:
    """A database refusing the log's writes fails every flush, twice a second: the first failure
    is a warning with its error, the rest are counted and reported once when writes resume.

    The refusal is real: the `activity` table is renamed away, then back.
    """
    import structlog
    from sqlalchemy import text

    from hub.core import activity
    from hub.core.database import open_database
    from tests.test_secrets import fresh_hub_loggers

    db = open_database(db_url)
    buffer = activity.Buffer()

    async def write(batch: list[activity.Entry]) -> None:
        await db.write(activity.write, batch)

    async def rename(old: str, new: str) -> None:
        await db.write(lambda conn: conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}")))

    async def flushed(i: int) -> None:
        buffer.add(_entry(workspace_pk, i, activity.now()))
        for _ in range(100):  # the writer takes the record at its next turn
            await asyncio.sleep(activity.FLUSH_SECONDS / 5)
            if not buffer.pending:
                break
        await asyncio.sleep(activity.FLUSH_SECONDS / 5)  # and its write has failed or landed

    try:
        workspace_pk = await db.read(
            lambda conn: conn.execute(text("SELECT pk FROM workspaces")).scalar_one()
        )
        with fresh_hub_loggers(), structlog.testing.capture_logs() as logs:
            stop = activity.start_writer(buffer, write)
            await rename("activity", "activity_away")
            for i in range(3):
                await flushed(i)
            await rename("activity_away", "activity")
            await flushed(3)
            await stop()
        stored = await _rows(db, "SELECT request_id FROM activity ORDER BY pk")
    finally:
        await db.close()
    mine = [e for e in logs if str(e["event"]).startswith("activity log")]
    assert [e["event"] for e in mine] == [
        "activity log write failed; further failures are counted until one succeeds",
        "activity log writes resumed",
    ], mine
    assert "activity" in mine[0]["error"]
    assert (mine[1]["failed_batches"], mine[1]["lost_records"]) == (3, 3)
    assert [tuple(row) for row in stored] == [(f"{3:016x}",)]
