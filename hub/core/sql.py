"""Hot-path statements: built once, compiled once per dialect, run with little overhead.

SQLAlchemy Core rebuilds and re-keys a statement on every `execute`; on a request that runs three
small indexed queries that costs several times what SQLite itself spends. A `Prepared` statement is
a Core statement with named `bindparam`s built at import time. On SQLite it is compiled once and
run on the raw `sqlite3` cursor (JSON columns decoded with msgspec); on other databases it goes
through `Connection.execute`, where SQLAlchemy's compiled cache applies.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import JSON, Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.sql.selectable import Select

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


class _Plan:
    """A statement compiled for SQLite: SQL text, parameter order, row shape."""

    __slots__ = ("defaults", "make_row", "names", "sql")

    def __init__(self, stmt: Executable, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Literal values inside the statement (False, 1, LIMIT 1…) become anonymous parameters.
        self.defaults: dict[str, Any] = dict(compiled.params)
        self.make_row = _row_factory(stmt)


def _row_factory(stmt: Executable) -> Callable[[Sequence[Any]], Any] | None:
    if not isinstance(stmt, Select):
        returning = getattr(stmt, "_returning", ())
        if not returning:
            return None
        columns = list(returning)
    else:
        columns = list(stmt.selected_columns)
    names = [str(getattr(c, "key", None) or f"c{i}") for i, c in enumerate(columns)]
    unique = _dedupe(names)
    row_type = namedtuple("Row", unique, rename=True)  # type: ignore[misc]
    json_at = [i for i, c in enumerate(columns) if isinstance(getattr(c, "type", None), JSON)]
    bool_at = [i for i, c in enumerate(columns) if _bool_type_safe(c)]

    def make(raw: Sequence[Any]) -> Any:
        values = list(raw)
        for i in json_at:
            if isinstance(values[i], str | bytes):
                values[i] = _decode_json(values[i])
        for i in bool_at:
            if values[i] is not None:
                values[i] = bool(values[i])
        return row_type(*values)

    return make


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}_{count}")
    return result


def _bool_type_safe(column: Any) -> bool:
    try:
        return column.type.python_type is bool
    except NotImplementedError:
        return False


class Prepared:
    """A Core statement with named bind parameters, run the cheapest way the dialect allows."""

    __slots__ = ("_json_params", "_sqlite", "stmt")

    def __init__(self, stmt: Executable, json_params: Sequence[str] = ()) -> None:
        self.stmt = stmt
        self._sqlite: _Plan | None = None
        #: parameters holding JSON documents (encoded here on the raw SQLite path)
        self._json_params = frozenset(json_params)

    def _plan(self, dialect: Dialect) -> _Plan:
        if self._sqlite is None:
            self._sqlite = _Plan(self.stmt, dialect)
        return self._sqlite

    def _values(self, plan: _Plan, params: dict[str, Any]) -> list[Any]:
        values = []
        defaults = plan.defaults
        for name in plan.names:
            value = params[name] if name in params else defaults[name]
            if name in self._json_params and value is not None:
                value = _encode_json(value).decode()
            values.append(value)
        return values

    def _raw(self, conn: Connection, params: dict[str, Any]) -> tuple[Any, _Plan]:
        plan = self._plan(conn.dialect)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(plan.sql, self._values(plan, params))
        return cursor, plan

    def run_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run a write statement once per parameter set (executemany)."""
        if not rows:
            return
        if conn.dialect.name != "sqlite":
            conn.execute(self.stmt, list(rows))
            return
        plan = self._plan(conn.dialect)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.executemany(plan.sql, [self._values(plan, row) for row in rows])

    def all(self, conn: Connection, **params: Any) -> list[Any]:
        """Run the statement and return every row (attribute access by column key)."""
        if conn.dialect.name != "sqlite":
            return list(conn.execute(self.stmt, params).all())
        cursor, plan = self._raw(conn, params)
        assert plan.make_row is not None
        make = plan.make_row
        return [make(r) for r in cursor.fetchall()]

    def first(self, conn: Connection, **params: Any) -> Any:
        """Run the statement and return its first row, or None."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.stmt, params).first()
        cursor, plan = self._raw(conn, params)
        raw = cursor.fetchone()
        assert plan.make_row is not None
        return None if raw is None else plan.make_row(raw)

    def scalar(self, conn: Connection, **params: Any) -> Any:
        """Run the statement and return the first column of the first row, or None."""
        row = self.first(conn, **params)
        return None if row is None else row[0]

    def run(self, conn: Connection, **params: Any) -> int:
        """Run a write statement and return the number of rows it changed."""
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.stmt, params).rowcount)
        cursor, _ = self._raw(conn, params)
        return int(cursor.rowcount)
