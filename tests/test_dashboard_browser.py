"""The admin dashboard in a real browser: headless Chromium driven by Playwright for Python.

One journey against a real `scim-hub serve` process (fresh SQLite file, an admin created with
`scim-hub admin create --password-stdin`): sign in; regenerate the connector's token and read it
from the page; provision a user over SCIM with it; find the user in Team Cards; edit a field and
see it unlinked; create a template with a rule and see the live match count; delete the token and
see the next SCIM request refused (401). Every page is photographed at 1280 px and at 390 px into
test-artifacts/screenshots; at 390 px the test also checks that nothing is wider than the phone's
screen. `SCIM_HUB_UPDATE_SCREENSHOTS=1` also copies the 1280 px ones to docs/screenshots for the
README.

Chromium is Debian's (`apt-get install chromium`); Playwright's own browser download is never
used. Without it the tests skip, saying how to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import LiveServer, cli_command, running_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL = "boss@live.example"
PASSWORD = "dashboard-browser-test-1"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

pytestmark = pytest.mark.server


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "Playwright for Python is not installed: `pip install -e '.[test]'` "
            "(the browser itself comes from Debian: `apt-get install chromium`)"
        )
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            "Chromium not found at /usr/bin/chromium: install Debian's package "
            "(`apt-get install chromium`, as root; .ci/run does) to run the dashboard browser tests"
        )
    return sync_playwright


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server with an admin who has a dashboard password (made by the CLI)."""
    _playwright()
    workdir = tmp_path_factory.mktemp("dashboard")
    with running_server(workdir, outbox_dir=str(workdir / "outbox")) as live:
        created = subprocess.run(
            [*cli_command(), "admin", "create", EMAIL, "--workspace", "live", "--password-stdin"],
            input=PASSWORD + "\n",
            env=live.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        assert f"admin {EMAIL} created" in created.stdout
        yield live


@pytest.fixture(scope="module")
def browser_context(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sync_playwright = _playwright()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            base_url=server.base_url,
        )
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            context.close()


def shoot(page: Any, name: str) -> None:
    """Save the page at 1280 px (and the README's copy if asked), then at 390 px: it must fit."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if os.environ.get("SCIM_HUB_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / f"{name}-390.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 390, f"{name} is {overflow} px wide at a 390 px viewport"
    page.set_viewport_size({"width": 1280, "height": 900})


def scim(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.tenant_url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        timeout=10,
    )


def test_admin_journey_in_chromium(server: LiveServer, browser_context: Any) -> None:
    page = browser_context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the "are you sure?" confirmations

    # Sign in (a wrong password first: the form says so and stays usable).
    page.goto("/admin/team-cards")
    assert page.url.endswith("/admin/sign-in?next=/admin/team-cards")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "The email or password is wrong."
    shoot(page, "sign-in")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/team-cards")

    # Integrations: regenerate the connector's token and read the secret from the page.
    page.get_by_role("link", name="Integrations").click()
    assert page.get_by_label("Tenant URL (the same for every connector)").input_value() == (
        server.tenant_url
    )
    page.get_by_role("button", name="Regenerate token").click()
    secret = page.get_by_label("New token for generic_scim").input_value()
    assert secret.startswith("shub_")
    assert "it will not be shown again" in page.locator(".secret").inner_text()
    page.locator(".secret").get_by_role("button", name="Copy").click()
    shoot(page, "integrations")
    with scim(server, server.token) as old:
        assert old.get("/Users").status_code == 401  # regenerated: the old token died

    # Provision a user over SCIM with the token read from the page.
    with scim(server, secret) as idp:
        created = idp.post(
            "/Users",
            json={
                "schemas": [USER_URN, ENTERPRISE_URN],
                "userName": "grace.hopper@live.example",
                "displayName": "Grace Hopper",
                "title": "Rear Admiral",
                "emails": [{"value": "grace.hopper@live.example", "primary": True}],
                ENTERPRISE_URN: {"department": "Navy"},
            },
        )
        assert created.status_code == 201, created.text
        assert idp.post("/Users", json={"schemas": [USER_URN]}).status_code == 400

    # Team Cards: the user is there; search finds them; the card editor edits a field.
    page.get_by_role("link", name="Team Cards").click()
    assert page.get_by_test_id("seats").inner_text() == "1"
    page.get_by_label("Search").fill("hopper")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Grace Hopper").wait_for()
    shoot(page, "team-cards")
    page.get_by_role("link", name="Grace Hopper").click()
    row = page.locator('tr[data-field="job_title"]')
    assert row.locator('[data-col="linked"]').inner_text() == "Linked"
    row.get_by_role("textbox", name="Job title").fill("Commodore")
    row.get_by_role("button", name="Save Job title").click()
    page.get_by_role("status").wait_for()
    row = page.locator('tr[data-field="job_title"]')
    assert row.get_by_role("textbox", name="Job title").input_value() == "Commodore"
    assert row.locator('[data-col="linked"]').inner_text() == "Unlinked"
    assert row.locator('[data-col="source"]').inner_text() == "manual"
    shoot(page, "card-editor")

    # Card Settings: a rule with a syntax error says so inline; a good one counts matches.
    page.get_by_role("link", name="Card Settings").click()
    new = page.locator("section", has=page.get_by_role("heading", name="New template"))
    new.get_by_label("Name", exact=True).fill("Navy")
    rule = new.get_by_label("Rule")
    rule.press_sequentially('department eq "Navy" and', delay=5)
    status = new.locator(".rule-status")
    page.wait_for_function(
        "el => el.textContent.includes('invalid rule')", arg=status.element_handle()
    )
    rule.press_sequentially(' job_title sw "Rear"', delay=5)
    page.wait_for_function(
        "el => el.textContent.startsWith('matches 1 current user')", arg=status.element_handle()
    )
    new.get_by_label("Company name").fill("US Navy")
    new.get_by_role("button", name="Create template").click()
    assert "Template Navy created." in page.get_by_role("status").first.inner_text()
    counted = page.locator("[data-count-rule]").first
    page.wait_for_function(
        "el => el.textContent.includes('matches 1 current user')", arg=counted.element_handle()
    )
    shoot(page, "card-settings")

    # Activity: the provisioning log shows the create and the refused body.
    page.get_by_role("link", name="Activity").click()
    for _ in range(30):  # written in the background: give it a moment
        if page.get_by_text("grace.hopper@live.example").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    assert page.get_by_text("grace.hopper@live.example").count() >= 1
    page.get_by_label("Outcome").select_option("error")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("tbody .badge").first.inner_text().startswith("Error 400")
    page.get_by_label("Outcome").select_option("")
    page.get_by_role("button", name="Filter").click()
    shoot(page, "activity")

    # Security: delete the token; the next SCIM request with it is refused.
    page.get_by_role("link", name="Security").click()
    shoot(page, "security")
    page.get_by_role("button", name=f"Delete token …{secret[-4:]} of generic_scim").click()
    assert "Token deleted" in page.get_by_role("status").inner_text()
    assert page.get_by_text(f"…{secret[-4:]}").count() == 0
    with scim(server, secret) as idp:
        refused = idp.get("/Users")
        assert refused.status_code == 401
        assert refused.json()["status"] == "401"

    # Sign out: the dashboard asks for a password again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/admin/sign-in")
    page.goto("/admin/security")
    assert "/admin/sign-in" in page.url
