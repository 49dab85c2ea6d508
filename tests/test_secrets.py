"""Secrets: tokens and admin keys are stored only as digests, compared in constant time, never
logged; a `password` an IdP sends is never stored or returned; activation links (signed with the
server secret, which is never stored in the database) can be neither read nor computed from it.

A full flow runs once against a real `scim-hub serve` process (its stderr is every structlog line
it wrote) with the CLI steps as subprocesses (their stderr too), and once in-process with
structlog's and the standard library's logging captured. Afterwards the whole database — every
table, every column — is dumped and searched. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import inspect
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import structlog
from structlog._config import BoundLoggerLazyProxy

from hub.core import admins, links, outbox, tokens
from hub.core.database import open_database
from hub.core.secret import ACTIVATION_LINKS, derive_key
from hub.core.tenants import InitResult
from hub.settings import Settings, SettingsError, load_settings
from tests.conftest import PATCH_URN, SCIM_JSON, USER_URN, main_in_thread
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


LINK = re.compile(r"/activate/(shact_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def emailed_links(outbox_dir: Path, count: int, timeout: float = 20) -> list[str]:
    """The activation tokens of the `.eml` files in `outbox_dir`, once there are `count`."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(outbox_dir.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            match = LINK.search(message.get_body(preferencelist=("plain",)).get_content())
            assert match is not None, path.read_text()
            found.append(match.group(1))
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} of {count} activation emails written"
            return found
        time.sleep(0.05)


def link_secrets(link_tokens: list[str], server_secret: str) -> list[str]:
    """What must never be stored or logged: each link, its MAC, the server secret, its key."""
    key = _link_key(server_secret)
    found = [server_secret.strip(), key.hex(), base64.urlsafe_b64encode(key).decode().rstrip("=")]
    for token in link_tokens:
        found += [token, token.partition(".")[2]]
    return found


def _link_key(server_secret: str) -> bytes:
    settings = load_settings(environ={}, secret=server_secret.strip())
    return derive_key(settings, ACTIVATION_LINKS)


def nonces(link_tokens: list[str]) -> list[str]:
    """The public nonces of links (`shact_{nonce}.{mac}`)."""
    return [token.partition(".")[0].removeprefix(links.PREFIX) for token in link_tokens]


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
    """A real server (not started) over a fresh database migrated to head; JSON logs at debug
    level. The database is a copy of the session's migrated one (a file copy; `CREATE DATABASE
    … TEMPLATE`), dropped afterwards."""
    if request.param == "sqlite":
        target = tmp_path / "hub.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), target)
        url = f"sqlite+aiosqlite:///{target}"
        server = None
    else:
        server = request.getfixturevalue("postgres_server_url")
        url = create_database(
            server, template=request.getfixturevalue("migrated_postgres_template")
        )
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

    # The workspace, as `hub.prepare` makes it after migrating; its output is not under test.
    init = hub.init = json.loads(
        main_in_thread(["init", "--workspace", "vault", "--json"], hub.env).stdout
    )
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
        # Both users got an invitation; one of them follows it (its path is in the request line).
        link_tokens = emailed_links(hub.workdir / "outbox", 2)
        page = await http.get(f"{hub.base_url}/activate/{link_tokens[0]}")
        assert page.status_code == 200, page.text
        used = await http.post(
            f"{hub.base_url}/activate/{link_tokens[0]}", headers=SAME_ORIGIN, follow_redirects=True
        )
        assert used.status_code == 200, used.text
        assert "Welcome" in used.text
    hub.stop()
    secret_file = Path(hub.env["SCIM_HUB_SECRET_FILE"])
    server_secret = await asyncio.to_thread(secret_file.read_text)
    assert stat.S_IMODE((await asyncio.to_thread(secret_file.stat)).st_mode) == 0o600

    server_log = hub.stderr_tail(10_000_000) + (hub.workdir / "server.stdout").read_text()
    events = [json.loads(line) for line in server_log.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "request" for e in events), "the server logged no request line"
    all_logs = server_log + "\n".join(logs)
    assert_absent([*secrets, WRONG_TOKEN, "shadm_" + "K" * 43, *PASSWORDS], all_logs, "the logs")
    assert_absent(link_secrets(link_tokens, server_secret), all_logs, "the logs")
    # No payload is logged: not even the attribute name appears as a logged key.
    assert not re.search(r'"password"\s*:', all_logs, re.IGNORECASE), "a password was logged"

    stored = _dump_text(hub.database_url)
    assert_absent([*secrets, *PASSWORDS, ADMIN_PASSWORD], stored, "the database")
    # Sent links: neither the link, nor its MAC, nor the secret; not even the nonce any more.
    assert_absent(link_secrets(link_tokens, server_secret), stored, "the database")
    assert_absent(nonces(link_tokens), stored, "the database")
    assert "$argon2" in stored, "the admin's password is not stored as an argon2 hash"
    # What is stored is the SHA-256 digest of each secret.
    for secret in secrets:
        assert tokens.digest(secret) in stored


# --------------------------------------------------------------------------- in-process


@pytest.fixture
def settings(settings: Any, tmp_path: Path) -> Any:
    """The shared settings with debug logging and activation emails under `tmp_path`."""
    return msgspec.structs.replace(
        settings,
        log_level="debug",
        outbox_dir=str(tmp_path / "outbox"),
        secret_file=str(tmp_path / "secret.key"),
    )


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
    client: httpx.AsyncClient,
    tenant: Any,
    db_url: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with fresh_hub_loggers(), structlog.testing.capture_logs() as events:
        responses = await scim_flow(client, "/scim/v2", tenant.token)
        [link_token] = await asyncio.to_thread(emailed_links, Path(settings.outbox_dir), 1)
        assert (await client.get(f"/activate/{link_token}")).status_code == 200
        used = await client.post(f"/activate/{link_token}", headers=SAME_ORIGIN)
        assert used.status_code == 200, used.text
    assert_no_password_returned(responses)
    assert any(e.get("event") == "request" for e in events), "no request was logged"
    # The hub's records only: the test client (httpx) logs the URLs it requests.
    hub_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = json.dumps(events, default=repr) + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in hub_records
    )
    assert_absent([tenant.token, WRONG_TOKEN, *PASSWORDS], text, "the in-process logs")
    assert not re.search(r"""["']password["']\s*:""", text, re.IGNORECASE), "a password was logged"
    server_secret = await asyncio.to_thread(Path(settings.secret_file).read_text)
    assert_absent(link_secrets([link_token], server_secret), text, "the in-process logs")
    stored = _dump_text(db_url)
    assert_absent([tenant.token, *PASSWORDS], stored, "the database")
    assert_absent(link_secrets([link_token], server_secret), stored, "the database")
    assert tokens.digest(tenant.token) in stored


# --------------------------------------------------------------------------- activation links


async def test_a_queued_activation_email_holds_no_usable_link(
    db_url: str, tenant: InitResult, tmp_path: Path
) -> None:
    """While an email waits in the outbox the database holds its nonce, never its link: the
    link needs the server secret, which is not in the database; once sent, the nonce goes too."""
    from tests.test_outbox import queue_users

    settings = load_settings(
        environ={},
        database_url=db_url,
        outbox_dir=str(tmp_path / "outbox"),
        secret_file=str(tmp_path / "secret.key"),
        mail_poll_ms=50,
    )
    await queue_users(db_url, tenant, 3)
    queued = _dump_text(db_url)
    db = open_database(db_url)
    sender = outbox.Sender(db, settings)  # reads (creates) the server secret
    try:
        sender.start()
        link_tokens = await asyncio.to_thread(emailed_links, tmp_path / "outbox", 3)
    finally:
        await sender.stop()
        await db.close()
    server_secret = await asyncio.to_thread((tmp_path / "secret.key").read_text)
    assert_absent(link_secrets(link_tokens, server_secret), queued, "the queued outbox")
    for nonce in nonces(link_tokens):
        assert nonce in queued  # what the sender needs, useless alone
    stored = _dump_text(db_url)
    assert_absent(link_secrets(link_tokens, server_secret), stored, "the database")
    assert_absent(nonces(link_tokens), stored, "the database after sending")
    for token in link_tokens:
        assert links.lookup_digest(token) in stored


#: A process that reads the server secret from the file argv[1]; prints its link key last.
_READ_KEY = (
    "import sys; from hub.core import secret; from hub.settings import load_settings; "
    "s = load_settings(environ={}, secret_file=sys.argv[1]); "
    "print(secret.derive_key(s, secret.ACTIVATION_LINKS).hex())"
)


def _key_in_subprocess(secret_file: Path) -> str:
    output = subprocess.check_output([sys.executable, "-c", _READ_KEY, str(secret_file)], text=True)
    return output.splitlines()[-1]


def test_the_server_secret_file_is_made_once_private_and_shared(tmp_path: Path) -> None:
    """First start makes a 0600 key file; processes starting together all get the same key."""
    secret_file = tmp_path / "var" / "secret.key"
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", _READ_KEY, str(secret_file)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in starts]
    keys = {output.splitlines()[-1] for output in outputs}
    assert len(keys) == 1, "processes starting together disagree on the secret"
    assert sum("generated the server secret" in output for output in outputs) == 1
    assert all(secret_file.read_text().strip() not in output for output in outputs)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret_file.read_text().strip()) >= 43
    assert _key_in_subprocess(secret_file) in keys, "a later start made a new secret"

    os.chmod(secret_file, 0o644)  # readable by others: still used, with a warning
    assert _key_in_subprocess(secret_file) in keys
    secret_file.write_text("short\n")
    too_short = subprocess.run(
        [sys.executable, "-c", _READ_KEY, str(secret_file)], capture_output=True, text=True
    )
    assert too_short.returncode != 0
    assert "SCIM_HUB_SECRET_FILE" in too_short.stderr


def test_scim_hub_secret_wins_over_the_file_and_must_be_long(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.key"
    given = load_settings({"SCIM_HUB_SECRET": "x" * 40, "SCIM_HUB_SECRET_FILE": str(secret_file)})
    assert derive_key(given, "p") != derive_key(given, "q")
    assert not secret_file.exists(), "a configured secret needs no file"
    with pytest.raises(SettingsError, match="SCIM_HUB_SECRET must be at least 32"):
        load_settings({"SCIM_HUB_SECRET": "too-short"})


def test_link_macs_are_compared_in_constant_time() -> None:
    source = inspect.getsource(links.is_signed)
    assert "hmac.compare_digest(" in source, source


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
