"""The plugin contract and manager: registry, broken-plugin isolation, settings, the partner plugin.

Test plugins are real modules/objects registered with the plugin manager (`build_registry(
extra_plugins=…)`) or a real distribution pip-installed into the environment
(`tests/partner_plugin`), never mocks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from hub import hookspecs
from hub.hookspecs import Dialect, JSONObject, RequestContext, hookimpl
from hub.plugins import PluginSettingsError, build_registry
from tests.conftest import TEST_BASE_URL, ScimClient, assert_scim_error, create_workspace, user_body

ROOT = Path(__file__).resolve().parent.parent
PARTNER = Path(__file__).resolve().parent / "partner_plugin"
PARTNER_DIST = "scim-hub-humble-hr"


# --------------------------------------------------------------------------- the contract


def _hookspecs() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "scim_hub_spec")
    ]


def test_every_hookspec_is_documented_and_exercised() -> None:
    """STYLE.md: a hookspec without documentation or a test exercising it fails here."""
    readme = (ROOT / "README.md").read_text()
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    names = _hookspecs()
    assert "register_idps" in names
    for name in names:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        for section in ("When:", "Receives:", "Returns:", "Combination:"):
            assert section in doc or section.lower() in doc.lower(), (name, section)
        assert f"`{name}`" in readme, f"README does not document hook {name}"
        assert f"def {name}(" in tests_text, f"no test plugin implements {name}"


def test_builtin_plugins_load_through_entry_points() -> None:
    registry = build_registry()
    names = {info.name: info for info in registry.plugins}
    for plugin, idp in (
        ("azure_ad", "azure_ad"),
        ("okta", "okta"),
        ("generic_scim", "generic_scim"),
        ("any_scim", "any_scim"),
    ):
        assert names[plugin].error is None
        assert names[plugin].version == importlib.metadata.version("scim-hub")
        assert "register_idps" in names[plugin].hooks
        assert registry.dialects[idp].plugin == plugin
    assert registry.dialects["azure_ad"].display_name == "Microsoft Entra ID"
    assert registry.dialects["generic_scim"].display_name == "Other SCIM client"


# --------------------------------------------------------------------------- broken plugins


class _Raises:
    """A plugin whose `register_idps` raises."""

    @hookimpl
    def register_idps(self) -> list[Dialect]:
        raise RuntimeError("boom at start-up")


class _Misspelt:
    """A plugin implementing a hook the contract does not define."""

    @hookimpl
    def register_idp(self) -> list[Dialect]:  # sic
        return []


class _BadMapping:
    """A plugin whose dialect maps a field that is not a card profile field."""

    @hookimpl
    def register_idps(self) -> list[Dialect]:
        return [Dialect(name="bad_mapping", display_name="Bad", mapping={"shoe_size": "x"})]


def _explode(body: JSONObject, context: RequestContext) -> JSONObject:
    raise ValueError("cannot read this body")


class _ExplodesPerRequest:
    """A plugin whose dialect hooks raise on every request."""

    @hookimpl
    def register_idps(self) -> list[Dialect]:
        return [
            Dialect(
                name="exploding",
                display_name="Exploding IdP",
                normalise=_explode,
                normalise_query=lambda q, c: _explode({}, c),  # type: ignore[arg-type,return-value]
            )
        ]


class _EventsFail:
    """A plugin whose event hook raises (logged, the change stands)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def user_provisioned(self, workspace: str, connector: str, user: JSONObject) -> None:
        self.calls.append(user["userName"])
        raise RuntimeError("webhook down")


class _EventsRecord:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def user_provisioned(self, workspace: str, connector: str, user: JSONObject) -> None:
        self.seen.append(("provisioned", user["userName"]))

    @hookimpl
    def user_updated(self, workspace: str, connector: str, user: JSONObject) -> None:
        self.seen.append(("updated", user["userName"]))

    @hookimpl
    def user_deprovisioned(
        self, workspace: str, connector: str, user: JSONObject, deleted: bool
    ) -> None:
        self.seen.append(("deleted" if deleted else "deprovisioned", user["userName"]))

    @hookimpl
    def user_reactivated(self, workspace: str, connector: str, user: JSONObject) -> None:
        self.seen.append(("reactivated", user["userName"]))


def test_broken_plugins_are_reported_by_name_and_left_out() -> None:
    registry = build_registry(
        extra_plugins={"raises": _Raises(), "misspelt": _Misspelt(), "bad_mapping": _BadMapping()}
    )
    info = {i.name: i for i in registry.plugins}
    assert "boom at start-up" in (info["raises"].error or "")
    assert "register_idp" in (info["misspelt"].error or "")
    assert "shoe_size" in (info["bad_mapping"].error or "")
    assert "bad_mapping" not in registry.dialects
    # The others keep working.
    assert {"azure_ad", "okta", "generic_scim"} <= set(registry.dialects)
    assert info["okta"].error is None


async def test_a_failing_dialect_hook_fails_only_its_request(db_url: str, settings: Any) -> None:
    """A dialect hook raising: that request gets a SCIM 500 naming the plugin; others work."""
    from litestar.testing import AsyncTestClient

    from hub.app import create_app

    events = _EventsFail()
    registry = build_registry(extra_plugins={"exploder": _ExplodesPerRequest(), "events": events})
    bad = await create_workspace(db_url, "bad-idp", idp="exploding")
    good = await create_workspace(db_url, "good-idp", idp="generic_scim")
    async with AsyncTestClient(app=create_app(settings, registry), base_url=TEST_BASE_URL) as http:
        broken = ScimClient(http, bad.token)
        body = assert_scim_error(await broken.post("/Users", user_body()), 500)
        assert "exploder" in body["detail"]
        body = assert_scim_error(
            await broken.get("/Users", params={"filter": 'userName eq "x"'}), 500
        )
        assert "exploder" in body["detail"]
        working = ScimClient(http, good.token)
        created = await working.post("/Users", user_body("kept@example.com"))
        assert created.status_code == 201  # the failing event hook did not undo it
        assert events.calls == ["kept@example.com"]
        assert (await working.get(f"/Users/{created.json()['id']}")).status_code == 200


class _Stamper:
    """A plugin whose dialect sets ``nickName``."""

    @hookimpl
    def register_idps(self) -> list[Dialect]:
        return [
            Dialect(
                name="stamped",
                display_name="Stamped",
                normalise=lambda body, context: {**body, "nickName": "stamped"},
            )
        ]


class _Layered:
    """A plugin whose dialect extends "stamped" (and one no plugin provides) by name."""

    @hookimpl
    def register_idps(self) -> list[Dialect]:
        return [
            Dialect(
                name="layered",
                display_name="Layered",
                # Runs after "stamped": the title shows what the extended dialect wrote.
                normalise=lambda body, context: {**body, "title": body.get("nickName", "none")},
                extends=("stamped", "not_installed"),
            )
        ]


async def test_a_dialect_extends_another_by_name(db_url: str, settings: Any) -> None:
    """`Dialect.extends`: the extended dialect's normalise runs first; a missing one is skipped."""
    from litestar.testing import AsyncTestClient

    from hub.app import create_app

    registry = build_registry(extra_plugins={"stamper": _Stamper(), "layered": _Layered()})
    assert not [info for info in registry.plugins if info.error]
    workspace = await create_workspace(db_url, "layers", idp="layered")
    async with AsyncTestClient(app=create_app(settings, registry), base_url=TEST_BASE_URL) as http:
        created = await ScimClient(http, workspace.token).post("/Users", user_body())
    assert created.status_code == 201, created.text
    assert (created.json()["nickName"], created.json()["title"]) == ("stamped", "stamped")


async def test_event_hooks_are_broadcast_after_commit(db_url: str, settings: Any) -> None:
    from litestar.testing import AsyncTestClient

    from hub.app import create_app

    recorder = _EventsRecord()
    registry = build_registry(extra_plugins={"recorder": recorder})
    ws = await create_workspace(db_url, "events", idp="okta")
    async with AsyncTestClient(app=create_app(settings, registry), base_url=TEST_BASE_URL) as http:
        scim = ScimClient(http, ws.token)
        uid = (await scim.post("/Users", user_body("ev@example.com"))).json()["id"]
        ops = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
        for value in ({"title": "CTO"}, {"active": False}, {"active": True}):
            body = {"schemas": [ops], "Operations": [{"op": "replace", "value": value}]}
            assert (await scim.patch(f"/Users/{uid}", body)).status_code == 200
        assert (await scim.delete(f"/Users/{uid}")).status_code == 204
    assert recorder.seen == [
        ("provisioned", "ev@example.com"),
        ("updated", "ev@example.com"),
        ("deprovisioned", "ev@example.com"),
        ("reactivated", "ev@example.com"),
        ("deleted", "ev@example.com"),
    ]


# --------------------------------------------------------------------------- settings


class _Settings(msgspec.Struct, frozen=True):
    retries: int = 3
    region: str = "eu"


class _WithSettings:
    @hookimpl
    def register_idps(self) -> list[Dialect]:
        return [Dialect(name="configured", display_name="Configured", settings=_Settings)]


def test_plugin_settings_from_the_environment() -> None:
    environ = {"SCIM_HUB_PLUGIN_CONFIGURED_RETRIES": "5"}
    registry = build_registry(extra_plugins={"configured": _WithSettings()}, environ=environ)
    assert registry.settings["configured"] == _Settings(retries=5, region="eu")
    dialect = registry.dialects["configured"]
    context = registry.context(dialect, method="GET", resource_type="User", operation="query")
    assert context.settings == _Settings(retries=5)


def test_bad_plugin_settings_stop_start_up_naming_plugin_and_setting() -> None:
    environ = {"SCIM_HUB_PLUGIN_CONFIGURED_RETRIES": "many"}
    with pytest.raises(PluginSettingsError) as caught:
        build_registry(extra_plugins={"configured": _WithSettings()}, environ=environ)
    message = str(caught.value)
    assert "configured" in message
    assert "SCIM_HUB_PLUGIN_CONFIGURED_RETRIES" in message


# --------------------------------------------------------------------------- the partner plugin


def _installed() -> bool:
    try:
        importlib.metadata.version(PARTNER_DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def partner_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The partner distribution, installed for this test process alone; the environment a
    `scim-hub` command needs to find it too.

    `pip install --target` puts it in a directory of its own, on `sys.path` while the module's
    tests run. Installed into the shared venv, it was there for every test worker, and the first
    worker done uninstalled it under another's tests (a plugin setting then named no plugin).
    """
    if _installed():  # a developer's own install: used as it is
        yield {}
        return
    import shutil

    work = tmp_path_factory.mktemp("partner")
    source, target = work / "partner_plugin", work / "site"
    shutil.copytree(PARTNER, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield {"PYTHONPATH": str(target)}
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("scim_hub_humble_hr", None)
        importlib.invalidate_caches()


def test_partner_plugin_appears_in_scim_hub_plugins(partner_plugin: dict[str, str]) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "scim-hub"), "plugins"],
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "SCIM_HUB_DATABASE_URL": "sqlite+aiosqlite:///:memory:",
            **partner_plugin,
        },
    )
    out = result.stdout
    assert "humble_hr 1.2.0 [ok]" in out, out
    assert "humble_hr (Humble HR)" in out
    for builtin in ("azure_ad", "okta", "generic_scim", "any_scim"):
        assert f"{builtin} " in out
        assert "register_idps" in out


def test_a_misspelt_plugin_setting_is_reported_naming_the_one_it_resembles(
    partner_plugin: dict[str, str],
) -> None:
    """SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATRIBUTE=uid was ignored without a word, Humble HR kept
    reading "login", while a misspelt core variable was reported on stderr."""
    env = {
        "PATH": "/usr/bin:/bin",
        "SCIM_HUB_DATABASE_URL": "sqlite+aiosqlite:///:memory:",
        "SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATRIBUTE": "uid",
        **partner_plugin,
    }
    script = str(Path(sys.executable).parent / "scim-hub")
    result = subprocess.run([script, "plugins"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "scim-hub: SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATRIBUTE is not a setting (ignored; did you "
        "mean SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATTRIBUTE?); see README, Configuration"
    ]
    assert "humble_hr 1.2.0 [ok]" in result.stdout
    # The setting spelt right is not reported.
    del env["SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATRIBUTE"]
    env["SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATTRIBUTE"] = "uid"
    right = subprocess.run([script, "plugins"], capture_output=True, text=True, env=env)
    assert right.returncode == 0, right.stderr
    assert right.stderr == ""


@pytest.mark.usefixtures("partner_plugin")
async def test_partner_plugin_in_the_connector_list_and_over_http(
    client: httpx.AsyncClient, db_url: str
) -> None:
    """The admin enables a Humble HR connector; Humble HR's quirk is handled over HTTP."""
    from hub.core.admins import create_key
    from hub.core.database import open_database
    from hub.core.tenants import first_admin_pk, require_workspace

    ws = await create_workspace(db_url, "partner-co")
    db = open_database(db_url)

    def make_key(conn: Any) -> str:
        return create_key(
            conn, admin_pk=first_admin_pk(conn, require_workspace(conn, ws.workspace).pk)
        )

    try:
        key = await db.write(make_key)
    finally:
        await db.close()
    admin = {"Authorization": f"Bearer {key}"}
    base = f"/api/v1/workspaces/{ws.workspace}"
    idps = (await client.get(f"{base}/idps", headers=admin)).json()["idps"]
    humble = next(i for i in idps if i["name"] == "humble_hr")
    assert (humble["displayName"], humble["version"]) == ("Humble HR", "1.2.0")
    created = await client.post(
        f"{base}/connectors", headers=admin, json={"name": "HR", "idp": "humble_hr"}
    )
    assert created.status_code == 201, created.text
    token = (await client.post(f"{base}/connectors/HR/tokens", headers=admin)).json()["token"]
    humble_hr = ScimClient(client, token)

    response = await humble_hr.post(
        "/Users", {"schemas": [user_body()["schemas"][0]], "login": "ada"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["userName"] == "ada"
    assert response.json()["login"] == "ada"
    found = await humble_hr.get("/Users", params={"filter": 'login eq "ada"'})
    assert found.json()["totalResults"] == 1
    assert found.json()["Resources"][0]["login"] == "ada"


@pytest.mark.usefixtures("partner_plugin")
async def test_partner_plugin_setting_renames_the_login_key(db_url: str, settings: Any) -> None:
    """README's settings example: SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATTRIBUTE=uid."""
    from litestar.testing import AsyncTestClient

    from hub.app import create_app

    registry = build_registry(environ={"SCIM_HUB_PLUGIN_HUMBLE_HR_LOGIN_ATTRIBUTE": "uid"})
    ws = await create_workspace(db_url, "humble-uid", idp="humble_hr")
    async with AsyncTestClient(app=create_app(settings, registry), base_url=TEST_BASE_URL) as http:
        humble_hr = ScimClient(http, ws.token)
        created = await humble_hr.post(
            "/Users", {"schemas": [user_body()["schemas"][0]], "uid": "ada"}
        )
        assert created.status_code == 201, created.text
        assert (created.json()["userName"], created.json()["uid"]) == ("ada", "ada")
        found = await humble_hr.get("/Users", params={"filter": 'uid eq "ada"'})
        assert [user["uid"] for user in found.json()["Resources"]] == ["ada"]


def _readme_plugin_guide() -> dict[str, str]:
    """The code blocks of README's "Writing an IdP plugin", by language."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Writing an IdP plugin\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(\w+)\n(.*?)```", section, re.S))


def test_the_readme_plugin_guide_is_the_partner_plugin() -> None:
    """What README tells a partner to write is the plugin the tests install and call over HTTP
    (README's module named a settings struct it never defined: written as shown, it was BROKEN)."""
    guide = _readme_plugin_guide()
    assert guide["python"] == (PARTNER / "scim_hub_humble_hr.py").read_text()
    shown = tomllib.loads(guide["toml"])["project"]
    installed = tomllib.loads((PARTNER / "pyproject.toml").read_text())["project"]
    assert shown == {key: installed[key] for key in shown}


def test_the_partner_module_imports_only_the_contract() -> None:
    source = (PARTNER / "scim_hub_humble_hr.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert [i for i in imports if "hub" in i] == [
        "from hub.hookspecs import Dialect, JSONObject, RequestContext, hookimpl"
    ]
