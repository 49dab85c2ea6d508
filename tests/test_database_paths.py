"""Short SCIM user units run on the event loop's thread; a held write lock sends them to the
writer thread instead of failing, and reads never wait for it (SQLite)."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, text

from hub.core import database
from hub.core.database import SqliteDatabase
from hub.core.errors import Unavailable
from hub.migrate import upgrade
from tests.conftest import ONLY_SQLITE, ScimClient, user_body


@pytest.fixture
def sqlite_file(db_url: str) -> Path:
    """The test's SQLite file: the thread layout under test is SQLite's (PostgreSQL runs every
    unit on the loop), so a test using this is marked `ONLY_SQLITE`."""
    assert db_url.startswith("sqlite"), "mark the test ONLY_SQLITE"
    return Path(db_url.split(":///", 1)[1])


@ONLY_SQLITE
async def test_quick_units_run_on_the_calling_thread_others_on_database_threads(
    sqlite_file: Path,
) -> None:
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def where(conn: Connection) -> int:
        conn.execute(text("SELECT 1"))
        return threading.get_ident()

    try:
        here = threading.get_ident()
        assert await db.read_now(where) == here
        assert await db.write_now(where) == here
        assert await db.read(where) != here
        assert await db.write(where) != here
    finally:
        await db.close()


@ONLY_SQLITE
async def test_a_held_write_lock_queues_quick_writes_and_spares_reads(
    scim: ScimClient, sqlite_file: Path
) -> None:
    created = await scim.post("/Users", user_body("before-lock@example.com"))
    assert created.status_code == 201
    user_id = created.json()["id"]
    blocker = sqlite3.connect(sqlite_file, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.6)
        blocker.execute("COMMIT")
        released.set()

    releaser = threading.Thread(target=release_later)
    started = time.monotonic()
    releaser.start()
    try:
        create = asyncio.create_task(scim.post("/Users", user_body("during-lock@example.com")))
        read = await scim.get(f"/Users/{user_id}")
        # The read answered while the lock was held; the write waited for it, then landed.
        assert read.status_code == 200
        assert not released.is_set()
        response = await create
        assert response.status_code == 201, response.text
        assert released.is_set()
        assert time.monotonic() - started >= 0.5
    finally:
        releaser.join()
        blocker.close()
    found = await scim.get("/Users", params={"filter": 'userName eq "during-lock@example.com"'})
    assert found.json()["totalResults"] == 1


def _wal_progress(db_file: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied back) from the WAL index (SQLite's -shm file:
    `mxFrame` at byte 16 of the header, `nBackfill` at byte 96, native byte order)."""
    header = Path(f"{db_file}-shm").read_bytes()[:100]
    return struct.unpack_from("=I", header, 16)[0], struct.unpack_from("=I", header, 96)[0]


async def _checkpointed(db_file: Path) -> tuple[int, int]:
    """`_wal_progress` once the WAL is copied back, or after 4 s: (frames, frames copied)."""
    frames, copied = _wal_progress(db_file)
    for _ in range(40):
        frames, copied = _wal_progress(db_file)
        if frames and copied == frames:
            break
        await asyncio.sleep(0.1)
    return frames, copied


@ONLY_SQLITE
async def test_a_serving_hub_checkpoints_the_wal_in_the_background(
    scim: ScimClient, sqlite_file: Path
) -> None:
    """Commits never copy the WAL back themselves (SQLite's automatic checkpoint would, inside
    whichever request crosses 1,000 pages); a background thread does, within a second or so."""
    for i in range(8):
        response = await scim.post("/Users", user_body(f"wal-{i}@example.com"))
        assert response.status_code == 201
    # 8 users write far fewer than 1,000 WAL pages: only the background checkpoint copies them.
    frames, copied = await _checkpointed(sqlite_file)
    assert frames > 0
    assert copied == frames


@ONLY_SQLITE
async def test_a_stream_of_short_writes_does_not_starve_a_threaded_one(sqlite_file: Path) -> None:
    """The provisioning log and admin edits run on the writer thread: under a constant stream of
    short SCIM writes they still get their turn (writes take turns in arrival order)."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def short(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))

    stop = time.monotonic() + 2.0

    async def stream() -> int:
        done = 0
        while time.monotonic() < stop:
            await db.write_now(short)
            done += 1
            await asyncio.sleep(0)  # a request's HTTP work between its units
        return done

    try:
        await db.write_now(short)
        streams = [asyncio.create_task(stream()) for _ in range(8)]
        await asyncio.sleep(0.2)
        waited = []
        for _ in range(3):
            started = time.monotonic()
            await db.write(short)
            waited.append(time.monotonic() - started)
        assert max(waited) < 0.5, waited
        assert sum(await asyncio.gather(*streams)) > 100
    finally:
        await db.close()


@ONLY_SQLITE
async def test_the_wal_is_rewound_under_a_steady_stream_of_writes(sqlite_file: Path) -> None:
    """A PASSIVE checkpoint alone never sees the WAL fully copied while commits keep coming, so
    nothing would rewind it (a soak grew it to 3 GB in two minutes); the checkpointer rewinds it."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}", checkpoint_every=0.05)

    def write(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
        conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": "x" * 3000})

    samples: list[int] = []
    stop = time.monotonic() + 2.5
    try:
        while time.monotonic() < stop:
            for _ in range(20):
                await db.write_now(write)
            samples.append(_wal_progress(sqlite_file)[0])
            await asyncio.sleep(0.005)
    finally:
        await db.close()
    rewinds = sum(1 for a, b in itertools.pairwise(samples) if b < a)
    assert rewinds >= 2, samples
    assert max(samples) < 6000, max(samples)


def _items(conn: Connection) -> list[int]:
    return [row[0] for row in conn.execute(text("SELECT x FROM item ORDER BY x"))]


async def _with_items_table(db: SqliteDatabase) -> None:
    def create(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE item (x INTEGER PRIMARY KEY)"))
        conn.execute(text("CREATE TABLE child (x INTEGER REFERENCES item (x))"))

    await db.write(create)


@ONLY_SQLITE
async def test_short_writes_queued_together_commit_together_and_one_that_raises_alone_is_undone(
    sqlite_file: Path,
) -> None:
    """A dozen short writes arriving at once share one transaction (one COMMIT); the one that
    raises after writing is rolled back alone and its caller gets its error."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def insert(conn: Connection, x: int) -> object:
        conn.execute(text("INSERT INTO item VALUES (:x)"), {"x": x})
        if x == 5:
            raise ValueError("refused after writing")
        return conn.get_transaction()

    try:
        await _with_items_table(db)
        outcomes = await asyncio.gather(
            *(db.write_now(insert, x) for x in range(12)), return_exceptions=True
        )
        failed = outcomes.pop(5)
        assert isinstance(failed, ValueError)
        assert len({id(transaction) for transaction in outcomes}) == 1, "one transaction"
        assert await db.read(_items) == [x for x in range(12) if x != 5]
        # A duplicate key (the driver's own error) is undone the same way.
        late = await asyncio.gather(db.write_now(insert, 3), db.write_now(insert, 20))
    except sqlalchemy.exc.IntegrityError:
        assert await db.read(_items) == [x for x in range(12) if x != 5] + [20]
    else:
        raise AssertionError(f"the duplicate was accepted: {late}")
    finally:
        await db.close()


@ONLY_SQLITE
async def test_a_batch_runs_again_in_savepoints_only_when_a_failing_unit_wrote(
    sqlite_file: Path,
) -> None:
    """Units of a batch run without savepoints. One that fails before writing (a conflict found
    by reading) leaves nothing to undo: the batch runs once. One that fails after writing makes
    the batch run again, each unit in a savepoint: its rows are undone, the others' stored once."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")
    runs: list[int] = []

    def write(conn: Connection, x: int, fail: str) -> int:
        runs.append(x)
        if fail == "before":
            raise ValueError("refused before writing")
        conn.execute(text("INSERT INTO item VALUES (:x)"), {"x": x})
        if fail == "after":
            raise ValueError("refused after writing")
        return x

    def insert(x: int, fail: str = "") -> Any:
        return db.write_now(write, x, fail)

    async def batch(first: int, fail: str) -> None:
        """Three units in one batch, the middle one failing; the other two are stored."""
        runs.clear()
        units = (insert(first), insert(first + 1, fail), insert(first + 2))
        outcomes = await asyncio.gather(*units, return_exceptions=True)
        assert outcomes[::2] == [first, first + 2]
        assert isinstance(outcomes[1], ValueError)

    try:
        await _with_items_table(db)
        await batch(1, "before")
        assert runs == [1, 2, 3], "one run of the batch"
        await batch(4, "after")
        assert runs == [4, 5, 4, 5, 6], "the batch ran again from the start, in savepoints"
        assert await db.read(_items) == [1, 3, 4, 6]
    finally:
        await db.close()


@ONLY_SQLITE
async def test_short_writes_queued_over_the_next_turns_of_the_loop_join_the_batch(
    sqlite_file: Path,
) -> None:
    """A write queued two turns after the first (a request read on the next turn of the loop,
    reaching its write on the one after) shares the first one's transaction; a write queued
    long after gets a transaction of its own."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def insert(conn: Connection, x: int) -> object:
        conn.execute(text("INSERT INTO item VALUES (:x)"), {"x": x})
        return conn.get_transaction()

    async def after(turns: int, x: int) -> object:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await db.write_now(insert, x)

    try:
        await _with_items_table(db)
        first, second = await asyncio.gather(db.write_now(insert, 1), after(2, 2))
        assert first is second, "one transaction"
        third, fourth = await asyncio.gather(db.write_now(insert, 3), after(50, 4))
        assert third is not fourth
        assert await db.read(_items) == [1, 2, 3, 4]
    finally:
        await db.close()


@ONLY_SQLITE
async def test_a_batch_keeps_its_undo_pages_in_memory_and_still_undoes_a_large_unit(
    sqlite_file: Path,
) -> None:
    """Each unit's savepoint journal stays in memory: spilled to a temp file (SQLite's default past
    64 KiB), it cost two writes per page a create touched, ~60 system calls a create. A unit
    that changes far more than that and then raises is still undone alone."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def big(conn: Connection, base: int, fail: bool) -> None:
        rows = [{"x": base + i, "pad": "p" * 2000} for i in range(200)]
        conn.execute(text("INSERT INTO padded VALUES (:x, :pad)"), rows)
        conn.execute(text("UPDATE padded SET pad = 'q' WHERE x < :top"), {"top": base})
        if fail:
            raise ValueError("refused after writing ~100 pages")

    try:
        await db.write(lambda conn: conn.execute(text("CREATE TABLE padded (x PRIMARY KEY, pad)")))
        await db.write_now(big, 0, False)
        store = await db.write_now(lambda c: c.exec_driver_sql("PRAGMA temp_store").scalar())
        assert store == 2, "the short writes' connection keeps temporary data in memory"
        outcomes = await asyncio.gather(
            db.write_now(big, 1000, True), db.write_now(big, 2000, False), return_exceptions=True
        )
        assert isinstance(outcomes[0], ValueError)
        assert outcomes[1] is None

        def contents(conn: Connection) -> list[tuple[int, int]]:
            query = "SELECT x / 1000, count(*) FROM padded WHERE pad != 'q' GROUP BY 1 ORDER BY 1"
            return [(row[0], row[1]) for row in conn.execute(text(query))]

        assert await db.read(contents) == [(2, 200)]
        assert (
            await db.read(lambda c: c.execute(text("SELECT count(*) FROM padded")).scalar()) == 400
        )
    finally:
        await db.close()


@ONLY_SQLITE
async def test_a_batch_whose_commit_fails_fails_every_caller_and_stores_nothing(
    sqlite_file: Path,
) -> None:
    """A deferred foreign key makes the COMMIT itself fail: no caller is told its write landed."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def insert(conn: Connection, x: int) -> int:
        conn.execute(text("INSERT INTO item VALUES (:x)"), {"x": x})
        return x

    def orphan(conn: Connection) -> None:
        conn.execute(text("PRAGMA defer_foreign_keys = ON"))
        conn.execute(text("INSERT INTO child VALUES (999)"))

    try:
        await _with_items_table(db)
        outcomes = await asyncio.gather(
            db.write_now(insert, 1),
            db.write_now(orphan),
            db.write_now(insert, 2),
            return_exceptions=True,
        )
        assert all(isinstance(o, sqlalchemy.exc.IntegrityError) for o in outcomes), outcomes
        assert await db.read(_items) == []
        assert await db.write_now(insert, 3) == 3, "the next batch commits"
        assert await db.read(_items) == [3]
    finally:
        await db.close()


@ONLY_SQLITE
async def test_a_unit_that_ends_the_transaction_fails_its_whole_batch(sqlite_file: Path) -> None:
    """When SQLite itself abandons the transaction (disk full, I/O error: here, a ROLLBACK), the
    units before it in the batch are not acknowledged either."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def insert(conn: Connection, x: int) -> int:
        conn.execute(text("INSERT INTO item VALUES (:x)"), {"x": x})
        return x

    def abandon(conn: Connection) -> None:
        conn.connection.dbapi_connection.execute("ROLLBACK")  # type: ignore[union-attr]
        raise sqlite3.OperationalError("disk I/O error")

    try:
        await _with_items_table(db)
        outcomes = await asyncio.gather(
            db.write_now(insert, 1), db.write_now(abandon), return_exceptions=True
        )
        assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes), outcomes
        assert await db.read(_items) == []
    finally:
        await db.close()


@ONLY_SQLITE
async def test_writes_waiting_for_a_held_lock_are_answered_when_the_committer_is_cancelled(
    sqlite_file: Path,
) -> None:
    """At shutdown the loop cancels its tasks: a write still waiting for another process's lock
    is told to retry (503), never left waiting, and nothing of it is stored."""
    db = SqliteDatabase(f"sqlite+aiosqlite:///{sqlite_file}")

    def insert(conn: Connection, x: int) -> int:
        conn.execute(text("INSERT INTO item VALUES (:x)"), {"x": x})
        return x

    blocker = sqlite3.connect(sqlite_file, isolation_level=None)
    try:
        await _with_items_table(db)
        blocker.execute("BEGIN IMMEDIATE")
        waiting = [asyncio.create_task(db.write_now(insert, x)) for x in (1, 2)]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in waiting)
        committer = db._committer
        assert committer is not None
        committer.cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
        blocker.execute("COMMIT")
        assert await db.read(_items) == []
        assert await db.write_now(insert, 3) == 3, "a new committer serves later writes"
    finally:
        blocker.close()
        await db.close()


async def test_connections_opened_together_on_a_new_file_all_put_it_in_wal_mode(
    migrated_sqlite_file: Path, tmp_path: Path
) -> None:
    """The migrations leave a rollback-journal file; the first connections convert it together.

    Two connections converting at once both want the exclusive lock, and SQLite answers one of
    them "database is locked" without waiting: three databases' first units (nine threads) on a
    fresh copy failed in ~3% of rounds before the conversion tried again.
    """
    from hub.core.database import open_database

    def count(conn: Connection) -> int:
        return int(conn.execute(text("SELECT count(*) FROM users")).scalar_one())

    assert _journal_mode(migrated_sqlite_file) == "delete"
    failed = []
    for round_ in range(200):
        path = tmp_path / f"hub-{round_}.db"
        shutil.copyfile(migrated_sqlite_file, path)
        dbs = [open_database(f"sqlite+aiosqlite:///{path}") for _ in range(3)]
        try:
            units = [u for db in dbs for u in (db.read(count), db.read(count), db.write(count))]
            results = await asyncio.gather(*units, return_exceptions=True)
        finally:
            for db in dbs:
                await db.close()
        failed += [repr(r) for r in results if isinstance(r, BaseException)]
        assert _journal_mode(path) == "wal"
        os.remove(path)
    assert failed == []


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////srv/hub.db", "/srv/hub.db"),
        ("sqlite+aiosqlite:///var/hub.db", "var/hub.db"),
        ("sqlite+aiosqlite:///file:/srv/hub.db?mode=ro&uri=true", "/srv/hub.db"),
        ("sqlite+aiosqlite:///file:///srv/hub.db?uri=true", "/srv/hub.db"),
        ("sqlite+aiosqlite:///file://localhost/srv/my%20hub.db?uri=true", "/srv/my hub.db"),
        ("sqlite+aiosqlite:///file:var/hub.db?uri=true", "var/hub.db"),
        # Without `uri=true` the driver takes `file:x.db` as a plain file name, and so does this.
        ("sqlite+aiosqlite:///file:x.db", "file:x.db"),
        ("sqlite+aiosqlite:///file:hub?mode=memory&uri=true", None),
        ("sqlite+aiosqlite:///file::memory:?uri=true", None),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite://", None),
        ("postgresql+asyncpg://hub@db/hub", None),
    ],
)
def test_the_file_a_sqlite_url_names(url: str, path: str | None) -> None:
    assert database.sqlite_file(url) == (None if path is None else Path(path))


async def test_a_database_named_by_uri_is_served_from_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`file:/srv/hub.db?uri=true` was taken for a plain name: migrating and serving made a
    `file:` directory in the working directory, and the checkpointer a second, empty database
    in it, so the real WAL was never copied back."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    db_file = tmp_path / "new dir" / "hub.db"
    url = f"sqlite+aiosqlite:///file:{quote(str(db_file))}?uri=true"
    upgrade(url)
    assert db_file.is_file()
    db = SqliteDatabase(url, checkpoint_every=0.05)

    def write(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
        conn.execute(text("INSERT INTO t VALUES ('x')"))

    try:
        await db.write(write)
        frames, copied = await _checkpointed(db_file)
    finally:
        await db.close()
    assert frames > 0
    assert copied == frames, "the checkpointer copied the real database's WAL back"
    assert list(workdir.iterdir()) == []
