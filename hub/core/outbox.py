"""The transactional email outbox and the sender that empties it.

A message is queued by the unit of work that decided to send it (`enqueue`), so it commits with
the user write or not at all: an acknowledged provisioning never loses its email. Each server
process runs one `Sender` task that claims due messages, delivers them and records the outcome:

* Claim: one transaction selects due rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several
  processes never take the same row; SQLite's single writer serialises claims anyway) and sets a
  lease (`claimed_until`) and `attempts + 1`. Delivery happens outside any transaction.
* Outcome: sent; or retried after an exponential backoff (`mail_retry_base_ms` doubling up to
  `mail_retry_max_ms`); or failed after `mail_max_attempts` (or at once on a permanent refusal)
  with the last error kept for admins.
* A crash between delivery and recording leaves the lease to expire and the message is sent
  again with the same Message-ID (derived from the row id), so the resend is recognisable: the
  guarantee is at-least-once with idempotent ids, never zero.

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
from hub.core.ids import new_id
from hub.core.mailer import (
    ActivationContent,
    DeliveryError,
    Mailer,
    activation_email,
    mailer_for,
    message_id,
)
from hub.core.models import activation_links, outbox_messages, users
from hub.core.sql import Prepared
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
    if not fresh:
        exists = conn.execute(
            select(outbox_messages.c.pk).where(outbox_messages.c.dedupe_key == dedupe_key)
        ).first()
        if exists is not None:
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
    result = conn.execute(
        update(outbox_messages)
        .where(
            outbox_messages.c.user_pk == user_pk,
            outbox_messages.c.purpose == purpose,
            outbox_messages.c.status == QUEUED,
        )
        .values(
            status=CANCELLED,
            last_error=reason,
            finished=now_us(),
            link_nonce=None,
            claimed_until=None,
        )
    )
    return int(result.rowcount)


# --------------------------------------------------------------------------- waking the sender

_senders: weakref.WeakSet[Sender] = weakref.WeakSet()
_hooked: weakref.WeakSet[Engine] = weakref.WeakSet()
_hook_lock = threading.Lock()


def wake_after_commit(conn: Connection) -> None:
    """Poke this process's senders when the current transaction commits (not if it rolls back)."""
    conn.info[_QUEUED_FLAG] = True
    engine = conn.engine
    with _hook_lock:
        if engine in _hooked:
            return
        event.listen(engine, "commit", _on_commit)
        event.listen(engine, "rollback", _on_rollback)
        _hooked.add(engine)


def _on_commit(conn: Connection) -> None:
    # Fired just before the COMMIT is sent; the sender's debounce covers that gap and its poll
    # covers any race that remains.
    if conn.info.pop(_QUEUED_FLAG, False):
        for sender in list(_senders):
            sender.poke()


def _on_rollback(conn: Connection) -> None:
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


def claim(conn: Connection, *, now: int, lease_us: int, limit: int) -> list[Due]:
    """Lease up to `limit` due messages to the caller and count the attempt.

    A message is due when queued, its `next_attempt` has come and no live lease holds it.
    """
    ob = outbox_messages.c
    pks = (
        conn.execute(
            select(ob.pk)
            .where(
                ob.status == QUEUED,
                ob.next_attempt <= now,
                or_(ob.claimed_until.is_(None), ob.claimed_until < now),
            )
            .order_by(ob.next_attempt, ob.pk)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    if not pks:
        return []
    conn.execute(
        update(outbox_messages)
        .where(ob.pk.in_(pks))
        .values(claimed_until=now + lease_us, attempts=ob.attempts + 1)
    )
    rows = conn.execute(
        select(ob.pk, ob.id, ob.purpose, ob.recipient, ob.payload, ob.link_nonce, ob.attempts)
        .where(ob.pk.in_(pks))
        .order_by(ob.pk)
    ).all()
    return [Due(*row) for row in rows]


def record(conn: Connection, results: Sequence[Result], *, now: int, policy: Policy) -> None:
    """Record delivery outcomes; only still-queued messages change (a cancellation stands)."""
    for result in results:
        if result.error is None:
            _mark_sent(conn, result.pk, now, policy.link_ttl_us)
        elif result.permanent or result.attempts >= policy.max_attempts:
            _finish(conn, result.pk, FAILED, now, error=result.error)
        else:
            _retry_later(conn, result, now + policy.backoff_us(result.attempts))


def _still_queued(pk: int) -> Any:
    return update(outbox_messages).where(
        outbox_messages.c.pk == pk, outbox_messages.c.status == QUEUED
    )


def _finish(conn: Connection, pk: int, status: str, now: int, *, error: str | None) -> bool:
    result = conn.execute(
        _still_queued(pk).values(
            status=status,
            finished=now,
            claimed_until=None,
            link_nonce=None,
            last_error=None if error is None else error[:_ERROR_LENGTH],
        )
    )
    return bool(result.rowcount)


def _mark_sent(conn: Connection, pk: int, now: int, link_ttl_us: int) -> None:
    if not _finish(conn, pk, SENT, now, error=None):
        return
    # The link's lifetime starts when it reaches the user, not when it was queued: an SMTP
    # outage must not eat into it.
    link_pk = select(outbox_messages.c.link_pk).where(outbox_messages.c.pk == pk)
    conn.execute(
        update(activation_links)
        .where(activation_links.c.pk == link_pk.scalar_subquery())
        .values(expires=now + link_ttl_us)
    )


def _retry_later(conn: Connection, result: Result, when: int) -> None:
    conn.execute(
        _still_queued(result.pk).values(
            next_attempt=when,
            claimed_until=None,
            last_error=(result.error or "")[:_ERROR_LENGTH],
        )
    )


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
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop as a task of the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="hub-outbox-sender")
        _senders.add(self)

    def poke(self) -> None:
        """Wake the loop now; safe from any thread (commit listeners run on database threads)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nothing to wake
            loop.call_soon_threadsafe(self._wake.set)

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the current round (up to `grace` seconds), then stop; leases cover the rest."""
        _senders.discard(self)
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

    async def _run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.run_once()
            except Exception:
                # The database may be down: keep the loop alive and try again at the next poll.
                log.exception("outbox round failed")
                handled = 0
            if handled >= self.policy.batch:
                continue  # more may be due right now
            await self._sleep()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.policy.poll_us / 1_000_000)
        self._wake.clear()
        # A short debounce gathers a burst of provisioning into one claim and lets the
        # transaction that poked us finish committing.
        await asyncio.sleep(0.02)

    async def run_once(self) -> int:
        """Claim, deliver and record one batch; return how many messages it handled."""
        due = await self.db.write(
            claim, now=now_us(), lease_us=self.policy.lease_us, limit=self.policy.batch
        )
        if not due:
            return 0
        results = await asyncio.gather(*(self._deliver(message) for message in due))
        await self.db.write(record, results, now=now_us(), policy=self.policy)
        return len(due)

    async def _deliver(self, due: Due) -> Result:
        msg_id = message_id(due.id, self.settings.mail_from)
        try:
            message = self._compose(due, msg_id)
            await self.mailer.deliver(message)
        except DeliveryError as exc:
            log.warning(
                "email not delivered", message_id=msg_id, attempt=due.attempts, error=str(exc)
            )
            return Result(due.pk, due.attempts, str(exc), exc.permanent)
        except Exception as exc:
            log.exception("email delivery crashed", message_id=msg_id)
            return Result(due.pk, due.attempts, f"internal error: {type(exc).__name__}")
        log.info("email sent", message_id=msg_id, recipient=due.recipient, attempt=due.attempts)
        return Result(due.pk, due.attempts)

    def _compose(self, due: Due, msg_id: str) -> Any:
        if due.recipient is None:
            raise DeliveryError(NO_ADDRESS, permanent=True)
        if due.purpose != ACTIVATION or due.link_nonce is None:
            raise DeliveryError(f"cannot render a {due.purpose!r} message", permanent=True)
        content = ActivationContent(
            name=str(due.payload.get("name") or due.recipient),
            workspace=str(due.payload.get("workspace") or ""),
            link=f"{self._link_base}{links.token_for(self._link_key, due.link_nonce)}",
        )
        return activation_email(
            content, recipient=due.recipient, mail_from=self.settings.mail_from, msg_id=msg_id
        )


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
