"""Differential test: compiled SQL (hub.core.filtering) selects exactly what rules.evaluate matches.

Users and groups are written through the real tables, rendered with the real renderers, and every
filter is run both ways on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, create_engine, delete, event, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

import rules
from hub.core import groups as group_service
from hub.core import users as user_service
from hub.core.attributes import describe_for
from hub.core.clock import to_iso
from hub.core.errors import InvalidFilter
from hub.core.filtering import compile_filter, register_sqlite_functions, sort_key
from hub.core.models import Base, groups, memberships, users, workspaces
from hub.core.schema import ENTERPRISE_SCHEMA, GROUP_TYPE, USER_SCHEMA, USER_TYPE, ResourceType

T = TypeVar("T")
ENT = ENTERPRISE_SCHEMA
BASE = "http://testserver/scim/v2"
# Instants (µs) users are created at, so equality and boundary filters on meta.created hit.
T0 = 1_700_000_000_123_456
TIMES = [T0 - 1_000_000, T0 - 1, T0, T0 + 1, T0 + 86_400_000_000]
# Non-ASCII letters, among them "İ" and "Σ", which Python lowers to "i̇" and (word-final) "ς" and
# glibc's lower() to "i" and a non-final sigma; LIKE wildcards, backslashes and quotes to prove
# values never become SQL.
ALPHABET = "abAB%_\\\"'éÉßẞøØİΣς漢😀 .@-"


# --------------------------------------------------------------------------- database plumbing


class Db:
    """Runs `fn(conn)` in a transaction on a sync SQLite engine or through asyncpg's run_sync."""

    def __init__(self, url: str) -> None:
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        if self.dialect == "sqlite":
            self.engine = create_engine(url)
            event.listen(self.engine, "connect", lambda conn, _rec: register_sqlite_functions(conn))
        else:
            self.loop = asyncio.new_event_loop()
            self.async_engine = create_async_engine(url)

    def run(self, fn: Callable[[Connection], T]) -> T:
        if self.dialect == "sqlite":
            with self.engine.begin() as conn:
                return fn(conn)

        async def go() -> T:
            async with self.async_engine.begin() as conn:
                return await conn.run_sync(fn)

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        if self.dialect == "sqlite":
            self.engine.dispose()
        else:
            self.loop.run_until_complete(self.async_engine.dispose())
            self.loop.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def filter_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database: a SQLite file, or a PostgreSQL database.

    PostgreSQL comes from `SCIM_HUB_TEST_POSTGRES_URL` or the session's throwaway cluster
    (tests/conftest.py); the test is skipped, saying how to get one, when neither is available.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'filters.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def db(filter_db_url: str) -> Iterator[Db]:
    database = Db(filter_db_url)
    database.run(lambda conn: Base.metadata.create_all(conn))
    database.run(
        lambda conn: conn.execute(
            insert(workspaces).values(pk=1, id=str(uuid.uuid4()), name="w", created=T0)
        )
    )
    yield database
    database.close()


# --------------------------------------------------------------------------- data


def store(db: Db, people: list[dict[str, Any]], teams: list[dict[str, Any]]) -> None:
    """Replace every user and group with `people` and `teams` (rows as the services write them)."""

    def write(conn: Connection) -> None:
        conn.execute(delete(memberships))
        conn.execute(delete(groups))
        conn.execute(delete(users))
        for pk, person in enumerate(people, 1):
            doc = person["data"]
            conn.execute(
                insert(users).values(
                    pk=pk,
                    id=person["id"],
                    workspace_pk=1,
                    user_name=doc["userName"],
                    user_name_key=doc["userName"].lower(),
                    external_id=doc.get("externalId"),
                    active=person["active"],
                    deleted=person.get("deleted", False),
                    data=doc,
                    version=person.get("version", 1),
                    created=person["created"],
                    modified=person["modified"],
                )
            )
        for pk, team in enumerate(teams, 1):
            doc = team["data"]
            conn.execute(
                insert(groups).values(
                    pk=pk,
                    id=team["id"],
                    workspace_pk=1,
                    display_name=doc["displayName"],
                    display_name_key=doc["displayName"].lower(),
                    external_id=doc.get("externalId"),
                    data=doc,
                    version=1,
                    created=T0,
                    modified=T0,
                )
            )
            for user_pk in team["members"]:
                # Members carry the display their IdP sent (here: the user's displayName).
                display = people[user_pk - 1]["data"].get("displayName")
                conn.execute(
                    insert(memberships).values(group_pk=pk, user_pk=user_pk, display=display)
                )

    db.run(write)


def rendered(db: Db, resource_type: ResourceType) -> dict[str, dict[str, Any]]:
    """Every live resource of the type, rendered as the SCIM layer returns it, by id."""

    def read(conn: Connection) -> dict[str, dict[str, Any]]:
        if resource_type is USER_TYPE:
            member_of: dict[int, list[tuple[str, str]]] = {}
            rows = conn.execute(
                select(memberships.c.user_pk, groups.c.id, groups.c.display_name)
                .join(groups, groups.c.pk == memberships.c.group_pk)
                .order_by(groups.c.pk)
            )
            for user_pk, gid, name in rows:
                member_of.setdefault(user_pk, []).append((gid, name))
            found = conn.execute(select(users).where(users.c.deleted.is_(False))).all()
            return {r.id: user_service.render(r, BASE, member_of.get(r.pk)) for r in found}
        members: dict[int, list[tuple[str, str | None]]] = {}
        rows = conn.execute(
            select(memberships.c.group_pk, users.c.id, memberships.c.display)
            .join(users, users.c.pk == memberships.c.user_pk)
            .where(users.c.deleted.is_(False))
            .order_by(users.c.pk)
        )
        for group_pk, uid, display in rows:
            members.setdefault(group_pk, []).append((uid, display))
        found = conn.execute(select(groups)).all()
        return {r.id: group_service.render(r, BASE, members.get(r.pk)) for r in found}

    return db.run(read)


def sql_ids(db: Db, flt: rules.Filter, resource_type: ResourceType) -> set[str]:
    where = compile_filter(flt, resource_type, db.dialect)
    if resource_type is USER_TYPE:
        query = select(users.c.id).where(
            users.c.workspace_pk == 1, users.c.deleted.is_(False), where
        )
    else:
        query = select(groups.c.id).where(groups.c.workspace_pk == 1, where)
    return set(db.run(lambda conn: conn.execute(query).scalars().all()))


def check(db: Db, text: str, resource_type: ResourceType = USER_TYPE) -> set[str]:
    """Assert SQL and the evaluator agree on `text` (results or refusal); return the ids."""
    flt = rules.parse_filter(text)
    describe = describe_for(resource_type)
    resources = rendered(db, resource_type)
    try:
        expected = {rid for rid, res in resources.items() if rules.evaluate(flt, res, describe)}
    except (rules.UnknownAttribute, rules.InvalidComparison):
        with pytest.raises(InvalidFilter):
            compile_filter(flt, resource_type, db.dialect)
        return set()
    got = sql_ids(db, flt, resource_type)
    assert got == expected, f"{text!r}: SQL {sorted(got)} != evaluate {sorted(expected)}"
    return got


# --------------------------------------------------------------------------- fixed corpus


def corpus_people() -> list[dict[str, Any]]:
    def person(n: int, data: dict[str, Any], **row: Any) -> dict[str, Any]:
        schemas = [USER_SCHEMA] + ([ENT] if ENT in data else [])
        return {
            "id": f"u{n}-" + "0" * 8,
            "data": {"schemas": schemas, **data},
            "active": row.get("active", True),
            "created": row.get("created", T0),
            "modified": row.get("modified", T0),
            "deleted": row.get("deleted", False),
            "version": row.get("version", 1),
        }

    return [
        person(
            1,
            {
                "userName": "Bjensen",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "displayName": "Babs Jensen",
                "title": "Tour Guide",
                "emails": [
                    {"value": "bjensen@example.com", "type": "work", "primary": True},
                    {"value": "babs@jensen.org", "type": "home"},
                ],
                "externalId": "Ext-1",
                ENT: {"department": "Tour Operations", "manager": {"value": "26118915-6090"}},
            },
        ),
        person(
            2,
            {
                "userName": "émile_100%",
                "title": "",
                "emails": [{"value": "E@X.example.org", "type": "work"}],
                "phoneNumbers": [{"value": "+1 555", "type": "mobile", "primary": False}],
            },
            active=False,
            created=T0 - 1,
            modified=T0 + 1,
        ),
        person(
            3,
            {
                "userName": "back\\slash",
                "nickName": 'Q"uote',
                # Python and glibc lower "İ" and a word-final "Σ" differently.
                "displayName": "İpek ΟΔΟΣ",
                ENT: {"department": "R&D"},
            },
        ),
        person(4, {"userName": "deleted-one", "title": "Tour Guide"}, deleted=True),
        person(5, {"userName": "ØLE", "displayName": "Øle", "emails": [{"type": "work"}]}),
    ]


def corpus_teams() -> list[dict[str, Any]]:
    return [
        {"id": "g1", "data": {"displayName": "Tour Guides", "externalId": "G"}, "members": [1, 4]},
        {"id": "g2", "data": {"displayName": "empty"}, "members": []},
        {"id": "g3", "data": {"displayName": "All_%"}, "members": [1, 2, 3, 5]},
    ]


USER_CORPUS = [
    'userName eq "bjensen"',
    'userName eq "BJENSEN" and active eq true',
    'userName sw "b"',
    'userName co "_1"',
    'userName co "%"',
    'userName ew "h"',
    'userName gt "c"',
    'userName le "émile_100%"',
    'userName eq "øle"',
    'userName co "\\\\"',
    'name.familyName co "O\'Malley" or name.givenName sw "bar"',
    "title pr",
    "not (title pr)",
    "title eq null",
    'title ne "tour guide"',
    'title eq "Tour Guide" and userType eq "Employee"',
    'emails co "example.com"',
    'emails[type eq "work" and value co "@example.com"]',
    'emails[type eq "work"] and not (emails[primary eq true])',
    # How Entra ID matches users on their work email (beyond RFC 7644's grammar).
    'emails[type eq "work"].value eq "BJENSEN@example.com"',
    'emails[type eq "work"].value eq "babs@jensen.org"',
    'emails[type eq "work"].value pr',
    'emails[type eq "home"].value ew ".org" or userName eq "øle"',
    'emails.type eq "work"',
    "emails pr",
    "emails.value pr",
    "phoneNumbers[primary eq false]",
    'externalId eq "Ext-1"',
    'externalId eq "ext-1"',
    "externalId pr",
    'id eq "u1-00000000"',
    "active eq false",
    "active ne true",
    'meta.resourceType eq "User"',
    'meta.resourceType eq "user"',
    f'meta.created eq "{to_iso(T0)}"',
    f'meta.created gt "{to_iso(T0 - 1)}"',
    'meta.lastModified ge "2023-11-14T22:13:20.123457Z"',
    'meta.created lt "2023-11-14T23:13:20.123456+01:00"',
    'meta.created le "2023-11-14T22:13:20.1234559Z"',
    'meta[created ge "2023-11-14T22:13:20.1234561Z"]',
    'meta.version eq "W/\\"1\\""',
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations"',
    f'{ENT}:manager.value eq "26118915-6090"',
    f'{ENT}:manager eq "26118915-6090"',
    f"{ENT}:manager pr",
    f"not ({ENT}:department pr)",
    f'{USER_SCHEMA}:userName sw "B"',
    'groups eq "g1"',
    'groups.display eq "all_%"',
    'groups[display co "guide" and type eq "direct"]',
    "not (groups pr)",
    'name[givenName eq "barbara"]',
    'name[familyName ne "x"]',
    f'{ENT}:manager[value ne "x"]',
    'nickName eq "q\\"uote"',
    'displayName eq "İpek ΟΔΟΣ"',
    'displayName eq "ipek οδοσ"',
    'displayName sw "İp" and displayName ew "ΟΣ"',
    'displayName co "K ΟΔ"',
    'displayName gt "ipek"',
]

REFUSED = [
    'nope eq "x"',
    "active gt true",
    'meta.created gt "yesterday"',
    "title co 1",  # wrong type: matches nothing, not an error
    'name eq "x"',
    "emails[nope eq 1]",
    'userName[value eq "x"]',
    'active co "t"',
]

GROUP_CORPUS = [
    'displayName eq "tour guides"',
    'displayName sw "ALL"',
    'members eq "u1-00000000"',
    'members[value eq "u4-00000000"]',
    'members.display eq "øle"',
    'members.display eq "babs jensen"',
    'members.display co "\\\\"',
    "members pr",
    "not (members pr)",
    'externalId eq "G"',
    'members[type eq "User" and display sw "b"]',
]


def test_fixed_corpus(db: Db) -> None:
    store(db, corpus_people(), corpus_teams())
    hits = {text: check(db, text) for text in USER_CORPUS}
    # A few anchors, so an agreeing-but-wrong pair would still be noticed.
    assert hits['userName eq "bjensen"'] == {"u1-00000000"}
    assert hits['emails[type eq "work"] and not (emails[primary eq true])'] == {
        "u2-00000000",
        "u5-00000000",
    }
    assert hits["not (title pr)"] == {"u2-00000000", "u3-00000000", "u5-00000000"}
    assert hits['emails[type eq "work"].value eq "BJENSEN@example.com"'] == {"u1-00000000"}
    assert hits['emails[type eq "work"].value eq "babs@jensen.org"'] == set()  # a home email
    assert hits['emails[type eq "work"].value pr'] == {"u1-00000000", "u2-00000000"}
    assert hits['groups eq "g1"'] == {"u1-00000000"}
    # A value filter applies to a value: users without `name` match none of its `ne`.
    assert hits['name[familyName ne "x"]'] == {"u1-00000000"}
    assert hits[f'{ENT}:manager[value ne "x"]'] == {"u1-00000000"}
    assert hits['displayName eq "İpek ΟΔΟΣ"'] == {"u3-00000000"}
    assert hits['displayName sw "İp" and displayName ew "ΟΣ"'] == {"u3-00000000"}
    for text in REFUSED:
        check(db, text)
    group_hits = {text: check(db, text, GROUP_TYPE) for text in GROUP_CORPUS}
    assert group_hits['members[value eq "u4-00000000"]'] == set()  # deleted users are no members
    assert group_hits["not (members pr)"] == {"g2"}


def test_refused_filters_say_why(db: Db) -> None:
    with pytest.raises(InvalidFilter, match="nope"):
        compile_filter(rules.parse_filter('nope eq "x"'), USER_TYPE, db.dialect)
    with pytest.raises(InvalidFilter, match="boolean"):
        compile_filter(rules.parse_filter("active gt true"), USER_TYPE, db.dialect)
    with pytest.raises(InvalidFilter, match="dateTime"):
        compile_filter(rules.parse_filter('meta.created gt "x"'), USER_TYPE, db.dialect)
    # Rendered from the request's base URL, which the database does not know.
    for text in ['meta.location eq "x"', "groups.$ref pr", 'members[$ref co "x"]']:
        resource_type = GROUP_TYPE if "members" in text else USER_TYPE
        with pytest.raises(InvalidFilter, match=r"\$ref|location"):
            compile_filter(rules.parse_filter(text), resource_type, db.dialect)


def test_values_are_bound_parameters(db: Db) -> None:
    flt = rules.parse_filter('userName eq "x\' OR 1=1 --" or title co "%_"')
    where = compile_filter(flt, USER_TYPE, db.dialect)
    assert "OR 1=1" not in str(where)


def test_sort_key(db: Db) -> None:
    store(db, corpus_people(), corpus_teams())

    def order(path: str, resource_type: ResourceType = USER_TYPE) -> list[str]:
        table = users if resource_type is USER_TYPE else groups
        keys = sort_key(path, resource_type, db.dialect)
        query = select(table.c.id).order_by(*(k.asc().nulls_last() for k in keys), table.c.pk)
        if table is users:
            query = query.where(users.c.deleted.is_(False))
        return list(db.run(lambda conn: conn.execute(query).scalars().all()))

    assert order("userName") == ["u3-00000000", "u1-00000000", "u2-00000000", "u5-00000000"]
    # Primary email first, else the first one; u5's only email has no value.
    assert order("emails")[:2] == ["u1-00000000", "u2-00000000"]
    assert order("emails.type")[:3] == ["u1-00000000", "u2-00000000", "u5-00000000"]
    assert order("meta.created")[0] == "u2-00000000"
    assert order(f"{ENT}:department")[:2] == ["u3-00000000", "u1-00000000"]
    assert order("displayName", GROUP_TYPE) == ["g3", "g2", "g1"]
    # No primary flag: the first group as rendered (g1, "Tour Guides", for u1), not the least.
    assert order("groups.display") == ["u2-00000000", "u3-00000000", "u5-00000000", "u1-00000000"]
    with pytest.raises(InvalidFilter):
        sort_key("nope", USER_TYPE, db.dialect)
    with pytest.raises(InvalidFilter):
        sort_key("emails[type eq 1]", USER_TYPE, db.dialect)


# --------------------------------------------------------------------------- hypothesis

text = st.text(ALPHABET, max_size=6)
maybe = st.none() | text


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    # Stored documents never hold nulls or empty objects (hub.core.attributes.canonicalise).
    return {k: v for k, v in doc.items() if v is not None and v != {}}


multi_value = st.builds(
    lambda value, kind, primary: _compact({"value": value, "type": kind, "primary": primary}),
    maybe,
    st.none() | st.sampled_from(["work", "home", "Work", "mobile"]),
    st.none() | st.booleans(),
).filter(bool)

person = st.fixed_dictionaries(
    {
        "userName": st.text(ALPHABET, min_size=1, max_size=6),
        "name": st.none()
        | st.builds(lambda g, f: _compact({"givenName": g, "familyName": f}), maybe, maybe),
        "displayName": maybe,
        "title": maybe,
        "externalId": maybe,
        "emails": st.none() | st.lists(multi_value, min_size=1, max_size=3),
        "phoneNumbers": st.none() | st.lists(multi_value, min_size=1, max_size=2),
        ENT: st.none()
        | st.builds(
            lambda d, m: _compact(
                {"department": d, "manager": None if m is None else {"value": m}}
            ),
            maybe,
            maybe,
        ),
    }
).map(_compact)

people = st.lists(
    st.tuples(person, st.booleans(), st.sampled_from(TIMES)),
    min_size=1,
    max_size=6,
    unique_by=lambda p: p[0]["userName"].lower(),
)

STRING_PATHS = [
    "userName",
    "displayName",
    "title",
    "externalId",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.type",
    "phoneNumbers.value",
    f"{ENT}:department",
    f"{ENT}:manager.value",
    "id",
    "groups.display",
]
PRESENT_PATHS = [*STRING_PATHS, "name", "emails", "phoneNumbers", f"{ENT}:manager", "groups"]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _filters(leaf_text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.tuples(children, st.sampled_from(["and", "or", "AND"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ) | children.map(lambda c: f"not ({c})")

    return st.recursive(leaf_text, combine, max_leaves=4)


string_leaf = st.builds(
    lambda path, op, value: f"{path} {op} {_quote(value)}",
    st.sampled_from(STRING_PATHS),
    st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ"]),
    st.text(ALPHABET, max_size=3),
)
other_leaf = st.one_of(
    st.sampled_from(PRESENT_PATHS).map(lambda p: f"{p} pr"),
    st.sampled_from(STRING_PATHS).map(lambda p: f"{p} eq null"),
    st.builds(
        lambda op, value: f"active {op} {value}",
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(["true", "false", '"true"']),
    ),
    st.builds(
        lambda attr, op, us: f"meta.{attr} {op} {_quote(to_iso(us))}",
        st.sampled_from(["created", "lastModified"]),
        st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
        st.sampled_from(TIMES),
    ),
    st.builds(
        lambda attr, inner: f"{attr}[{inner}]",
        st.sampled_from(["emails", "phoneNumbers"]),
        _filters(
            st.one_of(
                st.builds(
                    lambda sub, op, value: f"{sub} {op} {_quote(value)}",
                    st.sampled_from(["value", "type"]),
                    st.sampled_from(["eq", "co", "sw", "gt"]),
                    st.text(ALPHABET, max_size=3),
                ),
                st.sampled_from(["primary eq true", "primary eq false", "value pr", "type pr"]),
            )
        ),
    ),
)
user_filter = _filters(string_leaf | other_leaf)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    found=people,
    filters=st.lists(user_filter, min_size=1, max_size=8),
    teams=st.lists(st.tuples(text.filter(bool), st.sets(st.integers(1, 6))), max_size=2),
)
def test_sql_matches_evaluate(
    db: Db,
    found: list[tuple[dict[str, Any], bool, int]],
    filters: list[str],
    teams: list[tuple[str, set[int]]],
) -> None:
    stored = []
    for n, (doc, active, created) in enumerate(found, 1):
        schemas = [USER_SCHEMA] + ([ENT] if ENT in doc else [])
        stored.append(
            {
                "id": f"{n:08d}-user",
                "data": {"schemas": schemas, **doc},
                "active": active,
                "created": created,
                "modified": created + 5,
            }
        )
    groups_rows = [
        {"id": f"g{n}", "data": {"displayName": name}, "members": sorted(m & set(range(1, n + 1)))}
        for n, (name, m) in enumerate(teams, 1)
    ]
    for team in groups_rows:
        team["members"] = [pk for pk in team["members"] if pk <= len(stored)]
    store(db, stored, groups_rows)
    for text_filter in filters:
        check(db, text_filter)
