"""`hub.core.sql.Prepared`: the raw DBAPI path gives what `Connection.execute` gives.

On SQLite (the `sqlite3` cursor) and on PostgreSQL (the asyncpg adapter's cursor) every way of
running a statement — `all`, `first`, `scalar`, `run`, `run_many`, RETURNING — is compared with
SQLAlchemy's own execution of the same statement: the same rows (values, types, column keys), the
same row counts, the same exception classes. JSON documents include the values a second decode
or a lost type would change (a bare JSON string, numbers, nesting); booleans and NULLs appear in
every column that allows them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy.exc
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    update,
)

import hub.core
from hub.core.database import PostgresDatabase, SqliteDatabase, open_database
from hub.core.models import JSONDocument
from hub.core.sql import Prepared, PreparedInsert

_META = MetaData()
_OWNERS = Table(
    "sqltest_owners",
    _META,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50)),
)
_ITEMS = Table(
    "sqltest_items",
    _META,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("owner_pk", ForeignKey("sqltest_owners.pk"), nullable=True),
    Column("name", String(50), unique=True),
    Column("flag", Boolean, nullable=True),
    Column("doc", JSONDocument, nullable=True),
    Column("big", BigInteger, nullable=True),
)

# A table whose INSERT trigger writes a row of another table (as `users` counts its users).
_LOGGED = Table(
    "sqltest_logged",
    _META,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), unique=True),
)
_INSERT_LOGGED = PreparedInsert(_LOGGED.insert().values(name=bindparam("b_name")), _LOGGED.c.pk)

_INSERT = Prepared(
    _ITEMS.insert()
    .values(
        owner_pk=bindparam("b_owner"),
        name=bindparam("b_name"),
        flag=bindparam("b_flag"),
        doc=bindparam("b_doc", type_=_ITEMS.c.doc.type),
        big=bindparam("b_big"),
    )
    .returning(_ITEMS.c.pk, _ITEMS.c.flag, _ITEMS.c.doc),
    json_params=("b_doc",),
)
_INSERT_MANY = Prepared(
    _ITEMS.insert().values(
        owner_pk=bindparam("b_owner"),
        name=bindparam("b_name"),
        flag=bindparam("b_flag"),
        doc=bindparam("b_doc", type_=_ITEMS.c.doc.type),
        big=bindparam("b_big"),
    )
)
# Two columns keyed `pk` and `name` (the second of each becomes `pk_1`, `name_1`), a label, a
# literal parameter the statement fixes (LIMIT), an outer join that yields NULLs.
_JOINED = Prepared(
    select(
        _ITEMS.c.pk,
        _ITEMS.c.name,
        _ITEMS.c.flag,
        _ITEMS.c.doc,
        _ITEMS.c.big,
        _OWNERS.c.pk,
        _OWNERS.c.name,
        _OWNERS.c.name.label("owner"),
    )
    .outerjoin(_OWNERS, _OWNERS.c.pk == _ITEMS.c.owner_pk)
    .where(_ITEMS.c.big >= bindparam("b_min"))
    .order_by(_ITEMS.c.pk)
    .limit(100)
)
_WHOLE_TABLE = Prepared(select(_ITEMS).where(_ITEMS.c.flag.is_(True)).order_by(_ITEMS.c.pk))
_SET_FLAG = Prepared(
    update(_ITEMS).where(_ITEMS.c.big >= bindparam("b_min")).values(flag=bindparam("b_flag"))
)
_SET_DOC = Prepared(
    update(_ITEMS)
    .where(_ITEMS.c.name == bindparam("b_name"))
    .values(doc=bindparam("b_doc", type_=_ITEMS.c.doc.type))
    .returning(_ITEMS.c.name, _ITEMS.c.doc)
)

DOCS: list[Any] = [
    {"userName": "a@example.com", "emails": [{"value": "a@x", "primary": True}], "n": 1.5},
    "a bare JSON string",
    '{"looks": "like JSON"}',
    [1, "two", None, False, {"é": "漢😀"}],
    {"empty": {}, "list": [], "null": None, "big": 2**53, "neg": -7},
    0,
    True,
    None,
]


def _item(i: int, owner: int | None, doc: Any) -> dict[str, Any]:
    return {
        "b_owner": owner,
        "b_name": f"item-{i}",
        "b_flag": [True, False, None][i % 3],
        "b_doc": doc,
        "b_big": None if i % 4 == 3 else 2**40 + i,
    }


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[SqliteDatabase | PostgresDatabase]:
    """The database of `db_url` opened as the hub opens it (PostgreSQL: autocommit reads)."""
    database = open_database(db_url)
    yield database
    await database.close()


def _execute(conn: Connection, prepared: Prepared, **params: Any) -> list[Any]:
    """What SQLAlchemy's own execution returns (the reference)."""
    return list(conn.execute(prepared.stmt, params).all())


def _same_rows(fast: list[Any], reference: list[Any]) -> None:
    assert len(fast) == len(reference)
    for mine, theirs in zip(fast, reference, strict=True):
        assert mine._fields == theirs._fields
        assert tuple(mine) == tuple(theirs)
        assert [type(v) for v in mine] == [type(v) for v in theirs]
        for key in theirs._fields:
            assert getattr(mine, key) == getattr(theirs, key)


async def _setup(db: SqliteDatabase | PostgresDatabase) -> list[Any]:
    def create(conn: Connection) -> list[Any]:
        _META.create_all(conn)
        owner = conn.execute(_OWNERS.insert().values(name="owner").returning(_OWNERS.c.pk))
        owner_pk = owner.scalar_one()
        returned = []
        for i, doc in enumerate(DOCS):
            assert _INSERT.uses_raw_path(conn.dialect)
            returned.append(_INSERT.first(conn, **_item(i, owner_pk if i % 2 else None, doc)))
        _INSERT_MANY.run_many(
            conn, [_item(i, owner_pk, doc) for i, doc in enumerate(DOCS, start=len(DOCS))]
        )
        _INSERT_MANY.run_many(conn, [])
        return returned

    return await db.write(create)


async def test_every_hub_statement_takes_the_raw_path(
    db: SqliteDatabase | PostgresDatabase,
) -> None:
    """A hot-path statement that would silently fall back to `Connection.execute` fails here
    (a statement kept by dialect, as `groups._ADD_MEMBER`, is checked on its own dialect)."""
    found = _hub_statements()

    def check(conn: Connection) -> list[str]:
        mine = found | _dialect_statements(conn.dialect.name)
        return [name for name, p in mine.items() if not p.uses_raw_path(conn.dialect)]

    assert len(found) > 10
    assert await db.read(check) == []


def _hub_statements() -> dict[str, Prepared]:
    found: dict[str, Prepared] = {}
    for info in pkgutil.iter_modules(hub.core.__path__):
        module = importlib.import_module(f"hub.core.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Prepared):
                found[f"{info.name}.{name}"] = value
            elif isinstance(value, PreparedInsert):
                found[f"{info.name}.{name}.bare"] = value.bare
                found[f"{info.name}.{name}.returning"] = value.returning
    return found


def _dialect_statements(dialect: str) -> dict[str, Prepared]:
    """The statements hub.core keeps in dicts by dialect name, for `dialect`."""
    found: dict[str, Prepared] = {}
    for info in pkgutil.iter_modules(hub.core.__path__):
        module = importlib.import_module(f"hub.core.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, dict) and isinstance(value.get(dialect), Prepared):
                found[f"{info.name}.{name}[{dialect}]"] = value[dialect]
    return found


async def test_a_serving_app_compiles_every_hub_statement_at_start_up(app: Litestar) -> None:
    """Not in its first requests, which (group commit) every request beside them waits for."""
    found = _hub_statements()
    for statement in found.values():
        statement._plans.clear()  # other tests in this process compiled them already
    async with AsyncTestClient(app=app, base_url="http://testserver.local"):
        assert [name for name, p in found.items() if not p._plans] == []


async def test_rows_match_connection_execute(db: SqliteDatabase | PostgresDatabase) -> None:
    returned = await _setup(db)

    def compare(conn: Connection) -> None:
        for prepared in (_JOINED, _WHOLE_TABLE):
            assert prepared.uses_raw_path(conn.dialect)
        reference = _execute(conn, _JOINED, b_min=0)
        _same_rows(_JOINED.all(conn, b_min=0), reference)
        # JSON came back as it went in, through the raw INSERT (and RETURNING) and the reads.
        assert [r.doc for r in reference] == [d for i, d in enumerate(DOCS * 2) if i % 4 != 3]
        assert [r.doc for r in returned] == DOCS
        assert {r.owner for r in reference} == {None, "owner"}
        assert {r.flag for r in reference} == {True, False, None}
        assert reference[0].pk_1 is None
        assert reference[1].pk_1 is not None
        _same_rows(_WHOLE_TABLE.all(conn), _execute(conn, _WHOLE_TABLE))
        _same_rows([_JOINED.first(conn, b_min=0)], reference[:1])
        assert _JOINED.first(conn, b_min=2**62) is None
        assert _JOINED.all(conn, b_min=2**62) == []
        assert _JOINED.scalar(conn, b_min=0) == reference[0].pk

    await db.read(compare)


async def test_writes_match_connection_execute(db: SqliteDatabase | PostgresDatabase) -> None:
    await _setup(db)

    def returning(conn: Connection) -> None:
        # The same values inserted both ways come back the same (the primary keys differ).
        for i, doc in enumerate(DOCS):
            reference = conn.execute(_INSERT.stmt, _item(300 + i, None, doc)).one()
            fast = _INSERT.first(conn, **_item(600 + i, None, doc))
            assert fast._fields == reference._fields == ("pk", "flag", "doc")
            assert tuple(fast)[1:] == tuple(reference)[1:]
            assert [type(v) for v in fast] == [type(v) for v in reference]
            assert _INSERT.scalar(conn, **_item(900 + i, None, doc)) == fast.pk + 1

    await db.write(returning)

    def counts(conn: Connection) -> None:
        # The same rows changed, counted the same way.
        fast = _SET_FLAG.run(conn, b_min=2**40 + 3, b_flag=True)
        slow = conn.execute(_SET_FLAG.stmt, {"b_min": 2**40 + 3, "b_flag": False}).rowcount
        assert fast == slow > 0
        assert _SET_FLAG.run(conn, b_min=2**62, b_flag=True) == 0
        # 0 and 1 are booleans to SQLAlchemy; the raw path sends them as booleans too.
        assert _SET_FLAG.run(conn, b_min=0, b_flag=1) > fast
        flags = [r.flag for r in _JOINED.all(conn, b_min=0)]
        assert flags
        assert all(f is True for f in flags)
        updated = _SET_DOC.all(conn, b_name="item-1", b_doc={"after": [1, None]})
        assert [tuple(r) for r in updated] == [("item-1", {"after": [1, None]})]
        assert _SET_DOC.all(conn, b_name="nobody", b_doc={}) == []

    await db.write(counts)

    def everything(conn: Connection) -> None:
        rows = _JOINED.all(conn, b_min=-1)
        _same_rows(rows, _execute(conn, _JOINED, b_min=-1))
        assert len(rows) > 2 * len(DOCS)

    await db.read(everything)


async def test_an_insert_gives_back_the_key_of_its_row(
    db: SqliteDatabase | PostgresDatabase,
) -> None:
    """`PreparedInsert` returns the key the row got: on SQLite the rowid SQLite reports, which a
    trigger's own inserts into another table (whose keys run ahead) must not change."""
    await _setup(db)

    def insert(conn: Connection) -> list[tuple[int, int]]:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER sqltest_log AFTER INSERT ON sqltest_logged BEGIN "
                "INSERT INTO sqltest_owners (name) VALUES ('logged ' || NEW.name); END"
            )
        keys = []
        for i in range(5):
            conn.execute(_OWNERS.insert().values(name=f"before {i}"))
            keys.append((_INSERT_LOGGED.run(conn, b_name=f"row {i}"), i))
        return keys

    keys = await db.write(insert)

    def stored(conn: Connection) -> dict[str, int]:
        return {name: pk for name, pk in conn.execute(select(_LOGGED.c.name, _LOGGED.c.pk))}

    rows = await db.read(stored)
    assert [key for key, _ in keys] == [rows[f"row {i}"] for _, i in keys]
    assert len(set(rows.values())) == 5

    def duplicate(conn: Connection) -> int:
        return _INSERT_LOGGED.run(conn, b_name="row 0")

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await db.write(duplicate)


def test_an_insert_giving_back_its_key_needs_the_integer_primary_key() -> None:
    """Another column (SQLite would report the rowid, not its value) is refused when built."""
    for column in (_ITEMS.c.big, _ITEMS.c.name):
        with pytest.raises(ValueError, match="INTEGER PRIMARY KEY"):
            PreparedInsert(_ITEMS.insert(), column)


async def test_errors_are_sqlalchemy_errors(db: SqliteDatabase | PostgresDatabase) -> None:
    """A constraint broken on the raw path raises what `Connection.execute` raises."""
    await _setup(db)

    def duplicate(conn: Connection) -> None:
        _INSERT.first(conn, **_item(0, None, {}))

    def duplicate_many(conn: Connection) -> None:
        _INSERT_MANY.run_many(conn, [_item(500, None, {}), _item(0, None, {})])

    for work in (duplicate, duplicate_many):
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            await db.write(work)

    def not_a_boolean(conn: Connection) -> None:
        _SET_FLAG.run(conn, b_min=0, b_flag=2)

    with pytest.raises((ValueError, sqlalchemy.exc.StatementError)):
        await db.write(not_a_boolean)

    def missing_parameter(conn: Connection) -> None:
        _SET_FLAG.run(conn, b_min=0)

    with pytest.raises(KeyError, match="b_flag"):
        await db.write(missing_parameter)

    # Nothing of the failed units of work was kept.
    def names(conn: Connection) -> list[str]:
        return [r.name for r in _JOINED.all(conn, b_min=-1)]

    assert "item-500" not in await db.read(names)


_ROW_ORDER = ("b_owner", "b_name", "b_flag", "b_doc", "b_big")


async def test_rows_in_parameter_order_write_what_dicts_write(
    db: SqliteDatabase | PostgresDatabase,
) -> None:
    """`run_rows` and `run_values` store what `run_many` stores, in the statement's order or in
    another one."""
    await _setup(db)

    def named(way: str, i: int, doc: Any) -> dict[str, Any]:
        return {**_item(i, None, doc), "b_name": f"{way}-{i}"}

    def write(conn: Connection) -> None:
        assert _INSERT_MANY._plan(conn.dialect).names == _ROW_ORDER  # type: ignore[union-attr]
        _INSERT_MANY.run_many(conn, [named("dicts", i, doc) for i, doc in enumerate(DOCS)])
        # In the statement's order, and in another (named, so still right).
        for way, order in (("rows", _ROW_ORDER), ("reversed", tuple(reversed(_ROW_ORDER)))):
            items = [named(way, i, doc) for i, doc in enumerate(DOCS)]
            _INSERT_MANY.run_rows(conn, order, [tuple(r[n] for n in order) for r in items])
        _INSERT_MANY.run_rows(conn, _ROW_ORDER, [])
        for way, order in (("values", _ROW_ORDER), ("values-reversed", _ROW_ORDER[::-1])):
            for i, doc in enumerate(DOCS):
                item = named(way, i, doc)
                assert _INSERT_MANY.run_values(conn, order, [item[n] for n in order]) == 1

    await db.write(write)

    def stored(conn: Connection) -> dict[str, tuple[Any, ...]]:
        rows = conn.execute(select(_ITEMS.c.name, _ITEMS.c.flag, _ITEMS.c.doc, _ITEMS.c.big))
        return {r.name: tuple(r)[1:] for r in rows}

    rows = await db.read(stored)
    if db.dialect == "sqlite":
        # What SQLAlchemy's Boolean stores there: an integer 0 or 1 (the raw path binds ints,
        # not bools, which Python's sqlite3 would first try to adapt).
        kinds = await db.read(
            lambda conn: set(conn.exec_driver_sql("SELECT typeof(flag), flag FROM sqltest_items"))
        )
        assert kinds <= {("integer", 0), ("integer", 1), ("null", None)}, kinds
        assert {("integer", 0), ("integer", 1)} <= kinds
    for i, doc in enumerate(DOCS):
        expected = rows[f"dicts-{i}"]
        assert rows[f"rows-{i}"] == rows[f"reversed-{i}"] == expected
        assert rows[f"values-{i}"] == rows[f"values-reversed-{i}"] == expected
        assert expected[0] is _item(i, None, doc)["b_flag"]  # booleans stay booleans
        assert expected[1] == doc

    def duplicate(conn: Connection) -> None:
        _INSERT_MANY.run_rows(
            conn, _ROW_ORDER, [(None, "new", True, {}, 1), (None, "rows-0", True, {}, 1)]
        )

    def not_a_boolean(conn: Connection) -> None:
        _INSERT_MANY.run_rows(conn, _ROW_ORDER, [(None, "new", 2, {}, 1)])

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await db.write(duplicate)
    with pytest.raises((ValueError, sqlalchemy.exc.StatementError)):
        await db.write(not_a_boolean)
    assert "new" not in await db.read(stored)
