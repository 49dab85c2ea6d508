"""Bulk seeding: load many users into one workspace without HTTP (`scim-hub seed`).

For benchmarks and capacity tests. Users are inserted with Core `executemany` in large
transactions (one per batch, 10,000 rows by default), as Microsoft Entra ID would have provisioned
them through the connector that `scim-hub init` made: core + enterprise attributes, unique
userNames (`given{i}.family{i}.{prefix}@{domain}`), externalIds `{prefix}-{i:08d}`, active.

The documents are written in the stored (canonical) form that `users.create` keeps, built
directly rather than through `attributes.canonicalise` (which costs ~100 µs a user: 100 s for a
million); the first document of every batch is checked against `canonicalise` so the two cannot
drift apart.

What is not created: cards, card fields, audit rows, activation emails and plugin events.
`hub.core.cards` has no bulk path (`sync_user` renders one card per call), so seeded users have no
card until an IdP update reaches them (then `cards.sync_user` creates it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError

from hub.core.attributes import canonicalise
from hub.core.clock import now_us
from hub.core.database import Database
from hub.core.errors import NotFound, Uniqueness
from hub.core.ids import new_id
from hub.core.models import connectors, users, workspaces
from hub.core.schema import USER_TYPE

JSON = dict[str, Any]
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DEFAULT_BATCH = 10_000

_TITLES = ("Engineer", "Senior Engineer", "Account Manager", "Designer", "Analyst", "Director")
_DEPARTMENTS = ("Engineering", "Sales", "Marketing", "Finance", "Support", "Legal", "Operations")
_OFFICES = (
    ("1 Microsoft Way", "Redmond", "WA", "98052", "US"),
    ("10 Bishopsgate", "London", "", "EC2N 4AY", "GB"),
    ("Friedrichstrasse 68", "Berlin", "", "10117", "DE"),
    ("2-1-1 Nihonbashi", "Tokyo", "", "103-0027", "JP"),
)


class SeedReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a seeding run did."""

    workspace: str
    users: int
    batch: int
    seconds: float
    users_per_second: float
    database_bytes_before: int
    database_bytes_after: int
    bytes_per_user: float
    first_user_name: str
    last_user_name: str
    cards: bool = False


def user_name(i: int, prefix: str = "seed", domain: str = "contoso.example") -> str:
    """The userName of seeded user number `i`."""
    return f"given{i}.family{i}.{prefix}@{domain}"


def user_document(i: int, prefix: str = "seed", domain: str = "contoso.example") -> JSON:
    """Seeded user `i` as stored: an Entra-shaped User, canonical form, without `active`."""
    given, family = f"Given{i}", f"Family{i}"
    name = user_name(i, prefix, domain)
    street, city, region, postcode, country = _OFFICES[i % len(_OFFICES)]
    address: JSON = {
        "type": "work",
        "formatted": f"{street}, {city}, {country}",
        "streetAddress": street,
        "locality": city,
        "postalCode": postcode,
        "country": country,
        "primary": False,
    }
    if region:
        address["region"] = region
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": f"{prefix}-{i:08d}",
        "userName": name,
        "displayName": f"{given} {family}",
        "title": _TITLES[i % len(_TITLES)],
        "emails": [{"primary": True, "type": "work", "value": name}],
        "phoneNumbers": [
            {"type": "work", "value": f"+1 425 555 {i % 10000:04d}"},
            {"type": "mobile", "value": f"+1 206 555 {(i * 7) % 10000:04d}"},
        ],
        "addresses": [address],
        "name": {"formatted": f"{given} {family}", "familyName": family, "givenName": given},
        ENTERPRISE_SCHEMA: {
            "employeeNumber": f"{i:08d}",
            "department": _DEPARTMENTS[i % len(_DEPARTMENTS)],
            "organization": "Contoso",
        },
    }


def check_document(doc: JSON) -> None:
    """Fail if `doc` is not exactly what `users.create` would have stored for it."""
    canonical = canonicalise(dict(doc), USER_TYPE)
    canonical.pop("active", None)
    if canonical != doc:
        raise AssertionError(f"seed document is not canonical: {doc!r} != {canonical!r}")


def _target(conn: Connection, workspace: str) -> tuple[int, int | None]:
    """(workspace pk, pk of its first live connector) of the workspace named `workspace`."""
    ws = conn.execute(select(workspaces.c.pk).where(workspaces.c.name == workspace)).scalar()
    if ws is None:
        raise NotFound(f"no workspace {workspace!r} (create it with `scim-hub init`)")
    connector = conn.execute(
        select(connectors.c.pk)
        .where(connectors.c.workspace_pk == ws, connectors.c.deleted.is_(None))
        .order_by(connectors.c.pk)
        .limit(1)
    ).scalar()
    return int(ws), None if connector is None else int(connector)


def database_bytes(conn: Connection) -> int:
    """Bytes the database holds: SQLite pages in use, or PostgreSQL's `pg_database_size`."""
    if conn.dialect.name == "sqlite":
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * size)
    return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def _insert_batch(
    conn: Connection,
    workspace_pk: int,
    connector_pk: int | None,
    first: int,
    count: int,
    prefix: str,
    domain: str,
) -> None:
    if conn.dialect.name == "sqlite":
        # A bigger page cache for the random inserts into the id index (this connection only).
        conn.exec_driver_sql("PRAGMA cache_size=-262144")
    now = now_us()
    rows = []
    for i in range(first, first + count):
        doc = user_document(i, prefix, domain)
        name = doc["userName"]
        rows.append(
            {
                "id": new_id(),
                "workspace_pk": workspace_pk,
                "connector_pk": connector_pk,
                "user_name": name,
                "user_name_key": name.lower(),
                "external_id": doc["externalId"],
                "active": True,
                "deleted": False,
                "data": doc,
                "version": 1,
                "created": now,
                "modified": now,
            }
        )
    conn.execute(users.insert(), rows)


async def seed_users(
    db: Database,
    workspace: str,
    count: int,
    *,
    batch: int = DEFAULT_BATCH,
    prefix: str = "seed",
    start: int = 0,
    domain: str = "contoso.example",
    progress: Callable[[int, float], None] | None = None,
) -> SeedReport:
    """Insert users `start` … `start + count - 1` into `workspace`, one transaction per batch.

    Raises:
        NotFound: no such workspace.
        Uniqueness: a seeded userName is already taken (use another `prefix` or `start`).
        ValueError: `count` or `batch` is below 1.
    """
    if count < 1 or batch < 1:
        raise ValueError("count and batch must be at least 1")
    workspace_pk, connector_pk = await db.read(_target, workspace)
    before = await db.read(database_bytes)
    started = time.perf_counter()
    done = 0
    while done < count:
        size = min(batch, count - done)
        check_document(user_document(start + done, prefix, domain))
        try:
            await db.write(
                _insert_batch, workspace_pk, connector_pk, start + done, size, prefix, domain
            )
        except IntegrityError as exc:
            raise Uniqueness(
                f"a userName between {user_name(start + done, prefix, domain)!r} and "
                f"{user_name(start + done + size - 1, prefix, domain)!r} already exists in "
                f"{workspace!r}: seed with another --prefix or --start"
            ) from exc
        done += size
        if progress is not None:
            progress(done, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    after = await db.read(database_bytes)
    return SeedReport(
        workspace=workspace,
        users=count,
        batch=batch,
        seconds=round(seconds, 3),
        users_per_second=round(count / seconds, 1) if seconds > 0 else 0.0,
        database_bytes_before=before,
        database_bytes_after=after,
        bytes_per_user=round((after - before) / count, 1),
        first_user_name=user_name(start, prefix, domain),
        last_user_name=user_name(start + count - 1, prefix, domain),
    )
