"""The audit trail: every change made over SCIM or the admin API, in the same transaction.

A record says when, in which workspace, who (a connector or an admin), which request, which
resource, what was done and what changed — attribute names and member ids, never values that could
be secrets (the hub stores no secrets in resources: passwords are dropped before storage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec
from sqlalchemy import Connection, bindparam, select

from hub.core.clock import now_us, to_iso
from hub.core.models import audit
from hub.core.sql import Prepared
from hub.core.tokens import Caller

ActorKind = Literal["connector", "admin", "owner", "system"]
#: The largest record key: `pk` is a 32-bit INTEGER on PostgreSQL.
MAX_PK = 2**31 - 1

_INSERT = Prepared(
    audit.insert().values(
        workspace_pk=bindparam("b_ws"),
        at=bindparam("b_at"),
        actor_kind=bindparam("b_kind"),
        actor_id=bindparam("b_actor"),
        request_id=bindparam("b_request"),
        resource_type=bindparam("b_type"),
        resource_id=bindparam("b_id"),
        action=bindparam("b_action"),
        changes=bindparam("b_changes", type_=audit.c.changes.type),
    ),
    json_params=("b_changes",),
)


class AuditEntry(msgspec.Struct, frozen=True):
    """One audit record as the admin API shows it."""

    id: int
    at: str
    actor_kind: str
    actor_id: str
    request_id: str
    resource_type: str
    resource_id: str
    action: str
    changes: dict[str, Any]


def record(
    conn: Connection,
    *,
    workspace_pk: int,
    actor_kind: ActorKind,
    actor_id: str,
    request_id: str,
    resource_type: str,
    resource_id: str,
    action: str,
    changes: Mapping[str, Any] | None = None,
) -> None:
    """Add an audit record inside the caller's transaction."""
    _INSERT.run(
        conn,
        b_ws=workspace_pk,
        b_at=now_us(),
        b_kind=actor_kind,
        b_actor=actor_id,
        b_request=request_id or "-",
        b_type=resource_type,
        b_id=resource_id[:64],
        b_action=action[:128],
        b_changes=dict(changes or {}),
    )


def by_connector(
    conn: Connection,
    caller: Caller,
    resource_type: str,
    resource_id: str,
    action: str,
    changes: Mapping[str, Any],
) -> None:
    """Record a change made over SCIM by the caller's connector, in its request."""
    record(
        conn,
        workspace_pk=caller.workspace_pk,
        actor_kind="connector",
        actor_id=caller.connector_id,
        request_id=caller.request_id,
        resource_type=resource_type,
        resource_id=resource_id,
        action=action,
        changes=changes,
    )


def changed_attributes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Names of the top-level attributes (and extension URNs) whose values differ."""
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k))


def entries(
    conn: Connection,
    *,
    workspace_pk: int,
    resource_id: str | None = None,
    actor_id: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """The workspace's audit records, newest first, optionally for one resource or actor."""
    stmt = select(audit).where(audit.c.workspace_pk == workspace_pk)
    if resource_id is not None:
        stmt = stmt.where(audit.c.resource_id == resource_id)
    if actor_id is not None:
        stmt = stmt.where(audit.c.actor_id == actor_id)
    if before is not None:
        if before <= 1:
            return []  # keys start at 1
        if before <= MAX_PK:  # a larger bound is no bound (and would overflow the column)
            stmt = stmt.where(audit.c.pk < before)
    rows: Iterable[Any] = conn.execute(stmt.order_by(audit.c.pk.desc()).limit(limit))
    return [
        AuditEntry(
            r.pk,
            to_iso(r.at),
            r.actor_kind,
            r.actor_id,
            r.request_id,
            r.resource_type,
            r.resource_id,
            r.action,
            r.changes,
        )
        for r in rows
    ]
