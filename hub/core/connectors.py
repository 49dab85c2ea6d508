"""Connectors: the IdPs enabled in a workspace, their tokens and their mapping overrides.

A connector is one installed IdP dialect enabled in one workspace under a name of the admin's
choosing ("Entra ID - EU staff" using ``azure_ad``). Disabling it stops its tokens at once;
deleting it revokes its tokens for good and hides it, but keeps its row, so the users it
provisioned stay marked with their source (the connector's name gets a "(deleted …)" suffix,
which frees the name for a new connector).

Mapping overrides let an admin adjust a dialect for one connector, validated on save:

* ``drop`` — SCIM attribute paths the hub ignores in this connector's requests (as an Entra admin
  may delete attribute mappings to restrict what is sent); their stored values are kept, and a
  PUT does not clear them.
* ``map`` — card profile field -> the SCIM attribute path it is read from instead of the
  dialect's default (e.g. company name from a custom extension).
* ``extensions`` — custom extension schema URNs this connector sends; ``drop`` and ``map`` paths
  may name attributes of these as well as of the User schemas the hub knows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec
from sqlalchemy import Connection, func, select, update

from hub.core.attributes import json_copy, lookup
from hub.core.clock import now_us
from hub.core.dialects import PROFILE_FIELDS, Dialect
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.core.ids import new_id
from hub.core.models import admins, connectors, tokens, users
from hub.core.schema import ENTERPRISE_SCHEMA, USER_SCHEMA, USER_TYPE
from hub.core.tokens import NewToken, TokenInfo, create_token, list_tokens
from rules import FilterSyntaxError, PatchPath, parse_path

JSON = dict[str, Any]


class Overrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A connector's mapping overrides (see the module docstring)."""

    drop: tuple[str, ...] = ()
    map: dict[str, str] = msgspec.field(default_factory=dict)
    extensions: tuple[str, ...] = ()


class ConnectorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A connector as the admin API and the CLI show it."""

    id: str
    name: str
    idp: str
    enabled: bool
    created: int
    last_request: int | None
    overrides: Overrides
    users: int


NO_OVERRIDES = Overrides()


# --- overrides: validation and effect ---------------------------------------------------------


def parse_overrides(raw: Any) -> Overrides:
    """Validate overrides as an admin sends them (a JSON object) or as stored.

    Raises:
        InvalidValue: the shape is wrong, a path does not parse or names no attribute of the
            User schemas or of a listed custom extension, or a field is not a card profile field.
    """
    if raw is None:
        return NO_OVERRIDES
    try:
        overrides = msgspec.convert(raw, Overrides)
    except msgspec.ValidationError as exc:
        raise InvalidValue(f"mapping overrides: {exc}") from exc
    extensions = {urn.lower() for urn in overrides.extensions}
    for urn in overrides.extensions:
        if not urn.lower().startswith("urn:") or urn.lower() in (
            USER_SCHEMA.lower(),
            ENTERPRISE_SCHEMA.lower(),
        ):
            raise InvalidValue(f"extensions: {urn!r} is not a custom extension schema URN")
    for path in overrides.drop:
        parsed = _parse(path, "drop")
        if parsed.filter is not None or parsed.sub is not None:
            raise InvalidValue(f"drop: {path!r} must name an attribute, without a value filter")
        _check_names(path, parsed, extensions, "drop")
        _check_droppable(path, parsed)
    for field, path in overrides.map.items():
        if field not in PROFILE_FIELDS:
            known = ", ".join(PROFILE_FIELDS)
            raise InvalidValue(f"map: {field!r} is not a card profile field ({known})")
        _check_names(path, _parse(path, f"map.{field}"), extensions, f"map.{field}")
    return overrides


def _parse(path: str, where: str) -> PatchPath:
    try:
        parsed = parse_path(path)
    except FilterSyntaxError as exc:
        raise InvalidValue(f"{where}: {path!r} is not a SCIM attribute path: {exc}") from exc
    if not parsed.attr.name:
        raise InvalidValue(f"{where}: {path!r} names a schema, not an attribute")
    return parsed


#: Core User attributes no connector may drop, and why: the hub could not do its work (or a
#: drop would claim to change what the hub never takes from an IdP anyway).
_UNDROPPABLE: Final = {
    "username": "every User needs one (RFC 7643 §4.1): each create would be refused",
    "active": "deprovisioning reads it: a user the IdP deactivates would keep an active card",
    "id": "the hub sets it; no IdP request changes it",
    "meta": "the hub sets it; no IdP request changes it",
    "groups": "the hub sets it from group memberships; no IdP request changes it",
}


def _check_droppable(path: str, parsed: PatchPath) -> None:
    urn = parsed.attr.urn
    if urn is not None and urn.lower() != USER_SCHEMA.lower():
        return
    reason = _UNDROPPABLE.get(parsed.attr.name.lower())
    if reason is not None:
        raise InvalidValue(f"drop: {path!r} cannot be dropped: {reason}")


def _check_names(path: str, parsed: PatchPath, extensions: set[str], where: str) -> None:
    urn = parsed.attr.urn
    if urn is not None and urn.lower() in extensions:
        return
    names = [parsed.attr.name]
    if parsed.attr.sub is not None:
        names.append(parsed.attr.sub)
    if parsed.sub is not None:
        names.append(parsed.sub)
    if lookup(USER_TYPE, urn, tuple(names)) is None:
        raise InvalidValue(
            f"{where}: {path!r} names no attribute of the User schemas"
            " nor of a custom extension listed in 'extensions'"
        )


def overrides_of(raw: Mapping[str, Any] | None) -> Overrides:
    """The overrides stored on a connector (already validated when saved)."""
    if not raw:
        return NO_OVERRIDES
    return msgspec.convert(raw, Overrides)


def effective_mapping(dialect: Dialect | None, overrides: Overrides) -> dict[str, str]:
    """The dialect's mapping with the connector's `map` on top, minus fields read from `drop`."""
    mapping = dict(dialect.mapping) if dialect is not None else {}
    mapping.update(overrides.map)
    dropped = _ignored(tuple(overrides.drop))
    return {f: p for f, p in mapping.items() if not dropped.covers(attribute_key(p))}


def ignored_paths(dialect: Dialect | None, overrides: Overrides) -> tuple[str, ...]:
    """Attribute paths the hub ignores in the connector's requests (and keeps on PUT)."""
    unmanaged = dialect.unmanaged if dialect is not None else ()
    return tuple(dict.fromkeys((*unmanaged, *overrides.drop)))


# --- ignoring attributes in requests ----------------------------------------------------------

_Key = tuple[str | None, str, str | None]  # (extension urn or None, attribute, sub-attribute)


@functools.lru_cache(maxsize=4096)  # request keys repeat endlessly; parsing them does not need to
def attribute_key(path: str) -> _Key | None:
    """A User attribute path as lower-cased (extension URN or None, name, sub-attribute).

    The core User schema's URN counts as none; None when the path does not parse.
    """
    try:
        parsed = parse_path(path)
    except FilterSyntaxError:
        return None
    urn = parsed.attr.urn
    if urn is not None and urn.lower() == USER_SCHEMA.lower():
        urn = None
    sub = parsed.attr.sub if parsed.attr.sub is not None else parsed.sub
    return (
        urn.lower() if urn is not None else None,
        parsed.attr.name.lower(),
        sub.lower() if sub is not None else None,
    )


def _keys(paths: Iterable[str]) -> list[_Key]:
    return [k for k in (attribute_key(p) for p in paths) if k is not None]


class _Ignored(NamedTuple):
    """Ignored paths by attribute: (urn, name) -> (the whole attribute?, sub-attributes)."""

    by_attribute: dict[tuple[str | None, str], tuple[bool, frozenset[str]]]

    def covers(self, key: _Key | None) -> bool:
        """Is the attribute `key` wholly inside an ignored path?"""
        if key is None:
            return False
        entry = self.by_attribute.get((key[0], key[1]))
        return entry is not None and (entry[0] or key[2] in entry[1])

    def subs(self, urn: str | None, name: str) -> frozenset[str]:
        """The ignored sub-attributes of an attribute that is not ignored whole."""
        entry = self.by_attribute.get((urn, name))
        return _NO_SUBS if entry is None else entry[1]


_NO_SUBS: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=256)  # a connector's paths are the same on every request
def _ignored(paths: tuple[str, ...]) -> _Ignored:
    whole: dict[tuple[str | None, str], bool] = {}
    subs: dict[tuple[str | None, str], set[str]] = {}
    for urn, name, sub in _keys(paths):
        attribute = (urn, name)
        whole[attribute] = whole.get(attribute, False) or sub is None
        subs.setdefault(attribute, set())
        if sub is not None:
            subs[attribute].add(sub)
    return _Ignored({a: (whole[a], frozenset(subs[a])) for a in whole})


def strip_ignored(body: JSON, kind: str, paths: Sequence[str]) -> JSON:
    """Remove the ignored attribute `paths` from a request body.

    `kind` is ``"resource"`` (POST/PUT body) or ``"patch"`` (a PatchOp): operations whose path
    lies inside an ignored attribute are dropped, and ignored keys are taken out of path-less
    values (dotted and URN-qualified keys included). A PatchOp left with no operation changes
    nothing and still answers with the resource (`hub.core.patch`: an empty list is a no-op).
    """
    ignored = _ignored(tuple(paths))
    if not ignored.by_attribute:
        return body
    if kind == "resource":
        return _strip_object(body, None, ignored)
    operations_key = next((k for k in body if k.lower() == "operations"), None)
    operations = body.get(operations_key) if operations_key is not None else None
    if not isinstance(operations, list):
        return body
    kept = [op for op in (_strip_operation(op, ignored) for op in operations) if op is not None]
    result = dict(body)
    result[operations_key] = kept  # type: ignore[index]
    return result


def _strip_object(value: Mapping[str, Any], urn: str | None, ignored: _Ignored) -> JSON:
    """Strip ignored attributes from a resource-shaped object.

    `urn` is None for a resource or a path-less PATCH value (whose keys may be plain, dotted,
    value-filtered or URN-qualified paths, or extension objects), or the lower-cased URN of the
    extension object being stripped.
    """
    result: JSON = {}
    by_attribute = ignored.by_attribute
    for key, item in value.items():
        path_key = (urn, key.lower(), None) if urn is not None else attribute_key(key)
        if path_key is None:
            result[key] = item
            continue
        key_urn, name, sub = path_key
        if name == "":  # an extension object, keyed by its URN
            result[key] = _strip_object(item, key_urn, ignored) if isinstance(item, dict) else item
            continue
        entry = by_attribute.get((key_urn, name))
        if entry is not None:
            whole, subs = entry
            if whole or sub in subs:
                continue
            if sub is None and subs:
                item = _strip_subs(item, subs)
        result[key] = item
    return result


def _strip_subs(value: Any, subs: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k.lower() not in subs}
    if isinstance(value, list):
        return [_strip_subs(v, subs) for v in value]
    return value


def _strip_operation(operation: Any, ignored: _Ignored) -> Any:
    if not isinstance(operation, dict):
        return operation
    path = next((v for k, v in operation.items() if k.lower() == "path"), None)
    value_key = next((k for k in operation if k.lower() == "value"), None)
    if path is None:
        if value_key is None or not isinstance(operation[value_key], dict):
            return operation
        stripped = dict(operation)
        stripped[value_key] = _strip_object(operation[value_key], None, ignored)
        return stripped
    if not isinstance(path, str):
        return operation
    key = attribute_key(path)
    if key is None:
        return operation
    if key[1] == "":  # a bare extension URN: its value is the extension object
        if value_key is None or not isinstance(operation[value_key], dict):
            return operation
        stripped = dict(operation)
        stripped[value_key] = _strip_object(operation[value_key], key[0], ignored)
        return stripped
    if ignored.covers(key):
        return None
    if key[2] is None and value_key is not None:
        subs = ignored.subs(key[0], key[1])
        if subs:
            stripped = dict(operation)
            stripped[value_key] = _strip_subs(json_copy(operation[value_key]), subs)
            return stripped
    return operation


# --- connector services -----------------------------------------------------------------------

_INFO_COLUMNS = (
    connectors.c.pk,
    connectors.c.id,
    connectors.c.name,
    connectors.c.idp,
    connectors.c.enabled,
    connectors.c.created,
    connectors.c.last_request,
    connectors.c.overrides,
)


def _info(conn: Connection, row: Any) -> ConnectorInfo:
    count = conn.execute(
        select(func.count())
        .select_from(users)
        .where(users.c.connector_pk == row.pk, users.c.deleted.is_(False))
    ).scalar_one()
    return ConnectorInfo(
        id=row.id,
        name=row.name,
        idp=row.idp,
        enabled=row.enabled,
        created=row.created,
        last_request=row.last_request,
        overrides=overrides_of(row.overrides),
        users=count,
    )


def _find(conn: Connection, workspace_pk: int, ref: str) -> Any:
    """The live connector of the workspace whose id or name is `ref`.

    Names are stored stripped (`create_connector`), so `ref` is looked up stripped too.
    """
    wanted = ref.strip()
    row = conn.execute(
        select(*_INFO_COLUMNS)
        .where(
            connectors.c.workspace_pk == workspace_pk,
            connectors.c.deleted.is_(None),
            (connectors.c.id == wanted) | (connectors.c.name == wanted),
        )
        .order_by(connectors.c.pk)
    ).first()
    if row is None:
        raise NotFound(f"no connector {ref!r} in this workspace")
    return row


def list_connectors(conn: Connection, workspace_pk: int) -> list[ConnectorInfo]:
    """The workspace's connectors (deleted ones excluded), oldest first."""
    rows = conn.execute(
        select(*_INFO_COLUMNS)
        .where(connectors.c.workspace_pk == workspace_pk, connectors.c.deleted.is_(None))
        .order_by(connectors.c.pk)
    ).all()
    return [_info(conn, row) for row in rows]


def get_connector(conn: Connection, workspace_pk: int, ref: str) -> ConnectorInfo:
    """One connector by id or name.

    Raises:
        NotFound: no live connector with that id or name.
    """
    return _info(conn, _find(conn, workspace_pk, ref))


def create_connector(
    conn: Connection, workspace_pk: int, *, name: str, idp: str, installed: Iterable[str]
) -> ConnectorInfo:
    """Enable an installed IdP in the workspace under `name` (enabled, no token yet).

    Raises:
        InvalidValue: the name is empty or too long, or `idp` is not an installed IdP.
        Conflict: the workspace has a connector with that name.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidValue("name must be 1 to 200 characters")
    known = sorted(installed)
    if idp not in known:
        raise InvalidValue(f"idp {idp!r} is not an installed IdP ({', '.join(known) or 'none'})")
    taken = conn.execute(
        select(connectors.c.pk).where(
            connectors.c.workspace_pk == workspace_pk, connectors.c.name == name
        )
    ).first()
    if taken is not None:
        raise Conflict(f"the workspace has a connector named {name!r} already")
    pk = conn.execute(
        connectors.insert()
        .values(
            id=new_id(),
            workspace_pk=workspace_pk,
            name=name,
            idp=idp,
            enabled=True,
            created=now_us(),
        )
        .returning(connectors.c.pk)
    ).scalar_one()
    row = conn.execute(select(*_INFO_COLUMNS).where(connectors.c.pk == pk)).one()
    return _info(conn, row)


def set_enabled(conn: Connection, workspace_pk: int, ref: str, enabled: bool) -> ConnectorInfo:
    """Disable (its tokens stop working at once) or re-enable (they work again) a connector.

    Raises:
        NotFound: no live connector with that id or name.
    """
    row = _find(conn, workspace_pk, ref)
    conn.execute(update(connectors).where(connectors.c.pk == row.pk).values(enabled=enabled))
    return get_connector(conn, workspace_pk, row.id)


def delete_connector(conn: Connection, workspace_pk: int, ref: str) -> None:
    """Delete a connector: its tokens are revoked for good; its users stay, marked with it.

    The row stays (soft deletion) so users keep their source; its name gets a "(deleted …)"
    suffix, freeing the name for a new connector.

    Raises:
        NotFound: no live connector with that id or name.
    """
    row = _find(conn, workspace_pk, ref)
    now = now_us()
    conn.execute(
        update(tokens)
        .where(tokens.c.connector_pk == row.pk, tokens.c.revoked.is_(None))
        .values(revoked=now)
    )
    suffix = f" (deleted {row.id[:8]})"
    conn.execute(
        update(connectors)
        .where(connectors.c.pk == row.pk)
        .values(enabled=False, deleted=now, name=row.name[: 200 - len(suffix)] + suffix)
    )


def save_overrides(conn: Connection, workspace_pk: int, ref: str, raw: Any) -> ConnectorInfo:
    """Validate and store a connector's mapping overrides (replacing the previous ones).

    Raises:
        NotFound: no live connector with that id or name.
        InvalidValue: the overrides are not valid (see `parse_overrides`).
    """
    row = _find(conn, workspace_pk, ref)
    overrides = parse_overrides(raw)
    stored = msgspec.to_builtins(overrides) if overrides != NO_OVERRIDES else None
    conn.execute(update(connectors).where(connectors.c.pk == row.pk).values(overrides=stored))
    return get_connector(conn, workspace_pk, row.id)


def connector_tokens(conn: Connection, workspace_pk: int, ref: str) -> list[TokenInfo]:
    """The connector's live tokens with creator and last use.

    Raises:
        NotFound: no live connector with that id or name.
    """
    row = _find(conn, workspace_pk, ref)
    return list_tokens(conn, workspace_pk=workspace_pk, connector_pk=row.pk)


def generate_token(conn: Connection, workspace_pk: int, ref: str, admin_pk: int) -> NewToken:
    """Make one more token for the connector (shown once).

    Raises:
        NotFound: no live connector with that id or name.
    """
    row = _find(conn, workspace_pk, ref)
    return create_token(conn, connector_pk=row.pk, admin_pk=admin_pk)


def regenerate_token(conn: Connection, workspace_pk: int, ref: str, admin_pk: int) -> NewToken:
    """Revoke every live token of the connector and make a new one (shown once).

    Raises:
        NotFound: no live connector with that id or name.
    """
    row = _find(conn, workspace_pk, ref)
    conn.execute(
        update(tokens)
        .where(tokens.c.connector_pk == row.pk, tokens.c.revoked.is_(None))
        .values(revoked=now_us())
    )
    return create_token(conn, connector_pk=row.pk, admin_pk=admin_pk)


def revoke_token(conn: Connection, workspace_pk: int, ref: str, token_id: str) -> None:
    """Revoke one token of the connector.

    Raises:
        NotFound: no such connector, or no live token with that id on it.
    """
    row = _find(conn, workspace_pk, ref)
    result = conn.execute(
        update(tokens)
        .where(
            tokens.c.connector_pk == row.pk,
            tokens.c.id == token_id,
            tokens.c.revoked.is_(None),
        )
        .values(revoked=now_us())
    )
    if result.rowcount == 0:
        raise NotFound(f"no live token {token_id!r} on connector {row.name!r}")


def admin_email(conn: Connection, admin_pk: int) -> str:
    """The email of an admin (what token listings show as the creator)."""
    return str(conn.execute(select(admins.c.email).where(admins.c.pk == admin_pk)).scalar_one())
