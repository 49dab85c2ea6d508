"""Shared fixtures: databases (SQLite and PostgreSQL), the app, workspaces, SCIM calls, a server.

Databases
    `db_url`                 parametrised `sqlite` / `postgresql`: a fresh, migrated database URL.
                             `sqlite` is `sqlite+aiosqlite:///{tmp_path}/hub.db`; `postgresql` is a
                             database on the session's PostgreSQL server (marked `postgres`),
                             emptied and reused by a later test (`postgres_database_pool`).
    `postgres_server_url`    (session) `postgresql+asyncpg://postgres@127.0.0.1:PORT`, no database
                             named. `SCIM_HUB_TEST_POSTGRES_URL` if set, else a throwaway cluster
                             started on first use and removed at the end of the session (the URL is
                             exported as `SCIM_HUB_TEST_POSTGRES_URL` meanwhile). Skips, saying how
                             to install PostgreSQL, when there are no server binaries.
    `fresh_postgres_url`     a new empty (not migrated) database on that server, dropped afterwards.
    `migrated_postgres_url`  a copy of the migrated template of its own, dropped afterwards (never
                             handed to another test: for a test that changes the database itself).

The app
    `settings`   `load_settings(environ={}, database_url=db_url, base_url="http://testserver.local")`.
    `app`        `create_app(settings)`.
    `client`     `litestar.testing.AsyncTestClient` over `app`, started (lifespan ran) and stopped.

Workspaces and SCIM calls
    `tenant`, `other_tenant`   workspaces "acme" and "globex" (`hub.core.tenants.InitResult`:
                               `.token`, `.workspace`, `.connector`, `.admin`, `.tenant_url`…).
    `scim`, `other_scim`       a `ScimClient` speaking for `tenant` / `other_tenant` via `client`:
                               `await scim.post("/Users", {...})`, `.get`, `.put`, `.patch`,
                               `.delete`, `.request(method, path, ...)`; paths are relative to
                               `/scim/v2`; bearer token and `application/scim+json` are set.
    `serving(app, tenant)`     `async with serving(app, tenant) as scim:` the app running for one
                               block (a test that migrates runs it before and after).
    `make_user_body`, `make_group_body`   helpers building minimal valid SCIM documents.
    `scim_error`   `scim_error(response, status, scim_type=None)` asserts a SCIM Error document
                   (RFC 7644 §3.12) and returns its body.

The CLI
    `main_in_thread(args, env, stdin=None, check=True)`   `hub.cli.main(args)` with `env` as the
                 whole environment (and `stdin` as its input), on a thread of its own; returns a
                 `subprocess.CompletedProcess` as running the `scim-hub` script would.

Logging
    `restored_logging`   puts structlog's and the standard library's set-up back after a test that
                         calls `configure_logging` (which binds the test's stderr, closed after it).

A real server
    `live_server`   (session) `tests.server.LiveServer` — `(base_url, tenant_url, token, process)`
                    — of a `scim-hub serve` process on a free port over a fresh SQLite file. Tests
                    using it are marked `server` automatically.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

# `tests.pg` and `tests.server` are imported by their package name whatever pytest's import mode.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.pg import (  # noqa: E402
    PostgresCluster,
    PostgresUnavailable,
    create_database,
    drop_database,
    server_url,
)
from tests.pg_pool import DatabasePool  # noqa: E402

if TYPE_CHECKING:
    from litestar import Litestar

    from hub.core.tenants import InitResult
    from hub.settings import Settings
    from tests.server import LiveServer

POSTGRES_URL_VARIABLE = "SCIM_HUB_TEST_POSTGRES_URL"
SCIM_PREFIX = "/scim/v2"
SCIM_JSON = "application/scim+json"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
TEST_BASE_URL = "http://testserver.local"


# --------------------------------------------------------------------------- markers


def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the garbage collector's passes short for the rest of the session.

    Every test builds an app, and each full pass walked every module and collected test again:
    in a run of four test files (174 tests) the collector took 13.9 s with the default
    thresholds, 7.7 s with what is alive now (modules, test items) frozen out of every pass, and
    5.8 s with that and fewer, larger young passes as well.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 100)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by what they start, so `-m "not postgres"` / `-m "not server"` select them out."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "live_server" in names:
            item.add_marker(pytest.mark.server)
        if "postgres_server_url" in names and "db_url" not in names:
            item.add_marker(pytest.mark.postgres)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The PostgreSQL server of this session: `postgresql+asyncpg://user@host:port`, no database.

    Uses `SCIM_HUB_TEST_POSTGRES_URL` when set; otherwise starts a throwaway cluster the first time
    a test asks for it, exports its URL as `SCIM_HUB_TEST_POSTGRES_URL` for the rest of the session,
    and stops and deletes it at the end (also when the session fails or is interrupted). Skips with
    the way to get PostgreSQL when no server binaries are installed.
    """
    external = os.environ.get(POSTGRES_URL_VARIABLE)
    if external:
        yield server_url(external)
        return
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        url = cluster.start()
        os.environ[POSTGRES_URL_VARIABLE] = url
        yield url
    finally:
        os.environ.pop(POSTGRES_URL_VARIABLE, None)
        cluster.stop()


@pytest.fixture
def fresh_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A new empty database (`postgresql+asyncpg://…/scimhub_test_…`), dropped after the test."""
    url = create_database(postgres_server_url)
    yield url
    _drop_quietly(postgres_server_url, url)


def _drop_quietly(server: str, url: str) -> None:
    """Drop the test database at `url`; a leftover database must not fail the test that used it."""
    name = url.rsplit("/", 1)[1]
    try:
        drop_database(server, name)
    except Exception as exc:
        print(f"could not drop test database {name}: {exc!r}", file=sys.stderr)


# --------------------------------------------------------------------------- the app


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; tests get copies of it."""
    from hub.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "hub.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def migrated_postgres_template(postgres_server_url: str) -> Iterator[str]:
    """The name of a PostgreSQL database migrated once per session; tests get copies of it."""
    from hub.migrate import upgrade

    url = create_database(postgres_server_url)
    upgrade(url)
    name = url.rsplit("/", 1)[1]
    yield name
    try:
        drop_database(postgres_server_url, name)
    except Exception as exc:
        print(f"could not drop template database {name}: {exc!r}", file=sys.stderr)


@pytest.fixture
def migrated_postgres_url(
    postgres_server_url: str, migrated_postgres_template: str
) -> Iterator[str]:
    """A copy of the migrated template for this test alone, dropped afterwards.

    For a test that changes the database itself (a setting such as read-only), which a pooled
    database (`db_url`) would carry to the next test.
    """
    url = create_database(postgres_server_url, template=migrated_postgres_template)
    yield url
    _drop_quietly(postgres_server_url, url)


@pytest.fixture(scope="session")
def postgres_database_pool(
    postgres_server_url: str, migrated_postgres_template: str
) -> Iterator[DatabasePool]:
    """Copies of the migrated template, emptied after each test and handed out again."""
    pool = DatabasePool(postgres_server_url, migrated_postgres_template)
    yield pool
    pool.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database migrated to head: a SQLite file in `tmp_path`, or a PostgreSQL database.

    Both are copies of a database migrated once per session (a file copy; `CREATE DATABASE …
    TEMPLATE`), so a test pays for a copy, not for running every migration again. A PostgreSQL
    copy is emptied after the test and handed to a later one (`tests.pg_pool`).
    """
    if request.param == "sqlite":
        source: Path = request.getfixturevalue("migrated_sqlite_file")
        target = tmp_path / "hub.db"
        shutil.copyfile(source, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    pool: DatabasePool = request.getfixturevalue("postgres_database_pool")
    url = pool.take()
    yield url
    pool.give_back(url)


#: A test taking `db_url` on SQLite or on PostgreSQL only: its fixtures are never built for the
#: other database just to be skipped.
ONLY_SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ONLY_POSTGRESQL = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


# --------------------------------------------------------------------------- the CLI

_environ_lock = threading.Lock()


def main_in_thread(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `hub.cli.main(args)` as the process would: with `env` as the whole environment.

    A thread of its own, so the CLI's `asyncio.run` works inside async tests; an uncaught
    exception ends up on stderr as a traceback with status 1, as the interpreter would do.
    `stdin`, when given, is what the command reads on stdin. Starting the `scim-hub` script
    instead costs about a second of interpreter start-up and imports per call.
    """
    from hub.cli import main

    out, err = io.StringIO(), io.StringIO()
    status: list[int] = []

    def run() -> None:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                status.append(main(list(args)))
            except SystemExit as exc:
                status.append(exc.code if isinstance(exc.code, int) else 1)
            except BaseException:
                traceback.print_exc()
                status.append(1)

    with _environ_lock:
        saved, saved_stdin = dict(os.environ), sys.stdin
        os.environ.clear()
        os.environ.update(env)
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            worker = threading.Thread(target=run, name="scim-hub-cli")
            worker.start()
            worker.join()
        finally:
            sys.stdin = saved_stdin
            os.environ.clear()
            os.environ.update(saved)
    result = subprocess.CompletedProcess(
        ["scim-hub", *args], status[0], out.getvalue(), err.getvalue()
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"scim-hub {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


# --------------------------------------------------------------------------- logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put structlog's and the standard library's logging set-up back after the test."""
    import structlog

    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings for `db_url`, ignoring the process environment; `base_url` is the test client's.

    Emails without SMTP go to `tmp_path/outbox` and the server secret to `tmp_path/secret.key`,
    never into the checkout's `var/`.
    """
    from hub.settings import load_settings

    return load_settings(
        environ={},
        database_url=db_url,
        base_url=TEST_BASE_URL,
        outbox_dir=str(tmp_path / "outbox"),
        secret_file=str(tmp_path / "secret.key"),
    )


@pytest.fixture
def app(settings: Settings) -> Litestar:
    """The real application, as `scim-hub serve` builds it."""
    from hub.app import create_app

    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over `app` whose lifespan (database open/close) runs around the test."""
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as test_client:
        yield test_client


async def create_workspace(db_url: str, name: str, **options: Any) -> InitResult:
    """Create workspace `name` (admin, generic_scim connector, token) straight in the database."""
    from hub.core.database import open_database
    from hub.core.tenants import init_workspace

    db = open_database(db_url)
    try:
        return await db.write(init_workspace, workspace=name, base_url=TEST_BASE_URL, **options)
    finally:
        await db.close()


@pytest.fixture
async def tenant(db_url: str) -> InitResult:
    """Workspace "acme" with its first admin, a generic_scim connector and a token."""
    return await create_workspace(db_url, "acme")


@pytest.fixture
async def other_tenant(db_url: str, tenant: InitResult) -> InitResult:
    """Workspace "globex": a second tenant in the same database as `tenant`."""
    return await create_workspace(db_url, "globex")


class ScimClient:
    """Authenticated SCIM calls through the test client; paths are relative to `/scim/v2`."""

    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self.http = http
        self.token = token

    def with_token(self, token: str | None) -> ScimClient:
        """The same client speaking with another token (`None`: no Authorization header)."""
        return ScimClient(self.http, token)

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Authorization and SCIM content negotiation headers, then `extra`."""
        headers = {"Accept": SCIM_JSON}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send `body` as SCIM JSON (or `content` verbatim) to `/scim/v2{path}`."""
        all_headers = self.headers()
        if body is not None:
            content = json.dumps(body)
        if content is not None:
            all_headers["Content-Type"] = SCIM_JSON
        all_headers.update(headers or {})
        url = path if path.startswith(("http://", "https://")) else SCIM_PREFIX + path
        return await self.http.request(
            method, url, content=content, headers=all_headers, params=params
        )

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET `/scim/v2{path}`."""
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """POST `body` to `/scim/v2{path}`."""
        return await self.request("POST", path, body, **kwargs)

    async def put(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """PUT `body` to `/scim/v2{path}`."""
        return await self.request("PUT", path, body, **kwargs)

    async def patch(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """PATCH `body` to `/scim/v2{path}`."""
        return await self.request("PATCH", path, body, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        """DELETE `/scim/v2{path}`."""
        return await self.request("DELETE", path, **kwargs)


@asynccontextmanager
async def serving(app: Litestar, tenant: InitResult) -> AsyncIterator[ScimClient]:
    """SCIM calls as `tenant` while `app` runs; leaving the block stops it (lifespan ends).

    For tests that migrate between two such blocks: a migration runs with the server stopped,
    or its background writers (the provisioning log) hold locks a schema change waits for.
    """
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app, base_url=TEST_BASE_URL) as client:
        yield ScimClient(client, tenant.token)


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> dict:
    """Assert `response` is a SCIM Error document (RFC 7644 §3.12) and return its body.

    Checks the HTTP status, the SCIM media type, `schemas`, `status` as a JSON string, `scimType`
    (absent when `scim_type` is None) and a non-empty `detail`.
    """
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:1000]}"
    )
    assert response.headers.get("content-type", "").startswith(SCIM_JSON), response.headers
    body = response.json()
    assert body.get("schemas") == [ERROR_URN], body
    assert body.get("status") == str(status), body
    assert body.get("scimType") == scim_type, body
    assert isinstance(body.get("detail"), str), body
    assert body["detail"].strip(), body
    return body


@pytest.fixture
def scim(client: httpx.AsyncClient, tenant: InitResult) -> ScimClient:
    """SCIM calls as workspace "acme" (`tenant`)."""
    return ScimClient(client, tenant.token)


@pytest.fixture
def other_scim(client: httpx.AsyncClient, other_tenant: InitResult) -> ScimClient:
    """SCIM calls as workspace "globex" (`other_tenant`)."""
    return ScimClient(client, other_tenant.token)


def user_body(user_name: str | None = None, **attributes: Any) -> dict[str, Any]:
    """A minimal valid SCIM User (random userName unless given), plus `attributes`."""
    return {
        "schemas": [USER_URN],
        "userName": user_name or f"user-{uuid.uuid4().hex[:10]}@example.com",
        **attributes,
    }


def patch_op(*operations: dict[str, Any]) -> dict[str, Any]:
    """A PatchOp request body (RFC 7644 §3.5.2) carrying `operations`."""
    return {"schemas": [PATCH_URN], "Operations": list(operations)}


def group_body(display_name: str | None = None, **attributes: Any) -> dict[str, Any]:
    """A minimal valid SCIM Group (random displayName unless given), plus `attributes`."""
    return {
        "schemas": [GROUP_URN],
        "displayName": display_name or f"group-{uuid.uuid4().hex[:10]}",
        **attributes,
    }


@pytest.fixture
def scim_error() -> Any:
    """`scim_error(response, status, scim_type=None)`: see `assert_scim_error`."""
    return assert_scim_error


@pytest.fixture
def make_user_body() -> Any:
    """`make_user_body(user_name=None, **attributes)` -> a minimal valid SCIM User document."""
    return user_body


@pytest.fixture
def make_group_body() -> Any:
    """`make_group_body(display_name=None, **attributes)` -> a minimal valid SCIM Group document."""
    return group_body


# --------------------------------------------------------------------------- a real server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A `scim-hub serve` process on 127.0.0.1 over a fresh SQLite file, with one workspace.

    Yields `tests.server.LiveServer` (`base_url`, `tenant_url`, `token`, `process`, `init` — the
    parsed `scim-hub init --json` output — and `env`, the environment the CLI ran with).
    """
    from tests.server import running_server

    with running_server(tmp_path_factory.mktemp("live-server")) as server:
        yield server
