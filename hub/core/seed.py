"""Bulk seeding: many users and their cards in one workspace, without HTTP (`scim-hub seed`).

For benchmarks and capacity tests. Users are inserted with Core `executemany` in large
transactions (one per batch, 10,000 rows by default), as Microsoft Entra ID would have provisioned
them through the workspace's first connector: core + enterprise attributes, unique userNames
(`given{i}.family{i}.{prefix}@{domain}`), externalIds `{prefix}-{i:08d}`, active.

The documents are written in the stored (canonical) form that `users.create` keeps, built
directly rather than through `attributes.canonicalise` (which costs ~100 µs a user: 100 s for a
million); the first document of every batch is checked against `canonicalise` so the two cannot
drift apart.

Each user gets the card provisioning over SCIM would give it, in the same transaction as the user
(`cards.create_many`: the connector's mapping with its overrides, the first matching template,
the same fields, locks and links), unless `cards=False`. What is not created: audit rows,
activation emails and plugin events (a benchmark must not queue a million invitations).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError

from hub.core import cards as card_service
from hub.core import tenants
from hub.core.attributes import canonicalise
from hub.core.clock import now_us
from hub.core.connectors import effective_mapping, overrides_of
from hub.core.database import Database
from hub.core.dialects import Dialect
from hub.core.errors import InvalidValue, NotFound, Uniqueness
from hub.core.ids import new_id
from hub.core.models import connectors, user_emails, users
from hub.core.schema import USER_TYPE
from hub.core.users import email_keys, render

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
    #: seeded cards that a template's rule gave a template
    templated: int = 0


def user_name(i: int, prefix: str = "seed", domain: str = "contoso.example") -> str:
    """The userName of seeded user number `i`."""
    return f"given{i}.family{i}.{prefix}@{domain}"


def external_id(i: int, prefix: str = "seed") -> str:
    """The externalId of seeded user `i`."""
    return f"{prefix}-{i:08d}"


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
        "externalId": external_id(i, prefix),
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


class _Target(msgspec.Struct, frozen=True):
    workspace_pk: int
    #: the workspace's name as stored (the one asked for may be padded).
    workspace: str
    connector_pk: int | None
    idp: str | None
    overrides: Any


def _target(conn: Connection, workspace: str) -> _Target:
    """The workspace named `workspace` and its first live connector (pk, IdP, overrides)."""
    # Found as every other command finds it: names are stored stripped (`find_workspace`).
    found = tenants.find_workspace(conn, workspace)
    if found is None:
        raise NotFound(f"no workspace {workspace!r} (create it with `scim-hub init`)")
    ws = found.pk
    connector = conn.execute(
        select(connectors.c.pk, connectors.c.idp, connectors.c.overrides)
        .where(connectors.c.workspace_pk == ws, connectors.c.deleted.is_(None))
        .order_by(connectors.c.pk)
        .limit(1)
    ).first()
    if connector is None:
        return _Target(int(ws), found.name, None, None, None)
    return _Target(int(ws), found.name, int(connector.pk), connector.idp, connector.overrides)


def _card_mapping(target: _Target, dialects: Mapping[str, Dialect]) -> dict[str, str]:
    """The mapping SCIM requests of the target's connector fill cards through."""
    if target.idp is None:
        raise NotFound("the workspace has no connector: cards are filled through its mapping")
    dialect = dialects.get(target.idp)
    if dialect is None:
        raise InvalidValue(
            f"the connector's IdP plugin {target.idp!r} is not installed; "
            "install it or seed without cards"
        )
    return effective_mapping(dialect, overrides_of(target.overrides))


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
    target: _Target,
    mapping: Mapping[str, str] | None,
    first: int,
    count: int,
    prefix: str,
    domain: str,
) -> int:
    """Insert one batch of users (and their cards when `mapping` is given); return templated."""
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
                "workspace_pk": target.workspace_pk,
                "connector_pk": target.connector_pk,
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
    made = conn.execute(users.insert().returning(users.c.id, users.c.pk), rows)
    pks: dict[str, int] = {user_id: pk for user_id, pk in made}
    emails = [
        {"workspace_pk": target.workspace_pk, "value_key": key, "user_pk": pks[row["id"]]}
        for row in rows
        for key in email_keys(row["data"])
    ]
    if emails:
        conn.execute(user_emails.insert(), emails)
    if mapping is None:
        return 0
    # The resource `users.create` renders and hands to the card (base URL: only meta uses it).
    new_users = [
        card_service.NewUser(pks[row["id"]], render(SimpleNamespace(**row), "", None))
        for row in rows
    ]
    return card_service.create_many(conn, target.workspace_pk, new_users, mapping)


#: the tables a seeding run fills
_SEEDED_TABLES: Final = "users, user_emails, cards, card_fields"


def analyze_seeded(conn: Connection) -> None:
    """Refresh PostgreSQL's planner statistics of the seeded tables.

    PostgreSQL plans by statistics that autovacuum refreshes only on its next round. After a bulk
    load into tables it last saw empty, it planned joins over the new rows as loops over one row:
    listing 10,000 freshly loaded cards took 67 s instead of 1 s. SQLite keeps no statistics
    unless asked, and the hub never asks.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {_SEEDED_TABLES}")


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
    cards: bool = True,
    dialects: Mapping[str, Dialect] | None = None,
) -> SeedReport:
    """Insert users `start` … `start + count - 1` into `workspace`, one transaction per batch.

    With `cards` (the default) every user gets its card in the same transaction, filled through
    the mapping of the workspace's first connector: `dialects` are the installed IdP dialects
    (`hub.plugins.build_registry().dialects`).

    Raises:
        NotFound: no such workspace; cards asked for and the workspace has no connector.
        InvalidValue: cards asked for and the connector's IdP plugin is not in `dialects`.
        Uniqueness: a seeded userName is already taken (use another `prefix` or `start`).
        ValueError: `count` or `batch` is below 1.
    """
    if count < 1 or batch < 1:
        raise ValueError("count and batch must be at least 1")
    target = await db.read(_target, workspace)
    mapping = _card_mapping(target, dialects or {}) if cards else None
    before = await db.read(database_bytes)
    started = time.perf_counter()
    done = templated = 0
    while done < count:
        size = min(batch, count - done)
        check_document(user_document(start + done, prefix, domain))
        try:
            templated += await db.write(
                _insert_batch, target, mapping, start + done, size, prefix, domain
            )
        except IntegrityError as exc:
            raise Uniqueness(
                f"a userName between {user_name(start + done, prefix, domain)!r} and "
                f"{user_name(start + done + size - 1, prefix, domain)!r} already exists in "
                f"{target.workspace!r}: seed with another --prefix or --start"
            ) from exc
        done += size
        if progress is not None:
            progress(done, time.perf_counter() - started)
    await db.write(analyze_seeded)
    seconds = time.perf_counter() - started
    after = await db.read(database_bytes)
    return SeedReport(
        workspace=target.workspace,
        users=count,
        batch=batch,
        seconds=round(seconds, 3),
        users_per_second=round(count / seconds, 1) if seconds > 0 else 0.0,
        database_bytes_before=before,
        database_bytes_after=after,
        bytes_per_user=round((after - before) / count, 1),
        first_user_name=user_name(start, prefix, domain),
        last_user_name=user_name(start + count - 1, prefix, domain),
        cards=cards,
        templated=templated,
    )
