"""Hot-path statements: built once, compiled once per dialect, run with little overhead.

SQLAlchemy Core rebuilds and re-keys a statement on every `execute`; on a request that runs three
small indexed queries that costs several times what the database itself spends. A `Prepared`
statement is a Core statement with named `bindparam`s built at import time. The first time it runs
on a dialect it is compiled once, and from then on its SQL runs on the DBAPI cursor with the
parameters in the compiled order:

* SQLite (pysqlite): the raw `sqlite3` cursor; JSON columns decoded with msgspec, integer
  booleans turned into `bool`.
* PostgreSQL (asyncpg): the cursor of SQLAlchemy's asyncpg adapter (`$n` placeholders with type
  casts; the adapter keeps a prepared statement per SQL text on each connection). The JSON and
  JSONB codecs the dialect installs on every connection decode JSON columns.

Either way a JSON parameter is encoded here with msgspec (`None` binds SQL NULL), and every row is a
named tuple whose attributes are the column keys `Connection.execute` would give. A DBAPI error
goes through SQLAlchemy's own handling, so callers see the same `sqlalchemy.exc` classes (and a
lost connection invalidates the pool) as with `Connection.execute`. A statement the raw path
cannot run exactly as SQLAlchemy would (a type with its own bind or result conversion, a
post-compile parameter, another driver) runs through `Connection.execute`.
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import msgspec
from sqlalchemy import JSON, Boolean, Column, ColumnElement, Connection, Insert, Integer, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode

#: (dialect name, driver) pairs whose DBAPI cursor the raw path drives.
_RAW_DRIVERS = frozenset({("sqlite", "pysqlite"), ("postgresql", "asyncpg")})
_MISSING = object()


class _Plan:
    """A statement compiled for one dialect: SQL text, parameter order, row shape."""

    __slots__ = ("convert", "defaults", "make_row", "names", "pick", "sql")

    def __init__(
        self,
        sql: str,
        names: tuple[str, ...],
        defaults: dict[str, Any],
        convert: tuple[tuple[int, Callable[[Any], Any]], ...],
        make_row: Callable[[Sequence[Any]], Any] | None,
    ) -> None:
        self.sql = sql
        #: bind parameter names in placeholder order (`?` or `$1…`)
        self.names = names
        #: values of the parameters the statement itself fixes (literals such as False, LIMIT 1)
        self.defaults = defaults
        #: (position, conversion) of the parameters SQLAlchemy would convert: JSON, booleans
        self.convert = convert
        self.make_row = make_row
        #: the parameters' values in placeholder order, from a dict of them (see `_picker`)
        self.pick = _picker(names, defaults)


def _picker(names: tuple[str, ...], defaults: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    """A function taking a statement's parameters from a dict, in placeholder order.

    Without defaults it is an `itemgetter` (C, no loop in Python): ~0.4 µs less a statement, a
    tenth of what the raw path adds to SQLite's own work.
    """
    if defaults:
        return lambda params: [params[n] if n in params else defaults[n] for n in names]
    if not names:
        return lambda params: ()
    if len(names) == 1:
        (name,) = names
        return lambda params: (params[name],)
    return itemgetter(*names)


def _json_param(value: Any) -> Any:
    return None if value is None else _encode_json(value).decode()


def _bool_param(value: Any) -> Any:
    # SQLAlchemy's Boolean accepts None, True, False (and 0/1, equal to them); asyncpg wants a bool.
    if value is None or value is True or value is False:
        return value
    if value not in (0, 1):
        raise ValueError(f"{value!r} is not None, True, or False")
    return bool(value)


def _sqlite_bool_param(value: Any) -> Any:
    # SQLite keeps a boolean as 0 or 1, and so does SQLAlchemy's Boolean. Handed a bool,
    # Python's sqlite3 looks for an adapter first (`__adapt__`, `__conform__`: two
    # AttributeErrors made, formatted and dropped, ~2,500 instructions) before binding the int.
    flag = _bool_param(value)
    return flag if flag is None else int(flag)


def _compile(stmt: Executable, dialect: Dialect, json_params: frozenset[str]) -> _Plan | None:
    """Compile `stmt` for the raw path, or None if only `Connection.execute` runs it faithfully."""
    if (dialect.name, dialect.driver) not in _RAW_DRIVERS:
        return None
    compiled = stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    names: tuple[str, ...] = tuple(compiled.positiontup or ())
    convert: list[tuple[int, Callable[[Any], Any]]] = []
    for i, name in enumerate(names):
        type_ = compiled.binds[name].type
        if name in json_params or isinstance(type_, JSON):
            convert.append((i, _json_param))
        elif isinstance(type_, Boolean):
            convert.append((i, _sqlite_bool_param if dialect.name == "sqlite" else _bool_param))
        elif type_.dialect_impl(dialect).bind_processor(dialect) is not None:
            return None
    # A parameter the caller must give has no default: leaving it out is a KeyError, not NULL.
    literals = compiled.params
    defaults = {name: literals[name] for name in names if not compiled.binds[name].required}
    if dialect.name == "sqlite":  # as `_sqlite_bool_param`
        defaults = {n: int(v) if isinstance(v, bool) else v for n, v in defaults.items()}
    columns = list(getattr(stmt, "exported_columns", ()))
    make_row = _row_factory(columns, dialect) if columns else None
    if columns and make_row is None:
        return None
    return _Plan(compiled.string, names, defaults, tuple(convert), make_row)


def _row_factory(columns: list[Any], dialect: Dialect) -> Callable[[Sequence[Any]], Any] | None:
    """Build rows like `Connection.execute` does, or None for a column type it cannot match."""
    json_at, bool_at = [], []
    for i, column in enumerate(columns):
        type_ = column.type
        if isinstance(type_, JSON):
            json_at.append(i)
        elif isinstance(type_, Boolean):
            bool_at.append(i)
        elif type_.dialect_impl(dialect).result_processor(dialect, None) is not None:
            return None
    names = [str(getattr(c, "key", None) or f"c{i}") for i, c in enumerate(columns)]
    row_type = namedtuple("Row", _dedupe(names), rename=True)  # type: ignore[misc]
    if dialect.name != "sqlite" or not (json_at or bool_at):
        # asyncpg returns bool for BOOLEAN, and the dialect's codecs decode JSON and JSONB.
        return row_type._make

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


#: every statement built so far (they are module constants), for `compile_all`
_BUILT: weakref.WeakSet[Prepared] = weakref.WeakSet()


def compile_all(dialect: Dialect) -> int:
    """Compile every statement built so far for `dialect`; return how many.

    A serving process calls it at start-up: otherwise the first requests compile the statements
    they run (about half a millisecond each: 54 in 24 ms on SQLite), and every request committed
    in the same batch waits for them.
    """
    compiled = 0
    for statement in list(_BUILT):
        try:
            statement._plan(dialect)
        except Exception:  # written for the other dialect (an ON CONFLICT form): not run here
            continue
        compiled += 1
    return compiled


class Prepared:
    """A Core statement with named bind parameters, run the cheapest way the dialect allows."""

    __slots__ = ("__weakref__", "_json_params", "_plans", "stmt")

    def __init__(self, stmt: Executable, json_params: Sequence[str] = ()) -> None:
        self.stmt = stmt
        #: one plan (or None: use `Connection.execute`) per dialect class
        self._plans: dict[type[Dialect], _Plan | None] = {}
        #: parameters holding JSON documents (also found from their type)
        self._json_params = frozenset(json_params)
        _BUILT.add(self)

    def _plan(self, dialect: Dialect) -> _Plan | None:
        plan = self._plans.get(type(dialect), _MISSING)
        if plan is _MISSING:
            plan = self._plans[type(dialect)] = _compile(self.stmt, dialect, self._json_params)
        return plan  # type: ignore[return-value]

    def uses_raw_path(self, dialect: Dialect) -> bool:
        """Say whether the statement runs on the DBAPI cursor for this dialect."""
        return self._plan(dialect) is not None

    @staticmethod
    def _values(plan: _Plan, params: dict[str, Any]) -> Sequence[Any]:
        values: Sequence[Any] = plan.pick(params)
        if plan.convert:
            values = list(values)
            for i, convert in plan.convert:
                values[i] = convert(values[i])
        return values

    @staticmethod
    def _converted(plan: _Plan, values: Sequence[Any]) -> Sequence[Any]:
        """`values` in the plan's order, converted where SQLAlchemy would convert them."""
        if not plan.convert:
            return values
        converted = list(values)
        for i, convert in plan.convert:
            converted[i] = convert(converted[i])
        return converted

    @staticmethod
    def _cursor(conn: Connection) -> Any:
        return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def _execute(self, conn: Connection, plan: _Plan, params: dict[str, Any]) -> Any:
        values = self._values(plan, params) if plan.convert else plan.pick(params)
        return self._execute_values(conn, plan, values)

    def _execute_values(self, conn: Connection, plan: _Plan, values: Sequence[Any]) -> Any:
        cursor = self._cursor(conn)
        try:
            cursor.execute(plan.sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:
            # What `Connection.execute` does: wrap in sqlalchemy.exc, invalidate on disconnect.
            conn._handle_dbapi_exception(exc, plan.sql, values, cursor, None)
        return cursor

    def run_many(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run a write statement once per parameter set (executemany)."""
        if not rows:
            return
        plan = self._plan(conn.dialect)
        if plan is None:
            conn.execute(self.stmt, list(rows))
            return
        values = [self._values(plan, row) for row in rows]
        cursor = self._cursor(conn)
        try:
            cursor.executemany(plan.sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:
            conn._handle_dbapi_exception(exc, plan.sql, values, cursor, None)

    def run_rows(
        self, conn: Connection, names: tuple[str, ...], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Run a write statement once per row (executemany), each row's values in `names` order.

        When `names` is the statement's own parameter order, the rows go to the driver as they
        are (converted where SQLAlchemy would convert), without a dict per row: a card's ten
        fields are one call.
        """
        if not rows:
            return
        plan = self._plan(conn.dialect)
        if plan is None or plan.names != names:
            self.run_many(conn, [dict(zip(names, row, strict=True)) for row in rows])
            return
        values = [self._converted(plan, row) for row in rows] if plan.convert else rows
        cursor = self._cursor(conn)
        try:
            cursor.executemany(plan.sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:
            conn._handle_dbapi_exception(exc, plan.sql, values, cursor, None)

    def run_values(self, conn: Connection, names: tuple[str, ...], values: Sequence[Any]) -> int:
        """Run a write statement once, its parameters' values given in `names` order.

        When `names` is the statement's own parameter order, the values go to the driver as they
        are (converted where SQLAlchemy would convert), without a dict: a batch of provisioning
        log records is one flat list. Returns the number of rows changed.
        """
        plan = self._plan(conn.dialect)
        if plan is None or plan.names != names:
            return self.run(conn, **dict(zip(names, values, strict=True)))
        return int(self._execute_values(conn, plan, self._converted(plan, values)).rowcount)

    def all(self, conn: Connection, **params: Any) -> list[Any]:
        """Run the statement and return every row (attribute access by column key)."""
        plan = self._plan(conn.dialect)
        if plan is None:
            return list(conn.execute(self.stmt, params).all())
        make = plan.make_row
        assert make is not None, "all() of a statement that returns no rows"
        return [make(r) for r in self._execute(conn, plan, params).fetchall()]

    def first(self, conn: Connection, **params: Any) -> Any:
        """Run the statement and return its first row, or None."""
        plan = self._plan(conn.dialect)
        if plan is None:
            return conn.execute(self.stmt, params).first()
        make = plan.make_row
        assert make is not None, "first() of a statement that returns no rows"
        raw = self._execute(conn, plan, params).fetchone()
        return None if raw is None else make(raw)

    def scalar(self, conn: Connection, **params: Any) -> Any:
        """Run the statement and return the first column of the first row, or None."""
        row = self.first(conn, **params)
        return None if row is None else row[0]

    def run(self, conn: Connection, **params: Any) -> int:
        """Run a write statement and return the number of rows it changed."""
        plan = self._plan(conn.dialect)
        if plan is None:
            return int(conn.execute(self.stmt, params).rowcount)
        return int(self._execute(conn, plan, params).rowcount)

    def lastrowid(self, conn: Connection, **params: Any) -> int:
        """Run an INSERT of one row on SQLite and return the rowid SQLite gave it."""
        plan = self._plan(conn.dialect)
        if plan is None:
            rowid = conn.execute(self.stmt, params).lastrowid
        else:
            rowid = self._execute(conn, plan, params).lastrowid
        return int(rowid)


class PreparedInsert:
    """A plain INSERT of one row that gives back the row's integer primary key.

    SQLite hands over the rowid it has just assigned for nothing (the cursor's `lastrowid`),
    where `RETURNING` makes it collect the result into a row and step it back out: ~2.5 µs more
    an INSERT, a quarter of a small one (raw `sqlite3`, 20,000 rows in batches of 16). So on
    SQLite the statement runs as it is and the key comes from `lastrowid`; other dialects run it
    with `RETURNING pk`. The key must be the table's `INTEGER PRIMARY KEY` (SQLite's rowid
    itself), and the statement a plain INSERT: one that may insert nothing (`ON CONFLICT DO
    NOTHING`) would leave `lastrowid` at an earlier row's. A trigger's own inserts do not move
    it: SQLite restores it when the trigger ends.
    """

    __slots__ = ("bare", "returning")

    def __init__(self, stmt: Insert, pk: Column[int], json_params: Sequence[str] = ()) -> None:
        table = pk.table
        if list(table.primary_key.columns) != [pk] or type(pk.type) is not Integer:
            raise ValueError(f"{pk} is not {table}'s INTEGER PRIMARY KEY (SQLite's rowid)")
        #: the INSERT as written, run on SQLite
        self.bare = Prepared(stmt, json_params)
        #: the INSERT … RETURNING pk, run on other dialects
        self.returning = Prepared(stmt.returning(pk), json_params)

    def run(self, conn: Connection, **params: Any) -> int:
        """Insert the row; return its primary key."""
        if conn.dialect.name == "sqlite":
            return self.bare.lastrowid(conn, **params)
        return int(self.returning.scalar(conn, **params))


def fixed_in(column: ColumnElement[Any], size: int) -> ColumnElement[bool]:
    """`column IN (:u0, …, :u{size-1})`, for a `Prepared` statement.

    A list of fixed length keeps the statement prepared, where an expanding `IN` is compiled on
    every call. `fixed_in_params` gives its parameters.
    """
    return column.in_([bindparam(f"u{i}") for i in range(size)])


def fixed_in_params(values: Sequence[Any], size: int, pad: Any) -> Iterator[dict[str, Any]]:
    """The parameters of a `fixed_in` list for `values`, `size` at a time.

    Each chunk is padded with `pad`, a value no row has.
    """
    for at in range(0, len(values), size):
        chunk = list(values[at : at + size])
        chunk += [pad] * (size - len(chunk))
        yield {f"u{i}": value for i, value in enumerate(chunk)}
