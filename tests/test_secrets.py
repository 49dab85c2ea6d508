"""Secrets: tokens and admin keys are stored only as digests, compared in constant time, never
logged; a `password` an IdP sends is never stored or returned.

A full flow runs once against a real `scim-hub serve` process (its stderr is every structlog line
it wrote) with the CLI steps as subprocesses (their stderr too), and once in-process with
structlog's and the standard library's logging captured. Afterwards the whole database — every
table, every column — is dumped and searched. SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy

from hub.core import admins, tokens
from tests.conftest import PATCH_URN, SCIM_JSON, USER_URN
from tests.dbstate import dump
from tests.hubprocess import HubProcess
from tests.pg import create_database, drop_database
from tests.server import cli_command

PASSWORD = "Tr0ub4dor&3-horse-battery"
PASSWORDS = (PASSWORD, PASSWORD + "-patched", PASSWORD + "-put", PASSWORD + "-nopath")
WRONG_TOKEN = "shub_" + "W" * 43
ADMIN_PASSWORD = "correct-horse-admin-Passphrase-42"


def _dump_text(url: str) -> str:
    """Every value of every row of every table, as one searchable text."""
    return repr(dump(url))


def assert_absent(secrets: list[str], text: str, where: str) -> None:
    assert secrets, "no secrets collected: the flow did not run"
    for secret in secrets:
        assert len(secret) >= 20, secret
        assert secret not in text, f"a secret ({secret[:8]}…) appears in {where}"


# --------------------------------------------------------------------------- the flow


async def scim_flow(
    http: httpx.AsyncClient, prefix: str, token: str, user_name: str = "secret.keeper@example.com"
) -> list[httpx.Response]:
    """Create, PATCH, PUT, GET, list and search a user that carries passwords; bad tokens too."""

    async def call(method: str, path: str, body: Any = None, auth: str = token) -> httpx.Response:
        headers = {"Authorization": f"Bearer {auth}", "Accept": SCIM_JSON}
        if body is not None:
            headers["Content-Type"] = SCIM_JSON
        return await http.request(method, prefix + path, json=body, headers=headers)

    created = await call(
        "POST",
        "/Users",
        {
            "schemas": [USER_URN],
            "userName": user_name,
            "password": PASSWORDS[0],
            "emails": [{"value": user_name, "primary": True}],
        },
    )
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    patch_ops = [
        {"op": "replace", "path": "password", "value": PASSWORDS[1]},
        {"op": "add", "value": {"password": PASSWORDS[3], "title": "Keeper"}},
    ]
    patched = await call(
        "PATCH", f"/Users/{uid}", {"schemas": [PATCH_URN], "Operations": patch_ops}
    )
    replaced = await call(
        "PUT",
        f"/Users/{uid}",
        {"schemas": [USER_URN], "userName": user_name, "password": PASSWORDS[2]},
    )
    responses = [
        created,
        patched,
        replaced,
        await call("GET", f"/Users/{uid}"),
        await call("GET", f"/Users/{uid}?attributes=password"),
        await call("GET", "/Users"),
        await call("GET", f'/Users?filter=userName eq "{user_name}"'),
        await call(
            "POST",
            "/Users/.search",
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]},
        ),
    ]
    for response in responses:
        assert response.status_code < 300, response.text
    unauthorized = await call("GET", "/Users", auth=WRONG_TOKEN)
    assert unauthorized.status_code == 401
    return responses


def assert_no_password_returned(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert "password" not in response.text.lower(), response.text
        for password in PASSWORDS:
            assert password not in response.text


# --------------------------------------------------------------------------- real server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubProcess]:
    """A real server (prepared, not started) over a fresh database; JSON logs at debug level."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        server = None
    else:
        server = request.getfixturevalue("postgres_server_url")
        url = create_database(server)
    process = HubProcess(url, tmp_path / "server", log_level="debug")
    try:
        yield process
    finally:
        process.stop()
        if server is not None:
            drop_database(server, url.rsplit("/", 1)[1])


def create_dashboard_admin(hub: HubProcess) -> str:
    """`scim-hub admin create` with a password read from stdin; return the command's stderr."""
    args = ["admin", "create", "ops@example.com", "--workspace", "vault", "--password-stdin"]
    created = subprocess.run(
        [*cli_command(), *args],
        input=ADMIN_PASSWORD + "\n",
        env=hub.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    return created.stderr


@pytest.mark.server
async def test_a_full_flow_logs_and_stores_no_secret(hub: HubProcess) -> None:
    logs: list[str] = []
    secrets: list[str] = []

    def cli(*args: str) -> str:
        result = hub.cli(*args)
        logs.append(result.stderr)
        return result.stdout

    init = hub.prepare("vault")
    secrets.append(init["token"])
    key_line = cli("admin", "key", "--workspace", "vault")
    admin_key = re.search(r"shadm_[A-Za-z0-9_-]+", key_line)
    assert admin_key is not None, key_line
    secrets.append(admin_key.group(0))
    regenerated = re.search(
        r"shub_[A-Za-z0-9_-]+",
        cli("token", "regenerate", "--workspace", "vault", "--connector", init["connector"]),
    )
    assert regenerated is not None
    secrets.append(regenerated.group(0))
    cli("token", "list", "--workspace", "vault")
    logs.append(create_dashboard_admin(hub))

    hub.start()
    async with httpx.AsyncClient(timeout=30) as http:
        old = await http.get(
            f"{hub.tenant_url}/Users", headers={"Authorization": f"Bearer {init['token']}"}
        )
        assert old.status_code == 401  # regenerate killed it
        responses = await scim_flow(http, hub.tenant_url, secrets[-1])
        assert_no_password_returned(responses)
        admin = {"Authorization": f"Bearer {secrets[1]}"}
        connector = f"{hub.base_url}/api/v1/workspaces/vault/connectors/{init['connector']}"
        made = await http.post(f"{connector}/tokens", headers=admin)
        assert made.status_code == 201, made.text
        secrets.append(made.json()["token"])
        listed = await http.get(f"{connector}/tokens", headers=admin)
        assert listed.status_code == 200, listed.text
        assert_absent(secrets, listed.text, "the admin token list")
        bad_key = await http.get(
            f"{connector}/tokens", headers={"Authorization": "Bearer shadm_" + "K" * 43}
        )
        assert bad_key.status_code == 401
        again = await scim_flow(http, hub.tenant_url, secrets[-1], "second@example.com")
        assert_no_password_returned(again)
    hub.stop()

    server_log = hub.stderr_tail(10_000_000) + (hub.workdir / "server.stdout").read_text()
    assert '"event": "request"' in server_log, "the server logged no request line"
    all_logs = server_log + "\n".join(logs)
    assert_absent([*secrets, WRONG_TOKEN, "shadm_" + "K" * 43, *PASSWORDS], all_logs, "the logs")
    # No payload is logged: not even the attribute name appears as a logged key.
    assert not re.search(r'"password"\s*:', all_logs, re.IGNORECASE), "a password was logged"

    stored = _dump_text(hub.database_url)
    assert_absent([*secrets, *PASSWORDS, ADMIN_PASSWORD], stored, "the database")
    assert "$argon2" in stored, "the admin's password is not stored as an argon2 hash"
    # What is stored is the SHA-256 digest of each secret.
    for secret in secrets:
        assert tokens.digest(secret) in stored


# --------------------------------------------------------------------------- in-process


@pytest.fixture
def settings(settings: Any, tmp_path: Path) -> Any:
    """The shared settings with debug logging and activation emails under `tmp_path`."""
    return msgspec.structs.replace(settings, log_level="debug", outbox_dir=str(tmp_path / "outbox"))


@contextlib.contextmanager
def fresh_hub_loggers() -> Iterator[None]:
    """Let the hub's module-level structlog loggers see the configuration of this block.

    `configure_logging` caches a logger on first use (structlog's `cache_logger_on_first_use`);
    if an earlier test in this process configured logging (the CLI tests run `main` in-process),
    the hub's loggers stay bound to that configuration and a capture would miss them. Dropping
    the cached `bind` makes each one resolve the current configuration again, before and after.
    """

    def reset() -> None:
        for name, module in list(sys.modules.items()):
            if not name.startswith(("hub.", "plugins.")):
                continue
            for value in list(vars(module).values()):
                if isinstance(value, BoundLoggerLazyProxy):
                    vars(value).pop("bind", None)

    reset()
    try:
        yield
    finally:
        reset()


async def test_in_process_logs_hold_no_secret_or_password(
    client: httpx.AsyncClient, tenant: Any, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with fresh_hub_loggers(), structlog.testing.capture_logs() as events:
        responses = await scim_flow(client, "/scim/v2", tenant.token)
    assert_no_password_returned(responses)
    assert any(e.get("event") == "request" for e in events), "no request was logged"
    # The hub's records only: the test client (httpx) logs the URLs it requests.
    hub_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = json.dumps(events, default=repr) + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in hub_records
    )
    assert_absent([tenant.token, WRONG_TOKEN, *PASSWORDS], text, "the in-process logs")
    assert not re.search(r"""["']password["']\s*:""", text, re.IGNORECASE), "a password was logged"
    stored = _dump_text(db_url)
    assert_absent([tenant.token, *PASSWORDS], stored, "the database")
    assert tokens.digest(tenant.token) in stored


# --------------------------------------------------------------------------- comparison


@pytest.mark.parametrize("fn", [tokens.authenticate, admins.authenticate_admin])
def test_secrets_are_found_by_digest_and_compared_in_constant_time(fn: Any) -> None:
    """Look-up by digest (an index probe, the same work whatever the secret), then
    `hmac.compare_digest` on the stored digest: no early-exit comparison of secrets."""
    source = inspect.getsource(fn)
    assert "hmac.compare_digest(" in source, source
    assert "_digest" in inspect.signature(fn).parameters.__repr__(), "it takes a digest"
    module = inspect.getsource(inspect.getmodule(fn))  # type: ignore[arg-type]
    assert re.search(r"\.c\.digest == ", module), "the look-up is not by digest"


def test_digests_are_sha256_of_the_secret() -> None:
    import hashlib

    secret = "shub_example-secret-value-for-the-digest-test"
    assert tokens.digest(secret) == hashlib.sha256(secret.encode()).hexdigest()
