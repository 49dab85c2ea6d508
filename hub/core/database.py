"""Running units of work against the database.

A unit of work is a plain synchronous function `fn(conn, *args)` over a SQLAlchemy `Connection`
that runs in one transaction: it commits when `fn` returns and rolls back when it raises. Request
handlers make one call per request, so a request costs one hand-off to the database, not one per
statement (the naive async-session-per-request design is about five times slower on SQLite).

* SQLite: a dedicated writer thread (writes serialise in SQLite anyway; `BEGIN IMMEDIATE` avoids
  lock-upgrade deadlocks) and a small pool of reader threads (WAL lets readers run beside the
  writer), each holding one connection for its lifetime. Short units (`read_now`/`write_now`)
  run on the event loop's own connections instead, and short writes queued together commit
  together (see `SqliteDatabase.write_now`).
* PostgreSQL: the asyncpg async engine; the same function runs in one greenlet on a pooled
  connection, writes in a transaction, reads in autocommit (see `PostgresDatabase`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, Final, NamedTuple, ParamSpec, Protocol, TypeVar
from urllib.parse import unquote

import msgspec
import sqlalchemy.exc
from asyncpg.exceptions import InternalClientError  # type: ignore[import-untyped]
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_only, greenlet_spawn

from hub.core.errors import InvalidFilter, Unavailable
from hub.core.filtering import register_sqlite_functions
from hub.core.sql import compile_all
from hub.settings import DEFAULT_POOL_SIZE

P = ParamSpec("P")
T = TypeVar("T")
#: What a streamed unit of work hands its chunks to (`Database.stream`); it returns once the
#: chunk is taken, and raises when the consumer is gone.
Emit = Callable[[bytes], None]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

# Python's sqlite3 binds a None only after looking for a way to adapt it (`__adapt__`,
# `__conform__`: two AttributeErrors made, formatted and dropped, ~1,900 instructions a NULL
# parameter, several a create). A registered adapter is found first, and binds the same NULL.
sqlite3.register_adapter(type(None), lambda value: None)


def _json_serializer(value: Any) -> str:
    return _json_encode(value).decode()


class Database(Protocol):
    """Where units of work run."""

    url: str
    dialect: str

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a read-only unit of work and return its result."""
        ...

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a unit of work that may write; committed before this returns."""
        ...

    async def read_now(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read` for a unit known to be short (a few indexed statements): no thread hand-off."""
        ...

    async def write_now(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`write` for a unit known to be short (a few indexed statements): no thread hand-off."""
        ...

    def stream(
        self,
        fn: Callable[Concatenate[Connection, Emit, P], None],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncGenerator[bytes, None]:
        """Run a read-only unit that emits chunks, and give them out as it emits them.

        The unit reads one snapshot from start to end. Its `emit` waits while a chunk it
        emitted before is still untaken, so chunks do not pile up ahead of a slow client. An
        error of the unit is raised where the iteration has got to; leaving the iteration
        early ends the unit (its next `emit` raises).
        """
        ...

    async def ping(self) -> bool:
        """Say whether the database answers a trivial query."""
        ...

    def compile_statements(self) -> int:
        """Compile every prepared statement for this database now; return how many."""
        ...

    async def close(self) -> None:
        """Release every connection and thread."""
        ...


def _run_in_transaction(
    conn: Connection, fn: Callable[Concatenate[Connection, P], T], *args: Any, **kwargs: Any
) -> T:
    with conn.begin():
        return fn(conn, *args, **kwargs)


#: Streamed reads (`SqliteDatabase.stream`) running at once; more wait for one to end.
_STREAMERS = 2
#: How often a serving process copies the SQLite WAL back into the database file.
_CHECKPOINT_EVERY_S = 0.5
#: WAL frames (pages) after which the background checkpoint rewinds the WAL (SQLite's default
#: automatic checkpoint size); `journal_size_limit` then trims the file after a big transaction.
_RESTART_FRAMES = 1000
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: How long a short write waits for the write lock (as the threads' `busy_timeout`).
_LOCK_WAIT_S = 10.0
#: The longest sleep between two tries for the write lock. The checkpointer's RESTART holds
#: writers back for a few milliseconds, about twice a second under load; with pauses doubling
#: to 20 ms a batch overslept it by several milliseconds, and its creates made the p99 (six
#: alternating 4,000-create runs: p99 34-49 ms with 20, 29-37 ms with 1). A refused try costs
#: microseconds (a refused BEGIN IMMEDIATE: 2 µs).
_LOCK_PAUSE_MAX_S = 0.001
#: Turns of the event loop a batch of short writes waits before it runs. Requests already on the
#: wire are read on one turn and reach their write on the next, so a batch taken at once holds
#: only what the loop read before it; under load it was ~5.5 units against the ~9 it gathers
#: after four turns, and each batch has a fixed cost (BEGIN, COMMIT, the pages every unit
#: touches). An idle loop turns in microseconds, so a lone write hardly waits.
_SETTLE_TURNS = 4


#: Tries, and the pause between two, at putting a rollback-journal file in WAL mode.
_WAL_TRIES = 100
_WAL_PAUSE_S = 0.005


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database file in WAL mode (a lasting property of the file: once done, a no-op).

    A file the migrations left in rollback-journal mode is converted by whichever connection
    opens it first, and the first connections open together (the provisioning log's writer,
    the first requests' reads): two converting at once both hold a shared lock and want an
    exclusive one, and SQLite answers one of them "database is locked" at once, since waiting
    could never end. The other converts the file within milliseconds, so the loser tries again.
    """
    for attempt in range(_WAL_TRIES):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == _WAL_TRIES - 1:
                raise
        time.sleep(_WAL_PAUSE_S)


@contextlib.contextmanager
def _busy_is_unavailable() -> Iterator[None]:
    """A locked, unreachable or for now unwritable SQLite file is `Unavailable` (503).

    Unwritable: SQLITE_FULL (its disk is full) or SQLITE_READONLY (its file or file system was
    made read-only). SQLite undid the transaction, and the write succeeds once the operator frees
    space or write access. A statement SQLite's parser cannot hold is a filter nesting too deeply
    for it (400 `invalidFilter`). Other errors pass through.
    """
    try:
        yield
    except (sqlalchemy.exc.OperationalError, sqlite3.OperationalError) as exc:
        message = str(exc)
        if "locked" in message or "unable to open" in message:
            raise Unavailable("the database is busy or unreachable; retry shortly") from exc
        if "disk is full" in message or "readonly database" in message:
            raise Unavailable("the database cannot take writes now; retry later") from exc
        if "parser stack overflow" in message or "Expression tree is too large" in message:
            # SQLite's parser holds ~100 levels: a filter within the parser's 32 (say 16
            # alternating `not (… or …)`) compiles to deeper SQL; it answered 500.
            raise InvalidFilter(
                "the filter nests too deeply for the database; use fewer nested 'not' and "
                "parenthesised groups"
            ) from exc
        raise


class _Abandoned(Exception):
    """The consumer of a streamed unit is gone (the client left, or sending failed)."""


class _Relay:
    """Chunks of a streamed unit (another thread or greenlet) to the event loop, one at a time.

    The queue holds one chunk: a unit that emits the next waits until the one before is taken.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        self.abandoned = False

    async def put(self, chunk: bytes) -> None:
        """Wait for room and queue `chunk`; raise `_Abandoned` once the consumer is gone."""
        if self.abandoned:
            raise _Abandoned
        await self._queue.put(chunk)
        if self.abandoned:
            raise _Abandoned

    async def chunks(self, unit: asyncio.Future[None]) -> AsyncGenerator[bytes, None]:
        """The chunks `unit` emits, then its end (its error, raised here)."""
        taking: asyncio.Future[bytes] | None = None
        try:
            while True:
                taking = asyncio.ensure_future(self._queue.get())
                await asyncio.wait((taking, unit), return_when=asyncio.FIRST_COMPLETED)
                if taking.done():
                    yield taking.result()
                    continue
                taking.cancel()
                while not self._queue.empty():
                    yield self._queue.get_nowait()
                unit.result()  # the unit's error, if it failed
                return
        finally:
            if taking is not None:
                taking.cancel()
            self.abandoned = True
            while not self._queue.empty():  # a unit waiting for room goes on, and stops
                self._queue.get_nowait()
            unit.add_done_callback(_retrieve)


def _retrieve(unit: asyncio.Future[None]) -> None:
    """Take an abandoned unit's outcome, so its error is not reported as never retrieved."""
    if not unit.cancelled():
        unit.exception()


class _Pending(NamedTuple):
    """A short write waiting for its batch (`SqliteDatabase.write_now`)."""

    fn: Callable[..., Any]
    args: Any
    kwargs: Any
    future: asyncio.Future[Any]


def _fail(units: list[_Pending], error: BaseException, cause: BaseException | None = None) -> None:
    """Give every waiting unit `error`: none of their writes landed."""
    if cause is not None:
        error.__cause__ = cause
    for unit in units:
        if not unit.future.done():
            unit.future.set_exception(error)


class _Busy(Exception):
    """Another connection holds the write lock: the short write sleeps briefly and tries again."""


class _Undo(Exception):
    """A unit of a batch failed after writing: the batch runs again, each unit in a savepoint."""


class _Checkpointer:
    """Copies the WAL back into the database file every `every` seconds, on a thread of its own.

    SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages: that
    request then copies (and fsyncs) the pages of many others — seconds after an edit of
    100,000 cards. A PASSIVE checkpoint never blocks writers or readers; the last connection's
    close checkpoints whatever is left.
    """

    def __init__(self, path: str, every: float, streaming: Callable[[], bool]) -> None:
        #: whether this process holds a streamed read's snapshot (`SqliteDatabase.stream`)
        self._streaming = streaming
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path, every), name="hub-db-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self, path: str, every: float) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            while not self._stop.wait(every):
                with contextlib.suppress(sqlite3.Error):  # busy or gone: try at the next tick
                    self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # Not while a streamed answer holds an old snapshot: RESTART waits for that reader (up
        # to its busy timeout) holding every writer back, so creates stalled 1 s at a time
        # while a slow client read a large page of groups. The WAL grows meanwhile and is
        # rewound at the first tick after the stream.
        if frames >= _RESTART_FRAMES and not self._streaming():
            # Under a steady stream of commits a PASSIVE checkpoint never finds the WAL fully
            # copied, so no writer ever rewinds it and it grows without bound. RESTART briefly
            # holds writers back (they wait without blocking the loop), copies the last frames
            # and lets the next commit start the WAL from the beginning.
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def stop(self) -> None:
        """End the thread (after its current checkpoint)."""
        self._stop.set()
        self._thread.join()


class SqliteDatabase:
    """SQLite file database: one writer thread, a few reader threads, and the event loop's own.

    Units known to be short (`read_now`/`write_now`: a SCIM user read or write, a few indexed
    statements, well under a millisecond of SQLite time) run on the calling thread: a hand-off to
    a database thread and back costs about as much as the unit itself, and the two threads then
    contend for the GIL. This process's writes, short and threaded, take turns in arrival order;
    the loop's write connection never blocks on the lock (busy_timeout 0): when another process
    holds it, the unit sleeps briefly (the loop serves other requests) and tries again, for up to
    `_LOCK_WAIT_S`.
    Everything else (scans, admin edits over many rows) runs on the threads so it cannot stall
    the loop.
    """

    dialect = "sqlite"

    def __init__(self, url: str, readers: int = 2, checkpoint_every: float | None = None) -> None:
        self.url = url
        parsed = make_url(url)
        path = sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        sync_url = parsed.set(drivername="sqlite")
        background = checkpoint_every is not None and path is not None
        self._write_engine = self._engine(sync_url, "BEGIN IMMEDIATE", not background)
        self._read_engine = self._engine(sync_url, "BEGIN", not background)
        #: streamed reads running (`stream`): their snapshots may be old
        self._streams = 0
        self._checkpointer = (
            _Checkpointer(str(path), checkpoint_every, lambda: self._streams > 0)
            if background and path is not None and checkpoint_every is not None
            else None
        )
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hub-db-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="hub-db-reader")
        #: streamed reads (`stream`) wait for their client between chunks: threads of their own,
        #: so a slow client never holds a reader the short requests need
        self._streamers = ThreadPoolExecutor(_STREAMERS, thread_name_prefix="hub-db-streamer")
        self._local = threading.local()
        #: this process's writes, one at a time and in arrival order (see `write_now`).
        self._gate = asyncio.Lock()
        #: short writes waiting for the next batch, and the task committing them
        self._pending: list[_Pending] = []
        self._committer: asyncio.Task[None] | None = None
        self._opened: list[Connection] = []
        self._lock = threading.Lock()

    @staticmethod
    def _engine(url: Any, begin: str, autocheckpoint: bool) -> Engine:
        engine = create_engine(
            url,
            json_serializer=_json_serializer,
            json_deserializer=_json_decode,
            pool_size=8,
            max_overflow=0,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take over transaction control from the sqlite3 module so BEGIN is ours.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            if not autocheckpoint:
                # `_Checkpointer` copies the WAL back on its own thread: no commit pays for it.
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()
            register_sqlite_functions(dbapi_conn)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Straight to the driver: SQLAlchemy's statement path costs more than the BEGIN.
            dbapi = conn.connection.dbapi_connection
            if begin == "BEGIN" and dbapi.in_transaction:  # type: ignore[union-attr]
                return  # a short read began it on the driver already (`_read_now`)
            dbapi.execute(begin)  # type: ignore[union-attr]

        return engine

    def _connection(self, engine: Engine) -> Connection:
        # One connection per (thread, engine).
        key = "write" if engine is self._write_engine else "read"
        conn: Connection | None = getattr(self._local, key, None)
        if conn is None or conn.closed:
            conn = engine.connect()
            setattr(self._local, key, conn)
            with self._lock:
                self._opened.append(conn)
        return conn

    def _call(self, engine: Engine, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        conn = self._connection(engine)
        with _busy_is_unavailable():
            return _run_in_transaction(conn, fn, *args, **kwargs)

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` on a reader thread in a read transaction."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._readers, self._call, self._read_engine, fn, args, kwargs
        )

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` on the writer thread in an immediate (write-locked) transaction."""
        loop = asyncio.get_running_loop()
        async with self._gate:
            return await loop.run_in_executor(
                self._writer, self._call, self._write_engine, fn, args, kwargs
            )

    async def stream(
        self,
        fn: Callable[Concatenate[Connection, Emit, P], None],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncGenerator[bytes, None]:
        """Run `fn` on a streamer thread in one read transaction (one WAL snapshot), chunk by chunk.

        The transaction stays open until the last chunk is taken: a client reading slowly holds
        the snapshot (and a streamer thread) that long, and the WAL cannot be rewound past it.
        """
        loop = asyncio.get_running_loop()
        relay = _Relay()

        def emit(chunk: bytes) -> None:
            asyncio.run_coroutine_threadsafe(relay.put(chunk), loop).result()

        self._streams += 1
        unit = loop.run_in_executor(
            self._streamers, self._call, self._read_engine, fn, (emit, *args), kwargs
        )
        unit.add_done_callback(self._stream_ended)  # its transaction, and snapshot, ended
        async with contextlib.aclosing(relay.chunks(unit)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _stream_ended(self, _unit: asyncio.Future[None]) -> None:
        self._streams -= 1

    def _write_connection_now(self) -> Connection:
        conn: Connection | None = getattr(self._local, "write_now", None)
        if conn is None or conn.closed:
            conn = self._write_engine.connect()
            # On the driver: through SQLAlchemy the PRAGMA would begin a write transaction, and
            # fail while another process holds the lock.
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            dbapi.execute("PRAGMA busy_timeout=0")
            # Each batched unit's savepoint journal: past 64 KiB SQLite spills it to a temp file,
            # two pwrite calls for every page a unit touches (~60 system calls a create).
            dbapi.execute("PRAGMA temp_store=MEMORY")
            self._local.write_now = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _read_now(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        """A short read in a transaction begun and ended on the driver itself.

        SQLAlchemy's `begin()`/`commit()` cost more than the BEGIN and COMMIT they issue, on every
        GET. A statement the unit runs through `Connection.execute` joins the transaction (the
        begin hook sees it open) and SQLAlchemy's side of it is ended here too.
        """
        conn = self._connection(self._read_engine)
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        with _busy_is_unavailable():
            dbapi.execute("BEGIN")
            try:
                result = fn(conn, *args, **kwargs)
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                if dbapi.in_transaction:
                    dbapi.rollback()
                raise
            if conn.in_transaction():
                conn.commit()
            if dbapi.in_transaction:
                dbapi.commit()
            return result

    def _run_batch(self, batch: list[_Pending]) -> None:
        """Run `batch` in one transaction, then settle its futures.

        The units run one after another without savepoints: a savepoint per unit was ~6% of a
        create's instructions (its journal copies every page the unit touches first), and a unit
        that fails almost always fails before it writes (a conflict, a missing resource, a bad
        value are found by reading), leaving nothing to undo. When one fails after writing, the
        transaction is rolled back and the batch runs again, each unit in a savepoint.

        Raises:
            _Busy: another connection holds the write lock (nothing ran).
            BaseException: the transaction itself failed: no unit's write landed.
        """
        try:
            outcomes = self._run_in_transaction(batch, self._run_bare)
        except _Undo:
            outcomes = self._run_in_transaction(batch, self._run_unit)
        for unit, result, error in outcomes:
            if unit.future.done():
                continue  # its caller was cancelled meanwhile
            if error is None:
                unit.future.set_result(result)
            else:
                unit.future.set_exception(error)

    def _run_in_transaction(
        self,
        batch: list[_Pending],
        run: Callable[[Any, Connection, _Pending], tuple[_Pending, Any, BaseException | None]],
    ) -> list[tuple[_Pending, Any, BaseException | None]]:
        """Run each unit of `batch` with `run` in one transaction and commit it."""
        conn = self._write_connection_now()
        try:
            transaction = conn.begin()
        except (sqlalchemy.exc.OperationalError, sqlite3.OperationalError) as exc:
            if "locked" in str(exc):
                raise _Busy from exc
            raise Unavailable("the database is busy or unreachable; retry shortly") from exc
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        try:
            with _busy_is_unavailable(), transaction:
                return [run(dbapi, conn, unit) for unit in batch]
        except BaseException:
            if dbapi.in_transaction:  # a failed COMMIT (a deferred constraint) leaves it open
                dbapi.rollback()
            raise

    @staticmethod
    def _run_bare(
        dbapi: Any, conn: Connection, unit: _Pending
    ) -> tuple[_Pending, Any, BaseException | None]:
        """Run one unit of a batch without a savepoint: (unit, its result, the error it raised).

        Raises:
            _Undo: the unit failed after changing rows (SQLite's count of changed rows moved; a
                statement that fails is undone by SQLite itself and counts none).
        """
        changes = dbapi.total_changes
        try:
            result = unit.fn(conn, *unit.args, **unit.kwargs)
        except Exception as exc:
            if not dbapi.in_transaction:
                raise  # SQLite rolled the whole transaction back (disk full, I/O error)
            if dbapi.total_changes != changes:
                raise _Undo from exc
            return unit, None, exc
        return unit, result, None

    @staticmethod
    def _run_unit(
        dbapi: Any, conn: Connection, unit: _Pending
    ) -> tuple[_Pending, Any, BaseException | None]:
        """Run one unit of a batch in a savepoint: (unit, its result, the error that undid it)."""
        dbapi.execute("SAVEPOINT unit")
        try:
            result = unit.fn(conn, *unit.args, **unit.kwargs)
        except Exception as exc:
            if not dbapi.in_transaction:
                raise  # SQLite rolled the whole transaction back (disk full, I/O error)
            dbapi.execute("ROLLBACK TO unit")
            dbapi.execute("RELEASE unit")
            return unit, None, exc
        dbapi.execute("RELEASE unit")
        return unit, result, None

    async def _commit_pending(self) -> None:
        """Commit the queued short writes, batch after batch, in turn with the writer thread."""
        batch: list[_Pending] = []
        try:
            async with self._gate:
                while self._pending:
                    for _ in range(_SETTLE_TURNS):
                        await asyncio.sleep(0)
                    batch = [unit for unit in self._pending if not unit.future.cancelled()]
                    self._pending = []
                    if batch:
                        await self._commit_batch(batch)
                    batch = []
        finally:
            self._committer = None
            # Only when cancelled (the loop is closing): nobody may wait forever.
            unanswered, self._pending = batch + self._pending, []
            _fail(unanswered, Unavailable("the server is shutting down; retry shortly"))

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        """Run `batch`; while another process holds the write lock, sleep briefly and retry."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LOCK_WAIT_S
        pause = 0.0005
        while True:
            try:
                self._run_batch(batch)
                return
            except _Busy as exc:
                if loop.time() >= deadline:
                    _fail(batch, Unavailable("the database is busy; retry shortly"), exc)
                    return
            except Exception as exc:
                _fail(batch, exc)
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LOCK_PAUSE_MAX_S)

    async def read_now(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a short read unit on the calling thread, in a read transaction."""
        return self._read_now(fn, args, kwargs)

    async def write_now(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a short write unit on the loop's thread, committed with those queued beside it.

        Short writes queued within a few turns of the loop (`_SETTLE_TURNS`: under load, the
        requests already on the wire) run one after another in one transaction, and every
        caller hears back only after that transaction has committed: a unit that raises is
        undone alone and its caller gets the error (`_run_batch`); a failed commit fails them
        all. One BEGIN/COMMIT, and one WAL frame for each page they
        share, then serve many requests instead of one each. This process's writes, short and
        threaded, take turns in arrival order (`_gate`), so a stream of short writes cannot
        starve a queued long one (the provisioning log, an admin edit). When another process
        holds the write lock, the batch retries after a short sleep instead of blocking the
        loop.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Pending(fn, args, kwargs, future))
        if self._committer is None:
            self._committer = loop.create_task(self._commit_pending())
        return await future

    def write_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` in a write transaction on the calling thread (CLI and seeding)."""
        with self._write_engine.connect() as conn:
            return _run_in_transaction(conn, fn, *args, **kwargs)

    def compile_statements(self) -> int:
        """Compile every prepared statement for SQLite now (a serving process, at start-up)."""
        return compile_all(self._write_engine.dialect)

    async def ping(self) -> bool:
        """Say whether a trivial query answers."""
        try:
            await self.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Close every thread's connection and stop the threads."""

        def _close_all() -> None:
            with self._lock:
                for conn in self._opened:
                    conn.close()
                self._opened.clear()

        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self._streamers.shutdown(wait=True, cancel_futures=True)
        if self._checkpointer is not None:
            self._checkpointer.stop()
        _close_all()
        self._write_engine.dispose()
        self._read_engine.dispose()


#: Runs of a PostgreSQL unit of work when it is rolled back by a deadlock or serialisation failure.
_PG_ATTEMPTS = 3
#: How long a unit waits for a PostgreSQL connection when all are busy before its request
#: answers 503 (the pool's size is `SCIM_HUB_DATABASE_POOL_SIZE`).
_POOL_WAIT_S = 10.0


def _sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error, wherever asyncpg and SQLAlchemy put it."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return code if isinstance(code, str) else None


def _retryable(exc: BaseException) -> bool:
    """A PostgreSQL deadlock (40P01) or serialisation failure (40001): the unit may run again."""
    return _sqlstate(exc) in ("40P01", "40001")


#: SQLSTATEs of a PostgreSQL server refusing work it would otherwise take: a read-only
#: transaction (a standby after a failover, `default_transaction_read_only`), no privilege, and
#: class 53 (a full disk, too many connections).
_REFUSALS: Final = ("25006", "42501", "53")


def refused_by_server(exc: BaseException) -> bool:
    """Whether PostgreSQL refused the statement for a reason of the server's, not of the data."""
    code = _sqlstate(exc)
    return code is not None and code.startswith(_REFUSALS)


class PostgresDatabase:
    """PostgreSQL through asyncpg: each unit of work runs in one greenlet on a pooled connection.

    The unit is the same synchronous `fn(conn, …)` as on SQLite, run on the async engine's
    `sync_engine` inside `greenlet_spawn` — what `AsyncConnection.run_sync` does, but with the
    checkout, the transaction and the check-in in the same greenlet instead of four spawns.

    * Writes run in a transaction: `BEGIN` … `COMMIT`, rolled back if `fn` raises.
    * Reads run on an autocommit connection: no `BEGIN`/`COMMIT` round trips. The hub runs at
      PostgreSQL's default isolation, READ COMMITTED, where every statement takes its own snapshot
      whether a transaction surrounds it or not: the statements of a read unit (a user, then its
      groups; a page, then its count) were never one snapshot, and running them without the
      transaction changes nothing a client can see. A unit that needs one snapshot must run as a
      write (none does).
    * A fixed pool: `pool_size` connections, opened as needed and kept; when all are busy a unit
      waits for one (up to `pool_wait_s`, then 503). Connections beyond the pool would be closed
      as soon as they were checked in, so under a concurrency above the pool requests kept
      paying for new sessions (a TCP and TLS negotiation, authentication, a server process
      forked, every statement prepared again): at 16 requests in flight on a pool of 10 plus 10
      overflow, GETs ran at 56% of the rate they reach without that churn.
    * No pool pre-ping: SQLAlchemy's asyncpg ping is `BEGIN`, `;`, `ROLLBACK` — three round trips on
      every checkout, more than a read unit's own statements. Instead a checkout drops a connection
      that asyncpg already knows is closed (the server restarted, or ended the session, while it sat
      in the pool; no round trip). A connection that dies unnoticed fails its statement: SQLAlchemy
      invalidates the pool, the request answers 503 (`Unavailable`) and the next one connects
      afresh.
    """

    dialect = "postgresql"

    def __init__(
        self, url: str, pool_size: int = DEFAULT_POOL_SIZE, pool_wait_s: float = _POOL_WAIT_S
    ) -> None:
        self.url = url
        self._engine: AsyncEngine = create_async_engine(
            url,
            json_serializer=_json_serializer,
            json_deserializer=_json_decode,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_wait_s,
        )
        # The sync-style engine the units run on (its pool is also what /metrics reads).
        self._sync_engine = self._engine.sync_engine
        event.listen(self._sync_engine, "checkout", _drop_if_closed)
        self._autocommit = self._sync_engine.execution_options(isolation_level="AUTOCOMMIT")

    @staticmethod
    def _unit(
        engine: Engine, in_transaction: bool, fn: Callable[..., T], args: Any, kwargs: Any
    ) -> T:
        with engine.connect() as conn:
            if in_transaction:
                return _run_in_transaction(conn, fn, *args, **kwargs)
            return fn(conn, *args, **kwargs)

    async def _call(
        self, engine: Engine, in_transaction: bool, fn: Callable[..., T], args: Any, kwargs: Any
    ) -> T:
        for attempt in range(_PG_ATTEMPTS):
            try:
                return await greenlet_spawn(self._unit, engine, in_transaction, fn, args, kwargs)
            except sqlalchemy.exc.TimeoutError as exc:  # the pool's wait, not a statement's
                raise Unavailable("every database connection is busy; retry shortly") from exc
            except sqlalchemy.exc.PendingRollbackError as exc:
                # Raised over a lost connection's error by whatever touched the invalidated
                # connection on the way out (the outbox's rollback listener did): still 503.
                if exc.__context__ is None or not _lost(exc.__context__):
                    raise
                raise Unavailable("the database is unreachable; retry shortly") from exc
            except (OSError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DBAPIError) as exc:
                if _retryable(exc):
                    if attempt + 1 == _PG_ATTEMPTS:
                        # Group member PATCHes and user DELETEs racing on two workers deadlocked
                        # run after run and the request answered 500: the client may send it
                        # again, as after any conflict of the moment.
                        raise Unavailable(
                            "the write kept conflicting with concurrent writes; retry shortly"
                        ) from exc
                    # A deadlock or serialisation failure rolled the whole unit back: run it
                    # again (the background outbox sender and a deprovisioning touch the same
                    # rows), after a pause whose jitter keeps the same units from meeting again.
                    await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)
                    continue
                if refused_by_server(exc):
                    # As SQLite's read-only or full file: nothing was written (it answered 500).
                    raise Unavailable("the database cannot take writes now; retry later") from exc
                if not _lost(exc):
                    raise
                raise Unavailable("the database is unreachable; retry shortly") from exc
        raise AssertionError("unreachable")

    async def stream(
        self,
        fn: Callable[Concatenate[Connection, Emit, P], None],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> AsyncGenerator[bytes, None]:
        """Run `fn` in a REPEATABLE READ, READ ONLY transaction (one snapshot), chunk by chunk.

        Not autocommit as `read`: there every statement takes its own snapshot, and a page
        read group by group would mix moments. The unit runs as a task of its own, waiting in
        `emit` (on the event loop, as every unit here) until its last chunk is taken.
        """
        relay = _Relay()

        def emit(chunk: bytes) -> None:
            await_only(relay.put(chunk))

        unit = asyncio.ensure_future(greenlet_spawn(self._stream_unit, fn, emit, args, kwargs))
        try:
            async with contextlib.aclosing(relay.chunks(unit)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            unit.cancel()  # ended already, or waiting in `emit` for a consumer that left

    def _stream_unit(self, fn: Callable[..., None], emit: Emit, args: Any, kwargs: Any) -> None:
        try:
            with self._sync_engine.connect() as conn:
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                with conn.begin():
                    fn(conn, emit, *args, **kwargs)
        except sqlalchemy.exc.TimeoutError as exc:  # the pool's wait, not a statement's
            raise Unavailable("every database connection is busy; retry shortly") from exc
        except (OSError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DBAPIError) as exc:
            if not _lost(exc):
                raise
            raise Unavailable("the database is unreachable; retry shortly") from exc

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` on an autocommit connection (each statement its own READ COMMITTED snapshot)."""
        return await self._call(self._autocommit, False, fn, args, kwargs)

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn` in a transaction."""
        return await self._call(self._sync_engine, True, fn, args, kwargs)

    async def read_now(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read`: on PostgreSQL every unit already runs on the event loop."""
        return await self.read(fn, *args, **kwargs)

    async def write_now(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`write`: on PostgreSQL every unit already runs on the event loop."""
        return await self.write(fn, *args, **kwargs)

    def compile_statements(self) -> int:
        """Compile every prepared statement for PostgreSQL now (a serving process, at start-up)."""
        return compile_all(self._sync_engine.dialect)

    async def ping(self) -> bool:
        """Say whether a trivial query answers."""
        try:
            await self.read(lambda conn: conn.execute(text("SELECT 1")).scalar())
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Dispose of the pool."""
        await self._engine.dispose()


#: SQLSTATE classes of a session the server ended or could not keep: 08 (connection exception)
#: and 57P (operator intervention: `pg_terminate_backend`, a shutdown, a server still starting).
_ENDED: Final = ("08", "57P")


def _lost(exc: BaseException) -> bool:
    """Say whether a PostgreSQL unit failed because its connection is gone.

    The server's FATAL message (57P01 after `pg_terminate_backend`, as in a failover) can reach
    the statement before asyncpg has seen the socket close; SQLAlchemy then does not count it
    as a disconnect, and the request answered 500 in CI. The SQLSTATE says it all the same.
    """
    if isinstance(exc, OSError | sqlalchemy.exc.InterfaceError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(getattr(getattr(exc, "orig", None), "__cause__", None), InternalClientError):
        # asyncpg's protocol left mid-operation by a session ended under it ("cannot switch to
        # state 15; another operation is in progress" on the next BEGIN): the connection is
        # unusable, and SQLAlchemy does not count it as a disconnect either.
        return True
    code = _sqlstate(exc)
    return code is not None and code.startswith(_ENDED)


def _drop_if_closed(_dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Pool checkout: a connection asyncpg knows is closed is replaced, not handed out."""
    if record.driver_connection is not None and record.driver_connection.is_closed():
        raise sqlalchemy.exc.DisconnectionError("connection closed while idle in the pool")


def sqlite_file(database_url: str | URL) -> Path | None:
    """The file a SQLite URL names, or None: an in-memory database or not SQLite at all.

    A URI filename (`sqlite+aiosqlite:///file:/srv/hub.db?mode=ro&uri=true`) names its file after
    `file:` and an empty or `localhost` authority, percent-encoded (sqlite.org/uri.html). Taken
    as a plain name, it made a `file:` directory in the working directory, and the server's
    checkpointer opened a second, empty database in it, never checkpointing the real one.
    """
    url = make_url(database_url) if isinstance(database_url, str) else database_url
    name = url.database
    if url.get_backend_name() != "sqlite" or name in (None, "", ":memory:"):
        return None
    assert name is not None
    if url.query.get("uri") != "true" or not name.startswith("file:"):
        return Path(name)
    if url.query.get("mode") == "memory":
        return None
    rest = name.removeprefix("file:")
    if rest.startswith("//"):
        rest = "/" + rest[2:].partition("/")[2]  # the authority: "" or "localhost"
    path = unquote(rest.partition("?")[0].partition("#")[0])
    return None if path in ("", ":memory:") else Path(path)


def open_database(
    url: str, *, serving: bool = False, pool_size: int = DEFAULT_POOL_SIZE
) -> SqliteDatabase | PostgresDatabase:
    """Open the database named by a SQLAlchemy URL (`sqlite+aiosqlite://…` or `postgresql+asyncpg://…`).

    `serving`: a long-lived server process; on SQLite it checkpoints the WAL on a background
    thread (short-lived commands keep SQLite's automatic checkpoints). `pool_size`: the
    connections a PostgreSQL database keeps (SQLite keeps its own few, one per thread).

    Raises:
        ValueError: the URL names a database the hub does not support.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDatabase(url, checkpoint_every=_CHECKPOINT_EVERY_S if serving else None)
    if backend == "postgresql":
        return PostgresDatabase(url, pool_size)
    raise ValueError(
        f"unsupported database {backend!r}: use sqlite+aiosqlite or postgresql+asyncpg"
    )
