"""extension_attributes: what the workspace's custom extensions hold, for discovery

Revision ID: 0019
Revises: 0018

From this revision every attribute a user or group stores under a custom extension (a URN the
hub has no schema for, such as Entra ID's `…:extension:CustomExtensionName:2.0:User`) is
recorded in `extension_attributes` (see `hub.core.models.ExtensionAttribute`), so `/Schemas`
and `/ResourceTypes` can describe the extension. This revision fills it from the stored users
and groups, in the order they were stored, so each attribute takes the type it was first sent
with (an integer one later holding a fraction is a decimal), as the running hub records it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# Frozen copies of hub.core.extensions as of this revision.
_MAX_DESCRIBED = 1000
_MAX_NAME = 200
_MAX_URN = 512
_STANDARD = ("urn:ietf:params:scim:schemas:core:", "urn:ietf:params:scim:api:")
_OWN = {
    "User": ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user",),
    "Group": (),
}
_BATCH = 5000

Part = tuple[str, str, str, str, str, bool]


def _scalar_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    return None


def _parts(rt: str, urn: str, name: str, value: Any) -> Iterator[Part]:
    multi = isinstance(value, list)
    present = [v for v in (value if multi else [value]) if v is not None]
    if not present:
        return
    complex_values = [v for v in present if isinstance(v, dict)]
    if not complex_values:
        scalar = _scalar_type(present[0])
        if scalar is not None:
            yield (rt, urn, name, "", scalar, multi)
        return
    yield (rt, urn, name, "", "complex", multi)
    seen: set[str] = set()
    for element in complex_values:
        for sub, held in element.items():
            sub_multi = isinstance(held, list)
            first = next((v for v in held if v is not None), None) if sub_multi else held
            sub_type = _scalar_type(first)
            if sub_type is None or len(sub) > _MAX_NAME or sub.lower() in seen:
                continue
            seen.add(sub.lower())
            yield (rt, urn, name, sub, sub_type, sub_multi)


def _described(rt: str, doc: Any) -> Iterator[Part]:
    if not isinstance(doc, dict):
        return
    for urn, value in doc.items():
        lowered = urn.lower()
        if (
            not lowered.startswith("urn:")
            or lowered.startswith(_STANDARD)
            or lowered in _OWN[rt]
            or not isinstance(value, dict)
            or len(urn) > _MAX_URN
        ):
            continue
        for name, held in value.items():
            if len(name) <= _MAX_NAME:
                yield from _parts(rt, urn, name, held)


def _stored(conn: sa.Connection, name: str) -> Iterator[tuple[int, Any]]:
    """(workspace_pk, data) of every row of `name`, in the order the rows were stored."""
    rows = sa.table(
        name,
        sa.column("pk", sa.Integer),
        sa.column("workspace_pk", sa.Integer),
        sa.column("data", sa.JSON),
    )
    last = 0
    while True:
        batch = conn.execute(
            sa.select(rows.c.pk, rows.c.workspace_pk, rows.c.data)
            .where(rows.c.pk > last)
            .order_by(rows.c.pk)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        for _, workspace_pk, data in batch:
            yield workspace_pk, data
        last = batch[-1][0]


def upgrade() -> None:
    """Create `extension_attributes` and describe what stored users and groups hold."""
    described = op.create_table(
        "extension_attributes",
        sa.Column(
            "workspace_pk",
            sa.Integer(),
            sa.ForeignKey("workspaces.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("resource_type", sa.String(16), nullable=False),
        sa.Column("urn_key", sa.String(512), nullable=False),
        sa.Column("name_key", sa.String(200), nullable=False),
        sa.Column("sub_key", sa.String(200), nullable=False),
        sa.Column("urn", sa.String(512), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sub", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("multi_valued", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_pk", "resource_type", "urn_key", "name_key", "sub_key"),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    found: dict[tuple[int, str, str, str, str], dict[str, Any]] = {}
    per_workspace: dict[int, int] = {}
    for table, rt in (("users", "User"), ("groups", "Group")):
        for workspace_pk, data in _stored(conn, table):
            for rt_, urn, name, sub, kind, multi in _described(rt, data):
                key = (workspace_pk, rt_, urn.lower(), name.lower(), sub.lower())
                if key in found:
                    if found[key]["type"] == "integer" and kind == "decimal":
                        found[key]["type"] = kind  # as the running hub widens it
                    continue
                if per_workspace.get(workspace_pk, 0) >= _MAX_DESCRIBED:
                    continue
                per_workspace[workspace_pk] = per_workspace.get(workspace_pk, 0) + 1
                found[key] = {
                    "workspace_pk": workspace_pk,
                    "resource_type": rt_,
                    "urn_key": key[2],
                    "name_key": key[3],
                    "sub_key": key[4],
                    "urn": urn,
                    "name": name,
                    "sub": sub,
                    "type": kind,
                    "multi_valued": multi,
                }
    if found:
        conn.execute(described.insert(), list(found.values()))


def downgrade() -> None:
    """Drop `extension_attributes`."""
    op.drop_table("extension_attributes")
