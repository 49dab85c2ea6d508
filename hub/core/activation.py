"""Activation emails: invite a provisioned person to activate their account and card.

On provisioning (or reactivation) with the workspace's `send_activation_email` toggle on, the
user write's own transaction creates a one-time activation link and queues its email in the
outbox (`hub.core.outbox`), so the invitation commits with the user or not at all. A link is a
random nonce signed with the server secret (`hub.core.links`): the database holds the nonce only
while the email is queued and otherwise a digest, never anything that opens an account. A link
works once, until it expires (its lifetime starts when its email is sent), and dies when a newer
link is sent or the user is deprovisioned.

Following a link is two steps, so that mail scanners that fetch every link of a message cannot
use it up: `check` (the page the link opens; it changes nothing) and `activate` (the page's form;
marks the account activated and starts the owner's session).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import Connection, bindparam, exists, func, or_, select, update

from hub.core import audit, links, outbox, sessions
from hub.core.clock import now_us
from hub.core.errors import NotFound, ScimError
from hub.core.events import Event
from hub.core.models import activation_links, outbox_messages, users, workspaces
from hub.core.resources import JSON
from hub.core.sql import Prepared, PreparedInsert
from hub.core.tokens import Caller

#: How many users one admin request may send activation emails to.
MAX_USERS_PER_SEND: Final = 1000

_EMAILISH = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class LinkGone(ScimError):
    """The activation link was used, replaced, withdrawn or has expired."""

    status = 410


class LinkInfo(msgspec.Struct, frozen=True):
    """What a usable link's confirmation page shows: whose card, in which workspace."""

    name: str
    workspace: str


class Activated(msgspec.Struct, frozen=True):
    """A successful activation: the new session (secret) and what the page may show."""

    session_token: str
    user_pk: int
    workspace_pk: int
    name: str
    workspace: str


class SendResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """The outcome of an admin's send for one user."""

    user_id: str
    status: str
    message_id: str | None = None
    detail: str | None = None


class CardSettings(msgspec.Struct, frozen=True):
    """A workspace's card settings that concern activation."""

    send_activation_email: bool


# --------------------------------------------------------------------------- who and where


#: The longest address an invitation goes to (RFC 5321 §4.5.3.1.3: a path is at most 256
#: octets); a longer value cannot be an address, and the outbox's column holds no more.
_MAX_ADDRESS = 320


def recipient_of(data: dict[str, Any], user_name: str) -> str | None:
    """The address to invite: primary email, else a work one, else any, else an email userName."""
    emails = [
        e
        for e in data.get("emails") or []
        if isinstance(e, dict) and e.get("value") and len(str(e["value"])) <= _MAX_ADDRESS
    ]
    primary = [e for e in emails if e.get("primary") is True]
    work = [e for e in emails if str(e.get("type", "")).lower() == "work"]
    for candidates in (primary, work, emails):
        if candidates:
            return str(candidates[0]["value"])
    return user_name if _EMAILISH.match(user_name) and len(user_name) <= _MAX_ADDRESS else None


def display_name(data: dict[str, Any], user_name: str) -> str:
    """The name to greet the user by: displayName, name.formatted, given + family, userName."""
    raw_name = data.get("name")
    name: dict[str, Any] = raw_name if isinstance(raw_name, dict) else {}
    parts = [str(name.get(k)) for k in ("givenName", "familyName") if name.get(k)]
    for candidate in (data.get("displayName"), name.get("formatted"), " ".join(parts)):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return user_name


# --------------------------------------------------------------------------- queueing


def user_changed(
    conn: Connection,
    caller: Caller,
    user_pk: int,
    event: str,
    resource: JSON | None = None,
    *,
    readdressed: bool = False,
) -> list[Event]:
    """Queue or withdraw the user's activation email after a user write.

    Runs inside the user write's transaction. `provisioned`/`reactivated` queue an invitation
    when the workspace toggle is on and none is pending; `deprovisioned`/`deleted` cancel queued
    emails, kill unused links and end sessions; `updated` costs nothing (a hot path) unless it
    `readdressed` the user (changed their emails or userName): see `_readdressed`.
    `resource` is the user's SCIM resource as just written, if the caller has it (the user is
    then not read back).
    """
    if event == "updated" and readdressed and resource is not None:
        _readdressed(conn, caller, _written(user_pk, caller, resource, caller.workspace_name))
        return []
    if event in ("provisioned", "reactivated"):
        # The caller's token was read in this transaction, with the workspace's toggle.
        if caller.send_activation_email:
            user = (
                _user(conn, user_pk)
                if resource is None
                else _written(user_pk, caller, resource, caller.workspace_name)
            )
            # A user created by this very transaction has no link or email yet.
            fresh = event == "provisioned"
            if _is_active(user) and (fresh or not _pending(conn, user_pk)):
                _queue(conn, user, fresh=fresh)
    elif event in ("deprovisioned", "deleted"):
        withdraw(conn, user_pk, reason="user deprovisioned")
    return []


_READDRESS = Prepared(
    update(outbox_messages)
    .where(
        outbox_messages.c.user_pk == bindparam("b_user"),
        outbox_messages.c.purpose == outbox.ACTIVATION,
        outbox_messages.c.status == outbox.QUEUED,
    )
    .values(recipient=bindparam("b_recipient"))
)
_LATEST = Prepared(
    select(outbox_messages.c.status, outbox_messages.c.last_error)
    .where(
        outbox_messages.c.user_pk == bindparam("b_user"),
        outbox_messages.c.purpose == outbox.ACTIVATION,
    )
    .order_by(outbox_messages.c.pk.desc())
    .limit(1)
)


def _readdressed(conn: Connection, caller: Caller, user: _WrittenUser) -> None:
    """Follow a change of the user's address: an invitation is a credential.

    A queued invitation goes to the address the user has now, not the one it was queued with
    (an IdP correcting a mistyped email must not send the link to the wrong mailbox). A user
    whose invitation failed for want of any address gets one once an address appears.
    """
    recipient = recipient_of(user.data, user.user_name)
    _READDRESS.run(conn, b_user=user.pk, b_recipient=recipient)
    if recipient is None or not caller.send_activation_email or not _is_active(user):
        return
    latest = _LATEST.first(conn, b_user=user.pk)
    never_reached = latest is not None and tuple(latest) == (outbox.FAILED, outbox.NO_ADDRESS)
    if never_reached and not _pending(conn, user.pk):
        _queue(conn, user)


def withdraw(conn: Connection, user_pk: int, *, reason: str) -> None:
    """Cancel the user's queued activation emails, kill unused links and end their sessions."""
    outbox.cancel(conn, user_pk=user_pk, purpose=outbox.ACTIVATION, reason=reason)
    _invalidate_links(conn, user_pk)
    sessions.end_sessions(conn, user_pk)


_USER = Prepared(
    select(
        users.c.pk,
        users.c.id,
        users.c.workspace_pk,
        users.c.user_name,
        users.c.data,
        users.c.active,
        users.c.deleted,
        workspaces.c.name.label("workspace"),
    )
    .join(workspaces, workspaces.c.pk == users.c.workspace_pk)
    .where(users.c.pk == bindparam("b_user"))
)
_INSERT_LINK = PreparedInsert(
    activation_links.insert().values(
        digest=bindparam("b_digest"),
        workspace_pk=bindparam("b_ws"),
        user_pk=bindparam("b_user"),
        generation=bindparam("b_generation"),
        created=bindparam("b_now"),
    ),
    activation_links.c.pk,
)
#: A workspace's activation toggle (a SCIM write reads it with the caller's token).
_WORKSPACE = Prepared(
    select(workspaces.c.send_activation_email).where(workspaces.c.pk == bindparam("b_ws"))
)


class _WrittenUser(NamedTuple):
    """What `_USER` reads, taken from a user resource just written in this transaction."""

    pk: int
    id: str
    workspace_pk: int
    user_name: str
    data: JSON
    active: bool | None
    deleted: bool
    workspace: str


def _written(user_pk: int, caller: Caller, resource: JSON, workspace: str) -> _WrittenUser:
    active = resource.get("active")
    return _WrittenUser(
        user_pk,
        resource["id"],
        caller.workspace_pk,
        resource["userName"],
        resource,
        active if isinstance(active, bool) else None,
        False,
        workspace,
    )


def _user(conn: Connection, user_pk: int) -> Any:
    return _USER.first(conn, b_user=user_pk)


def _is_active(user: Any) -> bool:
    return not user.deleted and user.active is not False


def _pending(conn: Connection, user_pk: int) -> bool:
    """Whether an invitation is on its way or a sent link still works (then queue nothing)."""
    link = activation_links.c
    queued = exists().where(
        outbox_messages.c.user_pk == user_pk,
        outbox_messages.c.purpose == outbox.ACTIVATION,
        outbox_messages.c.status == outbox.QUEUED,
    )
    live_link = exists().where(
        link.user_pk == user_pk,
        link.used.is_(None),
        link.invalidated.is_(None),
        link.expires > now_us(),
    )
    return bool(conn.execute(select(or_(queued, live_link))).scalar())


def _queue(conn: Connection, user: Any, *, fresh: bool = False) -> str | None:
    generation = 1
    if not fresh:
        latest = conn.execute(
            select(func.max(activation_links.c.generation)).where(
                activation_links.c.user_pk == user.pk
            )
        ).scalar()
        generation = (latest or 0) + 1
    nonce = links.new_nonce()
    link_pk = _INSERT_LINK.run(
        conn,
        b_digest=links.stored_digest(nonce),
        b_ws=user.workspace_pk,
        b_user=user.pk,
        b_generation=generation,
        b_now=now_us(),
    )
    return outbox.enqueue(
        conn,
        workspace_pk=user.workspace_pk,
        user_pk=user.pk,
        purpose=outbox.ACTIVATION,
        # One email per link generation: a retried request cannot queue it twice.
        dedupe_key=f"{outbox.ACTIVATION}:{user.pk}:{generation}",
        recipient=recipient_of(user.data, user.user_name),
        payload={"name": display_name(user.data, user.user_name), "workspace": user.workspace},
        link_pk=link_pk,
        link_nonce=nonce,
        fresh=fresh,
    )


_INVALIDATE_LINKS = Prepared(
    update(activation_links)
    .where(
        activation_links.c.user_pk == bindparam("b_user"),
        activation_links.c.used.is_(None),
        activation_links.c.invalidated.is_(None),
    )
    .values(invalidated=bindparam("b_now"))
)


def _invalidate_links(conn: Connection, user_pk: int) -> None:
    _INVALIDATE_LINKS.run(conn, b_user=user_pk, b_now=now_us())


# --------------------------------------------------------------------------- admins


def send(conn: Connection, *, workspace_pk: int, user_ids: Sequence[str]) -> list[SendResult]:
    """Send (or resend) activation emails to users of a workspace, whatever the toggle says.

    A new link replaces the user's previous ones and any queued email is cancelled, so only
    the newest invitation works. Deprovisioned and unknown users are reported, not sent to.
    """
    results = []
    for user_id in dict.fromkeys(user_ids):  # a repeated id is sent once
        row = conn.execute(
            select(users.c.pk)
            .where(users.c.workspace_pk == workspace_pk, users.c.id == user_id)
            # Serialise concurrent sends for one user (PostgreSQL; SQLite has one writer).
            .with_for_update()
        ).first()
        if row is None:
            results.append(SendResult(user_id, "not_found", detail="no such user"))
            continue
        user = _user(conn, row.pk)
        if not _is_active(user):
            results.append(SendResult(user_id, "skipped", detail="the user is deprovisioned"))
            continue
        outbox.cancel(conn, user_pk=user.pk, purpose=outbox.ACTIVATION, reason="superseded")
        _invalidate_links(conn, user.pk)
        results.append(SendResult(user_id, "queued", message_id=_queue(conn, user)))
    return results


def workspace_settings(conn: Connection, workspace_pk: int) -> CardSettings:
    """Read a workspace's activation settings."""
    return CardSettings(send_activation_email=bool(_WORKSPACE.scalar(conn, b_ws=workspace_pk)))


def set_workspace_settings(
    conn: Connection, workspace_pk: int, *, send_activation_email: bool
) -> CardSettings:
    """Turn automatic activation emails on or off for a workspace; return the new settings."""
    conn.execute(
        update(workspaces)
        .where(workspaces.c.pk == workspace_pk)
        .values(send_activation_email=send_activation_email)
    )
    return CardSettings(send_activation_email=send_activation_email)


# --------------------------------------------------------------------------- the owner


def check(conn: Connection, link_token: str, *, key: bytes) -> LinkInfo:
    """Say whose account a link would activate, changing nothing (the page the link opens).

    `key` is the activation link key (`hub.core.secret.derive_key(…, ACTIVATION_LINKS)`).

    Raises:
        NotFound: no link has this token.
        LinkGone: the link was used, replaced, withdrawn, has expired or is no longer valid.
    """
    _, user = _usable(conn, link_token, key, lock=False)
    return LinkInfo(display_name(user.data, user.user_name), user.workspace)


def activate(conn: Connection, link_token: str, *, key: bytes, request_id: str = "") -> Activated:
    """Use an activation link: mark the account activated and start the owner's session.

    The owner's activation is an audit record of its own (actor: the user).

    Raises:
        NotFound: no link has this token.
        LinkGone: the link was used, replaced, withdrawn, has expired or is no longer valid.
    """
    link_pk, user = _usable(conn, link_token, key, lock=True)
    conn.execute(
        update(activation_links).where(activation_links.c.pk == link_pk).values(used=now_us())
    )
    name = display_name(user.data, user.user_name)
    session = sessions.start_session(conn, user.pk)
    audit.record(
        conn,
        workspace_pk=user.workspace_pk,
        actor_kind="owner",
        actor_id=user.id,
        request_id=request_id,
        resource_type="User",
        resource_id=user.id,
        action="activate",
        changes={},
    )
    return Activated(session, user.pk, user.workspace_pk, name, user.workspace)


def _usable(conn: Connection, link_token: str, key: bytes, *, lock: bool) -> tuple[int, Any]:
    """The link's pk and user if the link may be used now, else the reason it may not."""
    wanted = links.lookup_digest(link_token)
    if wanted is None:
        raise NotFound("this activation link is not valid")
    link = activation_links.c
    query = select(link.pk, link.used, link.invalidated, link.expires, link.user_pk).where(
        link.digest == wanted
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("this activation link is not valid")
    if not links.is_signed(key, link_token):
        # The nonce is right but not the signature: signed with an earlier server secret (or
        # forged by someone who saw a queued nonce).
        raise LinkGone("this activation link is no longer valid")
    if row.used is not None:
        raise LinkGone("this activation link has already been used")
    if row.invalidated is not None:
        raise LinkGone("this activation link was replaced by a newer one or withdrawn")
    # No expiry yet means its email was delivered but not yet recorded as sent: still valid.
    if row.expires is not None and row.expires <= now_us():
        raise LinkGone("this activation link has expired")
    user = _user(conn, row.user_pk)
    if not _is_active(user):
        raise LinkGone("this account is no longer active")
    return int(row.pk), user


def signed_in(conn: Connection, session_token: str) -> LinkInfo | None:
    """Whose live owner session this is (name and workspace), or None."""
    found = sessions.user_for_session(conn, session_token)
    if found is None:
        return None
    user = _user(conn, found[1])
    return LinkInfo(display_name(user.data, user.user_name), user.workspace)


def activated_at(conn: Connection, user_pk: int) -> int | None:
    """When the user first activated their account (microseconds), or None if never."""
    when = conn.execute(
        select(func.min(activation_links.c.used)).where(activation_links.c.user_pk == user_pk)
    ).scalar()
    return None if when is None else int(when)
