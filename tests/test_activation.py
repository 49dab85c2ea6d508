"""Activation emails end to end: provisioning queues one, its link activates the account once.

Over real HTTP (SCIM, admin API, the activation page, the owner API) with a real SMTP server
(aiosmtpd), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest
import structlog
from alembic import command
from sqlalchemy import Connection, select, text, update

from hub.core import sessions
from hub.core.clock import now_us
from hub.core.database import open_database
from hub.core.models import activation_links
from hub.core.tenants import InitResult
from hub.migrate import alembic_config, upgrade
from hub.settings import Settings
from tests.conftest import TEST_BASE_URL
from tests.test_outbox import (
    SmtpServer,
    admin_headers,
    eventually,
    outbox_list,
    queue_users,
    running_app,
    wait_for_status,
)

# Fixtures shared with the outbox tests: a fast sender, a real SMTP server that starts stopped.
from tests.test_outbox import settings as settings
from tests.test_outbox import smtp as smtp
from tests.test_outbox import smtp_port as smtp_port

EMAILS = "/api/v1/workspaces/acme/activation-emails"
#: What a browser sends with a form posted from one of the hub's own pages.
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": TEST_BASE_URL}
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


async def open_link(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """What a person's click does: GET the page, then press its button (a same-origin POST)."""
    page = await client.get(f"/activate/{token}")
    if page.status_code != 200:
        return page
    assert '<form method="post">' in page.text
    return await client.post(f"/activate/{token}", headers=SAME_ORIGIN)


async def latest_message(
    client: httpx.AsyncClient, admin: dict[str, str], ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The newest outbox message once `ready` says so (the sender works in the background)."""
    for _ in range(200):
        newest: dict[str, Any] = (await outbox_list(client, admin))["items"][0]
        if ready(newest):
            return newest
        await asyncio.sleep(0.02)
    raise AssertionError(f"the newest message never got ready: {newest}")


async def link_used(db_url: str) -> bool:
    """Whether any activation link of the database has been used."""
    db = open_database(db_url)
    try:
        used = await db.read(
            lambda conn: conn.execute(
                select(activation_links.c.pk).where(activation_links.c.used.is_not(None))
            ).first()
        )
    finally:
        await db.close()
    return used is not None


async def test_the_emailed_link_activates_once_and_starts_the_owners_session(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    db_url: str,
    admin: dict[str, str],
) -> None:
    smtp.start()
    ada = await provision(
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
        # A mail scanner (or the person) opens the link: a confirmation page, nothing used.
        for _ in range(3):
            page = await client.get(f"/activate/{token}")
            assert page.status_code == 200, page.text
        probe = await client.head(f"/activate/{token}")
        used = await client.post(f"/activate/{token}", headers=SAME_ORIGIN, follow_redirects=False)
    assert probe.status_code == 200
    assert probe.content == b""
    assert "Ada Lovelace" in page.text
    assert "acme" in page.text
    assert '<form method="post"><button type="submit">' in page.text
    assert "<script" not in page.text, "the page must work without JavaScript"
    assert token not in page.text
    assert "set-cookie" not in page.headers
    assert page.headers["cache-control"] == "no-store"
    assert "form-action 'self'" in page.headers["content-security-policy"]

    # The button posts back to the link: the account is activated and the owner signed in.
    assert used.status_code == 303, used.text
    assert used.headers["location"] == "/activated"
    assert used.headers["cache-control"] == "no-store"
    assert token not in repr(logs), "the activation link leaked into the logs"
    cookie = used.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie, "the test server is plain http"
    session = used.cookies[sessions.SESSION_COOKIE]
    assert await read_session(db_url, session) is not None
    # The owner's activation is audited, as every other change (the actor: the user).
    trail = await client.get("/api/v1/workspaces/acme/audit", headers=admin)
    latest = trail.json()["records"][0]
    assert (latest["actor_kind"], latest["actor_id"], latest["action"]) == (
        "owner",
        ada,
        "activate",
    )
    assert (latest["resource_type"], latest["resource_id"]) == ("User", ada)
    assert latest["request_id"] == used.headers["x-request-id"]
    welcome = await client.get("/activated")  # the client kept the cookie
    assert welcome.status_code == 200, welcome.text
    assert "Welcome, Ada Lovelace" in welcome.text
    assert "acme" in welcome.text
    assert session not in welcome.text

    by_cookie = await client.get("/api/v1/me/card")
    assert by_cookie.status_code == 200, by_cookie.text
    client.cookies.clear()
    assert (await client.get("/api/v1/me/card")).status_code == 401
    assert (await client.get("/activated")).status_code == 403
    by_bearer = await client.get("/api/v1/me/card", headers={"Authorization": f"Bearer {session}"})
    assert by_bearer.status_code == 200, by_bearer.text

    for again in (
        await client.post(f"/activate/{token}", headers=SAME_ORIGIN),
        await client.get(f"/activate/{token}"),
    ):
        assert again.status_code == 410
        assert "already been used" in again.text
        assert sessions.SESSION_COOKIE not in again.headers.get("set-cookie", "")
    assert (await client.head(f"/activate/{token}")).status_code == 410


async def test_a_post_from_another_site_never_uses_the_link(
    client: httpx.AsyncClient, scim: Any, make_user_body: Any, smtp: SmtpServer, db_url: str
) -> None:
    """Login CSRF: another site posting a link from the victim's browser is refused."""
    smtp.start()
    await provision(scim, make_user_body, "csrf@example.com")
    token = await next_link(smtp, 1)
    url = f"/activate/{token}"
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": TEST_BASE_URL},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ):
        refused = await client.post(url, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert "another site" in refused.text
        assert "set-cookie" not in refused.headers
    assert not await link_used(db_url)
    # A browser too old for Sec-Fetch-Site still names the origin; it is this host.
    used = await client.post(url, headers={"Origin": TEST_BASE_URL}, follow_redirects=False)
    assert used.status_code == 303, used.text
    assert await link_used(db_url)


async def test_every_activation_page_forbids_sniffing_framing_and_caching(
    client: httpx.AsyncClient, scim: Any, make_user_body: Any, smtp: SmtpServer
) -> None:
    """The pages show IdP data (the user's name): each answer says it is HTML and nothing else."""
    smtp.start()
    await provision(scim, make_user_body, "sniff@example.com", displayName="Sniff")
    token = await next_link(smtp, 1)
    answers = [
        await client.get(f"/activate/{token}"),
        await client.head(f"/activate/{token}"),
        await client.get("/activate/shact_nonsense"),
        await client.post(f"/activate/{token}", headers={"Sec-Fetch-Site": "cross-site"}),
        await client.get("/activated"),
        await client.post(f"/activate/{token}", headers=SAME_ORIGIN, follow_redirects=False),
        await client.get("/activated"),
        await client.get(f"/activate/{token}"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 403, 403, 303, 200, 410]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
        assert answer.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-type"].startswith("text/html")


async def test_an_idp_name_cannot_add_lines_or_reorder_the_hubs_own_words(
    client: httpx.AsyncClient, scim: Any, make_user_body: Any, smtp: SmtpServer
) -> None:
    """A displayName is one line: its line breaks and bidi overrides stay out of the email.

    "Mallory\r\n\r\nYour card is suspended…" would otherwise write paragraphs of its own into
    the hub's email, and a RIGHT-TO-LEFT OVERRIDE (U+202E) would show the rest of the line (the
    hub's own words, the workspace's name) backwards, in the email and on the link's pages.
    """
    smtp.start()
    name = "Mallory\r\n\r\nYour card is suspended: visit evil.example\u202e\u2066\x0b"
    await provision(scim, make_user_body, "mallory@example.com", displayName=name)
    token = await next_link(smtp, 1)
    [message] = smtp.inbox.messages
    plain = message.get_body(preferencelist=("plain",)).get_content()
    html_part = message.get_body(preferencelist=("html",)).get_content()
    shown = "Mallory Your card is suspended: visit evil.example"
    assert plain.splitlines()[0] == f"Hello {shown},"
    assert f"<p>Hello {shown},</p>" in html_part
    pages = [await client.get(f"/activate/{token}")]
    await client.post(f"/activate/{token}", headers=SAME_ORIGIN)
    pages.append(await client.get("/activated"))
    assert [p.status_code for p in pages] == [200, 200]
    assert f"card of {shown} in acme" in pages[0].text
    assert f"<h1>Welcome, {shown}</h1>" in pages[1].text
    for shown_text in (plain, html_part, pages[0].text, pages[1].text):
        assert not {"\u202e", "\u2066", "\x0b", "\r"} & set(shown_text), shown_text


async def test_unknown_tampered_and_expired_links_are_refused(
    client: httpx.AsyncClient, scim: Any, make_user_body: Any, smtp: SmtpServer, db_url: str
) -> None:
    smtp.start()
    for unknown in ("shact_nonsense", "shact_x.y", "nonsense", "shact_" + "A" * 22 + ".sig"):
        assert (await client.get(f"/activate/{unknown}")).status_code == 404, unknown
        assert (await client.post(f"/activate/{unknown}")).status_code == 404, unknown
    await provision(scim, make_user_body, "late@example.com")
    token = await next_link(smtp, 1)
    public, _, mac = token.partition(".")
    tampered = f"{public}.{mac[::-1]}"
    for response in (
        await client.get(f"/activate/{tampered}"),
        await client.post(f"/activate/{tampered}"),
    ):
        assert response.status_code == 410
        assert "no longer valid" in response.text
    assert not await link_used(db_url)

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
    assert (await client.post(f"/activate/{token}")).status_code == 410
    assert not await link_used(db_url)


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
    assert (await open_link(client, second)).status_code == 200


async def test_deprovisioning_cancels_a_pending_email_and_reactivation_queues_a_new_one(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    admin: dict[str, str],
) -> None:
    user_id = await provision(scim, make_user_body, "leaver@example.com")
    await latest_message(client, admin, lambda m: m["attempts"] >= 1)  # SMTP is down
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
    used = await client.post(f"/activate/{token}", headers=SAME_ORIGIN, follow_redirects=False)
    assert used.status_code == 303
    owner = {"Authorization": f"Bearer {used.cookies[sessions.SESSION_COOKIE]}"}
    client.cookies.clear()
    assert (await client.get("/api/v1/me/card", headers=owner)).status_code == 200

    # Deprovisioning again ends the owner's session at once.
    assert (await scim.patch(f"/Users/{user_id}", deactivate)).status_code == 200
    assert (await client.get("/api/v1/me/card", headers=owner)).status_code == 401


async def test_an_invitation_follows_the_users_address(
    client: httpx.AsyncClient,
    scim: Any,
    make_user_body: Any,
    smtp: SmtpServer,
    admin: dict[str, str],
) -> None:
    """An invitation is a credential: queued while SMTP is down, it goes to the address the IdP
    corrected, not the mistyped one; a user first provisioned with no address is invited once
    the IdP gives one."""
    typo = await provision(
        scim, make_user_body, "typo-user", emails=[{"value": "tpyo@example.com", "primary": True}]
    )
    await latest_message(client, admin, lambda m: m["attempts"] >= 1)  # SMTP is down
    fixed = [{"value": "typo@example.com", "primary": True}]
    correct = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "emails", "value": fixed}],
    }
    assert (await scim.patch(f"/Users/{typo}", correct)).status_code == 200

    nobody = await provision(scim, make_user_body, "no-address-user")
    failed = await latest_message(client, admin, lambda m: m["status"] == "failed")
    assert (failed["user_id"], failed["last_error"]) == (nobody, "no email address")
    given = {
        **correct,
        "Operations": [
            {"op": "add", "path": "emails", "value": [fixed[0] | {"value": "late@example.com"}]}
        ],
    }
    assert (await scim.patch(f"/Users/{nobody}", given)).status_code == 200

    smtp.start()
    await next_link(smtp, 2)
    assert sorted(m["To"] for m in smtp.inbox.messages) == ["late@example.com", "typo@example.com"]


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
    # Past 4,300 digits int() refuses a number (it answered 500); it reads other digits as 1.
    for limit in ("9" * 5000, "\u0661"):
        refused = await client.get(EMAILS, headers=admin, params={"limit": limit})
        scim_error(refused, 400, "invalidValue")
    # JSON nested past the decoder's recursion answered 500, even without a key.
    deep = "[" * 2000 + "]" * 2000
    scim_error(await client.put(SETTINGS, content=deep), 401)
    scim_error(await client.put(SETTINGS, headers=admin, content=deep), 400, "invalidSyntax")
    other = "/api/v1/workspaces/globex/activation-emails"
    scim_error(await client.get(other, headers=admin), 404)


# --------------------------------------------------------------------------- the server secret


async def test_a_new_server_secret_invalidates_sent_links_and_queued_ones_still_work(
    db_url: str, tenant: InitResult, make_user_body: Any, smtp: SmtpServer, settings: Settings
) -> None:
    """Rotation: links already sent die ("no longer valid", 410); queued emails are rendered
    with the new secret at sending, and an admin's resend gives a working link."""
    headers = await admin_headers(db_url, tenant)
    scim = {"Authorization": f"Bearer {tenant.token}"}
    smtp.start()
    async with running_app(settings) as client:
        body = make_user_body("before@example.com")
        assert (await client.post("/scim/v2/Users", json=body, headers=scim)).status_code == 201
        sent_before = await next_link(smtp, 1)
        [before] = await wait_for_status(client, headers, "sent")
    # Queued while no hub runs; it goes out only after the rotation.
    await queue_users(db_url, tenant, 1)

    rotated = msgspec.structs.replace(settings, secret="another-server-secret-" + "r" * 32)
    async with running_app(rotated) as client:
        queued_then = await next_link(smtp, 2)
        assert (await open_link(client, queued_then)).status_code == 200
        client.cookies.clear()
        for response in (
            await client.get(f"/activate/{sent_before}"),
            await client.post(f"/activate/{sent_before}", headers=SAME_ORIGIN),
        ):
            assert response.status_code == 410
            assert "no longer valid" in response.text
        resend = await client.post(EMAILS, headers=headers, json={"user_ids": [before["user_id"]]})
        assert resend.json()["results"][0]["status"] == "queued"
        assert (await open_link(client, await next_link(smtp, 3))).status_code == 200


async def test_links_issued_before_migration_0012_keep_working_after_it(
    db_url: str, tenant: InitResult, smtp: SmtpServer, settings: Settings
) -> None:
    """The upgrade re-keys queued emails (no link secret stays in clear) and sent links work."""
    await queue_users(db_url, tenant, 2)
    # Back to the schema before 0012: each queued email holds its link secret in clear.
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0012-1")
    db = open_database(db_url)

    def deliver_one(conn: Connection) -> tuple[str, str]:
        rows = conn.execute(text("SELECT pk, link_token FROM outbox_messages ORDER BY pk")).all()
        assert all(token.startswith("shact_") and "." not in token for _, token in rows)
        (sent_pk, sent_token), (_, queued_token) = rows
        # The first one went out before the upgrade: sent, secret cleared, lifetime started.
        conn.execute(
            text(
                "UPDATE outbox_messages SET status = 'sent', link_token = NULL, finished = :now "
                "WHERE pk = :pk"
            ),
            {"pk": sent_pk, "now": now_us()},
        )
        conn.execute(
            text(
                "UPDATE activation_links SET expires = :expires "
                "WHERE pk = (SELECT link_pk FROM outbox_messages WHERE pk = :pk)"
            ),
            {"pk": sent_pk, "expires": now_us() + 3_600_000_000},
        )
        return sent_token, queued_token

    try:
        sent_token, queued_token = await db.write(deliver_one)
    finally:
        await db.close()
    upgrade(db_url)

    smtp.start()
    async with running_app(settings) as client:
        signed = await next_link(smtp, 1)
        assert signed != queued_token
        assert "." in signed, "a queued email goes out with a signed link after the upgrade"
        assert (await client.get(f"/activate/{queued_token}")).status_code == 404
        assert (await open_link(client, signed)).status_code == 200
        client.cookies.clear()
        assert (await open_link(client, sent_token)).status_code == 200, "a sent link died"
        assert (await client.get(f"/activate/{sent_token}")).status_code == 410
