"""Settings: one frozen msgspec struct built from `SCIM_HUB_*` variables and an optional TOML file.

Precedence: environment variables beat the TOML file (named by `SCIM_HUB_CONFIG`), which beats the
defaults. A bad value stops the process with a message naming the setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

ENV_PREFIX = "SCIM_HUB_"
#: Environment variables of plugin settings: SCIM_HUB_PLUGIN_<PLUGIN>_<FIELD> (see hub.plugins).
PLUGIN_ENV_PREFIX = f"{ENV_PREFIX}PLUGIN_"
#: How alike (difflib's ratio) an unknown variable and a setting's must be to name the setting
#: as what was meant: DATABSE_URL and PORTS, not SMTP_SERVER for SMTP_USERNAME (0.75).
_RESEMBLANCE = 0.8
#: The shortest server secret accepted (`SCIM_HUB_SECRET` or the key file): 32 characters.
MIN_SECRET_LENGTH = 32
#: The largest TCP port number (SCIM_HUB_PORT, SCIM_HUB_SMTP_PORT).
MAX_PORT = 65_535
#: PostgreSQL connections a process keeps open when nothing says otherwise.
DEFAULT_POOL_SIZE = 20


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything the hub can be configured with."""

    database_url: str = "sqlite+aiosqlite:///var/scim-hub.db"
    #: PostgreSQL connections each server process keeps open; requests beyond wait for one.
    database_pool_size: int = DEFAULT_POOL_SIZE
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    #: Seconds an idle keep-alive connection stays open between requests. Longer than a load
    #: balancer's idle timeout (60 s on AWS's ALB), so that the balancer, not the hub, closes an
    #: idle connection: a hub closing one as a request is sent on it fails that request.
    keep_alive_seconds: int = 75
    #: Seconds a client may leave a streamed answer (a large group or page of groups) unread
    #: before the hub ends it: until then the answer holds a database snapshot and connection.
    stream_stall_seconds: int = 30
    environment: Literal["development", "production"] = "development"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    max_body_bytes: int = 1_048_576
    max_results: int = 1000
    default_count: int = 100
    max_filter_length: int = 4096
    max_filter_depth: int = 32
    max_patch_operations: int = 1000
    max_group_members_per_patch: int = 1000
    #: SCIM requests per second per token (a workspace may set its own); 0 turns limits off.
    rate_limit_per_second: int = 50000
    # Activation emails (hub.core.outbox / hub.core.mailer). No smtp_host: write .eml files.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: int = 30
    #: SMTP connections a sender opens for a batch (each sends its share one after another).
    smtp_connections: int = 2
    mail_from: str = "scim-hub <no-reply@localhost>"
    outbox_dir: str = "var/outbox"
    activation_link_ttl_hours: int = 168
    mail_max_attempts: int = 10
    mail_retry_base_ms: int = 5_000
    mail_retry_max_ms: int = 3_600_000
    mail_poll_ms: int = 1_000
    mail_lease_ms: int = 120_000
    mail_batch_size: int = 20
    #: Days the provisioning log keeps a SCIM request's record (hub.core.activity); 0 keeps all.
    activity_retention_days: int = 30
    # `/metrics` (hub.metrics): when set, scrapes must send `Authorization: Bearer <token>`.
    metrics_token: str = ""
    # The server secret (hub.core.secret) that signs activation links. Empty: read it from
    # `secret_file`, generated on first start; every process of one hub must share it.
    secret: str = ""
    secret_file: str = "var/secret.key"


#: A century: the retention's cut-off must stay a 64-bit microsecond timestamp.
MAX_RETENTION_DAYS = 36_500


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range; the message names it."""


def _coerce(name: str, raw: str, field_type: Any) -> Any:
    if field_type is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {raw!r} is not an integer") from None
    return raw


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment (and `SCIM_HUB_CONFIG` TOML), then `overrides`.

    Raises:
        SettingsError: a value is malformed or out of range; the message names the setting.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = env.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        values.update(_read_config(config_file))
    from_file = set(values)
    for field in msgspec.structs.fields(Settings):
        raw = env.get(f"{ENV_PREFIX}{field.name.upper()}")
        if raw is not None:
            values[field.name] = _coerce(field.name, raw, field.type)
            from_file.discard(field.name)
    values.update({k: v for k, v in overrides.items() if v is not None})
    from_file -= set(overrides)
    _default_base_url(values)
    try:
        settings = msgspec.convert(values, Settings)
    except msgspec.ValidationError as exc:
        raise SettingsError(_name_setting(str(exc), config_file, from_file)) from exc
    try:
        _check_ranges(settings)
        _check_mail(settings)
        _check_database_url(settings.database_url)
    except SettingsError as exc:
        raise SettingsError(_name_file_key(str(exc), config_file, from_file)) from None
    return settings


def _name_file_key(message: str, config_file: str | None, from_file: Collection[str]) -> str:
    """Name a value the settings file gave as its key in that file, not as its variable.

    A check's message starts with the setting's variable: `port = 0` in the file was reported
    as SCIM_HUB_PORT, a variable no one had set.
    """
    variable = message.split(" ", 1)[0].rstrip(":")
    name = variable.removeprefix(ENV_PREFIX).lower()
    if not variable.startswith(ENV_PREFIX) or name not in from_file:
        return message
    return f"{ENV_PREFIX}CONFIG: {config_file}: {name}{message[len(variable) :]}"


#: `SCIM_HUB_*` variables that are not settings of the struct: the settings file, plugin settings
#: (checked against the plugins: `hub.plugins.unknown_plugin_variables`), and the test suite's own
#: knobs (SCIM_HUB_TEST_*, SCIM_HUB_UPDATE_SCREENSHOTS).
_NOT_SETTINGS = ("CONFIG", "PLUGIN_", "TEST_", "UPDATE_SCREENSHOTS")


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """The `SCIM_HUB_*` variables in `environ` that name no setting (a misspelt one is ignored).

    Each comes with the setting's variable it resembles, if one does (see `resembling`).
    """
    known = [ENV_PREFIX + field.name.upper() for field in msgspec.structs.fields(Settings)]
    return [
        (name, resembling(name, known, ENV_PREFIX))
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX)
        and name not in known
        and not name.removeprefix(ENV_PREFIX).startswith(_NOT_SETTINGS)
    ]


def resembling(name: str, known: Iterable[str], prefix: str) -> str | None:
    """The variable of `known` that `name` is most likely a misspelling of, if any is close.

    Compared without the `prefix` they share, which would make any two look alike.
    """
    import difflib

    stems = {variable.removeprefix(prefix): variable for variable in known}
    close = difflib.get_close_matches(name.removeprefix(prefix), stems, 1, _RESEMBLANCE)
    return stems[close[0]] if close else None


def _read_config(config_file: str) -> dict[str, Any]:
    """The settings of the TOML file `SCIM_HUB_CONFIG` names; keys are known settings' names."""
    try:
        values = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:  # TOML is UTF-8
        raise SettingsError(f"{ENV_PREFIX}CONFIG: cannot read {config_file}: {exc}") from exc
    unknown = sorted(set(values) - {field.name for field in msgspec.structs.fields(Settings)})
    if unknown:  # msgspec's own message named a garbled variable ("SCIM_HUB_OBJECT CONTAINS …")
        raise SettingsError(
            f"{ENV_PREFIX}CONFIG: {config_file} has no setting {', '.join(map(repr, unknown))} "
            f"(keys are the {ENV_PREFIX}* names without {ENV_PREFIX}, in lower case)"
        )
    return values


def listen_url(host: str, port: int) -> str:
    """The URL of `host`:`port` (an IPv6 address in brackets, RFC 3986 §3.2.2)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _default_base_url(values: dict[str, Any]) -> None:
    """With no base URL configured, the hub is reached where it listens.

    `SCIM_HUB_PORT=8001` (or `port` in the TOML file) alone otherwise left the tenant URL that
    `init` prints, and every `meta.location`, on port 8000.
    """
    if "base_url" in values:
        return
    defaults = Settings()
    host, port = values.get("host", defaults.host), values.get("port", defaults.port)
    if isinstance(host, str) and isinstance(port, int):  # else convert() names the bad one
        values["base_url"] = listen_url(host, port)


def _name_setting(
    message: str, config_file: str | None = None, from_file: Collection[str] = ()
) -> str:
    """Turn msgspec's "… - at `$.log_level`" into a message naming SCIM_HUB_LOG_LEVEL.

    A value the settings file gave is named as its key in that file (`port = "x"` was
    reported as SCIM_HUB_PORT, a variable no one had set).
    """
    text, at, where = message.rpartition(" - at `$.")
    if not at:
        return f"invalid setting: {message}"
    name = where.rstrip("`").split(".", 1)[0].split("[", 1)[0]
    if name in from_file:
        return f"{ENV_PREFIX}CONFIG: {config_file}: {name}: {text}"
    return f"{ENV_PREFIX}{name.upper()}: {text}"


#: The driver the hub uses for each database (SQLAlchemy's name), as in `sqlite+aiosqlite://`.
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise SettingsError(f"{ENV_PREFIX}DATABASE_URL: {url!r} is not a database URL") from None
    if backend not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"{ENV_PREFIX}DATABASE_URL: {backend!r} is not supported; use "
            "sqlite+aiosqlite:///path/to/hub.db or postgresql+asyncpg://user@host/db"
        )
    driver = make_url(url).get_driver_name()
    if driver != _ASYNC_DRIVERS[backend]:
        # `postgresql://` (psycopg) or `sqlite://` (pysqlite): every command failed with
        # SQLAlchemy's "requires an async driver" or "No module named 'psycopg'".
        raise SettingsError(
            f"{ENV_PREFIX}DATABASE_URL: the driver {driver!r} is not supported; use "
            f"{backend}+{_ASYNC_DRIVERS[backend]}://…"
        )


def _check_ranges(settings: Settings) -> None:
    positive = (
        "port",
        "workers",
        "keep_alive_seconds",
        "stream_stall_seconds",
        "database_pool_size",
        "max_body_bytes",
        "max_results",
        "max_filter_length",
        "max_filter_depth",
        "max_patch_operations",
        "max_group_members_per_patch",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be at least 1")
    # Empty, it bound every interface and the tenant URL read "http://:8000"; with a space, the
    # URL made of it was reported as a bad SCIM_HUB_BASE_URL, a variable no one had set.
    if not settings.host.strip() or any(c.isspace() for c in settings.host):
        raise SettingsError(
            f"{ENV_PREFIX}HOST must name the address to listen on "
            "(127.0.0.1; 0.0.0.0 for every interface)"
        )
    if settings.rate_limit_per_second < 0:
        raise SettingsError(f"{ENV_PREFIX}RATE_LIMIT_PER_SECOND must be 0 (no limit) or more")
    if settings.port > MAX_PORT:
        raise SettingsError(f"{ENV_PREFIX}PORT must be a TCP port, 1 to {MAX_PORT}")
    if not 0 <= settings.activity_retention_days <= MAX_RETENTION_DAYS:
        raise SettingsError(
            f"{ENV_PREFIX}ACTIVITY_RETENTION_DAYS must be between 0 (keep all) and "
            f"{MAX_RETENTION_DAYS}"
        )
    if not 0 <= settings.default_count <= settings.max_results:
        raise SettingsError(f"{ENV_PREFIX}DEFAULT_COUNT must be between 0 and MAX_RESULTS")
    if not settings.base_url.startswith(("http://", "https://")):
        raise SettingsError(f"{ENV_PREFIX}BASE_URL must start with http:// or https://")
    _check_base_url(settings.base_url)
    if settings.secret and len(settings.secret.strip()) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"{ENV_PREFIX}SECRET must be at least {MIN_SECRET_LENGTH} characters "
            "(e.g. the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def _check_base_url(url: str) -> None:
    """The base URL names a host, holds no space, and has no query or fragment to append to.

    `https://` alone made the tenant URL `https:/scim/v2`; a space went into every link.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is the check ("http://h:x" raises)
    except ValueError as exc:
        raise SettingsError(f"{ENV_PREFIX}BASE_URL {url!r} is not a URL: {exc}") from None
    if not parts.hostname or any(c.isspace() for c in url) or parts.query or parts.fragment:
        raise SettingsError(
            f"{ENV_PREFIX}BASE_URL {url!r} must be the hub's public URL: a host, no spaces, "
            "no query or fragment (https://hub.example.com)"
        )


def _check_mail(settings: Settings) -> None:
    positive = (
        "smtp_port",
        "smtp_timeout_seconds",
        "smtp_connections",
        "activation_link_ttl_hours",
        "mail_max_attempts",
        "mail_retry_base_ms",
        "mail_retry_max_ms",
        "mail_poll_ms",
        "mail_lease_ms",
        "mail_batch_size",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be at least 1")
    if settings.smtp_port > MAX_PORT:
        raise SettingsError(f"{ENV_PREFIX}SMTP_PORT must be a TCP port, 1 to {MAX_PORT}")
    if "@" not in settings.mail_from:
        raise SettingsError(f"{ENV_PREFIX}MAIL_FROM must be an email address")
