"""users: each manager's `$ref`, derived from its id, in the stored document

Revision ID: 0022
Revises: 0021

From this revision the hub stores the Enterprise User manager's `$ref` (RFC 7643 §4.3: "The URI
of the SCIM resource representing the User's manager. REQUIRED.") with the document, made from
`manager.value` as RFC 7643 §8.3 writes it, ``../Users/<id>``, whenever a manager is written
(`hub.core.manager`). This revision does the same for the users stored before: a manager with a
non-empty id gets its `$ref` in place of any it held (the running hub keeps a sent one naming the
same user, which takes the hub's base URL to tell; a revision does not know it, and the derived
one names that user too); a manager without an id loses a `$ref` sent alone, and one whose id is
empty is no manager. The version and `lastModified` stay as they were: no client changed the
user, the hub now shows what it held. Downgrading takes the derived `$ref` out again.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# Frozen copies of hub.core.schema.ENTERPRISE_SCHEMA and hub.core.manager as of this revision.
_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")
_BATCH = 5000

_users = sa.table(
    "users",
    sa.column("pk", sa.Integer),
    sa.column("data", sa.JSON().with_variant(JSONB(), "postgresql")),
)


def _ref(user_id: str) -> str:
    segment = user_id if _UNRESERVED.fullmatch(user_id) else quote(user_id, safe="")
    return f"../Users/{segment}"


def _with_ref(manager: dict[str, Any]) -> dict[str, Any]:
    value = manager.get("value")
    ref = _ref(value) if isinstance(value, str) and value else None
    made: dict[str, Any] = {}
    for key, held in manager.items():
        if key == "$ref" or (key == "value" and held == ""):
            continue
        made[key] = held
        if key == "value" and ref is not None:
            made["$ref"] = ref
    return made


def _without_ref(manager: dict[str, Any]) -> dict[str, Any]:
    value = manager.get("value")
    if isinstance(value, str) and value and manager.get("$ref") == _ref(value):
        return {key: held for key, held in manager.items() if key != "$ref"}
    return manager


def _rewritten(data: Any, change: Any) -> Any:
    """`data` with its manager changed by `change`, or None when that changes nothing."""
    extension = data.get(_ENTERPRISE) if isinstance(data, dict) else None
    manager = extension.get("manager") if isinstance(extension, dict) else None
    if not isinstance(manager, dict):
        return None
    made = change(manager)
    if made == manager:
        return None
    changed, result = dict(extension), dict(data)
    if made:
        changed["manager"] = made
    else:
        del changed["manager"]
    if changed:
        result[_ENTERPRISE] = changed
    else:
        del result[_ENTERPRISE]
    return result


def _rewrite(change: Any) -> None:
    """Store `change` applied to every user's manager, in batches of `_BATCH` users."""
    conn = op.get_bind()
    last = 0
    while True:
        batch = conn.execute(
            sa.select(_users.c.pk, _users.c.data)
            .where(_users.c.pk > last)
            .order_by(_users.c.pk)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        rows = [
            {"b_pk": pk, "b_data": made}
            for pk, data in batch
            if (made := _rewritten(data, change)) is not None
        ]
        if rows:
            conn.execute(
                _users.update()
                .where(_users.c.pk == sa.bindparam("b_pk"))
                .values(data=sa.bindparam("b_data")),
                rows,
            )
        last = batch[-1][0]


def upgrade() -> None:
    """Give every stored manager the `$ref` its id makes, and only that one."""
    _rewrite(_with_ref)


def downgrade() -> None:
    """Take out the `$ref`s this revision and the hub derived (earlier revisions kept none)."""
    _rewrite(_without_ref)
