"""The `scim-hub` command, checked over HTTP against the same database.

Each effect an operator relies on is observed where it matters: a token the CLI regenerates,
revokes, or whose admin or connector it switches off answers 401 on the SCIM API (an app built
with `create_app` on the same database), and 200 again when switched back on.

A few tests run the installed console script as a real process; the rest call `hub.cli.main`
with the same arguments and environment on a thread of its own (the process start-up costs half a
second, and there are dozens of calls).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import main_in_thread
from tests.server import (
    _wait_until_healthy,
    cli_command,
    free_port,
    hub_environ,
    run_cli,
    stop_process,
)

if TYPE_CHECKING:
    from litestar import Litestar

BASE_URL = "http://testserver.local"
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"


class Cli:
    """`scim-hub` against one database, plus SCIM calls through an app on that database.

    `process=True` runs the installed console script; otherwise `hub.cli.main` in a thread.
    The app is built once and started for each batch of `calls`, as a server left running
    while an operator runs the CLI sees the CLI's changes.
    """

    def __init__(self, database_url: str, *, process: bool = False) -> None:
        self.database_url = database_url
        self.env = hub_environ(database_url, BASE_URL)
        self.process = process
        self._app: Litestar | None = None

    def __call__(
        self, *args: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        run = run_cli if self.process else main_in_thread
        return run(args, {**self.env, **env}, check=check)

    def init(self, workspace: str, *extra: str) -> dict[str, Any]:
        result = self("init", "--workspace", workspace, "--json", *extra)
        return json.loads(result.stdout)

    def token_ids(self, workspace: str) -> list[str]:
        lines = self("token", "list", "--workspace", workspace).stdout.splitlines()
        return [line.split()[0] for line in lines if line.strip()]

    async def calls(self, *requests: tuple[str, str, str, Any]) -> list[Any]:
        """Run `(token, method, path, body)` SCIM requests; return the responses."""
        from litestar.testing import AsyncTestClient

        from hub.app import create_app
        from hub.settings import load_settings

        if self._app is None:
            settings = load_settings(environ={}, database_url=self.database_url, base_url=BASE_URL)
            self._app = create_app(settings)
        responses = []
        async with AsyncTestClient(app=self._app, base_url=BASE_URL) as client:
            for token, method, path, body in requests:
                responses.append(
                    await client.request(
                        method,
                        f"/scim/v2{path}",
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/scim+json",
                        },
                        content=None if body is None else json.dumps(body),
                    )
                )
        return responses

    async def statuses(self, *tokens: str) -> list[int]:
        """The status of `GET /scim/v2/Users` with each token."""
        responses = await self.calls(*[(token, "GET", "/Users", None) for token in tokens])
        return [response.status_code for response in responses]


@pytest.fixture
def cli(db_url: str) -> Cli:
    """The CLI on a fresh, migrated database (SQLite file or PostgreSQL), parametrised as `db_url`.

    A copy of the session's migrated database: `scim-hub db upgrade` has tests of its own.
    """
    return Cli(db_url)


@pytest.fixture
def sqlite_cli(migrated_sqlite_file: Path, tmp_path: Path) -> Cli:
    """The CLI on a fresh, migrated SQLite file `tmp_path/hub.db` (for tests whose subject is
    not storage): a copy of the session's migrated file."""
    target = tmp_path / "hub.db"
    shutil.copyfile(migrated_sqlite_file, target)
    return Cli(f"sqlite+aiosqlite:///{target}")


def _printed_token(output: str) -> str:
    match = re.search(r"^token:\s+(\S+)\s*$", output, re.M)
    assert match, output
    return match.group(1)


def _leaks(secret: str, output: str, window: int = 12) -> bool:
    """Say whether any `window`-long piece of `secret` shows in `output`."""
    return any(secret[i : i + window] in output for i in range(len(secret) - window + 1))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_db_upgrade_then_init(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'hub.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    runner = Cli(url, process=True)
    upgraded = runner("db", "upgrade")
    assert "up to date" in upgraded.stdout
    assert runner("db", "upgrade").returncode == 0  # idempotent
    init = runner.init("acme")
    assert await runner.statuses(init["token"]) == [200]


async def test_init_json_prints_one_object_with_a_working_token(cli: Cli) -> None:
    cli.process = True
    result = cli("init", "--workspace", "acme", "--json")
    [line] = result.stdout.strip().splitlines()
    init = json.loads(line)
    assert {"workspace", "connector", "tenant_url", "token", "admin", "idp"} <= init.keys()
    assert init["workspace"] == "acme"
    assert init["idp"] == "generic_scim"
    assert init["tenant_url"] == f"{BASE_URL}/scim/v2"
    assert len(init["token"]) >= 32
    assert not _leaks(init["token"], result.stderr)
    assert await cli.statuses(init["token"]) == [200]


async def test_init_text_output_shows_the_token_once(sqlite_cli: Cli) -> None:
    result = sqlite_cli("init", "--workspace", "acme", "--idp", "okta")
    token = _printed_token(result.stdout)
    assert result.stdout.count(token) == 1
    assert f"{BASE_URL}/scim/v2" in result.stdout
    assert await sqlite_cli.statuses(token) == [200]


async def test_second_workspace_is_separate(cli: Cli) -> None:
    acme = cli.init("acme")
    other = cli.init("other")
    assert other["workspace"] == "other"
    assert other["workspace_id"] != acme["workspace_id"]
    assert other["token"] != acme["token"]
    created, mine, theirs = await cli.calls(
        (acme["token"], "POST", "/Users", {"schemas": [USER_URN], "userName": "a@example.com"}),
        (acme["token"], "GET", "/Users", None),
        (other["token"], "GET", "/Users", None),
    )
    assert created.status_code == 201, created.text
    assert mine.json()["totalResults"] == 1
    assert theirs.json()["totalResults"] == 0


async def test_init_if_missing_leaves_an_existing_workspace_alone(sqlite_cli: Cli) -> None:
    first = sqlite_cli.init("acme")
    tokens_before = sqlite_cli.token_ids("acme")
    assert len(tokens_before) == 1

    again = sqlite_cli("init", "--workspace", "acme", "--if-missing")
    assert not re.search(r"^token:", again.stdout, re.M), again.stdout
    assert "shub_" not in again.stdout
    assert sqlite_cli.token_ids("acme") == tokens_before
    assert await sqlite_cli.statuses(first["token"]) == [200]

    # Names are stored stripped, so a padded name is the same workspace (it was "exists
    # already", an error, with --if-missing); other commands find it too.
    padded = sqlite_cli("init", "--workspace", " acme ", "--if-missing")
    assert "exists; tenant URL:" in padded.stdout, padded.stdout
    assert sqlite_cli.token_ids(" acme ") == tokens_before

    # Without --if-missing it is an error that names the workspace, not a traceback.
    refused = sqlite_cli("init", "--workspace", "acme", check=False)
    assert refused.returncode != 0
    assert "acme" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sqlite_cli.token_ids("acme") == tokens_before

    # It says how to get a token again, as a command that runs as printed (it said only
    # `scim-hub token regenerate`, which stops for want of --workspace and --connector).
    command = again.stdout.splitlines()[-1].split()
    assert command[:3] == ["scim-hub", "token", "regenerate"], again.stdout
    regenerated = sqlite_cli(*command[1:])
    assert await sqlite_cli.statuses(first["token"], _printed_token(regenerated.stdout)) == [
        401,
        200,
    ]


async def test_init_json_if_missing_prints_json_for_an_existing_workspace(
    sqlite_cli: Cli,
) -> None:
    """`init --json --if-missing` on an existing workspace printed the text lines: the JSON
    parser of the script that asked for JSON failed."""
    first = sqlite_cli.init("acme")
    again = sqlite_cli("init", "--workspace", " acme ", "--json", "--if-missing")
    [line] = again.stdout.strip().splitlines()
    existing = json.loads(line)
    assert existing["workspace"] == "acme"
    assert existing["exists"] is True
    assert existing["token"] is None
    assert existing["tenant_url"] == first["tenant_url"]
    assert existing["connectors"] == ["generic_scim"]
    command = existing["regenerate"].split()
    assert command[:3] == ["scim-hub", "token", "regenerate"]
    made = _printed_token(sqlite_cli(*command[1:]).stdout)
    assert await sqlite_cli.statuses(made) == [200]
    # A new workspace's JSON says it did not exist.
    assert "exists" not in sqlite_cli.init("other", "--if-missing")


async def test_init_makes_a_plain_default_admin_address_of_any_name(sqlite_cli: Cli) -> None:
    """The default admin of "Acme Europe, Inc." was admin@acme-europe,-inc..example."""
    made = sqlite_cli.init("Acme Europe, Inc.")
    assert made["admin"] == "admin@acme-europe-inc.example"
    assert sqlite_cli.init("Müller & Söhne")["admin"] == "admin@muller-sohne.example"
    assert sqlite_cli.init("My Co")["admin"] == "admin@my-co.example", "as before"
    key = sqlite_cli("admin", "key", "--workspace", "Acme Europe, Inc.", "--email", made["admin"])
    assert "admin key: shadm_" in key.stdout


def test_init_refuses_an_admin_email_that_is_no_address(sqlite_cli: Cli) -> None:
    """`init --admin-email bad` made an admin 'bad', an address `admin create` refuses."""
    refused = sqlite_cli("init", "--workspace", "acme", "--admin-email", "bad", check=False)
    assert refused.returncode == 2
    assert refused.stderr == "scim-hub: 'bad' is not an email address\n"
    listed = sqlite_cli("token", "list", "--workspace", "acme", check=False)
    assert "no workspace named 'acme'" in listed.stderr, "nothing is created"
    made = sqlite_cli.init("acme", "--admin-email", " ops@acme.example ")
    assert made["admin"] == "ops@acme.example"


async def test_token_list_never_prints_the_secret(sqlite_cli: Cli) -> None:
    init = sqlite_cli.init("acme")
    listed = sqlite_cli("token", "list", "--workspace", "acme")
    assert not _leaks(init["token"], listed.stdout + listed.stderr)
    [line] = listed.stdout.strip().splitlines()
    assert "generic_scim" in line
    assert "active" in line
    # After use it is still not printed, and the list says when it was last used.
    assert await sqlite_cli.statuses(init["token"]) == [200]
    listed = sqlite_cli("token", "list", "--workspace", "acme")
    assert not _leaks(init["token"], listed.stdout + listed.stderr)
    assert "last_used=never" not in listed.stdout


async def test_token_regenerate_kills_the_old_token(cli: Cli) -> None:
    init = cli.init("acme")
    old = init["token"]
    regenerated = cli("token", "regenerate", "--workspace", "acme", "--connector", "generic_scim")
    new = _printed_token(regenerated.stdout)
    assert new != old
    assert await cli.statuses(old, new) == [401, 200]
    listed = cli("token", "list", "--workspace", "acme").stdout
    assert not _leaks(new, listed)
    assert sum("active" in line.split()[-1] for line in listed.splitlines()) == 1
    # By the id `connector list` shows first, as the admin API takes it ("no connector named").
    by_id = cli("token", "regenerate", "--workspace", "acme", "--connector", init["connector_id"])
    assert await cli.statuses(new, _printed_token(by_id.stdout)) == [401, 200]


async def test_token_add_makes_one_more_token(cli: Cli) -> None:
    """`token add` is the admin API's `POST …/connectors/{c}/tokens`: the other tokens live on."""
    init = cli.init("acme")
    added = cli("token", "add", "--workspace", "acme", "--connector", init["connector"])
    new = _printed_token(added.stdout)
    assert added.stdout.count(new) == 1
    assert new != init["token"]
    assert await cli.statuses(init["token"], new) == [200, 200]
    listed = cli("token", "list", "--workspace", "acme").stdout
    assert not _leaks(new, listed)
    [token_id] = re.findall(r"^token id:\s+(\S+)$", added.stdout, re.M)
    assert token_id in listed
    assert len(cli.token_ids("acme")) == 2
    # It is revoked like any other, by the id it printed.
    cli("token", "revoke", token_id, "--workspace", "acme")
    assert await cli.statuses(init["token"], new) == [200, 401]


@pytest.mark.parametrize("command", ["add", "regenerate"])
async def test_a_token_for_a_disabled_connector_is_made_with_a_warning(
    cli: Cli, command: str
) -> None:
    """It printed a token that answered 401, and nothing said why."""
    init = cli.init("acme")
    cli("connector", "disable", "generic_scim", "--workspace", "acme")
    made = cli("token", command, "--workspace", "acme", "--connector", "generic_scim")
    token = _printed_token(made.stdout)
    assert made.stderr == (
        "scim-hub: warning: connector 'generic_scim' is disabled: this token gets 401 until "
        "`scim-hub connector enable generic_scim --workspace acme`\n"
    )
    assert await cli.statuses(token) == [401]
    cli("connector", "enable", init["connector_id"], "--workspace", "acme")
    assert await cli.statuses(token) == [200]
    again = cli("token", command, "--workspace", "acme", "--connector", "generic_scim")
    assert again.stderr == ""


def test_a_new_password_of_a_deactivated_admin_does_not_say_sign_in(sqlite_cli: Cli) -> None:
    sqlite_cli.init("acme", "--admin-email", "ops@acme.example")
    command = ["admin", "set-password", "ops@acme.example", "--workspace", "acme"]

    def set_password() -> str:
        done = main_in_thread(
            [*command, "--password-stdin"],
            sqlite_cli.env,
            stdin="correct horse battery staple\n",
        )
        return done.stdout

    assert set_password().endswith(f"; sign in at {BASE_URL}/admin\n")
    sqlite_cli("admin", "deactivate", "ops@acme.example", "--workspace", "acme")
    assert set_password() == (
        "admin ops@acme.example has a new password; their other sessions ended; they are "
        "deactivated and cannot sign in until "
        "`scim-hub admin activate ops@acme.example --workspace acme`\n"
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--workspace", "nowhere", "--connector", "generic_scim"), "no workspace named 'nowhere'"),
        (("--workspace", "acme", "--connector", "nope"), "no connector 'nope'"),
        (
            ("--workspace", "acme", "--connector", "generic_scim", "--admin", "x@acme.example"),
            "x@acme.example",
        ),
    ],
)
def test_token_add_names_what_it_cannot_find(
    sqlite_cli: Cli, args: tuple[str, ...], named: str
) -> None:
    sqlite_cli.init("acme")
    refused = sqlite_cli("token", "add", *args, check=False)
    assert refused.returncode == 2
    [line] = refused.stderr.splitlines()
    assert line.startswith("scim-hub: "), refused.stderr
    assert named in line, refused.stderr
    assert "shub_" not in refused.stdout
    assert len(sqlite_cli.token_ids("acme")) == 1, "no token is made"


#: The commands that make a secret as an admin, each ending in the option naming the admin.
_AS_ADMIN = [
    ("token", "regenerate", "--workspace", "acme", "--connector", "generic_scim", "--admin"),
    ("token", "add", "--workspace", "acme", "--connector", "generic_scim", "--admin"),
    ("admin", "key", "--workspace", "acme", "--email"),
]


@pytest.mark.parametrize("args", _AS_ADMIN)
async def test_an_empty_admin_is_no_admin_not_the_first(
    sqlite_cli: Cli, args: tuple[str, ...]
) -> None:
    """`--admin ""` (an unset variable in a script) made the token, or key, as the first admin,
    and regenerate killed the live token, exit 0."""
    init = sqlite_cli.init("acme")
    refused = sqlite_cli(*args, "", check=False)
    assert refused.returncode == 2
    assert refused.stderr == "scim-hub: no admin '' in this workspace\n"
    assert not re.search(r"shub_|shadm_", refused.stdout)
    assert len(sqlite_cli.token_ids("acme")) == 1
    assert await sqlite_cli.statuses(init["token"]) == [200]


@pytest.mark.parametrize("args", _AS_ADMIN)
async def test_a_deactivated_admin_makes_no_dead_token_or_key(
    cli: Cli, args: tuple[str, ...]
) -> None:
    """As a deactivated admin, regenerate revoked the live tokens and printed one dead from the
    start (exit 0): the IdP was cut off. add and key printed a secret that never worked."""
    init = cli.init("acme", "--admin-email", "ops@acme.example")
    cli("admin", "deactivate", "ops@acme.example", "--workspace", "acme")
    refused = cli(*args, "OPS@acme.example", check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("scim-hub: admin 'OPS@acme.example' is deactivated"), (
        refused.stderr
    )
    assert not re.search(r"shub_|shadm_", refused.stdout)
    assert len(cli.token_ids("acme")) == 1, "nothing revoked, nothing made"
    cli("admin", "activate", "ops@acme.example", "--workspace", "acme")
    assert await cli.statuses(init["token"]) == [200]


async def test_token_revoke(cli: Cli) -> None:
    acme = cli.init("acme")
    other = cli.init("other")
    [acme_token_id] = cli.token_ids("acme")

    # Another workspace cannot revoke acme's token.
    refused = cli("token", "revoke", acme_token_id, "--workspace", "other", check=False)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert await cli.statuses(acme["token"]) == [200]

    cli("token", "revoke", acme_token_id, "--workspace", "acme")
    assert await cli.statuses(acme["token"], other["token"]) == [401, 200]


async def test_admin_deactivate_kills_every_token_they_created(sqlite_cli: Cli) -> None:
    acme = sqlite_cli.init("acme", "--admin-email", "ops@acme.example")
    other = sqlite_cli.init("other", "--admin-email", "ops@acme.example")
    regenerated = sqlite_cli(
        "token", "regenerate", "--workspace", "acme", "--connector", "generic_scim"
    )
    current = _printed_token(regenerated.stdout)
    assert await sqlite_cli.statuses(acme["token"], current, other["token"]) == [401, 200, 200]

    sqlite_cli("admin", "deactivate", "ops@acme.example", "--workspace", "acme")
    # Only acme's admin: the same e-mail in another workspace is another admin.
    assert await sqlite_cli.statuses(current, other["token"]) == [401, 200]

    unknown = sqlite_cli(
        "admin", "deactivate", "nobody@acme.example", "--workspace", "acme", check=False
    )
    assert unknown.returncode != 0
    assert "nobody@acme.example" in unknown.stderr


async def test_connector_create_prints_a_token_command_that_runs_as_printed(
    sqlite_cli: Cli,
) -> None:
    """It printed `--workspace My Co --connector 'Okta $EU'`: the workspace unquoted (two words
    to the shell) and the connector in Python's quotes."""
    import shlex

    sqlite_cli.init("My Co")
    created = sqlite_cli("connector", "create", "Okta $EU", "--idp", "okta", "--workspace", "My Co")
    command = shlex.split(created.stdout.splitlines()[-1])
    assert command[:3] == ["scim-hub", "token", "add"], created.stdout
    made = sqlite_cli(*command[1:])
    assert await sqlite_cli.statuses(_printed_token(made.stdout)) == [200]
    assert "connector=Okta $EU" in sqlite_cli("token", "list", "--workspace", "My Co").stdout


async def test_a_padded_connector_name_finds_the_connector_it_created(sqlite_cli: Cli) -> None:
    """`connector create ' Pad '` stores "Pad"; `connector disable ' Pad '`, `token add` and
    `token regenerate --connector ' Pad '` then answered "no connector ' Pad '"."""
    sqlite_cli.init("acme")
    sqlite_cli("connector", "create", " Pad ", "--idp", "okta", "--workspace", "acme")
    target = ("--workspace", "acme", "--connector", " Pad ")
    added = _printed_token(sqlite_cli("token", "add", *target).stdout)
    regenerated = _printed_token(sqlite_cli("token", "regenerate", *target).stdout)
    assert await sqlite_cli.statuses(added, regenerated) == [401, 200]
    sqlite_cli("connector", "disable", " Pad ", "--workspace", "acme")
    assert await sqlite_cli.statuses(regenerated) == [401]


async def test_connector_disable_and_enable(cli: Cli) -> None:
    init = cli.init("acme")
    other = cli.init("other")
    cli("connector", "disable", init["connector"], "--workspace", "acme")
    assert await cli.statuses(init["token"], other["token"]) == [401, 200]
    cli("connector", "enable", init["connector"], "--workspace", "acme")
    assert await cli.statuses(init["token"]) == [200]

    unknown = cli("connector", "disable", "nope", "--workspace", "acme", check=False)
    assert unknown.returncode != 0
    assert "nope" in unknown.stderr
    assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCIM_HUB_PORT", "eighty"),
        ("SCIM_HUB_PORT", "0"),
        ("SCIM_HUB_BASE_URL", "ftp://example.com"),
        # The tenant URL read "https:/scim/v2"; a space went into every link.
        ("SCIM_HUB_BASE_URL", "https://"),
        ("SCIM_HUB_BASE_URL", "http://hub example.com"),
        ("SCIM_HUB_BASE_URL", "https://hub.example.com/?tenant=1"),
        ("SCIM_HUB_ENVIRONMENT", "staging"),
        ("SCIM_HUB_LOG_LEVEL", "loud"),
        ("SCIM_HUB_MAX_RESULTS", "-5"),
        ("SCIM_HUB_PORT", "99999"),
        ("SCIM_HUB_SMTP_PORT", "70000"),
        ("SCIM_HUB_DATABASE_POOL_SIZE", "0"),
        ("SCIM_HUB_DATABASE_URL", "mysql://db.example.com/hub"),
        ("SCIM_HUB_DATABASE_URL", "not a url"),
        # The synchronous drivers: "requires an async driver", "No module named 'psycopg'".
        ("SCIM_HUB_DATABASE_URL", "sqlite:///var/hub.db"),
        ("SCIM_HUB_DATABASE_URL", "postgresql://hub@db.example.com/hub"),
        # These four started a hub that refused every PATCH ("at most -1 operations"), every
        # filter or every member change, or had no rate limit at all.
        ("SCIM_HUB_MAX_PATCH_OPERATIONS", "-1"),
        ("SCIM_HUB_MAX_FILTER_DEPTH", "0"),
        ("SCIM_HUB_MAX_GROUP_MEMBERS_PER_PATCH", "0"),
        ("SCIM_HUB_RATE_LIMIT_PER_SECOND", "-1"),
        # Listened on every interface; init printed the tenant URL "http://:8000/scim/v2".
        ("SCIM_HUB_HOST", ""),
        ("SCIM_HUB_HOST", " "),
        ("SCIM_HUB_HOST", "hub host"),
    ],
)
def test_bad_setting_stops_with_a_message_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    database = tmp_path / "hub.db"
    runner = Cli(f"sqlite+aiosqlite:///{database}")
    result = runner("init", "--workspace", "acme", check=False, **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not database.exists(), "nothing is created when a setting is bad"


def test_an_unknown_key_in_the_settings_file_is_named(sqlite_cli: Cli, tmp_path: Path) -> None:
    """It was reported as "SCIM_HUB_OBJECT CONTAINS UNKNOWN FIELD `PROT: ", a variable that
    does not exist."""
    config = tmp_path / "hub.toml"
    config.write_text("prot = 8001\n")
    result = sqlite_cli("init", "--workspace", "acme", check=False, SCIM_HUB_CONFIG=str(config))
    assert result.returncode == 2
    assert result.stderr.startswith("scim-hub: bad setting: SCIM_HUB_CONFIG: "), result.stderr
    assert "'prot'" in result.stderr
    assert "OBJECT" not in result.stderr
    listed = sqlite_cli("token", "list", "--workspace", "acme", check=False)
    assert "no workspace named 'acme'" in listed.stderr, "nothing is created"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('port = "x"', "port: Expected `int`, got `str`"),
        ("log_level = 3", "log_level: Expected"),
        # Values of the right type out of range were named as their variable too.
        ("port = 0", "port must be at least 1"),
        ("smtp_port = 70000", "smtp_port must be a TCP port"),
        ("max_results = 0", "max_results must be at least 1"),
    ],
)
def test_a_bad_value_in_the_settings_file_is_named_as_its_key(
    sqlite_cli: Cli, tmp_path: Path, line: str, named: str
) -> None:
    """`port = "x"` in the file was reported as SCIM_HUB_PORT, a variable no one had set."""
    config = tmp_path / "hub.toml"
    config.write_text(line + "\n")
    result = sqlite_cli(
        "token", "list", "--workspace", "a", check=False, SCIM_HUB_CONFIG=str(config)
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"scim-hub: bad setting: SCIM_HUB_CONFIG: {config}: {named}"), (
        result.stderr
    )


def test_a_settings_file_that_is_not_utf8_is_named(sqlite_cli: Cli, tmp_path: Path) -> None:
    """A settings file saved as UTF-16 (or Latin-1) ended in a UnicodeDecodeError traceback."""
    config = tmp_path / "hub.toml"
    config.write_text("port = 8001\n", encoding="utf-16")
    result = sqlite_cli(
        "token", "list", "--workspace", "acme", check=False, SCIM_HUB_CONFIG=str(config)
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"scim-hub: bad setting: SCIM_HUB_CONFIG: cannot read {config}: "), line
    assert "codec can't decode" in line


def test_a_variable_that_names_no_setting_is_reported(sqlite_cli: Cli) -> None:
    """SCIM_HUB_SMTP_SERVER (for SCIM_HUB_SMTP_HOST) was ignored without a word: emails went to
    .eml files. The settings file and the suite's own knobs are not reported; a variable close
    to a setting's names it; plugin variables are reported when no installed plugin has that
    setting (Okta has none, and no plugin is called "nope"; they were not reported at all)."""
    result = sqlite_cli(
        "init",
        "--workspace",
        "acme",
        SCIM_HUB_SMTP_SERVER="mail.example.com",
        SCIM_HUB_MAIL_FORM="ops@example.com",
        SCIM_HUB_PLUGIN_OKTA_X="1",
        SCIM_HUB_PLUGIN_NOPE_RETRIES="3",
        SCIM_HUB_TEST_ROUNDS="3",
    )
    reported = "is not a setting (ignored{}); see README, Configuration"
    assert result.stderr.splitlines() == [
        "scim-hub: SCIM_HUB_MAIL_FORM " + reported.format("; did you mean SCIM_HUB_MAIL_FROM?"),
        "scim-hub: SCIM_HUB_SMTP_SERVER " + reported.format(""),
        "scim-hub: SCIM_HUB_PLUGIN_NOPE_RETRIES " + reported.format(""),
        "scim-hub: SCIM_HUB_PLUGIN_OKTA_X " + reported.format(""),
    ]
    assert "token:" in result.stdout


def test_serve_over_a_database_it_cannot_open_says_so(tmp_path: Path) -> None:
    """`scim-hub serve` over a SQLite file it cannot open (here: in a missing directory; a
    read-only file system does the same) names that cause, not a missing migration."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'hub.db'}"
    result = run_cli(["serve", "--port", "1"], hub_environ(url, "http://127.0.0.1:1"), check=False)
    assert result.returncode == 2, result.stderr
    assert "cannot open the database" in result.stderr
    assert "unable to open database file" in result.stderr
    assert "db upgrade" not in result.stderr


def test_serve_with_a_secret_file_it_cannot_create_says_so_in_one_line(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    """It printed "serving on …", then each worker's start-up failed in a sixty-line traceback
    with the reason inside (status 3)."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    env = {**sqlite_cli.env, "SCIM_HUB_SECRET_FILE": str(in_the_way / "secret.key")}
    result = run_cli(["serve", "--port", str(free_port())], env, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"scim-hub: SCIM_HUB_SECRET_FILE: cannot read or create the server secret {in_the_way}"
    ), line
    assert "serving" not in result.stdout


@pytest.mark.parametrize("where", ["a-file", "a-file/outbox"])
def test_serve_with_an_outbox_it_cannot_make_says_so_in_one_line(
    sqlite_cli: Cli, tmp_path: Path, where: str
) -> None:
    """Without SMTP, emails are files in SCIM_HUB_OUTBOX_DIR; the hub served with a file in its
    way, and every activation email failed, retried for hours, then was given up."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    env = {**sqlite_cli.env, "SCIM_HUB_OUTBOX_DIR": str(tmp_path / where)}
    result = run_cli(["serve", "--port", str(free_port())], env, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"scim-hub: SCIM_HUB_OUTBOX_DIR: cannot write activation emails to {tmp_path / where}: "
        f"{in_the_way} is not a directory (without SCIM_HUB_SMTP_HOST they are written there "
        "as .eml files)"
    )
    assert "Traceback" not in result.stderr
    assert "serving" not in result.stdout


def test_a_database_file_it_cannot_open_prints_no_thread_traceback(tmp_path: Path) -> None:
    """After the one line, aiosqlite's connection thread printed "Exception in thread …
    RuntimeError: Event loop is closed", one run in two: its failed connect left the thread
    to report to the loop `asyncio.run` had closed."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    runner = Cli(f"sqlite+aiosqlite:///{in_the_way / 'hub.db'}", process=True)
    for _ in range(3):
        for args in (("init", "--workspace", "acme"), ("token", "list", "--workspace", "acme")):
            result = runner(*args, check=False)
            assert result.returncode == 2, result.stderr
            assert result.stderr == (
                f"scim-hub: cannot open the database {runner.database_url}: "
                "unable to open database file\n"
            )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
@pytest.mark.parametrize("revision", [None, "0002"])
def test_a_command_on_a_database_not_migrated_says_so(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, revision: str | None
) -> None:
    """Not migrated at all, or only by an older version: one line naming the fix, no traceback."""
    from hub.migrate import upgrade

    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    if revision is not None:
        upgrade(url, revision)
    runner = Cli(url)
    for args in (
        ("init", "--workspace", "acme"),
        ("token", "list", "--workspace", "acme"),
        ("connector", "list", "--workspace", "acme"),
        ("seed", "--workspace", "acme", "--users", "2"),
    ):
        result = runner(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert "not migrated" in result.stderr, result.stderr
        assert "scim-hub db upgrade" in result.stderr, result.stderr
    assert runner("db", "upgrade").returncode == 0
    assert runner("init", "--workspace", "acme").returncode == 0


@pytest.mark.postgres
def test_a_read_only_postgresql_database_is_named_with_the_cause(
    migrated_postgres_url: str, postgres_server_url: str
) -> None:
    """A database set read-only (a hot standby, `default_transaction_read_only`) ended a write
    in asyncpg's ReadOnlySQLTransactionError traceback."""
    from tests.pg import _admin_execute, run_coroutine

    runner = Cli(migrated_postgres_url)
    runner.init("acme")
    name = migrated_postgres_url.rsplit("/", 1)[1]
    run_coroutine(
        lambda: _admin_execute(
            postgres_server_url,
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
            "postgres",
        )
    )
    assert len(runner.token_ids("acme")) == 1, "reading works"
    for args in (
        ("token", "add", "--workspace", "acme", "--connector", "generic_scim"),
        ("admin", "deactivate", "admin@acme.example", "--workspace", "acme"),
    ):
        refused = runner(*args, check=False)
        assert refused.returncode == 2, refused.stderr
        [line] = refused.stderr.splitlines()
        assert line.startswith("scim-hub: the database postgresql+asyncpg://"), line
        refusal = r"refused the change: cannot execute (INSERT|UPDATE) in a read-only transaction$"
        assert re.search(refusal, line), line
    assert len(runner.token_ids("acme")) == 1


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
def test_an_in_memory_database_is_refused(url: str) -> None:
    """`db upgrade` said "database is up to date" of a database gone when it ended; every later
    command said "not migrated; run `scim-hub db upgrade` first", for ever."""
    runner = Cli(url)
    for args in (("db", "upgrade"), ("init", "--workspace", "acme")):
        refused = runner(*args, check=False)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr == (
            f"scim-hub: the database {url} is in memory and lasts one command; "
            "name a file (sqlite+aiosqlite:///path/to/hub.db)\n"
        )
        assert "up to date" not in refused.stdout


def test_a_database_that_cannot_be_reached_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runner = Cli(f"postgresql+asyncpg://hub:s3cretpw@127.0.0.1:{port}/hub")
    for args in (
        ("db", "upgrade"),
        ("serve", "--port", "8999"),
        ("token", "list", "--workspace", "a"),
    ):
        result = runner(*args, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert "s3cretpw" not in result.stdout + result.stderr
        assert "cannot open the database" in result.stderr, result.stderr


def test_a_read_only_database_is_named_with_the_cause(sqlite_cli: Cli, tmp_path: Path) -> None:
    """A write to a read-only SQLite file said "the database cannot take writes now; retry
    later" (the hub's 503 text): no database named, and retrying never helps. The file is
    opened read-only by URI (`mode=ro`): chmod does not stop root, and SQLite answers the same
    SQLITE_READONLY either way."""
    sqlite_cli.init("acme")
    read_only = Cli(f"sqlite+aiosqlite:///file:{tmp_path / 'hub.db'}?mode=ro&uri=true")
    assert len(read_only.token_ids("acme")) == 1, "reading works"
    for args in (
        ("token", "add", "--workspace", "acme", "--connector", "generic_scim"),
        ("admin", "deactivate", "admin@acme.example", "--workspace", "acme"),
        ("init", "--workspace", "other"),
    ):
        refused = read_only(*args, check=False)
        assert refused.returncode == 2, refused.stderr
        [line] = refused.stderr.splitlines()
        assert line.startswith("scim-hub: the database sqlite+aiosqlite:///file"), line
        assert line.endswith(
            "hub.db?mode=ro&uri=true refused the change: attempt to write a readonly database"
        ), line
    assert len(sqlite_cli.token_ids("acme")) == 1


@pytest.mark.parametrize("where", ["variable", "toml"])
def test_a_port_alone_moves_the_tenant_url(sqlite_cli: Cli, tmp_path: Path, where: str) -> None:
    """`SCIM_HUB_PORT=8001 make run` (or `port` in the TOML file), no base URL: `init` printed
    the tenant URL on port 8000, where nothing listened."""
    env = {k: v for k, v in sqlite_cli.env.items() if k != "SCIM_HUB_BASE_URL"}
    if where == "variable":
        env["SCIM_HUB_PORT"] = "8123"
    else:
        config = tmp_path / "hub.toml"
        config.write_text("port = 8123\n")
        env["SCIM_HUB_CONFIG"] = str(config)
    result = main_in_thread(["init", "--workspace", "acme", "--json"], env)
    assert json.loads(result.stdout)["tenant_url"] == "http://127.0.0.1:8123/scim/v2"
    configured = main_in_thread(
        ["init", "--workspace", "other", "--json"], {**env, "SCIM_HUB_BASE_URL": BASE_URL}
    )
    assert json.loads(configured.stdout)["tenant_url"] == f"{BASE_URL}/scim/v2"


def test_serve_port_moves_the_urls_of_a_hub_configured_by_file(
    sqlite_cli: Cli, tmp_path: Path
) -> None:
    """A TOML file without `base_url`, and `serve --port`: `meta.location` named the file's
    port, where nothing listened."""
    config = tmp_path / "hub.toml"
    config.write_text("port = 1\n")
    env = {k: v for k, v in sqlite_cli.env.items() if k != "SCIM_HUB_BASE_URL"}
    env["SCIM_HUB_CONFIG"] = str(config)
    token = json.loads(main_in_thread(["init", "--workspace", "acme", "--json"], env).stdout)[
        "token"
    ]
    port = free_port()
    stderr = tmp_path / "server.stderr"
    with stderr.open("wb") as errors:
        server = subprocess.Popen(
            [*cli_command(), "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}", server, stderr)
        created = httpx.post(
            f"http://127.0.0.1:{port}/scim/v2/Users",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
            json={"schemas": [USER_URN], "userName": "ada@example.com"},
        )
    finally:
        stop_process(server)
    assert created.status_code == 201, created.text
    assert created.json()["meta"]["location"].startswith(f"http://127.0.0.1:{port}/scim/v2/")


def test_serve_on_a_taken_port_says_so_in_one_line(sqlite_cli: Cli) -> None:
    """It printed "scim-hub serving on …", then uvicorn's "ERROR: [Errno 98] …" (status 3)."""
    runner = Cli(sqlite_cli.database_url, process=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner("serve", "--port", str(port), check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"scim-hub: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another port: --port or SCIM_HUB_PORT)\n"
    )
    assert "serving" not in result.stdout


@pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
def test_serve_on_an_address_not_of_this_host_names_the_host(sqlite_cli: Cli, host: str) -> None:
    """A host that is not this machine's (TEST-NET-1; a name that does not resolve) was told
    "(another port: --port or SCIM_HUB_PORT)"."""
    result = sqlite_cli("serve", "--host", host, "--port", "8000", check=False)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"scim-hub: cannot listen on {host}:8000: "), line
    assert line.endswith("(an address of this host: --host or SCIM_HUB_HOST)"), line
    assert "serving" not in result.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--port", "99999"), "--port"),
        (("--port", "0"), "--port"),
        (("--port", "http"), "--port"),
        (("--workers", "0"), "--workers"),
        (("--workers", "-2"), "--workers"),
        # Served on 127.0.0.1 and printed the SCIM URL "http://:8000/scim/v2".
        (("--host", ""), "argument --host: is empty"),
    ],
)
def test_serve_refuses_a_port_or_worker_count_out_of_range(
    sqlite_cli: Cli, args: tuple[str, str], named: str
) -> None:
    """`serve --port 99999` listened nowhere and never returned; `--port 0` served on 8000."""
    result = sqlite_cli("serve", *args, check=False)
    assert result.returncode == 2
    assert named in result.stderr, result.stderr
    assert "serving" not in result.stdout


@pytest.mark.postgres
def test_db_upgrades_started_together_on_postgresql_all_succeed(fresh_postgres_url: str) -> None:
    """Hubs started at once each run `db upgrade`: one migrates, the others wait and find it done.

    Before, all but one failed half-way with `duplicate key value violates unique constraint
    "pg_type_typname_nsp_index"` (each creating the same tables).
    """
    from concurrent.futures import ThreadPoolExecutor

    from hub.migrate import is_current

    runner = Cli(fresh_postgres_url, process=True)  # processes: Alembic's context is per process
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: runner("db", "upgrade", check=False), range(3)))
    assert [result.returncode for result in results] == [0, 0, 0], [r.stderr for r in results]
    assert is_current(fresh_postgres_url)


@pytest.mark.parametrize("action", ["create", "set-password"])
def test_a_password_prompt_without_input_says_so(sqlite_cli: Cli, action: str) -> None:
    """With no terminal and nothing on stdin (a script, CI), the prompt ended in getpass's
    EOFError traceback."""
    sqlite_cli.init("acme")
    # A session of its own: no controlling terminal, so getpass reads the (empty) stdin.
    result = subprocess.run(
        [*cli_command(), "admin", action, "admin@acme.example", "--workspace", "acme"],
        env=sqlite_cli.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith(
        "scim-hub: no password was typed (input ended); nothing was changed. Type it at a "
        "terminal, or pipe it with --password-stdin\n"
    ), result.stderr


async def test_an_admin_is_named_in_any_case(cli: Cli) -> None:
    """`admin create Ops@Acme.example` said the admin existed, and `admin deactivate` said not.

    The address is one admin in any case (`admin create` refuses it twice, signing in matches it
    in any case); deactivate, activate, set-password, key and token regenerate find it so too.
    """
    acme = cli.init("acme", "--admin-email", "ops@acme.example")
    regenerated = cli(
        "token",
        "regenerate",
        "--workspace",
        "acme",
        "--connector",
        "generic_scim",
        "--admin",
        "OPS@acme.example",
    )
    current = _printed_token(regenerated.stdout)
    assert (
        "admin key:"
        in cli("admin", "key", "--workspace", "acme", "--email", "Ops@Acme.Example").stdout
    )
    cli("admin", "deactivate", "Ops@Acme.Example", "--workspace", "acme")
    assert await cli.statuses(acme["token"], current) == [401, 401]
    cli("admin", "activate", "OPS@ACME.EXAMPLE", "--workspace", "acme")
    assert await cli.statuses(current) == [200]
