"""The provisioning log: every authenticated SCIM request, its outcome and error detail.

It answers an admin's "why did this user not get a card?". Requests are buffered in memory and
written in batches by a background task every half second, so the log costs the hot path an
append to a list, not a database write. The log is diagnostics, not state: a crash may lose its
last half second, never an acknowledged change (those are in the audit trail, written in the
same transaction as the change).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from sqlalchemy import (
    CompoundSelect,
    Connection,
    Select,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    union_all,
)

from hub.core.clock import now_us, to_iso
from hub.core.models import FAILURE_STATUS, activity, connectors
from hub.core.sql import Prepared

log = structlog.get_logger("hub.activity")

#: Flush interval of the background writer, and the most records kept waiting.
FLUSH_SECONDS = 0.5
MAX_PENDING = 50_000
#: The most records one transaction inserts: a backlog is written in several, so the write
#: lock is never held long against the SCIM writes waiting for it.
CHUNK = 500
#: Oldest records one pruning statement looks at, how often the writer prunes, and the most
#: statements one pruning round runs (so a long-neglected log is trimmed over several rounds).
PRUNE_CHUNK = 1000
PRUNE_EVERY_S = 60.0
PRUNE_ROUNDS = 500
#: The largest record key: `pk` is a 32-bit INTEGER on PostgreSQL.
MAX_PK = 2**31 - 1


class Entry(msgspec.Struct, frozen=True):
    """One request as it is recorded."""

    workspace_pk: int
    connector_pk: int | None
    at: int
    method: str
    path: str
    operation: str
    resource_type: str | None
    resource_id: str | None
    user_name: str | None
    status: int
    error: str | None
    request_id: str
    ms: int


class ActivityEntry(msgspec.Struct, frozen=True):
    """One request as the admin API and dashboard show it."""

    id: int
    at: str
    connector_id: str | None
    connector_name: str | None
    method: str
    path: str
    operation: str
    resource_type: str | None
    resource_id: str | None
    user_name: str | None
    status: int
    outcome: str
    error: str | None
    request_id: str


class Buffer:
    """Records waiting to be written; appended from the event loop only."""

    def __init__(self) -> None:
        self.pending: list[Entry] = []
        self.dropped = 0

    def add(self, entry: Entry) -> None:
        """Queue one record (dropping it if the writer is far behind)."""
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append(entry)

    def take(self) -> list[Entry]:
        """Everything queued so far."""
        taken, self.pending = self.pending, []
        return taken


def _row(binds: tuple[str, ...]) -> dict[str, Any]:
    """One record's VALUES: each column bound to the parameter of the same position."""
    return {
        name: bindparam(bind) for name, bind in zip(Entry.__struct_fields__, binds, strict=True)
    }


_BIND_NAMES = tuple(f"b_{name}" for name in Entry.__struct_fields__)
_INSERT = Prepared(activity.insert().values(_row(_BIND_NAMES)))
#: Records one INSERT statement carries. The writer runs on a thread: the database releases the
#: interpreter lock for every statement it steps, and taking it back from the event loop once
#: per record (thousands a second under load) cost every request ~0.02 to 0.05 CPU ms. 64 rows
#: of 13 values stay under the 999 parameters SQLite before 3.32 allows.
ROWS_PER_STATEMENT = 64
_ROW_BINDS = tuple(tuple(f"{bind}_{i}" for bind in _BIND_NAMES) for i in range(ROWS_PER_STATEMENT))
_INSERT_ROWS = Prepared(activity.insert().values([_row(binds) for binds in _ROW_BINDS]))
_FLAT_BINDS = tuple(bind for binds in _ROW_BINDS for bind in binds)


def write(conn: Connection, entries: list[Entry]) -> None:
    """Insert a batch of records: `ROWS_PER_STATEMENT` a statement, the rest one by one.

    Rows go to the driver as flat lists in the statements' parameter order: naming each of a
    record's 13 values and mapping them back to positions cost 2 to 3 of the 5 to 8 µs a
    record took.
    """
    rows = [_storable(msgspec.structs.astuple(e)) for e in entries]
    whole = len(rows) - len(rows) % ROWS_PER_STATEMENT
    for start in range(0, whole, ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        _INSERT_ROWS.run_values(conn, _FLAT_BINDS, [value for row in chunk for value in row])
    _INSERT.run_rows(conn, _BIND_NAMES, rows[whole:])


_OLDEST = (
    select(activity.c.pk, activity.c.at)
    .order_by(activity.c.pk)
    .limit(bindparam("b_limit"))
    .subquery()
)
_PRUNE = Prepared(
    delete(activity).where(
        activity.c.pk.in_(select(_OLDEST.c.pk).where(_OLDEST.c.at < bindparam("b_before")))
    )
)


def prune(conn: Connection, *, before: int, limit: int = PRUNE_CHUNK) -> int:
    """Delete the records older than `before` among the `limit` oldest; return how many went.

    Records are written in arrival order, so the lowest keys hold the oldest times: looking only
    at the head of the table needs no index on `at`, and a prune that finds nothing to delete
    reads `limit` rows, not the whole log.
    """
    return _PRUNE.run(conn, b_limit=limit, b_before=before)


def _storable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # One record echoing a client's U+0000 (an error detail) must not fail the whole batch:
    # PostgreSQL text cannot hold it.
    if any(value.__class__ is str and "\x00" in value for value in row):
        return tuple(
            value.replace("\x00", "\ufffd") if value.__class__ is str else value for value in row
        )
    return row


def start_writer(
    buffer: Buffer,
    run_write: Callable[[list[Entry]], Awaitable[None]],
    run_prune: Callable[[], Awaitable[int]] | None = None,
) -> Callable[[], Awaitable[None]]:
    """Start the background writer; returns a coroutine function that flushes and stops it.

    With `run_prune` (one `prune` statement, returning how many records went), the writer also
    drops expired records: at its first turn, then every `PRUNE_EVERY_S`.
    """
    stopping = asyncio.Event()
    losses = _Losses()

    async def flush() -> None:
        batch = buffer.take()
        for start in range(0, len(batch), CHUNK):
            chunk = batch[start : start + CHUNK]
            try:
                await run_write(chunk)
            except Exception as exc:
                losses.failed(len(chunk), exc)
            else:
                losses.written()

    async def prune() -> None:
        if run_prune is None:
            return
        for _ in range(PRUNE_ROUNDS):
            try:
                gone = await run_prune()
            except Exception as exc:
                log.warning("activity log pruning failed", error=repr(exc))
                return
            if gone < PRUNE_CHUNK:
                return

    async def loop() -> None:
        clock = asyncio.get_running_loop().time
        next_prune = clock()
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), FLUSH_SECONDS)
            await flush()
            if clock() >= next_prune and not stopping.is_set():
                await prune()
                next_prune = clock() + PRUNE_EVERY_S

    task = asyncio.get_running_loop().create_task(loop())

    async def stop() -> None:
        stopping.set()
        await task
        # What arrived while the last flush ran (or before the loop first ran) is written too.
        await flush()
        losses.stopped()

    return stop


class _Losses:
    """Records lost to failed writes since the last write that succeeded.

    An outage or a database refusing writes fails every flush, twice a second: the first failure
    of a spell is logged with its error, the others are counted and reported once when a write
    succeeds again (or the writer stops), so the log says what was lost without a line per flush.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.records = 0

    def failed(self, records: int, exc: Exception) -> None:
        """Count a batch that could not be written; log the first of a spell."""
        if not self.batches:
            log.warning(
                "activity log write failed; further failures are counted until one succeeds",
                records=records,
                error=repr(exc),
            )
        self.batches += 1
        self.records += records

    def written(self) -> None:
        """A batch was written: report the spell of failures it ends, if any."""
        if self.batches:
            log.warning("activity log writes resumed", **self._lost())

    def stopped(self) -> None:
        """The writer stops: report a spell of failures still going on."""
        if self.batches:
            log.warning("activity log stopped while its writes were failing", **self._lost())

    def _lost(self) -> dict[str, int]:
        lost = {"failed_batches": self.batches, "lost_records": self.records}
        self.batches = self.records = 0
        return lost


def entries(
    conn: Connection,
    *,
    workspace_pk: int,
    connector_id: str | None = None,
    outcome: str | None = None,
    user: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[ActivityEntry]:
    """The workspace's requests, newest first; `user` matches a userName or a resource id."""
    if before is not None and before <= 1:
        return []  # keys start at 1
    stmt = query(
        workspace_pk=workspace_pk,
        connector_id=connector_id,
        outcome=outcome,
        user=user,
        before=before,
    )
    rows: Any = conn.execute(stmt.limit(limit))
    return [_entry(r) for r in rows]


def query(
    *,
    workspace_pk: int,
    connector_id: str | None = None,
    outcome: str | None = None,
    user: str | None = None,
    before: int | None = None,
) -> Select[Any]:
    """The statement `entries` runs, newest first, without its limit."""
    bound = before is not None and before <= MAX_PK  # a larger bound is no bound
    stmt = (
        select(activity, connectors.c.id.label("connector_id"), connectors.c.name)
        .outerjoin(connectors, connectors.c.pk == activity.c.connector_pk)
        .where(activity.c.workspace_pk == workspace_pk)
    )
    if connector_id is not None:
        stmt = stmt.where(connectors.c.id == connector_id)
    # The bound written into the statement, as the partial index `ix_activity_errors` says it:
    # with a bound parameter, neither database could tell the index covers the query.
    failed = activity.c.status >= literal_column(str(FAILURE_STATUS))
    if outcome == "ok":
        stmt = stmt.where(~failed)
    elif outcome == "error":
        stmt = stmt.where(failed)
    if user:
        stmt = stmt.where(activity.c.pk.in_(_about(workspace_pk, user, before if bound else None)))
    if bound:
        stmt = stmt.where(activity.c.pk < before)
    return stmt.order_by(activity.c.pk.desc())


def _about(workspace_pk: int, user: str, before: int | None) -> CompoundSelect[Any]:
    """Keys of the records naming `user` (case-insensitive, RFC 7643 §4.1.1) or with its id.

    Two look-ups, one in each partial index. A single `OR` across the two columns (as before
    revision 0015) had SQLite walk every record of the workspace newest first.
    """
    named = select(activity.c.pk).where(
        activity.c.workspace_pk == workspace_pk,
        activity.c.user_name.is_not(None),
        func.lower(activity.c.user_name) == func.lower(user),
    )
    identified = select(activity.c.pk).where(
        activity.c.workspace_pk == workspace_pk, activity.c.resource_id == user
    )
    if before is not None:
        named = named.where(activity.c.pk < before)
        identified = identified.where(activity.c.pk < before)
    return union_all(named, identified)


def _entry(row: Any) -> ActivityEntry:
    return ActivityEntry(
        row.pk,
        to_iso(row.at),
        row.connector_id,
        row.name,
        row.method,
        row.path,
        row.operation,
        row.resource_type,
        row.resource_id,
        row.user_name,
        row.status,
        "ok" if row.status < FAILURE_STATUS else "error",
        row.error,
        row.request_id,
    )


def now() -> int:
    """The timestamp recorded for a request (microseconds)."""
    return now_us()
