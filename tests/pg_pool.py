"""Migrated PostgreSQL databases for the tests, emptied and handed out again instead of recopied.

`CREATE DATABASE … TEMPLATE` copies the template's system catalogs as well as its tables: 0.3 to
0.45 s of the server's CPU for each of the ~350 tests that run on PostgreSQL. Emptying a database
a test is done with costs ~30 ms: every table's rows deleted (triggers off, so the user counts'
triggers do not write back what is being deleted) and every sequence restarted, in one
transaction.

A database is handed out again only when it is, but for its rows, what a fresh copy would be:
 - nobody else is connected to it (whatever a test left connected is terminated first);
 - its schema is the template's: tables, columns, indexes, constraints, triggers, functions and
   the migration recorded in `alembic_version` (a test that migrates down or adds a table leaves
   a database that is dropped instead);
 - it has not grown far past the template (deleted rows leave their pages behind, and a test
   that wrote ten thousand cards would leave the next ones scanning them).
Anything else, and any error on the way, drops it, as the fixtures did after every test.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import asyncpg

from tests.dbstate import table_names
from tests.pg import (
    asyncpg_dsn,
    create_database,
    database_url,
    drop_database,
    run_coroutine,
)

#: One text for a database's schema: equal for two databases with the same tables, columns,
#: indexes, constraints, triggers and functions in `public`, and the same migration recorded.
FINGERPRINT = """
SELECT md5(string_agg(item, E'\\n' ORDER BY item)) FROM (
    SELECT 'rel ' || c.relname || ' ' || c.relkind::text
        || ' ' || coalesce(pg_get_indexdef(c.oid), '') AS item
    FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL
    SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
        || ' ' || a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    SELECT 'con ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL
    SELECT 'trg ' || tgname || ' ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
    SELECT 'fn ' || proname || ' ' || md5(prosrc) FROM pg_proc
    WHERE pronamespace = 'public'::regnamespace
  UNION ALL
    SELECT 'ns ' || nspname FROM pg_namespace
    WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('public', 'information_schema')
  UNION ALL
    SELECT 'at ' || version_num FROM alembic_version
) AS schema_items
"""
#: A used database this much larger than the template is dropped rather than emptied.
MAX_GROWTH_BYTES = 8 * 1024 * 1024


class _Shape:
    """What a database must match to be reused, read off the template once."""

    def __init__(
        self, fingerprint: str, size: int, tables: Sequence[str], sequences: Sequence[str]
    ) -> None:
        self.fingerprint = fingerprint
        self.size = size
        self.empty_all = (
            "SET LOCAL session_replication_role = replica;"
            + "".join(f'DELETE FROM "{table}";' for table in tables)
            + "".join(f'ALTER SEQUENCE "{sequence}" RESTART;' for sequence in sequences)
        )


async def _read_shape(url: str, tables: Sequence[str]) -> _Shape | None:
    """The template's shape, or None if one of its `tables` holds rows."""
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        for table in tables:
            if await conn.fetchval(f'SELECT EXISTS (SELECT FROM "{table}")'):
                return None  # rows a migration wrote would have to be put back: not worth it
        sequences = [
            row[0]
            for row in await conn.fetch(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            )
        ]
        fingerprint = await conn.fetchval(FINGERPRINT)
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        return _Shape(fingerprint, int(size), tables, sequences)
    finally:
        await conn.close()


async def _empty(url: str, shape: _Shape, max_growth: int) -> bool:
    """Empty the database at `url` if it is still shaped like the template; whether it was."""
    # A lock some session still holds makes the emptying fail (and the database dropped)
    # instead of waiting for ever.
    settings = {"lock_timeout": "5s"}
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10, server_settings=settings)
    try:
        # What a test left connected (a pool not closed, a killed server's backend) goes first:
        # it could hold locks, or write after the next test has started.
        await conn.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        if await conn.fetchval(FINGERPRINT) != shape.fingerprint:
            return False
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        if size > shape.size + max_growth:
            return False
        async with conn.transaction():
            await conn.execute(shape.empty_all)
        return True
    finally:
        await conn.close()


class DatabasePool:
    """Databases migrated to head on `server`, copied from `template` and reused after emptying."""

    def __init__(self, server: str, template: str) -> None:
        self.server = server
        self.template = template
        url = database_url(server, template)
        tables = sorted(table_names(url) - {"alembic_version"})
        self.shape = run_coroutine(lambda: _read_shape(url, tables))
        self.free: list[str] = []
        self.max_growth = MAX_GROWTH_BYTES

    def take(self) -> str:
        """The URL of an empty database at head, reused when one is free, else a new copy."""
        if self.free:
            return database_url(self.server, self.free.pop())
        return create_database(self.server, template=self.template)

    def give_back(self, url: str) -> None:
        """Empty the database at `url` for the next test, or drop it if it cannot be reused."""
        name = url.rsplit("/", 1)[1]
        shape = self.shape
        try:
            if shape is not None and run_coroutine(lambda: _empty(url, shape, self.max_growth)):
                self.free.append(name)
                return
        except Exception as exc:  # not reusable: dropped below, as a fresh copy would be
            print(f"test database {name} not reused: {exc!r}", file=sys.stderr)
        self.drop(name)

    def drop(self, name: str) -> None:
        """Drop database `name`; a leftover database must not fail the test that used it."""
        try:
            drop_database(self.server, name)
        except Exception as exc:
            print(f"could not drop test database {name}: {exc!r}", file=sys.stderr)

    def close(self) -> None:
        """Drop every database waiting in the pool."""
        while self.free:
            self.drop(self.free.pop())
