"""The admin dashboard over HTTP (in-process): sign-in, sessions, CSRF, lockout, every page.

The browser-level journey is in `test_dashboard_browser.py`; these tests pin the server-side
rules a browser cannot show: cookie flags, CSRF refusals, the slow-down after failed sign-ins,
a deactivated admin's sessions ending at once, and each page rendering from the core services.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, func, select, update

from hub.core import admin_sessions, tenants
from hub.core.database import open_database
from hub.core.models import admin_credentials, audit
from hub.core.models import admin_sessions as sessions_table
from hub.core.tenants import InitResult
from tests.conftest import ONLY_SQLITE

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The app's test client, not following redirects (the tests check where they point)."""
    client.follow_redirects = False
    return client


async def in_db(db_url: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    db = open_database(db_url)
    try:
        return await db.write(fn, *args, **kwargs)
    finally:
        await db.close()


async def give_password(db_url: str, tenant: InitResult, password: str = PASSWORD) -> None:
    hashed = admin_sessions.hash_password(password)

    def unit(conn: Connection) -> None:
        ws = tenants.require_workspace(conn, tenant.workspace).pk
        admin_sessions.set_password_by_email(
            conn, workspace_pk=ws, email=tenant.admin, password_hash=hashed
        )

    await in_db(db_url, unit)


async def sign_in_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/admin/sign-in")
    assert page.status_code == 200
    match = CSRF.search(page.text)
    assert match
    return match.group(1)


async def attempt(
    client: httpx.AsyncClient, email: str, password: str, next_: str = ""
) -> httpx.Response:
    csrf = await sign_in_form(client)
    return await client.post(
        "/admin/sign-in",
        data={"csrf": csrf, "email": email, "password": password, "next": next_},
    )


async def signed_in(client: httpx.AsyncClient, db_url: str, tenant: InitResult) -> str:
    """Sign the tenant's admin in; return the session's CSRF token."""
    await give_password(db_url, tenant)
    response = await attempt(client, tenant.admin, PASSWORD)
    assert response.status_code == 303, response.text
    page = await client.get("/admin/integrations")
    assert page.status_code == 200
    match = CSRF.search(page.text)
    assert match
    return match.group(1)


async def test_sign_in_sets_a_locked_down_session_cookie(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    await give_password(db_url, tenant)
    # Unsigned-in pages send the browser to the sign-in form, and back afterwards.
    away = await client.get("/admin/team-cards")
    assert away.status_code == 303
    assert away.headers["location"] == "/admin/sign-in?next=/admin/team-cards"

    response = await attempt(client, tenant.admin.upper(), PASSWORD, "/admin/team-cards")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/team-cards"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("scim_hub_admin=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/admin" in flags
    assert "secure" not in flags  # http base URL; see the https test below
    page = await client.get("/admin/team-cards")
    assert page.status_code == 200
    assert tenant.admin in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]

    # An open redirect is not offered.
    client.cookies.clear()
    response = await attempt(client, tenant.admin, PASSWORD, "https://evil.example/")
    assert response.headers["location"] == "/admin/integrations"


async def test_cookie_is_secure_when_served_over_https(db_url: str, tenant: InitResult) -> None:
    from litestar.testing import AsyncTestClient

    from hub.app import create_app
    from hub.settings import load_settings

    await give_password(db_url, tenant)
    settings = load_settings(environ={}, database_url=db_url, base_url="https://hub.example")
    async with AsyncTestClient(app=create_app(settings), base_url="https://hub.example") as http:
        http.follow_redirects = False
        response = await attempt(http, tenant.admin, PASSWORD)
        assert response.status_code == 303
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("scim_hub_admin=")
        )
        assert "secure" in {part.strip().lower() for part in cookie.split(";")}


async def test_wrong_password_and_unknown_email_are_refused_alike(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    await give_password(db_url, tenant)
    wrong = await attempt(client, tenant.admin, "not the password")
    unknown = await attempt(client, "nobody@nowhere.example", PASSWORD)
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "The email or password is wrong." in response.text
        assert "scim_hub_admin=" not in response.headers.get("set-cookie", "")
    assert (await client.get("/admin/integrations")).status_code == 303


async def test_sign_in_form_needs_its_csrf_cookie(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    await give_password(db_url, tenant)
    forged = await client.post(
        "/admin/sign-in", data={"csrf": "guess", "email": tenant.admin, "password": PASSWORD}
    )
    assert forged.status_code == 403
    assert "expired" in forged.text
    assert "scim_hub_admin=" not in forged.headers.get("set-cookie", "")


async def test_every_post_needs_the_session_csrf_token(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    csrf = await signed_in(client, db_url, tenant)
    url = f"/admin/integrations/connectors/{tenant.connector_id}/state"
    for data in ({"enabled": "off"}, {"enabled": "off", "csrf": "not-the-token"}):
        refused = await client.post(url, data=data)
        assert refused.status_code == 403
        assert "security token" in refused.text
    page = await client.get("/admin/integrations")
    assert "Enabled" in page.text  # nothing changed
    # The preview endpoint (fetch) takes the token in a header.
    preview = await client.post("/admin/card-settings/preview", json={"rule": 'title eq "x"'})
    assert preview.status_code == 403
    ok = await client.post(
        "/admin/card-settings/preview",
        json={"rule": 'department eq "Sales"'},
        headers={"X-CSRF-Token": csrf},
    )
    assert ok.status_code == 200
    assert ok.json() == {"matches": 0, "activeUsers": 0, "error": None}
    done = await client.post(url, data={"enabled": "off", "csrf": csrf})
    assert done.status_code == 303
    assert "Disabled" in (await client.get("/admin/integrations")).text


async def test_a_csrf_token_that_is_not_ascii_is_refused_not_crashed(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    # hmac.compare_digest takes ASCII strings only: "é" for the token answered 500.
    await sign_in_form(client)  # the sign-in form's cookie is set
    forged = await client.post(
        "/admin/sign-in", data={"csrf": "é", "email": tenant.admin, "password": PASSWORD}
    )
    assert forged.status_code == 403
    assert "expired" in forged.text
    await signed_in(client, db_url, tenant)
    url = f"/admin/integrations/connectors/{tenant.connector_id}/state"
    refused = await client.post(url, data={"enabled": "off", "csrf": "é"})
    assert refused.status_code == 403
    assert "security token" in refused.text
    assert "Enabled" in (await client.get("/admin/integrations")).text
    preview = await client.post(
        "/admin/card-settings/preview",
        json={"rule": 'title eq "x"'},
        headers={"X-CSRF-Token": b"\xe9"},  # a header's bytes read as Latin-1: "é"
    )
    assert preview.status_code == 403


async def test_unknown_emails_slow_down_like_accounts_so_429_reveals_nothing(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    await give_password(db_url, tenant)
    stranger = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    known = [(await attempt(client, tenant.admin, f"wrong-{i}")) for i in range(6)]
    unknown = [(await attempt(client, stranger, f"wrong-{i}")) for i in range(6)]
    assert [r.status_code for r in unknown] == [r.status_code for r in known]
    assert [r.status_code for r in unknown] == [401, 401, 401, 401, 429, 429]
    for a, b in zip(known[4:], unknown[4:], strict=True):
        assert abs(int(b.headers["retry-after"]) - int(a.headers["retry-after"])) <= 1
        assert "Too many failed sign-ins" in b.text
    # Another unknown email is not paused by the first one's failures.
    assert (await attempt(client, "other-" + stranger, "x")).status_code == 401


async def test_five_failures_in_a_row_slow_down_that_account(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    await give_password(db_url, tenant)
    statuses = [(await attempt(client, tenant.admin, f"wrong-{i}")).status_code for i in range(5)]
    # The fifth failure locks the account for a while; it says so and for how long.
    assert statuses == [401, 401, 401, 401, 429]
    locked = await attempt(client, tenant.admin, PASSWORD)  # even the right password waits
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert 1 <= int(locked.headers["retry-after"]) <= 30
    assert (await client.get("/admin/integrations")).status_code == 303

    # Once the pause is over, the right password works and resets the count.
    def unlock(conn: Connection) -> None:
        conn.execute(update(admin_credentials).values(locked_until=time.time_ns() // 1000 - 1))

    await in_db(db_url, unlock)
    assert (await attempt(client, tenant.admin, PASSWORD)).status_code == 303

    def failures(conn: Connection) -> int:
        return int(conn.execute(select(admin_credentials.c.failures)).scalar_one())

    assert await in_db(db_url, failures) == 0

    # Another failure after that doubles nothing: the count starts again from zero.
    client.cookies.clear()
    assert (await attempt(client, tenant.admin, "wrong again")).status_code == 401

    def audited(conn: Connection) -> int:
        return int(
            conn.execute(
                select(func.count()).where(audit.c.action == "dashboard sign-in failed")
            ).scalar_one()
        )

    assert await in_db(db_url, audited) == 6


def test_lock_delay_doubles_and_is_capped() -> None:
    delays = [admin_sessions.lock_delay_us(n) // 1_000_000 for n in range(4, 12)]
    assert delays == [0, 30, 60, 120, 240, 480, 900, 900]


async def test_deactivated_admin_is_signed_out_at_once_and_cannot_sign_in(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    await signed_in(client, db_url, tenant)

    def deactivate(conn: Connection) -> None:
        ws = tenants.require_workspace(conn, tenant.workspace).pk
        tenants.set_admin_active(conn, workspace_pk=ws, email=tenant.admin, active=False)

    await in_db(db_url, deactivate)
    gone = await client.get("/admin/security")
    assert gone.status_code == 303
    assert gone.headers["location"].startswith("/admin/sign-in")
    client.cookies.clear()
    refused = await attempt(client, tenant.admin, PASSWORD)
    assert refused.status_code == 401
    assert "scim_hub_admin=" not in refused.headers.get("set-cookie", "")


async def test_sign_out_ends_the_session(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    csrf = await signed_in(client, db_url, tenant)
    session = client.cookies.get("scim_hub_admin")
    out = await client.post("/admin/sign-out", data={"csrf": csrf})
    assert out.status_code == 303
    assert out.headers["location"] == "/admin/sign-in"
    # The old cookie value, replayed, no longer works.
    client.cookies.set("scim_hub_admin", session or "", domain="testserver.local", path="/admin")
    assert (await client.get("/admin/integrations")).status_code == 303

    def ended(conn: Connection) -> int:
        return len(
            conn.execute(
                select(sessions_table.c.pk).where(sessions_table.c.revoked.is_not(None))
            ).all()
        )

    assert await in_db(db_url, ended) == 1


async def test_each_page_renders_from_the_core_services(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult, scim: Any
) -> None:
    created = await scim.post(
        "/Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@acme.example",
            "displayName": "Ada Lovelace",
            "title": "Engineer",
            "active": True,
        },
    )
    assert created.status_code == 201
    failed = await scim.post("/Users", {"schemas": [], "userName": ""})
    assert failed.status_code == 400
    csrf = await signed_in(client, db_url, tenant)

    integrations = await client.get("/admin/integrations")
    assert "http://testserver.local/scim/v2" in integrations.text
    assert tenant.connector in integrations.text
    assert "Regenerate token" in integrations.text

    security = await client.get("/admin/security")
    assert security.status_code == 200
    assert tenant.admin in security.text

    settings = await client.get("/admin/card-settings")
    assert settings.status_code == 200
    assert 'id="send-activation"' in settings.text

    cards = await client.get("/admin/team-cards")
    assert cards.status_code == 200
    assert "Ada Lovelace" in cards.text
    assert re.search(r'data-testid="seats">1<', cards.text)
    card_id = re.search(r'href="/admin/team-cards/([0-9a-f-]{36})"', cards.text)
    assert card_id
    card = await client.get(f"/admin/team-cards/{card_id.group(1)}")
    assert card.status_code == 200
    assert 'value="Engineer"' in card.text
    edited = await client.post(
        f"/admin/team-cards/{card_id.group(1)}/fields/job_title",
        data={"csrf": csrf, "do": "save", "value": "Countess"},
    )
    assert edited.status_code == 303
    card = await client.get(f"/admin/team-cards/{card_id.group(1)}")
    row = card.text.split('data-field="job_title"', 1)[1].split("</tr>", 1)[0]
    assert 'value="Countess"' in row
    assert "Unlinked" in row
    assert "manual" in row
    assert "saved" in card.text  # the flash message

    filtered = await client.get("/admin/team-cards", params={"q": "nobody-like-this"})
    assert "No card matches." in filtered.text
    bad = await client.get("/admin/team-cards", params={"status": "sleepy"})
    assert bad.status_code == 200
    assert "status must be one of" in bad.text

    # The activity log is written in the background: wait for it.
    for _ in range(50):
        log = await client.get("/admin/activity")
        if "ada@acme.example" in log.text:
            break
        await asyncio.sleep(0.1)
    assert log.status_code == 200
    assert "ada@acme.example" in log.text
    errors = await client.get("/admin/activity", params={"outcome": "error"})
    assert "ada@acme.example" not in errors.text
    assert "Error 400" in errors.text


async def test_templates_reorder_and_the_rule_editor(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult, scim: Any
) -> None:
    csrf = await signed_in(client, db_url, tenant)
    for dept in ("Sales", "Sales", "Legal"):
        await scim.post(
            "/Users",
            {
                "schemas": [
                    "urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                ],
                "userName": f"u{time.monotonic_ns()}@acme.example",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": dept},
            },
        )
    preview = await client.post(
        "/admin/card-settings/preview",
        json={"rule": 'department eq "Sales"'},
        headers={"X-CSRF-Token": csrf},
    )
    assert preview.json()["matches"] == 2
    broken = await client.post(
        "/admin/card-settings/preview",
        json={"rule": 'department eq "Sales" and'},
        headers={"X-CSRF-Token": csrf},
    )
    assert broken.json()["matches"] is None
    assert "invalid rule" in broken.json()["error"]

    for name, rule in (("Sales team", 'department eq "Sales"'), ("Everyone", "")):
        made = await client.post(
            "/admin/card-settings/templates",
            data={"csrf": csrf, "name": name, "rule": rule, "field_company_name": "Acme"},
        )
        assert made.status_code == 303
    refused = await client.post(
        "/admin/card-settings/templates",
        data={"csrf": csrf, "name": "Broken", "rule": "department eq"},
    )
    assert refused.status_code == 303
    page = await client.get("/admin/card-settings")
    assert "invalid rule" in page.text  # the flash says why
    assert page.text.index("1. Sales team") < page.text.index("2. Everyone")
    everyone = re.search(
        r'templates/([0-9a-f-]{36})/move"[^<]*>\s*<input[^>]*>\s*'
        r'<input type="hidden" name="direction" value="up">',
        page.text,
    )
    assert everyone
    ids = re.findall(r'action="/admin/card-settings/templates/([0-9a-f-]{36})/delete"', page.text)
    moved = await client.post(
        f"/admin/card-settings/templates/{ids[1]}/move", data={"csrf": csrf, "direction": "up"}
    )
    assert moved.status_code == 303
    page = await client.get("/admin/card-settings")
    assert page.text.index("1. Everyone") < page.text.index("2. Sales team")

    off = await client.post(
        "/admin/card-settings/activation-email",
        data={"csrf": csrf, "send_activation_email": "off"},
    )
    assert off.status_code == 303
    page = await client.get("/admin/card-settings")
    assert 'name="send_activation_email" value="on" checked' not in page.text


async def test_token_secret_is_shown_once_and_dead_tokens_say_why(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult, scim: Any
) -> None:
    csrf = await signed_in(client, db_url, tenant)
    made = await client.post(
        f"/admin/integrations/connectors/{tenant.connector_id}/token",
        data={"csrf": csrf, "mode": "regenerate"},
    )
    assert made.status_code == 201
    token = re.search(r'id="new-token" type="text" readonly value="(shub_[^"]+)"', made.text)
    assert token
    assert "will not be shown again" in made.text
    assert made.headers["cache-control"] == "no-store"
    assert token.group(1) not in (await client.get("/admin/integrations")).text
    assert (await scim.get("/Users")).status_code == 401  # regenerated: the old one died
    assert (await scim.with_token(token.group(1)).get("/Users")).status_code == 200

    # A second admin makes a token, then is deactivated: the token shows as dead, with why.
    def second_admin(conn: Connection) -> None:
        ws = tenants.require_workspace(conn, tenant.workspace).pk
        admin_sessions.create_admin(
            conn, workspace_pk=ws, email="bob@acme.example", password_hash=None
        )
        from hub.core import tokens

        tokens.generate(
            conn,
            workspace_pk=ws,
            connector=tenant.connector,
            admin_pk=tenants.admin_pk(conn, ws, "bob@acme.example"),
        )
        tenants.set_admin_active(conn, workspace_pk=ws, email="bob@acme.example", active=False)

    await in_db(db_url, second_admin)
    security = await client.get("/admin/security")
    dead = security.text.split('id="dead-tokens"', 1)[1]
    assert "created by deactivated admin bob@acme.example" in dead

    token_id = re.findall(r'action="/admin/security/tokens/([0-9a-f-]{36})/revoke"', security.text)
    assert len(token_id) == 2
    revoked = await client.post(f"/admin/security/tokens/{token_id[0]}/revoke", data={"csrf": csrf})
    assert revoked.status_code == 303
    assert (await scim.with_token(token.group(1)).get("/Users")).status_code == 401

    def audited(conn: Connection) -> list[str]:
        return list(
            conn.execute(
                select(audit.c.action).where(audit.c.action.like("dashboard token%"))
            ).scalars()
        )

    assert sorted(await in_db(db_url, audited)) == [
        "dashboard token-regenerate",
        "dashboard token-revoke",
    ]


async def test_new_connector_from_installed_idps(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    csrf = await signed_in(client, db_url, tenant)
    page = await client.get("/admin/integrations")
    assert 'value="azure_ad"' in page.text
    made = await client.post(
        "/admin/integrations/connectors",
        data={"csrf": csrf, "name": "Entra EU", "idp": "azure_ad"},
    )
    assert made.status_code == 303
    page = await client.get("/admin/integrations")
    assert "Entra EU" in page.text
    assert "Generate token" in page.text  # no token yet
    bad = await client.post(
        "/admin/integrations/connectors", data={"csrf": csrf, "name": "X", "idp": "nope"}
    )
    assert bad.status_code == 303
    assert "not an installed IdP" in (await client.get("/admin/integrations")).text


@pytest.mark.parametrize("path", ["/admin/static/dashboard.css", "/admin/static/dashboard.js"])
async def test_static_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert len(response.content) > 500


@ONLY_SQLITE  # the CLI path is the same on PostgreSQL; one database is enough here
def test_cli_creates_admins_and_sets_passwords(db_url: str, tenant: InitResult) -> None:
    import subprocess

    from tests.conftest import main_in_thread
    from tests.server import hub_environ

    env = hub_environ(db_url, "http://testserver.local")

    def cli(*args: str, password: str) -> subprocess.CompletedProcess[str]:
        return main_in_thread(
            ["admin", *args, "--workspace", "acme", "--password-stdin"],
            env,
            stdin=password + "\n",
            check=False,
        )

    short = cli("create", "carol@acme.example", password="short")
    assert short.returncode == 2
    assert "10 to 1024 characters" in short.stderr
    made = cli("create", "carol@acme.example", password=PASSWORD)
    assert made.returncode == 0, made.stderr
    assert "sign in at http://testserver.local/admin" in made.stdout
    again = cli("create", "Carol@acme.example", password=PASSWORD)
    assert again.returncode == 2
    assert "already" in again.stderr
    changed = cli("set-password", tenant.admin, password=PASSWORD + "!")
    assert changed.returncode == 0, changed.stderr

    async def check() -> None:
        def hashes(conn: Connection) -> list[str]:
            return list(conn.execute(select(admin_credentials.c.password_hash)).scalars())

        stored = await in_db(db_url, hashes)
        assert len(stored) == 2
        assert all(h.startswith("$argon2id$") for h in stored)

    asyncio.run(check())


async def test_team_cards_pages_by_keyset(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult, scim: Any
) -> None:
    for i in range(55):
        made = await scim.post(
            "/Users",
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": f"p{i:03d}@acme.example",
                "active": i % 11 != 0,
            },
        )
        assert made.status_code == 201
    await signed_in(client, db_url, tenant)
    first = await client.get("/admin/team-cards")
    assert re.search(r'data-testid="seats">50<', first.text)
    assert "55 cards, showing 50" in first.text
    assert "p000@acme.example" in first.text
    assert "p050@acme.example" not in first.text
    next_url = re.search(r'href="(/admin/team-cards\?after=[^"]+)" rel="next"', first.text)
    assert next_url
    second = await client.get(next_url.group(1).replace("&amp;", "&"))
    assert "55 cards, showing 5" in second.text
    assert "p050@acme.example" in second.text
    assert "p049@acme.example" not in second.text
    assert 'rel="next"' not in second.text
    prev_url = re.search(r'href="(/admin/team-cards\?before=[^"]+)" rel="prev"', second.text)
    assert prev_url
    back = await client.get(prev_url.group(1).replace("&amp;", "&"))
    assert "p000@acme.example" in back.text
    assert "p049@acme.example" in back.text
    inactive = await client.get("/admin/team-cards", params={"status": "inactive"})
    assert "5 cards, showing 5" in inactive.text
    searched = await client.get("/admin/team-cards", params={"q": "p05"})
    assert "Search results, showing 5" in searched.text


async def test_a_search_too_long_to_run_says_so_on_the_page(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult, scim: Any, make_user_body: Any
) -> None:
    # SQLite refuses a LIKE pattern over 50,000 bytes: this page answered 500.
    assert (await scim.post("/Users", make_user_body("ann@example.com"))).status_code == 201
    await signed_in(client, db_url, tenant)
    page = await client.get("/admin/team-cards", params={"q": "x" * 60_000})
    assert page.status_code == 200
    assert "at most 2048 characters" in page.text


async def test_a_nul_in_a_form_or_query_is_refused_on_every_database(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult, scim: Any, make_user_body: Any
) -> None:
    """PostgreSQL holds and compares no U+0000: these answered 500 there (SQLite stored it)."""
    created = await scim.post("/Users", make_user_body("ann@example.com"))
    assert created.status_code == 201
    csrf = await signed_in(client, db_url, tenant)
    listing = await client.get("/admin/team-cards")
    card = re.search(r'href="(/admin/team-cards/[^"/?]+)"', listing.text)
    assert card
    posts = [
        (f"{card.group(1)}/fields/job_title", {"do": "save", "value": "a\x00b"}),
        ("/admin/card-settings/templates", {"name": "T\x00", "rule": ""}),
        ("/admin/card-settings/templates", {"name": "T", "rule": "", "field_title": "a\x00"}),
        ("/admin/integrations/connectors", {"name": "C\x00", "idp": "okta"}),
    ]
    for url, form in posts:
        refused = await client.post(url, data={"csrf": csrf, **form})
        assert refused.status_code == 303, (url, form)  # back to the form, saying why
        back = await client.get(refused.headers["location"])
        assert "must not contain U+0000" in back.text, (url, form)
    for query in ("q=a%00", "template=%00", "status=%00", "after=%00"):
        refused = await client.get(f"/admin/team-cards?{query}")
        assert refused.status_code == 400, query
        assert refused.headers["content-type"].startswith("text/html")
        assert "U+0000" in refused.text
    assert (await client.get("/admin/activity?user=a%00")).status_code == 400
    assert "a\x00b" not in (await client.get(card.group(1))).text
    assert "T\x00" not in (await client.get("/admin/card-settings")).text
    # The sign-in form: an email holding NUL is no admin's.
    client.cookies.clear()
    assert (await attempt(client, "a\x00@example.com", PASSWORD)).status_code == 401


@ONLY_SQLITE  # the plan is checked on SQLite (EXPLAIN QUERY PLAN)
async def test_team_cards_page_reads_an_index_not_a_sort(db_url: str, tenant: InitResult) -> None:
    """The page query walks (workspace, pk) in index order: no temporary sort, no OFFSET."""
    from sqlalchemy import event

    from hub.core import cards, team_cards

    def plans(conn: Connection) -> list[str]:
        seen: list[tuple[str, Any]] = []

        def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            if statement.lstrip().startswith("SELECT cards.pk"):
                seen.append((statement, params))

        event.listen(conn, "before_cursor_execute", capture)
        try:
            ws = tenants.require_workspace(conn, tenant.workspace).pk
            team_cards.page(conn, ws, cards.CardQuery(limit=50), after="some-card-id")
        finally:
            event.remove(conn, "before_cursor_execute", capture)
        assert len(seen) == 1
        statement, params = seen[0]
        assert params[-1] == 0  # SQLite's dialect always writes OFFSET; nothing is skipped
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
        return [str(row[-1]) for row in rows]

    plan = await in_db(db_url, plans)
    assert any("ix_cards_workspace_order" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_failures_are_html_pages(
    client: httpx.AsyncClient, db_url: str, tenant: InitResult
) -> None:
    await signed_in(client, db_url, tenant)
    missing = await client.get("/admin/team-cards/no-such-card")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "no card with id" in missing.text
    unknown_template = await client.get("/admin/team-cards", params={"template": "nope"})
    assert unknown_template.status_code == 200
    assert "no template with id" in unknown_template.text
