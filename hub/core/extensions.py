"""Custom schema extensions, described from what the workspace's IdPs store under them.

An IdP may send attributes under an extension the hub has no schema for: Entra ID's
`urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User`, an Okta app's own
namespace. The hub stores them as sent (`attributes.canonicalise`) and lists the URN in the
resource's `schemas`, as RFC 7643 §3 requires. A strict client (scim2-client) then refuses every
resource naming a schema that `/ResourceTypes` and `/Schemas` do not show, so the hub records
each attribute stored under such a URN, in the transaction that stores it, and discovery
describes the URN from these records (RFC 7643 §7). An attribute's type is that of the value
that first introduced it in the workspace (an integer attribute later sent a fraction becomes a
decimal); the description only grows, as the hub never forgets what it may return.

The hub's own schemas are described the same way where a resource holds more than they define
(README: everything a client sends is stored): Okta sends an app's custom attributes at the top
level when their namespace is the core User schema, clients send unknown keys inside `name`, an
element of `emails` or the Enterprise User extension, and typos (`adreses`). `canonicalise`
notes where it met such a name; `record` describes what it noted, under the schema's own URN,
in the same table and within the same `MAX_DESCRIBED`; discovery shows the hub's schema with
them added (`additions`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Connection, Integer, String, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.core.attributes import lookup
from hub.core.models import extension_attributes as table
from hub.core.schema import Attribute, ResourceType, Schema, schema_owner
from hub.core.sql import Prepared

#: How many attributes (and sub-attributes) a workspace's custom extensions are described by at
#: most: an IdP inventing attribute names cannot grow `/Schemas` without bound. Attributes past it
#: are stored and returned as before, only not described.
MAX_DESCRIBED = 1000
#: Names longer than this are stored but not described (they are keys of an index).
MAX_NAME = 200
MAX_URN = 512
#: RFC 7643 §2.1: attribute names are `ALPHA *("-" / "_" / DIGIT / ALPHA)` (ASCII). Others
#: (`cost center`, `1st`, `émoji`) are stored and returned but not described: `/Schemas` must
#: name attributes as the RFC allows, and strict clients validate it. ASCII names also keep a
#: description's keys (URN, name, sub-attribute) within one PostgreSQL b-tree entry (2,704
#: bytes): a 512-character URN of four-byte characters and two names of 200 take 2,448 at most
#: (non-ASCII names of 200 made 3,600, and the write answered 500).
_ATTRNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
#: URN prefixes of schemas RFC 7643 and RFC 7644 define; never described as an extension.
_STANDARD = ("urn:ietf:params:scim:schemas:core:", "urn:ietf:params:scim:api:")


class Described(NamedTuple):
    """One attribute (`sub` empty) or sub-attribute of a custom extension, as first stored."""

    resource_type: str
    urn: str
    name: str
    sub: str
    type: str
    multi_valued: bool

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes it one: resource type, URN and names, case-insensitively (RFC 7643 §2.1)."""
        return (self.resource_type, self.urn.lower(), self.name.lower(), self.sub.lower())


def record(
    conn: Connection,
    workspace_pk: int,
    resource_type: ResourceType,
    doc: Mapping[str, Any],
    stored: Mapping[str, Any] | None = None,
    unknown: Collection[str] = (),
) -> None:
    """Describe the undescribed attributes `doc` holds that `stored` (its last state) lacked.

    Called with every resource document written, in its transaction: what a rolled-back write
    introduced is not described. `stored` is the document the write replaces (None on a create);
    what it held was recorded when it was written, so a PATCH that leaves the extension's shape as
    it was writes nothing here. `unknown`: the keys of `doc` that `canonicalise` found holding
    attributes the hub's schemas do not define (its `unknown`); only those are looked into.
    """
    custom = _may_hold_custom(doc, resource_type)
    if not custom and not unknown:
        return
    held = {d.key: d for d in _described(doc, resource_type)} if custom else {}
    for part in _undefined(doc, resource_type, unknown):
        held.setdefault(part.key, part)
    if not held:
        return
    if stored is not None:
        kept = _described(stored, resource_type) if custom else iter(())
        for old in (*kept, *_undefined(stored, resource_type, unknown)):
            if held.get(old.key) == old:
                del held[old.key]
    # Sorted: one lock order on PostgreSQL.
    rows = [_row(workspace_pk, held[key]) for key in sorted(held)]
    _INSERT[conn.dialect.name].run_many(conn, rows)


def respelled(
    conn: Connection, workspace_pk: int, resource_type: ResourceType, doc: dict[str, Any]
) -> dict[str, Any]:
    """`doc` with each custom URN spelled as discovery shows it, in its keys and `schemas`.

    URNs compare case-insensitively (RFC 7643 §2.1), but a strict client looks a resource's
    `schemas` up in `/Schemas` as spelled: a second IdP, or a PATCH, writing the URN in other
    letters made that resource unreadable for it. A URN discovery does not show yet is kept as
    sent (it becomes the spelling shown).
    """
    if not _may_hold_custom(doc, resource_type):
        return doc
    renames: dict[str, str] = {}
    for key in doc:
        if _is_custom(key):
            shown = _SPELLING.scalar(conn, b_ws=workspace_pk, b_key=key.lower())
            if shown is not None and shown != key:
                renames[key] = shown
    if not renames:
        return doc
    spelled = {renames.get(key, key): value for key, value in doc.items()}
    by_key = {urn.lower(): urn for urn in renames.values()}
    spelled["schemas"] = [
        by_key.get(urn.lower(), urn) if isinstance(urn, str) else urn for urn in doc["schemas"]
    ]
    return spelled


def described(conn: Connection, workspace_pk: int) -> tuple[Described, ...]:
    """Every custom-extension attribute the workspace's resources have held, in a stable order.

    Less those whose names RFC 7643 §2.1 does not allow, which earlier versions recorded.
    """
    rows = (Described(*row) for row in _DESCRIBED.all(conn, b_ws=workspace_pk))
    return tuple(one for one in rows if _nameable(one.name) and (not one.sub or _nameable(one.sub)))


def describes(conn: Connection, workspace_pk: int, resource_type: ResourceType, urn: str) -> bool:
    """Whether discovery shows `urn` as a custom extension of `resource_type` in the workspace.

    A PATCH may then add its attributes to a resource that does not list it yet, whatever its
    namespace (`patch.apply_patch`), as the client was told the type takes it. Never one of the
    hub's own schemas, whatever an earlier version recorded (`schemas`).
    """
    if _reserved(urn):
        return False
    found = _DESCRIBES.first(
        conn, b_ws=workspace_pk, b_rt=resource_type.name, b_urn_key=urn.lower()
    )
    return found is not None


def undefined_type(
    conn: Connection, workspace_pk: int, resource_type: ResourceType, urn: str, name: str, sub: str
) -> tuple[str, bool] | None:
    """The type and multiValued discovery shows for `name` (`sub` of it) in the hub's schema `urn`.

    None unless the workspace's `/Schemas` describes it. Asked for a filter, `sortBy` or PATCH
    path naming what the schema does not define (`filtering.compile_filter`, `patch.apply_patch`:
    the client was told the schema has it), and only then: one on defined attributes never reads
    it.
    """
    owner = schema_owner(urn)
    if owner is None or owner is not resource_type:
        return None
    found = _DESCRIBES_ONE.first(
        conn,
        b_ws=workspace_pk,
        b_rt=resource_type.name,
        b_urn_key=urn.lower(),
        b_name_key=name.lower(),
        b_sub_key=sub.lower(),
    )
    return None if found is None else (str(found.type), bool(found.multi_valued))


def schemas(found: Sequence[Described]) -> dict[str, list[Schema]]:
    """The extension schemas `found` describes, by the name of the resource type each extends.

    One URN used by Users and Groups is one schema (its attributes those of both), as `/Schemas`
    shows each schema once. A sub-attribute of an attribute first stored as a simple value is
    left out: RFC 7643 §2.4 gives only complex attributes sub-attributes. So is a description
    of one of the hub's own schemas, which versions before the hub refused them recorded (the
    Enterprise User extension sent on a Group): `/Schemas` showed it twice, once as a custom
    Group extension, though RFC 7643 §7 wants schema ids unique.
    """
    by_urn: dict[str, dict[str, list[Described]]] = {}
    extends: dict[str, list[str]] = {}
    for one in found:
        if _reserved(one.urn):
            continue
        urn_key = one.urn.lower()
        attrs = by_urn.setdefault(urn_key, {})
        attrs.setdefault(one.name.lower(), []).append(one)
        types = extends.setdefault(one.resource_type, [])
        if urn_key not in types:
            types.append(urn_key)
    built = {urn_key: _schema(attrs) for urn_key, attrs in by_urn.items()}
    return {rt: [built[urn_key] for urn_key in urns] for rt, urns in extends.items()}


def additions(found: Sequence[Described]) -> dict[str, tuple[Attribute, ...]]:
    """What `found` describes of the hub's own schemas, by schema id, for discovery to add.

    An attribute the schema lacks comes whole; one it defines comes with only the
    sub-attributes it lacks (`discovery.schemas` adds them to its `subAttributes`). Only a
    description under the type's own schema counts: one of the Enterprise User extension
    recorded for a Group (by versions before the hub refused it) is no attribute of Users.
    """
    by_urn: dict[str, tuple[ResourceType, dict[str, list[Described]]]] = {}
    for one in found:
        owner = schema_owner(one.urn)
        if owner is None or owner.name != one.resource_type:
            continue
        urn = next(u for u in owner.schema_ids if u.lower() == one.urn.lower())
        attrs = by_urn.setdefault(urn, (owner, {}))[1]
        attrs.setdefault(one.name.lower(), []).append(one)
    added: dict[str, tuple[Attribute, ...]] = {}
    for urn, (owner, attrs) in by_urn.items():
        made = (_addition(owner, urn, parts) for parts in attrs.values())
        added[urn] = tuple(one for one in made if one is not None)
    return added


def _addition(owner: ResourceType, urn: str, parts: Sequence[Described]) -> Attribute | None:
    defined = lookup(owner, urn, (parts[0].name,))
    if defined is None:
        if all(p.sub for p in parts):
            return None  # its sub-attributes only, past `MAX_DESCRIBED`: nothing to type it by
        made = _attribute(parts, _UNDEFINED)
        return made if _describable(made) else None
    if defined.type != "complex":
        return None
    subs: dict[str, Described] = {}
    for part in parts:
        if part.sub and lookup(owner, urn, (defined.name, part.sub)) is None:
            subs.setdefault(part.sub.lower(), part)
    if not subs:
        return None
    return Attribute(
        defined.name,
        "complex",
        multi_valued=defined.multi_valued,
        sub_attributes=tuple(
            Attribute(s.sub, s.type, multi_valued=s.multi_valued, description=_UNDEFINED)
            for s in subs.values()
        ),
    )


#: The description of an attribute the hub's schema lacks, in `/Schemas`.
_UNDEFINED = (
    "Not defined by this schema: an attribute this workspace's identity providers have sent, "
    "stored as sent, typed as first sent"
)


def _schema(attrs: Mapping[str, list[Described]]) -> Schema:
    first = next(iter(attrs.values()))[0]
    return Schema(
        first.urn,
        _schema_name(first.urn),
        f"Custom {first.resource_type} extension: the attributes this workspace's identity "
        "providers have sent under it, typed as first sent",
        tuple(made for made in map(_attribute, attrs.values()) if _describable(made)),
    )


def _describable(attribute: Attribute) -> bool:
    """Whether `/Schemas` may show `attribute`: a complex one needs a sub-attribute to show.

    RFC 7643 §7 gives a complex attribute its `subAttributes`; one whose values hold only
    objects (RFC 7643 §2.3.8 allows no complex sub-attribute) or names §2.1 does not allow has
    none to describe, and strict clients refuse a complex attribute without any.
    """
    return attribute.type != "complex" or bool(attribute.sub_attributes)


def _attribute(parts: Sequence[Described], description: str = "") -> Attribute:
    top = next((p for p in parts if not p.sub), parts[0])
    subs: dict[str, Described] = {}
    if top.type == "complex":
        for part in parts:
            if part.sub:
                subs.setdefault(part.sub.lower(), part)
    return Attribute(
        top.name,
        top.type,
        multi_valued=top.multi_valued,
        description=description,
        sub_attributes=tuple(
            Attribute(s.sub, s.type, multi_valued=s.multi_valued, description=description)
            for s in subs.values()
        ),
    )


def _schema_name(urn: str) -> str:
    """`CustomExtensionName` for `urn:ietf:params:scim:schemas:extension:CustomExtensionName:…`."""
    parts = urn.split(":")
    lowered = [p.lower() for p in parts]
    if "extension" in lowered:
        at = lowered.index("extension") + 1
        if at < len(parts) and parts[at]:
            return parts[at]
    return urn


def _may_hold_custom(doc: Mapping[str, Any], resource_type: ResourceType) -> bool:
    """Whether `schemas` names a URN other than the type's own: the cheap test of every write."""
    listed = doc.get("schemas")
    if listed.__class__ is not list:
        return False
    own = _OWN_URNS.get(resource_type.name)
    if own is None:
        own = _OWN_URNS[resource_type.name] = _own_urns(resource_type)
    for urn in listed:  # spelled canonically by `canonicalise`: the set lookup is the usual test
        if urn not in own and (urn.__class__ is not str or urn.lower() not in own):
            return True
    return False


def _own_urns(resource_type: ResourceType) -> frozenset[str]:
    """The type's schema URNs, as the hub spells them and lowered."""
    return frozenset(u for urn in resource_type.schema_ids for u in (urn, urn.lower()))


_OWN_URNS: dict[str, frozenset[str]] = {}


def _is_custom(key: str) -> bool:
    """Whether a document key is a URN the hub has no schema for (a custom extension's)."""
    return key[:4].lower() == "urn:" and not _reserved(key) and _fits(key, MAX_URN)


def _nameable(name: str) -> bool:
    """Whether discovery may describe an attribute so named (RFC 7643 §2.1, and `$ref`)."""
    return name == "$ref" or (_fits(name, MAX_NAME) and _ATTRNAME.fullmatch(name) is not None)


def _fits(text: str, limit: int) -> bool:
    """Whether `text` fits a column of `limit` characters as spelled and as lowered (its key).

    Lowering may lengthen a name ("İ" is two characters lowered): PostgreSQL refuses the key
    then, and the write that would have recorded it answered 500.
    """
    return len(text) <= limit and len(text.lower()) <= limit


def _reserved(urn: str) -> bool:
    """Whether `urn` is in a namespace RFC 7643/7644 define, or one of the hub's schemas.

    Such a URN is no custom extension of any resource type: the Enterprise User extension is
    the User type's, even under a Group.
    """
    return urn.lower().startswith(_STANDARD) or schema_owner(urn) is not None


def _described(doc: Mapping[str, Any], resource_type: ResourceType) -> Iterator[Described]:
    """Every attribute and sub-attribute `doc` holds under a URN the hub has no schema for."""
    for urn, value in doc.items():
        if not _is_custom(urn) or not isinstance(value, dict):
            continue
        for name, held in value.items():
            if not _nameable(name):
                continue
            yield from _parts(resource_type.name, urn, name, held)


def _undefined(
    doc: Mapping[str, Any], resource_type: ResourceType, keys: Collection[str]
) -> Iterator[Described]:
    """What the members `keys` of `doc` hold that the hub's schemas for the type do not define.

    `keys` are those `canonicalise` noted: an unknown top-level attribute (the core schema's),
    a complex attribute holding unknown sub-attributes, the Enterprise User extension holding
    unknown attributes or `manager` sub-attributes.
    """
    core = resource_type.schema.id
    for key in dict.fromkeys(keys):
        value = doc.get(key)
        if value is None:
            continue
        extension = resource_type.extension(key)
        if extension is None:
            yield from _undefined_in(resource_type, core, key, value)
        elif isinstance(value, dict):
            for name, held in value.items():
                yield from _undefined_in(resource_type, extension.id, name, held)


def _undefined_in(rt: ResourceType, urn: str, name: str, value: Any) -> Iterator[Described]:
    """`name` of schema `urn` holding `value`, if undefined; else its undefined sub-attributes."""
    if not _nameable(name):
        return
    defined = lookup(rt, urn, (name,))
    if defined is None:
        yield from _parts(rt.name, urn, name, value)
        return
    if defined.type != "complex":
        return
    for part in _parts(rt.name, urn, defined.name, value):
        if part.sub and lookup(rt, urn, (defined.name, part.sub)) is None:
            yield part


def _parts(rt: str, urn: str, name: str, value: Any) -> Iterator[Described]:
    values = value if isinstance(value, list) else [value]
    multi = isinstance(value, list)
    present = [v for v in values if v is not None]
    if not present:
        return
    complex_values = [v for v in present if isinstance(v, dict)]
    if not complex_values:
        scalar = _scalar_type(present[0])
        if scalar is not None:
            yield Described(rt, urn, name, "", scalar, multi)
        return
    yield Described(rt, urn, name, "", "complex", multi)
    seen: set[str] = set()
    for element in complex_values:
        for sub, held in element.items():
            sub_multi = isinstance(held, list)
            first = next((v for v in held if v is not None), None) if sub_multi else held
            sub_type = _scalar_type(first)
            if sub_type is None or not _nameable(sub) or sub.lower() in seen:
                continue  # no value, or a complex one: RFC 7643 §2.3.8 allows no such thing
            seen.add(sub.lower())
            yield Described(rt, urn, name, sub, sub_type, sub_multi)


def _scalar_type(value: Any) -> str | None:
    """The RFC 7643 §2.3 type of a JSON value as sent (a date is a string until someone says)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    return None


def _row(workspace_pk: int, one: Described) -> dict[str, Any]:
    rt, urn_key, name_key, sub_key = one.key
    return {
        "b_ws": workspace_pk,
        "b_rt": rt,
        "b_urn_key": urn_key,
        "b_name_key": name_key,
        "b_sub_key": sub_key,
        "b_urn": one.urn,
        "b_name": one.name,
        "b_sub": one.sub,
        "b_type": one.type,
        "b_multi": one.multi_valued,
    }


def _insert_statement(insert: Any) -> Prepared:
    """One description, unless the workspace has `MAX_DESCRIBED` or it is described already.

    Already described, only an integer meeting a decimal changes it (to decimal).
    """
    count = (
        select(func.count())
        .select_from(table)
        .where(table.c.workspace_pk == bindparam("b_ws", type_=Integer))
        .scalar_subquery()
    )
    values = select(
        bindparam("b_ws", type_=Integer),
        bindparam("b_rt", type_=String),
        bindparam("b_urn_key", type_=String),
        bindparam("b_name_key", type_=String),
        bindparam("b_sub_key", type_=String),
        bindparam("b_urn", type_=String),
        bindparam("b_name", type_=String),
        bindparam("b_sub", type_=String),
        bindparam("b_type", type_=String),
        bindparam("b_multi", type_=Boolean),
    ).where(count < literal(MAX_DESCRIBED))
    columns = (
        "workspace_pk",
        "resource_type",
        "urn_key",
        "name_key",
        "sub_key",
        "urn",
        "name",
        "sub",
        "type",
        "multi_valued",
    )
    statement = insert(table).from_select(columns, values)
    # An attribute first sent as an integer and then with a fraction (an Okta number) is a
    # decimal: a strict client reads an integer as a decimal, not the other way round.
    widened = statement.on_conflict_do_update(
        index_elements=[
            table.c.workspace_pk,
            table.c.resource_type,
            table.c.urn_key,
            table.c.name_key,
            table.c.sub_key,
        ],
        set_={"type": statement.excluded.type},
        where=(table.c.type == "integer") & (statement.excluded.type == "decimal"),
    )
    return Prepared(widened)


_INSERT = {"sqlite": _insert_statement(sqlite_insert), "postgresql": _insert_statement(pg_insert)}
_DESCRIBED = Prepared(
    select(
        table.c.resource_type,
        table.c.urn,
        table.c.name,
        table.c.sub,
        table.c.type,
        table.c.multi_valued,
    )
    .where(table.c.workspace_pk == bindparam("b_ws"))
    .order_by(table.c.resource_type, table.c.urn_key, table.c.name_key, table.c.sub_key)
)
_DESCRIBES = Prepared(
    select(table.c.type)
    .where(
        table.c.workspace_pk == bindparam("b_ws"),
        table.c.resource_type == bindparam("b_rt"),
        table.c.urn_key == bindparam("b_urn_key"),
    )
    .limit(1)
)
_DESCRIBES_ONE = Prepared(
    select(table.c.type, table.c.multi_valued).where(
        table.c.workspace_pk == bindparam("b_ws"),
        table.c.resource_type == bindparam("b_rt"),
        table.c.urn_key == bindparam("b_urn_key"),
        table.c.name_key == bindparam("b_name_key"),
        table.c.sub_key == bindparam("b_sub_key"),
    )
)
#: The spelling discovery shows for a URN: its first description's (`schemas` orders them so).
_SPELLING = Prepared(
    select(table.c.urn)
    .where(table.c.workspace_pk == bindparam("b_ws"), table.c.urn_key == bindparam("b_key"))
    .order_by(table.c.resource_type, table.c.name_key, table.c.sub_key)
    .limit(1)
)
