"""The transactional email outbox and the sender that empties it.

A message is queued by the unit of work that decided to send it (`enqueue`), so it commits with
the user write or not at all: an acknowledged provisioning never loses its email. Each server
process runs one `Sender` task that claims due messages, delivers them and records the outcome:

* Claim: one `UPDATE … RETURNING` statement leases due rows (`claimed_until`) and counts the
  attempt; its subquery picks them `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several processes
  never take the same row (SQLite's single writer serialises claims anyway). Delivery happens
  outside any transaction: the batch is composed, then handed to the mailer in one call.
* Outcome: sent; or retried after an exponential backoff (`mail_retry_base_ms` doubling up to
  `mail_retry_max_ms`); or failed after `mail_max_attempts` (or at once on a permanent refusal)
  with the last error kept for admins. A batch's outcomes are recorded with one executemany per
  kind of outcome; every statement here is a `Prepared` one, built once.
* A crash between delivery and recording leaves the lease to expire and the message is sent
  again with the same Message-ID (derived from the row id), so the resend is recognisable: the
  guarantee is at-least-once with idempotent ids, never zero. A process that lives on after
  the database refused to record outcomes (disk full, busy) keeps them and records them before
  it claims again, so only a crash causes a resend.

The sender wakes within milliseconds of a commit that queued mail (a commit listener pokes it)
and otherwise polls every `mail_poll_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import msgspec
import structlog
from sqlalchemy import Connection, Engine, bindparam, event, func, or_, select, update

from hub.core import links, secret
from hub.core.clock import now_us, to_iso
from hub.core.database import Database
from hub.core.errors import Unavailable
from hub.core.ids import new_id
from hub.core.mailer import (
    ActivationContent,
    Composer,
    DeliveryError,
    Email,
    Mailer,
    mailer_for,
    message_id,
)
from hub.core.models import activation_links, outbox_messages, users
from hub.core.sql import Prepared
from hub.logging import log_info
from hub.settings import Settings

log = structlog.get_logger("hub.outbox")

QUEUED: Final = "queued"
SENT: Final = "sent"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
STATUSES: Final = (QUEUED, SENT, FAILED, CANCELLED)
ACTIVATION: Final = "activation"
NO_ADDRESS: Final = "no email address"

_QUEUED_FLAG: Final = "hub.outbox.queued"
_ERROR_LENGTH: Final = 2000


# --------------------------------------------------------------------------- queueing


_INSERT = Prepared(
    outbox_messages.insert().values(
        id=bindparam("b_id"),
        workspace_pk=bindparam("b_ws"),
        user_pk=bindparam("b_user"),
        link_pk=bindparam("b_link"),
        purpose=bindparam("b_purpose"),
        dedupe_key=bindparam("b_dedupe"),
        status=QUEUED,
        recipient=bindparam("b_recipient"),
        payload=bindparam("b_payload", type_=outbox_messages.c.payload.type),
        link_nonce=bindparam("b_nonce"),
        attempts=0,
        next_attempt=bindparam("b_now"),
        created=bindparam("b_now"),
    ),
    json_params=("b_payload",),
)
_BY_DEDUPE = Prepared(
    select(outbox_messages.c.pk).where(outbox_messages.c.dedupe_key == bindparam("b_dedupe"))
)
_CANCEL = Prepared(
    update(outbox_messages)
    .where(
        outbox_messages.c.user_pk == bindparam("b_user"),
        outbox_messages.c.purpose == bindparam("b_purpose"),
        outbox_messages.c.status == QUEUED,
    )
    .values(
        status=CANCELLED,
        last_error=bindparam("b_reason"),
        finished=bindparam("b_now"),
        link_nonce=None,
        claimed_until=None,
    )
)


def enqueue(
    conn: Connection,
    *,
    workspace_pk: int,
    user_pk: int,
    purpose: str,
    dedupe_key: str,
    recipient: str | None,
    payload: dict[str, Any],
    link_pk: int | None = None,
    link_nonce: str | None = None,
    fresh: bool = False,
) -> str | None:
    """Queue a message in the caller's transaction; return its id, or None if already queued.

    `dedupe_key` names the message's intent (purpose, user, link generation): queueing the
    same intent twice is a no-op, so a retried request never sends a second email. `fresh`
    says the message's user was created by this transaction, so nothing can be queued yet.
    """
    if not fresh and _BY_DEDUPE.first(conn, b_dedupe=dedupe_key) is not None:
        return None
    outbox_id = new_id()
    now = now_us()
    _INSERT.run(
        conn,
        b_id=outbox_id,
        b_ws=workspace_pk,
        b_user=user_pk,
        b_link=link_pk,
        b_purpose=purpose,
        b_dedupe=dedupe_key,
        b_recipient=recipient,
        b_payload=payload,
        b_nonce=link_nonce,
        b_now=now,
    )
    wake_after_commit(conn)
    return outbox_id


def cancel(conn: Connection, *, user_pk: int, purpose: str, reason: str) -> int:
    """Cancel a user's queued messages of one purpose (with `reason`); return how many.

    A message already handed to the mail server by a sender cannot be recalled; its outcome is
    then recorded only if it is still queued, so the cancellation stands.
    """
    return _CANCEL.run(conn, b_user=user_pk, b_purpose=purpose, b_reason=reason, b_now=now_us())


# --------------------------------------------------------------------------- waking the sender

#: This process's running senders (a tuple: commit listeners on database threads iterate it).
_senders: tuple[Sender, ...] = ()
_hooked: weakref.WeakSet[Engine] = weakref.WeakSet()
_hook_lock = threading.Lock()


def wake_after_commit(conn: Connection) -> None:
    """Poke this process's senders when the current transaction commits (not if it rolls back)."""
    conn.info[_QUEUED_FLAG] = True
    engine = conn.engine
    if engine in _hooked:
        return
    with _hook_lock:
        if engine in _hooked:
            return
        event.listen(engine, "commit", _on_commit)
        event.listen(engine, "rollback", _on_rollback)
        _hooked.add(engine)


def _register(sender: Sender, *, running: bool) -> None:
    global _senders
    with _hook_lock:
        others = tuple(s for s in _senders if s is not sender)
        _senders = (*others, sender) if running else others


def _on_commit(conn: Connection) -> None:
    # Fired just before the COMMIT is sent; the sender's debounce covers that gap and its poll
    # covers any race that remains.
    if conn.info.pop(_QUEUED_FLAG, False):
        for sender in _senders:
            sender.poke()


def _on_rollback(conn: Connection) -> None:
    # A connection invalidated under its transaction (a session the server ended) lost its
    # `info` with it, and touching `info` then raises PendingRollbackError: that replaced the
    # lost connection's error, and its request answered 500 instead of 503.
    if not conn.invalidated:
        conn.info.pop(_QUEUED_FLAG, None)


# --------------------------------------------------------------------------- claiming and recording


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """How the sender paces itself; all durations in microseconds."""

    max_attempts: int = 10
    retry_base_us: int = 5_000_000
    retry_max_us: int = 3_600_000_000
    lease_us: int = 120_000_000
    poll_us: int = 1_000_000
    batch: int = 20
    link_ttl_us: int = 7 * 24 * 3600 * 1_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy the settings describe."""
        return cls(
            max_attempts=settings.mail_max_attempts,
            retry_base_us=settings.mail_retry_base_ms * 1000,
            retry_max_us=settings.mail_retry_max_ms * 1000,
            lease_us=settings.mail_lease_ms * 1000,
            poll_us=settings.mail_poll_ms * 1000,
            batch=settings.mail_batch_size,
            link_ttl_us=settings.activation_link_ttl_hours * 3600 * 1_000_000,
        )

    def backoff_us(self, attempts: int) -> int:
        """Delay before the next try after `attempts` failed ones: base·2^(n-1), capped."""
        exponent = min(max(attempts - 1, 0), 40)
        return int(min(self.retry_base_us * 2**exponent, self.retry_max_us))


class Due(msgspec.Struct, frozen=True):
    """A claimed message, everything needed to render and deliver it."""

    pk: int
    id: str
    purpose: str
    recipient: str | None
    payload: dict[str, Any]
    link_nonce: str | None
    attempts: int


class Result(msgspec.Struct, frozen=True):
    """What happened to one delivery: `error` None means sent."""

    pk: int
    attempts: int
    error: str | None = None
    permanent: bool = False


_ob = outbox_messages.c
#: Lease due messages and count the attempt in one statement; PostgreSQL skips rows another
#: sender holds locked (SQLite has one writer, which serialises claims anyway).
_CLAIM = Prepared(
    update(outbox_messages)
    .where(
        _ob.pk.in_(
            select(_ob.pk)
            .where(
                _ob.status == QUEUED,
                _ob.next_attempt <= bindparam("b_now"),
                or_(_ob.claimed_until.is_(None), _ob.claimed_until < bindparam("b_now_again")),
            )
            .order_by(_ob.next_attempt, _ob.pk)
            .limit(bindparam("b_limit"))
            .with_for_update(skip_locked=True)
        )
    )
    .values(claimed_until=bindparam("b_until"), attempts=_ob.attempts + 1)
    .returning(
        _ob.pk, _ob.id, _ob.purpose, _ob.recipient, _ob.payload, _ob.link_nonce, _ob.attempts
    )
)
#: Outcomes are recorded only while the message is still queued: a cancellation stands.
_FINISH = Prepared(
    update(outbox_messages)
    .where(_ob.pk == bindparam("b_pk"), _ob.status == QUEUED)
    .values(
        status=bindparam("b_status"),
        finished=bindparam("b_now"),
        claimed_until=None,
        link_nonce=None,
        last_error=bindparam("b_error"),
    )
)
_RETRY = Prepared(
    update(outbox_messages)
    .where(_ob.pk == bindparam("b_pk"), _ob.status == QUEUED)
    .values(next_attempt=bindparam("b_when"), claimed_until=None, last_error=bindparam("b_error"))
)
#: A link's lifetime starts when its email reaches the user, not when it was queued: an SMTP
#: outage must not eat into it. Run before `_FINISH`, hence "still queued".
_LINK_STARTS = Prepared(
    update(activation_links)
    .where(
        activation_links.c.pk
        == select(_ob.link_pk)
        .where(_ob.pk == bindparam("b_pk"), _ob.status == QUEUED)
        .scalar_subquery()
    )
    .values(expires=bindparam("b_expires"))
)


def claim(conn: Connection, *, now: int, lease_us: int, limit: int) -> list[Due]:
    """Lease up to `limit` due messages to the caller and count the attempt.

    A message is due when queued, its `next_attempt` has come and no live lease holds it.
    """
    rows = _CLAIM.all(conn, b_now=now, b_now_again=now, b_limit=limit, b_until=now + lease_us)
    return sorted((Due(*row) for row in rows), key=lambda due: due.pk)


def record(conn: Connection, results: Sequence[Result], *, now: int, policy: Policy) -> None:
    """Record delivery outcomes; only still-queued messages change (a cancellation stands)."""
    sent, finished, retried = [], [], []
    for result in results:
        if result.error is None:
            sent.append({"b_pk": result.pk, "b_expires": now + policy.link_ttl_us})
            finished.append({"b_pk": result.pk, "b_status": SENT, "b_now": now, "b_error": None})
        elif result.permanent or result.attempts >= policy.max_attempts:
            error = result.error[:_ERROR_LENGTH]
            finished.append({"b_pk": result.pk, "b_status": FAILED, "b_now": now, "b_error": error})
        else:
            when = now + policy.backoff_us(result.attempts)
            error = result.error[:_ERROR_LENGTH]
            retried.append({"b_pk": result.pk, "b_when": when, "b_error": error})
    _LINK_STARTS.run_many(conn, sent)
    _FINISH.run_many(conn, finished)
    _RETRY.run_many(conn, retried)


# --------------------------------------------------------------------------- admins' view


class MessageInfo(msgspec.Struct, frozen=True):
    """An outbox message as admins see it: never the link or its token."""

    id: str
    purpose: str
    user_id: str | None
    user_name: str | None
    recipient: str | None
    status: str
    attempts: int
    last_error: str | None
    created: str
    next_attempt: str | None
    finished: str | None


def list_messages(
    conn: Connection,
    *,
    workspace_pk: int,
    status: str | None = None,
    user_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[MessageInfo]]:
    """Return `(total, page)` of a workspace's messages, newest first, optionally filtered."""
    ob = outbox_messages.c
    where = [ob.workspace_pk == workspace_pk]
    if status is not None:
        where.append(ob.status == status)
    if user_id is not None:
        where.append(users.c.id == user_id)
    joined = outbox_messages.outerjoin(users, users.c.pk == ob.user_pk)
    total = conn.execute(select(func.count()).select_from(joined).where(*where)).scalar_one()
    rows = conn.execute(
        select(
            ob.id,
            ob.purpose,
            users.c.id,
            users.c.user_name,
            ob.recipient,
            ob.status,
            ob.attempts,
            ob.last_error,
            ob.created,
            ob.next_attempt,
            ob.finished,
        )
        .select_from(joined)
        .where(*where)
        .order_by(ob.pk.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return int(total), [_info(row) for row in rows]


def _info(row: Any) -> MessageInfo:
    pending = row[5] == QUEUED
    return MessageInfo(
        id=row[0],
        purpose=row[1],
        user_id=row[2],
        user_name=row[3],
        recipient=row[4],
        status=row[5],
        attempts=row[6],
        last_error=row[7],
        created=to_iso(row[8]),
        next_attempt=to_iso(row[9]) if pending else None,
        finished=to_iso(row[10]) if row[10] is not None else None,
    )


# --------------------------------------------------------------------------- the sender


class Sender:
    """One process's delivery loop over the shared outbox."""

    def __init__(self, db: Database, settings: Settings, mailer: Mailer | None = None) -> None:
        self.db = db
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.mailer = mailer if mailer is not None else mailer_for(settings)
        # Read (or create) the server secret now: a problem with it stops the start-up.
        self._link_key = secret.derive_key(settings, secret.ACTIVATION_LINKS)
        self._link_base = f"{settings.base_url.rstrip('/')}/activate/"
        self._composer = Composer(settings.mail_from)
        self._wake = asyncio.Event()
        self._poked = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        #: Outcomes delivered but not yet recorded (the database refused the write): recorded
        #: before the next claim, so a message that went out is not sent again when its lease
        #: lapses while this process lives.
        self._unrecorded: list[Result] = []

    def start(self) -> None:
        """Start the loop as a task of the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="hub-outbox-sender")
        _register(self, running=True)

    def poke(self) -> None:
        """Wake the loop now; safe from any thread (commit listeners run on database threads).

        A burst of commits schedules one wake-up, not one per commit: `_poked` stays set until
        the loop has run it (a race only costs a spare wake-up).
        """
        loop = self._loop
        if self._poked or loop is None or loop.is_closed():
            return
        self._poked = True
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nothing to wake
            loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._poked = False
        self._wake.set()

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the current round (up to `grace` seconds), then stop; leases cover the rest."""
        _register(self, running=False)
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unrecorded:  # delivered, not yet recorded: once more, or the lease covers them
            try:
                await self.db.write_now(record, self._unrecorded, now=now_us(), policy=self.policy)
            except Exception as exc:
                log.warning(
                    "outcomes not recorded", messages=len(self._unrecorded), error=repr(exc)
                )
            else:
                self._unrecorded = []
        await self.mailer.close()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.run_once()
            except Unavailable as exc:
                # The database is down, read-only or full, as a request would be told (503):
                # one line, not a traceback each poll; the next round tries again.
                log.warning("outbox round failed", error=exc.detail)
                handled = 0
            except Exception:
                # Keep the loop alive and try again at the next poll.
                log.exception("outbox round failed")
                handled = 0
            if handled >= self.policy.batch:
                continue  # more may be due right now
            await self._sleep()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.policy.poll_us / 1_000_000)
        self._wake.clear()
        if self._stopping:
            return  # woken to stop: no debounce (every shutdown waited 20 ms for it)
        # A short debounce gathers a burst of provisioning into one claim and lets the
        # transaction that poked us finish committing.
        await asyncio.sleep(0.02)

    async def run_once(self) -> int:
        """Claim, deliver and record one batch; return how many messages it handled."""
        # A claim and a record are a few prepared statements over at most `batch` rows: short
        # units, run without a thread hand-off where the database allows it.
        if self._unrecorded:
            await self.db.write_now(record, self._unrecorded, now=now_us(), policy=self.policy)
            self._unrecorded = []
        due = await self.db.write_now(
            claim, now=now_us(), lease_us=self.policy.lease_us, limit=self.policy.batch
        )
        if not due:
            return 0
        self._unrecorded = await self._deliver(due)
        await self.db.write_now(record, self._unrecorded, now=now_us(), policy=self.policy)
        self._unrecorded = []
        return len(due)

    async def _deliver(self, due: Sequence[Due]) -> list[Result]:
        """Compose the batch, hand it to the mailer in one call, and say what became of each."""
        results: list[Result] = []
        ready: list[tuple[Due, Email]] = []
        for message in due:
            try:
                ready.append((message, self._compose(message)))
            except DeliveryError as exc:
                results.append(self._failed(message, exc))
            except Exception as exc:
                log.exception("email delivery crashed", outbox_id=message.id)
                results.append(Result(message.pk, message.attempts, _internal(exc)))
        if not ready:
            return results
        try:
            outcomes = await self.mailer.deliver([email for _, email in ready])
        except Exception as exc:
            log.exception("email delivery crashed")
            outcomes = [DeliveryError(_internal(exc))] * len(ready)
        for (message, email), error in zip(ready, outcomes, strict=True):
            if error is not None:
                results.append(self._failed(message, error, email.msg_id))
                continue
            log_info(
                log,
                "email sent",
                message_id=email.msg_id,
                recipient=message.recipient,
                attempt=message.attempts,
            )
            results.append(Result(message.pk, message.attempts))
        return results

    def _failed(self, due: Due, exc: DeliveryError, msg_id: str | None = None) -> Result:
        log.warning(
            "email not delivered",
            message_id=msg_id or message_id(due.id, self.settings.mail_from),
            attempt=due.attempts,
            error=str(exc),
        )
        return Result(due.pk, due.attempts, str(exc), exc.permanent)

    def _compose(self, due: Due) -> Email:
        if due.recipient is None:
            raise DeliveryError(NO_ADDRESS, permanent=True)
        if due.purpose != ACTIVATION or due.link_nonce is None:
            raise DeliveryError(f"cannot render a {due.purpose!r} message", permanent=True)
        content = ActivationContent(
            name=str(due.payload.get("name") or due.recipient),
            workspace=str(due.payload.get("workspace") or ""),
            link=f"{self._link_base}{links.token_for(self._link_key, due.link_nonce)}",
        )
        return self._composer.activation(
            content,
            recipient=due.recipient,
            msg_id=message_id(due.id, self.settings.mail_from),
        )


def _internal(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}"


class _HubLike(Protocol):
    """What `start_sender` needs of the web layer's `Hub` (core cannot import it)."""

    @property
    def db(self) -> Database: ...

    @property
    def settings(self) -> Settings: ...


def start_sender(hub: _HubLike) -> Callable[[], Awaitable[None]]:
    """Start this process's sender on the running loop; return the coroutine function stopping it.

    Called once from the app's lifespan; `await stop()` before closing the database.
    """
    sender = Sender(hub.db, hub.settings)
    sender.start()
    return sender.stop
