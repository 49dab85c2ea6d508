"""extension_attributes: also what stored resources hold that the hub's own schemas lack

Revision ID: 0021
Revises: 0020

From this revision the hub describes, in `extension_attributes` under the schema's own URN, each
attribute a user or group stores that the hub's schemas do not define: a top-level one (the core
schema's), a sub-attribute of a core complex attribute, an attribute of the Enterprise User
extension or a sub-attribute of its `manager` (see `hub.core.extensions`). The running hub
records them as it stores them; this revision describes what users and groups stored before
hold, in the order they were stored, each typed as first sent, within the workspace's
`MAX_DESCRIBED` (the descriptions it holds count), so discovery shows them without waiting for
an IdP to send them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# Frozen copies of hub.core.extensions and hub.core.schema as of this revision.
_MAX_DESCRIBED = 1000
_MAX_NAME = 200
_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_MULTI = ("$ref", "display", "primary", "type", "value")
_COMMON: dict[str, tuple[str, ...] | None] = {
    "id": None,
    "externalId": None,
    "meta": ("created", "lastModified", "location", "resourceType", "version"),
}
#: The attributes each schema defines, by name: None for a simple one, else its sub-attributes.
_DEFINED: dict[str, dict[str, tuple[str, ...] | None]] = {
    _USER: {
        **_COMMON,
        "userName": None,
        "name": (
            "familyName",
            "formatted",
            "givenName",
            "honorificPrefix",
            "honorificSuffix",
            "middleName",
        ),
        "displayName": None,
        "nickName": None,
        "profileUrl": None,
        "title": None,
        "userType": None,
        "preferredLanguage": None,
        "locale": None,
        "timezone": None,
        "active": None,
        "password": None,
        "emails": _MULTI,
        "phoneNumbers": _MULTI,
        "ims": _MULTI,
        "photos": _MULTI,
        "addresses": (
            *_MULTI,
            "country",
            "formatted",
            "locality",
            "postalCode",
            "region",
            "streetAddress",
        ),
        "groups": _MULTI,
        "entitlements": _MULTI,
        "roles": _MULTI,
        "x509Certificates": _MULTI,
    },
    _GROUP: {**_COMMON, "displayName": None, "members": _MULTI},
    _ENTERPRISE: {
        "employeeNumber": None,
        "costCenter": None,
        "organization": None,
        "division": None,
        "department": None,
        "manager": ("$ref", "displayName", "value"),
    },
}
_LOWERED = {
    urn: {name.lower(): tuple(s.lower() for s in subs or ()) for name, subs in attrs.items()}
    for urn, attrs in _DEFINED.items()
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
            if sub_type is None or not _fits(sub) or sub.lower() in seen:
                continue
            seen.add(sub.lower())
            yield (rt, urn, name, sub, sub_type, sub_multi)


def _fits(name: str) -> bool:
    return len(name) <= _MAX_NAME and len(name.lower()) <= _MAX_NAME


def _undefined_in(rt: str, urn: str, name: str, value: Any) -> Iterator[Part]:
    if not _fits(name):
        return
    lowered = name.lower()
    defined = _LOWERED[urn].get(lowered)
    if defined is None:
        yield from _parts(rt, urn, name, value)
        return
    if not defined:
        return  # a simple attribute: none of its sub-attributes is described
    spelled = next(n for n in _DEFINED[urn] if n.lower() == lowered)
    for part in _parts(rt, urn, spelled, value):
        if part[3] and part[3].lower() not in defined:
            yield part


def _undefined(rt: str, doc: Any) -> Iterator[Part]:
    if not isinstance(doc, dict):
        return
    core = _USER if rt == "User" else _GROUP
    for key, value in doc.items():
        lowered = key.lower()
        if lowered == "schemas":
            continue
        if lowered.startswith("urn:"):
            if rt == "User" and lowered == _ENTERPRISE.lower() and isinstance(value, dict):
                for name, held in value.items():
                    if name.lower() != "schemas":
                        yield from _undefined_in(rt, _ENTERPRISE, name, held)
            continue  # a custom extension (revision 0019), or one the hub refuses
        yield from _undefined_in(rt, core, key, value)


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


_TABLE = sa.table(
    "extension_attributes",
    sa.column("workspace_pk", sa.Integer),
    sa.column("resource_type", sa.String),
    sa.column("urn_key", sa.String),
    sa.column("name_key", sa.String),
    sa.column("sub_key", sa.String),
    sa.column("urn", sa.String),
    sa.column("name", sa.String),
    sa.column("sub", sa.String),
    sa.column("type", sa.String),
    sa.column("multi_valued", sa.Boolean),
)


def upgrade() -> None:
    """Describe what stored users and groups hold that the hub's schemas do not define."""
    conn = op.get_bind()
    t = _TABLE
    known = {
        tuple(row)
        for row in conn.execute(
            sa.select(t.c.workspace_pk, t.c.resource_type, t.c.urn_key, t.c.name_key, t.c.sub_key)
        )
    }
    per_workspace: dict[int, int] = {}
    for workspace_pk, *_ in known:
        per_workspace[workspace_pk] = per_workspace.get(workspace_pk, 0) + 1
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for table, rt in (("users", "User"), ("groups", "Group")):
        for workspace_pk, data in _stored(conn, table):
            for rt_, urn, name, sub, kind, multi in _undefined(rt, data):
                key = (workspace_pk, rt_, urn.lower(), name.lower(), sub.lower())
                if key in known:
                    continue
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
        conn.execute(t.insert(), list(found.values()))


def downgrade() -> None:
    """Forget the descriptions of the hub's own schemas (earlier revisions do not show them)."""
    t = _TABLE
    own = [urn.lower() for urn in _DEFINED]
    op.get_bind().execute(t.delete().where(t.c.urn_key.in_(own)))
