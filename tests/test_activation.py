"""Activation emails end to end: provisioning queues one, its link activates the account once.

Over real HTTP (SCIM, admin API, the activation page, the owner API) with a real SMTP server
(aiosmtpd), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import update

from hub.core import sessions
from hub.core.clock import now_us
from hub.core.database import open_database
from hub.core.models import activation_links
from hub.core.tenants import InitResult
from tests.test_outbox import (
    SmtpServer,
    admin_headers,
    eventually,
    outbox_list,
    wait_for_status,
)

# Fixtures shared with the outbox tests: a fast sender, a real SMTP server that starts stopped.
from tests.test_outbox import settings as settings
from tests.test_outbox import smtp as smtp
from tests.test_outbox import smtp_port as smtp_port

EMAILS = "/api/v1/workspaces/acme/activation-emails"
SETTINGS = "/api/v1/workspaces/acme/settings"


@pytest.fixture
async def admin(db_url: str, tenant: InitResult) -> dict[str, str]:
    """Admin API headers for workspace "acme"."""
    return await admin_headers(db_url, tenant)


async def provision(scim: Any, make_user_body: Any, user_name: str, **attrs: Any) -> str:
    """Create a user over SCIM; return its id."""
    response = await scim.post("/Users", make_user_body(user_name, **attrs))
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


async def next_link(smtp: SmtpServer, count: int) -> str:
    """Wait for the `count`-th email and return its activation token."""
    await eventually(lambda: len(smtp.inbox.messages) >= count)
    return smtp.inbox.links()[count - 1]


async def read_session(db_url: str, token: str) -> tuple[int, int] | None:
    """`sessions.user_for_session` straight on the database."""
    db = open_database(db_url)
    try:
        return await db.read(sessions.user_for_session, token)
    finally:
        await db.close()


async def test_the_emailed_link_activates_once_and_starts_the_owners_session(
    client: httpx.AsyncClient, scim: Any, make_user_body: Any, smtp: SmtpServer, db_url: str
) -> None:
    smtp.start()
    await provision(
        scim,
        make_user_body,
        "ada",
        displayName="Ada Lovelace",
        emails=[
            {"value": "home@example.com", "type": "home"},
            {"value": "ada@example.com", "type": "work", "primary": True},
        ],
    )
    token = await next_link(smtp, 1)
    [message] = smtp.inbox.messages
    assert message["To"] == "ada@example.com"
    assert "Ada Lovelace" in message.get_body(preferencelist=("plain",)).get_content()

    with structlog.testing.capture_logs() as logs:
        page = await client.get(f"/activate/{token}")
    assert page.status_code == 200, page.text
    assert "Ada Lovelace" in page.text
    assert "acme" in page.text
    assert token not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert token not in repr(logs), "the activation link leaked into the logs"

    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie, "the test server is plain http"
    session = page.cookies[sessions.SESSION_COOKIE]
    assert session not in page.text
    assert await read_session(db_url, session) is not None

    by_cookie = await client.get("/api/v1/me/card")  # the client kept the cookie
    assert by_cookie.status_code == 200, by_cookie.text
    client.cookies.clear()
    assert (await client.get("/api/v1/me/card")).status_code == 401
    by_bearer = await client.get("/api/v1/me/card", headers={"Authorization": f"Bearer {session}"})
    assert by_bearer.status_code == 200, by_bearer.text

    again = await client.get(f"/activate/{token}")
    assert again.status_code == 410
    assert "already been used" in again.text
    assert sessions.SESSION_COOKIE not in again.headers.get("set-cookie", "")


async def test_unknown_and_expired_links_are_refused(
    client: httpx.AsyncClient, scim: Any, make_user_body: Any, smtp: SmtpServer, db_url: str
) -> None:
    smtp.start()
    assert (await client.get("/activate/shact_nonsense")).status_code == 404
    await provision(scim, make_user_body, "late@example.com")
    token = await next_link(smtp, 1)
    db = open_database(db_url)
    try:
        await db.write(
            lambda conn: conn.execute(update(activation_links).values(expires=now_us() - 1))
        )
    finally:
        await db.close()
    page = await client.get(f"/activate/{token}")
    assert page.status_code == 410
    assert "expired" in page.text


async def test_with_the_toggle_off_nothing_is_sent_until_an_admin_sends_it(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    admin: dict[str, str],
) -> None:
    smtp.start()
    assert (await client.get(SETTINGS, headers=admin)).json() == {"send_activation_email": True}
    off = await client.put(SETTINGS, headers=admin, json={"send_activation_email": False})
    assert off.status_code == 200
    assert off.json() == {"send_activation_email": False}

    user_id = await provision(scim, make_user_body, "quiet@example.com")
    await asyncio.sleep(0.3)
    assert smtp.inbox.messages == []
    assert (await outbox_list(client, admin))["total"] == 0

    sent = await client.post(EMAILS, headers=admin, json={"user_ids": [user_id, "nobody"]})
    assert sent.status_code == 202, sent.text
    results = sent.json()["results"]
    assert results[0]["status"] == "queued"
    assert results[1] == {"user_id": "nobody", "status": "not_found", "detail": "no such user"}
    await next_link(smtp, 1)
    assert smtp.inbox.messages[0]["To"] == "quiet@example.com"


async def test_a_resend_invalidates_the_previous_link(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    admin: dict[str, str],
) -> None:
    smtp.start()
    user_id = await provision(scim, make_user_body, "twice@example.com")
    first = await next_link(smtp, 1)
    assert (await client.post(EMAILS, headers=admin, json={"user_ids": [user_id]})).is_success
    second = await next_link(smtp, 2)
    assert first != second
    assert smtp.inbox.messages[0]["Message-ID"] != smtp.inbox.messages[1]["Message-ID"]
    old = await client.get(f"/activate/{first}")
    assert old.status_code == 410
    assert "replaced" in old.text
    assert (await client.get(f"/activate/{second}")).status_code == 200


async def test_deprovisioning_cancels_a_pending_email_and_reactivation_queues_a_new_one(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    admin: dict[str, str],
) -> None:
    user_id = await provision(scim, make_user_body, "leaver@example.com")
    for _ in range(200):  # SMTP is down: wait until the sender has tried and failed
        if (await outbox_list(client, admin))["items"][0]["attempts"] >= 1:
            break
        await asyncio.sleep(0.02)
    deactivate = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    assert (await scim.patch(f"/Users/{user_id}", deactivate)).status_code == 200
    [cancelled] = (await outbox_list(client, admin))["items"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["last_error"] == "user deprovisioned"
    smtp.start()
    await asyncio.sleep(0.4)
    assert smtp.inbox.messages == [], "a cancelled invitation went out"

    skipped = await client.post(EMAILS, headers=admin, json={"user_ids": [user_id]})
    assert skipped.json()["results"][0]["status"] == "skipped"

    reactivate = {**deactivate, "Operations": [{"op": "replace", "path": "active", "value": True}]}
    assert (await scim.patch(f"/Users/{user_id}", reactivate)).status_code == 200
    token = await next_link(smtp, 1)
    page = await client.get(f"/activate/{token}")
    assert page.status_code == 200
    owner = {"Authorization": f"Bearer {page.cookies[sessions.SESSION_COOKIE]}"}
    client.cookies.clear()
    assert (await client.get("/api/v1/me/card", headers=owner)).status_code == 200

    # Deprovisioning again ends the owner's session at once.
    assert (await scim.patch(f"/Users/{user_id}", deactivate)).status_code == 200
    assert (await client.get("/api/v1/me/card", headers=owner)).status_code == 401


async def test_a_retried_create_does_not_queue_a_second_email(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    admin: dict[str, str],
) -> None:
    body = make_user_body("retry@example.com")
    assert (await scim.post("/Users", body)).status_code == 201
    assert (await scim.post("/Users", body)).status_code == 409
    smtp.start()
    await wait_for_status(client, admin, "sent")
    await asyncio.sleep(0.3)
    assert (await outbox_list(client, admin))["total"] == 1
    assert len(smtp.inbox.messages) == 1


async def test_the_admin_email_api_checks_credentials_and_bodies(
    client: httpx.AsyncClient, admin: dict[str, str], scim_error: Any
) -> None:
    scim_error(await client.get(EMAILS), 401)
    scim_error(await client.post(EMAILS, json={"user_ids": []}), 401)
    scim_error(await client.put(SETTINGS, json={"send_activation_email": "yes"}), 401)
    scim_error(await client.post(EMAILS, headers=admin, json={"user_ids": []}), 400, "invalidValue")
    scim_error(await client.post(EMAILS, headers=admin, json={"users": ["x"]}), 400, "invalidValue")
    bad = {"send_activation_email": "yes"}
    scim_error(await client.put(SETTINGS, headers=admin, json=bad), 400, "invalidValue")
    scim_error(
        await client.get(EMAILS, headers=admin, params={"status": "lost"}), 400, "invalidValue"
    )
    scim_error(await client.get(EMAILS, headers=admin, params={"limit": "-1"}), 400, "invalidValue")
    other = "/api/v1/workspaces/globex/activation-emails"
    scim_error(await client.get(other, headers=admin), 404)
