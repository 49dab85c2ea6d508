"""The `scim-hub` command: serve, init, db upgrade, plugins, and the operator's admin tasks."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Connection

from hub.core import connectors, tenants, tokens
from hub.core.clock import to_iso
from hub.core.database import open_database, refused_by_server
from hub.core.errors import ScimError, Unavailable
from hub.settings import (
    PLUGIN_ENV_PREFIX,
    Settings,
    SettingsError,
    listen_url,
    load_settings,
    unknown_variables,
)

T = TypeVar("T")


class CliError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def _require_current(settings: Settings) -> None:
    """Stop unless the database is migrated to this version.

    A command on an older schema would fail half-way, or write rows that this version's later
    migrations never see.
    """
    _check_lasting(settings.database_url)
    if not _is_current(settings.database_url):
        raise CliError(_not_migrated(settings.database_url))


def _check_lasting(database_url: str) -> None:
    """Stop on an in-memory SQLite database: it lasts one command.

    `db upgrade` said "up to date" of a database gone when it ended, and every later command
    said "not migrated; run `scim-hub db upgrade` first", for ever.
    """
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise CliError(
            f"the database {_safe_url(database_url)} is in memory and lasts one command; "
            "name a file (sqlite+aiosqlite:///path/to/hub.db)"
        )


def _is_current(database_url: str) -> bool:
    """Whether the database is migrated to this version.

    Raises:
        CliError: it cannot be opened (a file in a missing directory or on a read-only file
            system, a server that is down): said so, not "run db upgrade".
    """
    from hub.migrate import is_current

    try:
        _open_sqlite_file(database_url)
        return is_current(database_url)
    except Exception as exc:
        raise CliError(
            f"cannot open the database {_safe_url(database_url)}: {_reason(exc)}"
        ) from exc


def _open_sqlite_file(database_url: str) -> None:
    """Open a SQLite database file with the standard library (creating it, as aiosqlite would).

    When the file cannot be opened, aiosqlite's failed connect leaves its thread to hand a
    result to an event loop already closed, which printed a thread's traceback after the
    one-line message, one run in two (omnilib/aiosqlite#241, #389). Asked first here, the
    failure never reaches aiosqlite.

    Raises:
        sqlite3.Error: it cannot be opened (a missing directory, a file in the way).
    """
    import sqlite3
    from urllib.parse import urlencode

    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if url.query.get("uri") != "true":
        sqlite3.connect(url.database).close()
        return
    # A URI filename keeps its parameters (`mode=ro`), as the driver passes them on.
    params = urlencode({k: v for k, v in url.query.items() if k != "uri"}, doseq=True)
    sqlite3.connect(f"{url.database}?{params}" if params else url.database, uri=True).close()


def _not_migrated(database_url: str) -> str:
    return (
        f"the database {_safe_url(database_url)} is not migrated to this version; "
        "run `scim-hub db upgrade` first"
    )


def _run_unit(settings: Settings, fn: Callable[..., T], /, **kwargs: Any) -> T:
    _require_current(settings)

    async def go() -> T:
        db = open_database(settings.database_url)
        try:
            return await db.write(fn, **kwargs)
        finally:
            await db.close()

    return asyncio.run(go())


def _workspace_pk(conn: Connection, name: str) -> int:
    return tenants.require_workspace(conn, name).pk


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the hub with uvicorn (uvloop, httptools)."""
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    _require_current(settings)
    os.environ["SCIM_HUB_DATABASE_URL"] = settings.database_url
    # Each worker enforces its share of the rate limits.
    os.environ["SCIM_HUB_WORKERS"] = str(workers)
    # No base URL configured (variable or file): links and meta.location point where we listen,
    # --host and --port included. The workers read it from the environment.
    base_url = load_settings(host=args.host, port=args.port).base_url
    os.environ["SCIM_HUB_BASE_URL"] = base_url
    _check_listening(host, port)
    _check_secret(settings)
    _check_outbox(settings)
    print(f"scim-hub serving on {listen_url(host, port)} (SCIM at {base_url}/scim/v2)")
    options: dict[str, Any] = {
        "app": "hub.asgi:create",
        "factory": True,
        "host": host,
        "port": port,
        "loop": "uvloop",
        # Each response in one write (see hub/http_protocol.py).
        "http": "hub.http_protocol:CoalescingHttpToolsProtocol",
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "timeout_keep_alive": settings.keep_alive_seconds,
        # No `server: uvicorn` banner on every response: it tells a scanner what runs here, and
        # each header costs uvicorn's checks (~6,000 instructions) on every response. `Date`
        # stays: RFC 9110 §6.6.1 asks an origin server with a clock to send it.
        "server_header": False,
    }
    if workers > 1 and hasattr(socket, "SO_REUSEPORT"):
        # A socket per worker, so connections spread over the workers (see hub/serving.py).
        from hub.serving import PortTaken, serve_workers

        try:
            return serve_workers(options, workers)
        except PortTaken as exc:
            raise CliError(str(exc)) from exc
    uvicorn.run(workers=workers, **options)
    return 0


def _check_secret(settings: Settings) -> None:
    """Stop with one line when the server secret cannot be read or created, before "serving".

    An unusable `SCIM_HUB_SECRET_FILE` printed "serving on …", then every worker's start-up
    failed in a traceback of sixty lines with the reason inside. Read (or created) here, the
    workers find the file made.
    """
    from hub.core.secret import ACTIVATION_LINKS, SecretError, derive_key

    try:
        derive_key(settings, ACTIVATION_LINKS)
    except SecretError as exc:
        raise CliError(str(exc)) from exc


def _check_outbox(settings: Settings) -> None:
    """Stop with one line when emails go to files (no SMTP) and their directory cannot be made.

    The hub served, and every activation email failed to be written, retried for hours, then
    given up, each failure only in the log.
    """
    if settings.smtp_host:
        return
    from pathlib import Path

    directory = Path(settings.outbox_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        writable = os.access(directory, os.W_OK | os.X_OK)
    except OSError as exc:
        # mkdir says "File exists" of a file in the way; name it as what it is.
        existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
        in_the_way = existing is not None and not existing.is_dir()
        reason = f"{existing} is not a directory" if in_the_way else exc.strerror or str(exc)
    else:
        if writable:
            return
        reason = "not writable"
    raise CliError(
        f"SCIM_HUB_OUTBOX_DIR: cannot write activation emails to {directory}: {reason} "
        "(without SCIM_HUB_SMTP_HOST they are written there as .eml files)"
    )


def _check_listening(host: str, port: int) -> None:
    """Stop with one line when `host:port` cannot be listened on, before saying "serving".

    A taken port (`make run` next to another server on 8000) printed "serving on …" and then
    uvicorn's own error.
    """
    from hub.serving import PortTaken, listening_socket

    try:
        listening_socket(host, port, share=False).close()
    except PortTaken as exc:
        raise CliError(f"{exc} ({_listen_hint(exc.__cause__)})") from exc


def _listen_hint(cause: BaseException | None) -> str:
    """What to change when binding failed: the port when it is taken or privileged, else the host.

    `--host no-such-host` ("Name or service not known") was told to pick another port.
    """
    import errno

    if isinstance(cause, OSError) and cause.errno in (errno.EADDRINUSE, errno.EACCES):
        return "another port: --port or SCIM_HUB_PORT"
    return "an address of this host: --host or SCIM_HUB_HOST"


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    """Migrate the database to the latest schema."""
    from hub.migrate import upgrade

    _check_lasting(settings.database_url)
    upgrade(settings.database_url)
    print(f"database is up to date ({_safe_url(settings.database_url)})")
    return 0


def cmd_db_backup(settings: Settings, args: argparse.Namespace) -> int:
    """Take an online, consistent backup of the database (see `hub.backup`)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from hub import backup

    if not args.path.strip():  # Path("") is the working directory: "'.' exists" said nothing
        raise CliError("db backup: PATH is empty; name the file to write")
    target = Path(args.path)
    try:
        if make_url(settings.database_url).get_backend_name() == "sqlite":
            if args.print_only:  # a "dry run" must not write a backup
                raise CliError(
                    "--print shows the pg_dump command of a PostgreSQL database; this one is "
                    "SQLite: `scim-hub db backup PATH` copies it"
                )
            done = backup.backup_sqlite(settings.database_url, target)
            print(
                f"backed up {_safe_url(settings.database_url)} to {done.path} ({done.size:,} bytes)"
            )
            return 0
        if args.print_only:
            print(backup.pg_dump_command(settings.database_url, target).shell())
            return 0
        command = backup.backup_postgres(settings.database_url, target)
    except backup.BackupError as exc:
        raise CliError(str(exc)) from exc
    print(f"backed up {_safe_url(settings.database_url)} to {target} with: {command.shell()}")
    return 0


def _database_problem(database_url: str, args: argparse.Namespace, exc: Exception) -> str | None:
    """Say what is wrong with the database a command failed on; None when it is not the database.

    A database not migrated yet (or migrated by an older version), one that cannot be reached, or
    one that refuses the change (a read-only file) is the operator's to fix: one line naming it,
    not a traceback. The URL is shown without its password.
    """
    import sqlalchemy.exc

    if not isinstance(exc, sqlalchemy.exc.SQLAlchemyError | OSError) and not type(
        exc
    ).__module__.startswith("asyncpg"):
        return None
    where = _safe_url(database_url)
    try:
        current = _is_current(database_url)
    except CliError as unreachable:
        return str(unreachable)
    if args.func is cmd_db:
        return f"cannot migrate the database {where}: {_reason(exc)}"
    if not current:
        return _not_migrated(database_url)
    if isinstance(exc, sqlalchemy.exc.OperationalError) or refused_by_server(exc):
        return f"the database {where} refused the change: {_reason(exc)}"
    return None


def _reason(exc: BaseException) -> str:
    """The driver's own words for `exc` (first line; no SQL, no parameters)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _safe_url(url: str) -> str:
    """`url` without its password; as given when it has none (rendering escapes ":memory:")."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    """Create a workspace, its first admin, a connector and a token (printed once)."""
    from hub.plugins import build_registry

    registry = build_registry()
    if registry.dialect(args.idp) is None:
        known = ", ".join(sorted(registry.dialects)) or "none"
        raise CliError(f"--idp {args.idp!r} is not an installed IdP plugin (installed: {known})")

    def unit(conn: Connection) -> tenants.InitResult | list[str]:
        existing = tenants.find_workspace(conn, args.workspace) if args.if_missing else None
        if existing is not None:  # its connectors' names, to say how to get a token again
            return [info.name for info in connectors.list_connectors(conn, existing.pk)]
        return tenants.init_workspace(
            conn,
            workspace=args.workspace,
            base_url=settings.base_url,
            idp=args.idp,
            admin_email=args.admin_email,
        )

    result = _run_unit(settings, unit)
    if isinstance(result, list) and args.json:
        # Still one JSON object (it was the text below, which a script's JSON parser chokes
        # on): no token, and the command that makes one.
        name = args.workspace.strip()
        hint = _regenerate_hint(name, args.idp, result)
        existing = {
            "workspace": name,
            "exists": True,
            "tenant_url": tenants.tenant_url(settings.base_url),
            "connectors": result,
            "token": None,
            "regenerate": hint.splitlines()[-1].strip(),
        }
        print(msgspec.json.encode(existing).decode())
        return 0
    if isinstance(result, list):
        print(
            f"workspace {args.workspace!r} exists; "
            f"tenant URL: {tenants.tenant_url(settings.base_url)}"
        )
        print(_regenerate_hint(args.workspace, args.idp, result))
        return 0
    if args.json:
        print(msgspec.json.encode(result).decode())
        return 0
    print(f"workspace:  {result.workspace}")
    print(f"admin:      {result.admin}")
    print(f"connector:  {result.connector} ({result.idp})")
    print(f"tenant URL: {result.tenant_url}")
    print(f"token:      {result.token}")
    print("the token is shown only now; store it in your IdP's provisioning settings")
    return 0


def _regenerate_hint(workspace: str, idp: str, connector_names: list[str]) -> str:
    """How to get a token for an existing workspace, as a command that runs as printed.

    The connector is the one `init` names after `idp`, else the workspace's only one; with
    several others, `connector list` names them.
    """
    if idp in connector_names:
        connector = idp
    elif len(connector_names) == 1:
        connector = connector_names[0]
    else:
        connector = "NAME"
    command = (
        f"scim-hub token regenerate --workspace {shlex.quote(workspace)} "
        f"--connector {shlex.quote(connector)}"
    )
    hint = "its token was shown when it was created; make a new one (the old one dies) with"
    if connector == "NAME":
        hint += f" (names: scim-hub connector list --workspace {shlex.quote(workspace)})"
    return f"{hint}\n  {command}"


def cmd_plugins(settings: Settings, args: argparse.Namespace) -> int:
    """List installed plugins, their versions, hooks and IdPs (broken ones say why)."""
    from hub.plugins import build_registry

    registry = build_registry()
    for info in registry.plugins:
        idps = [
            f"{d.name} ({d.display_name})"
            for d in registry.dialects.values()
            if d.plugin == info.name
        ]
        status = f"BROKEN: {info.error}" if info.error else "ok"
        print(f"{info.name} {info.version} [{status}]")
        print(f"  hooks: {', '.join(info.hooks) or '-'}")
        print(f"  idps:  {', '.join(idps) or '-'}")
    return 0


def _new_token(
    settings: Settings,
    args: argparse.Namespace,
    make: Callable[[Connection, int, str, int], tokens.NewToken],
) -> tokens.NewToken:
    """Run `make` (a connectors token function) for `--workspace`, `--connector`, `--admin`.

    A disabled connector's token is made (the admin may enable it later), with a warning on
    stderr: until then the IdP it is given to gets 401 for every request.
    """

    def unit(conn: Connection) -> tuple[tokens.NewToken, connectors.ConnectorInfo]:
        ws = _workspace_pk(conn, args.workspace)
        new = make(conn, ws, args.connector, _creating_admin(conn, ws, args.admin))
        return new, connectors.get_connector(conn, ws, args.connector)

    new, connector = _run_unit(settings, unit)
    if not connector.enabled:
        print(
            f"scim-hub: warning: connector {connector.name!r} is disabled: this token gets 401 "
            f"until `scim-hub connector enable {connector.name} --workspace {args.workspace}`",
            file=sys.stderr,
        )
    return new


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    """List, add, regenerate or revoke tokens."""
    if args.token_command == "list":
        rows = _run_unit(
            settings,
            lambda conn: tokens.list_tokens(conn, workspace_pk=_workspace_pk(conn, args.workspace)),
        )
        for info in rows:
            used = to_iso(info.last_used) if info.last_used else "never"
            state = "active" if info.alive else f"dead ({info.reason})"
            print(
                f"{info.id}  connector={info.connector}  created_by={info.created_by}  "
                f"…{info.hint}  created={to_iso(info.created)}  last_used={used}  {state}"
            )
        return 0
    if args.token_command == "regenerate":
        # What `POST …/connectors/{c}/tokens/regenerate` does: the connector by name or id
        # (`connector list` shows ids first; an id answered "no connector named …").
        new = _new_token(settings, args, connectors.regenerate_token)
        print(f"token:      {new.token}")
        print("the old token no longer works; this one is shown only now")
        return 0
    if args.token_command == "add":
        # What `POST …/connectors/{c}/tokens` does: the connector by name or id.
        new = _new_token(settings, args, connectors.generate_token)
        print(f"token:      {new.token}")
        print(f"token id:   {new.id}")
        print("the connector's other tokens keep working; this one is shown only now")
        return 0
    _run_unit(
        settings,
        lambda conn: tokens.revoke(
            conn, workspace_pk=_workspace_pk(conn, args.workspace), token_id=args.token_id
        ),
    )
    print(f"token {args.token_id} revoked")
    return 0


def _creating_admin(conn: Connection, workspace_pk: int, email: str | None) -> int:
    """The admin a new token is made on behalf of: `email`, else the workspace's first admin.

    An empty `--admin ''` (an unset shell variable) is an admin no one has, not the default.
    """
    if email is not None:
        return tenants.active_admin_pk(conn, workspace_pk, email)
    return tenants.first_admin_pk(conn, workspace_pk)


def cmd_admin(settings: Settings, args: argparse.Namespace) -> int:
    """Activate or deactivate an admin."""
    from hub.core.admin_sessions import end_admin_sessions

    active = args.admin_command == "activate"

    def unit(conn: Connection) -> None:
        ws = _workspace_pk(conn, args.workspace)
        tenants.set_admin_active(conn, workspace_pk=ws, email=args.email, active=active)
        if not active:  # their dashboard sessions end too (and stay ended if reactivated)
            end_admin_sessions(conn, tenants.admin_pk(conn, ws, args.email))

    _run_unit(settings, unit)
    print(
        f"admin {args.email} "
        f"{'activated' if active else 'deactivated; their tokens no longer work'}"
    )
    return 0


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a prompt."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
    except EOFError:  # no terminal and nothing on stdin (a script, CI): it was a traceback
        raise CliError(
            "no password was typed (input ended); nothing was changed. Type it at a terminal, "
            "or pipe it with --password-stdin"
        ) from None
    if again != first:
        raise CliError("the passwords differ; nothing was changed")
    return first


def cmd_admin_password(settings: Settings, args: argparse.Namespace) -> int:
    """Create an admin with a dashboard password, or set an admin's password."""
    from hub.core import admin_sessions

    hashed = admin_sessions.hash_password(_read_password(args.password_stdin))
    creating = args.admin_command == "create"

    def unit(conn: Connection) -> bool:
        """Whether the admin may sign in with it (a deactivated one may not)."""
        ws = _workspace_pk(conn, args.workspace)
        if creating:
            admin_sessions.create_admin(
                conn, workspace_pk=ws, email=args.email, password_hash=hashed
            )
            return True
        admin_sessions.set_password_by_email(
            conn, workspace_pk=ws, email=args.email, password_hash=hashed
        )
        return tenants.is_active_admin(conn, tenants.admin_pk(conn, ws, args.email))

    may_sign_in = _run_unit(settings, unit)
    done = "created" if creating else "has a new password; their other sessions ended"
    if may_sign_in:
        print(f"admin {args.email} {done}; sign in at {settings.base_url}/admin")
    else:
        print(
            f"admin {args.email} {done}; they are deactivated and cannot sign in until "
            f"`scim-hub admin activate {args.email} --workspace {args.workspace}`"
        )
    return 0


def cmd_admin_key(settings: Settings, args: argparse.Namespace) -> int:
    """Make an admin API key (shown once)."""
    from hub.core.admins import create_key

    def unit(conn: Connection) -> str:
        ws = _workspace_pk(conn, args.workspace)
        return create_key(conn, admin_pk=_creating_admin(conn, ws, args.email))

    key = _run_unit(settings, unit)
    print(f"admin key: {key}")
    print("shown only now; send it as 'Authorization: Bearer <key>' to /api/v1/workspaces/…")
    return 0


def cmd_connector(settings: Settings, args: argparse.Namespace) -> int:
    """List, create, enable, disable or delete connectors."""
    command = args.connector_command
    if command == "list":
        infos = _run_unit(
            settings,
            lambda conn: connectors.list_connectors(conn, _workspace_pk(conn, args.workspace)),
        )
        for info in infos:
            state = "enabled" if info.enabled else "disabled"
            print(f"{info.id}  {info.name}  idp={info.idp}  {state}  users={info.users}")
        return 0
    if command == "create":
        from hub.plugins import build_registry

        installed = build_registry().dialects
        info = _run_unit(
            settings,
            lambda conn: connectors.create_connector(
                conn,
                _workspace_pk(conn, args.workspace),
                name=args.name,
                idp=args.idp,
                installed=installed,
            ),
        )
        print(f"connector {info.name} ({info.idp}) created; make its token with")
        # Quoted for the shell: a name with a space or a `$` runs as printed.
        print(
            f"  scim-hub token add --workspace {shlex.quote(args.workspace.strip())} "
            f"--connector {shlex.quote(info.name)}"
        )
        return 0
    if command == "delete":
        _run_unit(
            settings,
            lambda conn: connectors.delete_connector(
                conn, _workspace_pk(conn, args.workspace), args.name
            ),
        )
        print(f"connector {args.name} deleted; its tokens no longer work, its users stay")
        return 0
    enabled = command == "enable"
    _run_unit(
        settings,
        lambda conn: connectors.set_enabled(
            conn, _workspace_pk(conn, args.workspace), args.name, enabled
        ),
    )
    print(
        f"connector {args.name} {'enabled' if enabled else 'disabled; its tokens no longer work'}"
    )
    return 0


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    """Bulk-load users and their cards (unless --no-cards) into a workspace; see `hub.core.seed`."""
    from hub.core.seed import seed_users
    from hub.plugins import build_registry

    cards = not args.no_cards
    dialects = build_registry().dialects if cards else {}

    def progress(done: int, seconds: float) -> None:
        if not args.json:
            print(f"  {done:,} users in {seconds:.1f}s", file=sys.stderr, flush=True)

    async def go() -> Any:
        db = open_database(settings.database_url)
        try:
            return await seed_users(
                db,
                args.workspace,
                args.users,
                batch=args.batch,
                prefix=args.prefix,
                start=args.start,
                progress=progress,
                cards=cards,
                dialects=dialects,
            )
        finally:
            await db.close()

    _require_current(settings)
    report = asyncio.run(go())
    if args.json:
        print(msgspec.json.encode(report).decode())
        return 0
    print(
        f"seeded {report.users:,} users into {report.workspace} in {report.seconds:.1f}s "
        f"({report.users_per_second:,.0f}/s); {report.bytes_per_user:,.0f} database bytes per user"
    )
    if not report.cards:
        print("no cards were created (--no-cards); an IdP update creates them")
    else:
        print(f"each with its card; {report.templated:,} cards got a template by its rule")
    return 0


def _host(text: str) -> str:
    """An address to listen on, not empty (argparse type).

    `--host ''` served on 127.0.0.1 while the URLs it printed read "http://:8000".
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "is empty; give the address to listen on (127.0.0.1; 0.0.0.0 for every interface)"
        )
    return text


def _port(text: str) -> int:
    """A TCP port, 1 to 65535 (argparse type)."""
    value = _whole(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return value


def _at_least_one(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _not_negative(text: str) -> int:
    """A whole number of at least 0 (argparse type)."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


#: what a seeding prefix may hold: it goes into email addresses and externalIds
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def _prefix(text: str) -> str:
    """A prefix for seeded userNames and externalIds (argparse type).

    It goes into each user's email address (`given0.family0.PREFIX@contoso.example`): a space,
    an `@` or an empty prefix made addresses no mail server takes.
    """
    if not _PREFIX.fullmatch(text) or ".." in text or text.endswith("."):
        raise argparse.ArgumentTypeError(
            f"{text!r} must be 1 to 40 letters, digits, '.', '-' or '_', starting with a letter "
            "or digit (it goes into email addresses)"
        )
    return text


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `scim-hub`."""
    parser = argparse.ArgumentParser(prog="scim-hub", description="SCIM 2.0 provisioning hub")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the hub over HTTP")
    serve.add_argument("--host", type=_host)
    serve.add_argument("--port", type=_port)
    serve.add_argument("--workers", type=_at_least_one)
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database tasks")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate to the latest schema").set_defaults(func=cmd_db)
    db_backup = db_sub.add_parser(
        "backup", help="online, consistent backup (SQLite copy; pg_dump on PostgreSQL)"
    )
    db_backup.add_argument("path", help="the backup file to write (must not exist)")
    db_backup.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="PostgreSQL: print the pg_dump command instead of running it",
    )
    db_backup.set_defaults(func=cmd_db_backup)

    init = sub.add_parser("init", help="create a workspace, admin, connector and token")
    init.add_argument("--workspace", default="demo")
    init.add_argument("--idp", default="generic_scim")
    init.add_argument("--admin-email")
    init.add_argument("--json", action="store_true", help="print one JSON object")
    init.add_argument("--if-missing", action="store_true", help="do nothing if it exists")
    init.set_defaults(func=cmd_init)

    sub.add_parser("plugins", help="list installed plugins").set_defaults(func=cmd_plugins)

    token = sub.add_parser("token", help="list, add, regenerate or revoke tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    token_list = token_sub.add_parser("list")
    token_list.add_argument("--workspace", required=True)
    token_regen = token_sub.add_parser("regenerate")
    token_regen.add_argument("--workspace", required=True)
    token_regen.add_argument("--connector", required=True, help="the connector's name or id")
    token_regen.add_argument("--admin", help="email of the admin creating it (default: first)")
    token_add = token_sub.add_parser(
        "add", help="one more token for a connector (its other tokens keep working)"
    )
    token_add.add_argument("--workspace", required=True)
    token_add.add_argument("--connector", required=True, help="the connector's name or id")
    token_add.add_argument("--admin", help="email of the admin creating it (default: first)")
    token_revoke = token_sub.add_parser("revoke")
    token_revoke.add_argument("token_id")
    token_revoke.add_argument("--workspace", required=True)
    token.set_defaults(func=cmd_token)

    admin = sub.add_parser("admin", help="create, set-password, key, activate, deactivate")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    for name in ("activate", "deactivate"):
        action = admin_sub.add_parser(name)
        action.add_argument("email")
        action.add_argument("--workspace", required=True)
        action.set_defaults(func=cmd_admin)
    for name, text in (("create", "create an admin"), ("set-password", "set a password")):
        action = admin_sub.add_parser(name, help=f"{text} for the dashboard")
        action.add_argument("email")
        action.add_argument("--workspace", required=True)
        action.add_argument("--password-stdin", action="store_true", help="read it from stdin")
        action.set_defaults(func=cmd_admin_password)
    key = admin_sub.add_parser("key", help="make an admin API key")
    key.add_argument("--workspace", required=True)
    key.add_argument("--email", help="the admin (default: the workspace's first admin)")
    key.set_defaults(func=cmd_admin_key)

    connector = sub.add_parser("connector", help="list, create, enable, disable, delete")
    connector_sub = connector.add_subparsers(dest="connector_command", required=True)
    connector_sub.add_parser("list").add_argument("--workspace", required=True)
    create = connector_sub.add_parser("create")
    create.add_argument("name")
    create.add_argument("--idp", required=True, help="an installed IdP (see `scim-hub plugins`)")
    create.add_argument("--workspace", required=True)
    for name in ("enable", "disable", "delete"):
        action = connector_sub.add_parser(name)
        action.add_argument("name", help="the connector's name or id")
        action.add_argument("--workspace", required=True)
    connector.set_defaults(func=cmd_connector)

    seed = sub.add_parser("seed", help="bulk-load users into a workspace (benchmarks; no HTTP)")
    seed.add_argument("--workspace", required=True)
    seed.add_argument("--users", type=_at_least_one, required=True, help="how many users to insert")
    seed.add_argument("--batch", type=_at_least_one, default=10_000, help="users per transaction")
    seed.add_argument(
        "--prefix", type=_prefix, default="seed", help="userNames given{i}.family{i}.PREFIX@…"
    )
    seed.add_argument("--start", type=_not_negative, default=0, help="number of the first user")
    seed.add_argument("--json", action="store_true", help="print one JSON object")
    seed.add_argument(
        "--no-cards", action="store_true", help="users only (cards come with their next update)"
    )
    seed.set_defaults(func=cmd_seed)
    return parser


def _report_unknown(variable: str, meant: str | None) -> None:
    """Say on stderr that `variable` names no setting, and which one it resembles, if any."""
    hint = f"; did you mean {meant}?" if meant else ""
    print(
        f"scim-hub: {variable} is not a setting (ignored{hint}); see README, Configuration",
        file=sys.stderr,
    )


def _check_plugin_variables(environ: Mapping[str, str]) -> None:
    """Report `SCIM_HUB_PLUGIN_*` variables that name no installed plugin's setting.

    Only when some are set, as the plugins are loaded for it (every command would pay for
    that otherwise). Their values are validated on the way, as the server does at start.

    Raises:
        PluginSettingsError: a plugin's setting has a bad value.
    """
    if not any(name.startswith(PLUGIN_ENV_PREFIX) for name in environ):
        return
    from hub.plugins import build_registry, unknown_plugin_variables

    for name, meant in unknown_plugin_variables(build_registry(environ=environ), environ):
        _report_unknown(name, meant)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scim-hub`; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"scim-hub: bad setting: {exc}", file=sys.stderr)
        return 2
    for name, meant in unknown_variables(os.environ):  # SCIM_HUB_SMTP_SERVER: silently no SMTP
        _report_unknown(name, meant)
    try:
        from hub.logging import configure_logging

        configure_logging(settings)
        _check_plugin_variables(os.environ)
        result: int = args.func(settings, args)
        return result
    except SettingsError as exc:
        print(f"scim-hub: bad setting: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C (a seed of millions, a password prompt): one line, not asyncio's two
        # tracebacks. Each unit of work commits whole or not at all.
        print("scim-hub: interrupted; what was committed before stays", file=sys.stderr)
        return 130
    except Unavailable as exc:
        # What the hub answers 503 for (a read-only or full file, a lock held too long): the
        # operator is told which database and the driver's reason, not "retry later".
        cause = exc.__cause__
        problem = (
            _database_problem(settings.database_url, args, cause)
            if isinstance(cause, Exception)
            else None
        )
        print(f"scim-hub: {problem or exc}", file=sys.stderr)
        return 2
    except (CliError, ScimError) as exc:
        print(f"scim-hub: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        problem = _database_problem(settings.database_url, args, exc)
        if problem is None:
            raise
        print(f"scim-hub: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
