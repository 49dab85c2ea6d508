"""Read a database's stored state exactly, for tests that compare it before and after something.

`dump(url)` returns `{table: sorted rows}` for every table (or the ones named), every column, as
the database stores them: SQLite rows as the sqlite3 module returns them (JSON columns are the
stored text), PostgreSQL rows as `row_to_json(t)::text` (so JSONB documents compare in their
stored, canonical form). Comparing two dumps is a byte-for-byte comparison of what is stored.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import make_url

from tests.pg import asyncpg_dsn, run_coroutine

Dump = dict[str, list[Any]]

#: What a SCIM request may change: the resources, their memberships and what provisioning adds.
SCIM_STATE = (
    "users",
    "groups",
    "memberships",
    "cards",
    "card_fields",
    "activation_links",
    "outbox_messages",
)


def _sqlite_path(url: str) -> str:
    path = make_url(url).database
    if not path:
        raise ValueError(f"not a SQLite file URL: {url}")
    return path


def _dump_sqlite(url: str, tables: Iterable[str] | None) -> Dump:
    conn = sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True, timeout=30)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        wanted = names if tables is None else [t for t in tables if t in names]
        result: Dump = {}
        for name in wanted:
            rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()
            result[name] = sorted(rows, key=repr)
        return result
    finally:
        conn.close()


async def _dump_postgres(url: str, tables: Iterable[str] | None) -> Dump:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        names = [
            row[0]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        wanted = names if tables is None else [t for t in tables if t in names]
        result: Dump = {}
        for name in wanted:
            rows = await conn.fetch(f'SELECT row_to_json(t)::text FROM "{name}" AS t')
            result[name] = sorted(row[0] for row in rows)
        return result
    finally:
        await conn.close()


def dump(url: str, tables: Iterable[str] | None = None) -> Dump:
    """Every row of every table (or of `tables` that exist) of the database at `url`."""
    if make_url(url).get_backend_name() == "sqlite":
        return _dump_sqlite(url, tables)
    wanted = None if tables is None else tuple(tables)
    return run_coroutine(lambda: _dump_postgres(url, wanted))


def table_names(url: str) -> set[str]:
    """The names of the database's tables."""
    return set(_names(url))


def _names(url: str) -> list[str]:
    if make_url(url).get_backend_name() == "sqlite":
        conn = sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True, timeout=30)
        try:
            return [
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
        finally:
            conn.close()

    async def fetch() -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
            return [row[0] for row in rows]
        finally:
            await conn.close()

    return run_coroutine(fetch)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read-only SQL statement (no parameters) and return its rows as tuples."""
    if make_url(url).get_backend_name() == "sqlite":
        conn = sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True, timeout=30)
        try:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
        finally:
            conn.close()

    async def fetch() -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return run_coroutine(fetch)


def quiet_outbox(url: str, timeout: float = 10.0) -> None:
    """Wait until no email is queued, so the outbox sender (a background task) is idle."""
    if "outbox_messages" not in table_names(url):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not query(url, "SELECT pk FROM outbox_messages WHERE status = 'queued'"):
            return
        time.sleep(0.02)


#: Columns the outbox sender changes in the background (delivery state, a link's expiry set
#: when its email goes out): not a request's doing, and not always settled by `quiet_outbox`
#: on a loaded machine.
SENDER_COLUMNS = {
    "activation_links": ("expires",),
    "outbox_messages": ("attempts", "claimed_until", "next_attempt", "last_error", "link_nonce"),
}
#: What the sender makes of a queued message; a request's own change (cancelled) stays visible.
_DELIVERED = {"sent", "failed"}


def scim_state(url: str) -> Dump:
    """What SCIM requests may change (`SCIM_STATE`), once the outbox sender is idle, without
    the columns only the sender writes (`SENDER_COLUMNS`)."""
    quiet_outbox(url)
    state = dump(url, SCIM_STATE)
    for table, columns in SENDER_COLUMNS.items():
        if table in state:
            names = _columns(url, table)
            state[table] = sorted((_without(row, columns, names) for row in state[table]), key=repr)
    return state


def _columns(url: str, table: str) -> list[str]:
    if make_url(url).get_backend_name() != "sqlite":
        return []  # PostgreSQL rows are JSON objects that name their columns
    conn = sqlite3.connect(f"file:{_sqlite_path(url)}?mode=ro", uri=True, timeout=30)
    try:
        return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
    finally:
        conn.close()


def _without(row: Any, columns: Iterable[str], names: list[str]) -> Any:
    dropped = set(columns)
    decoded = json.loads(row) if isinstance(row, str) else dict(zip(names, row, strict=True))
    if decoded.get("status") in _DELIVERED:
        decoded["status"], decoded["finished"] = "queued", None
    kept = {k: v for k, v in decoded.items() if k not in dropped}
    return json.dumps(kept, sort_keys=True, default=str)
