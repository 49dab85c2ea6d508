"""PATCH semantics (RFC 7644 §3.5.2) as a pure function over a stored resource document.

`apply_patch` deep-copies the stored document and applies each operation to the copy, so a PATCH
that fails half-way leaves the stored state unchanged. The caller re-validates the result with
`hub.core.attributes.canonicalise`.

Decisions on points the RFC leaves open or that IdPs rely on:

* ``op`` and the operation's member names are case-insensitive: Entra ID sends ``"Replace"``.
* add/replace through a value filter that matches no element creates the element from the
  filter's ``eq`` clauses plus the value, e.g. ``addresses[type eq "work"].streetAddress``
  creates ``{"type": "work", "streetAddress": ...}``. RFC 7644 §3.5.2.3 asks for ``noTarget``
  here, but Entra ID sends exactly these paths for users that have no such element yet and
  treats the error as a failed export. A filter that is not a conjunction of ``eq`` clauses
  cannot describe a new element and still gives ``noTarget``.
* remove through a filter that matches nothing, or of an attribute that has no value, succeeds
  without change. RFC 7644 §3.5.2.2 only requires ``noTarget`` for a missing path; Entra ID and
  Okta retry removals (``members[value eq "id"]``) and must not see an error once the member is
  already gone, and a retried DELETE-like operation being idempotent is what clients expect.
* a null ``value`` on add/replace means "unassigned" (RFC 7643 §2.5): the target is cleared.
* replace of a complex attribute merges sub-attributes (RFC 7644 §3.5.2.3: "sub-attributes that
  are not specified in the value parameter are left unchanged"), as add does.
* Entra ID sends ``urn:...:enterprise:2.0:User:manager`` with a bare string: it is taken as
  ``{"value": <string>}``, and an empty one removes the manager; so does ``{"value": ""}``,
  the same request in object form (a manager whose id is empty refers to nobody).
* ``readOnly`` sub-attributes inside a value object (Okta sends member ``display``) are ignored
  as on PUT; a *path* naming a ``readOnly`` attribute is a ``mutability`` error.
* a path into a custom extension (an Entra or Okta custom-attribute namespace the hub has no
  schema for) is accepted when the document lists that URN in ``schemas``, or when the URN is in
  the custom-extension namespace ``urn:ietf:params:scim:schemas:extension:`` (it is then added to
  ``schemas``: IdPs PATCH newly mapped custom attributes into existing users); its attributes are
  stored as sent, like on POST/PUT. A value filter selects elements of a list stored there
  (``urn:…:acme:2.0:User:contacts[primary eq true].value``), as discovery describes the list as
  a multi-valued complex attribute: each compared sub-attribute takes the type of the value it
  is compared with, as in list filters, and the filter's ``eq`` clauses make the missing
  element, as for the hub's own attributes.
* a path naming an attribute the hub's schema lacks (``costCode``, ``name.middleName2``,
  ``urn:…:enterprise:2.0:User:costCentre``) is accepted when the workspace's discovery describes
  it (`hub.core.extensions`: a resource holds it), as the client was told the schema has it;
  its value is stored as sent. A value filter may name such a list or sub-attribute
  (``adreses[floor eq 3].street``, ``emails[verified eq true].value``), selecting elements as
  in a custom extension's list. Any other is ``invalidPath``.
* errors in path syntax and in the path's filter (unknown attribute, bad comparison) are all
  ``invalidPath``: the client must fix the path.
* an empty ``Operations`` list changes nothing and succeeds. RFC 7644 §3.5.2 asks the client for
  "one or more" operations, but Microsoft's SCIM Validator (scimvalidator.microsoft.com) sends
  an empty list before its PATCH tests and counts an error as a failed test; a missing or
  non-list ``Operations`` is still ``invalidSyntax``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hub.core.attributes import (
    canonical_value,
    describe_for,
    foreign_schema,
    is_extension_schemas,
    json_copy,
    misplaced_schema,
)
from hub.core.errors import (
    InvalidPath,
    InvalidSyntax,
    InvalidValue,
    Mutability,
    NoTarget,
    ScimError,
)
from hub.core.schema import Attribute, ResourceType, Schema, schema_owner
from rules import (
    And,
    AttrInfo,
    AttrPath,
    Compare,
    Describe,
    Filter,
    FilterSyntaxError,
    InvalidComparison,
    Not,
    Or,
    PatchPath,
    Present,
    UnknownAttribute,
    ValuePath,
    compile_predicate,
    evaluate,
    parse_path,
)

_OPS = ("add", "remove", "replace")
#: Where custom extension schemas live (RFC 7643 §3; Entra ID's and Okta's custom attributes).
_CUSTOM_NAMESPACE = "urn:ietf:params:scim:schemas:extension:"
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class _Operation:
    op: str
    path: str | None
    value: Any  # _MISSING when the operation has no "value" member


@dataclass(frozen=True, slots=True)
class _Target:
    """A resolved PATCH path: where it lives in the document and what the schema says of it."""

    text: str
    extension: Schema | None
    attribute: Attribute | None  # None: the whole extension object
    filter: Filter | None
    sub: Attribute | None


def without_own_id(operations: Any, resource_id: str) -> Any:
    """`operations`, with the resource's own ``id`` taken out of every path-less value.

    ``id`` is readOnly, but sending its stored value changes nothing, and RFC 7644 §3.5.2 only
    forbids changing it: a client may send back what it read (Okta renames a group with
    ``{"op": "replace", "value": {"id": …, "displayName": …}}``), as a PUT may (§3.5.1). Any
    other ``id`` is left in place for `apply_patch` to refuse (``mutability``).
    """
    if not isinstance(operations, list):
        return operations
    return [_without_own_id(operation, resource_id) for operation in operations]


def _without_own_id(operation: Any, resource_id: str) -> Any:
    if not isinstance(operation, Mapping):
        return operation
    fields = {str(k).lower(): k for k in operation}
    value = operation.get(fields.get("value", ""))
    if operation.get(fields.get("path", "")) or not isinstance(value, Mapping):
        return operation
    kept = {k: v for k, v in value.items() if str(k).lower() != "id" or v != resource_id}
    if len(kept) == len(value):
        return operation
    return {**operation, fields["value"]: kept}


def apply_patch(
    resource: Mapping[str, Any],
    operations: list[Any],
    resource_type: ResourceType,
    *,
    max_operations: int = 1000,
    described: Callable[[str], bool] | None = None,
    undefined: Callable[[str, str, str], tuple[str, bool] | None] | None = None,
) -> dict[str, Any]:
    """Apply a PatchOp's ``Operations`` to a stored resource (RFC 7644 §3.5.2).

    See the module docstring for the decisions taken where the RFC and IdP behaviour differ.
    After every operation at most one element of a multi-valued attribute keeps
    ``primary: true`` (RFC 7643 §2.4); the element the operation wrote wins.

    Args:
        resource: the stored canonical document (without ``id``/``meta``/``groups``/``members``
            that the service renders). Never mutated.
        operations: the raw ``Operations`` list of the PatchOp body.
        resource_type: the resource's type.
        max_operations: the most operations one request may carry.
        described: says whether a URN is a custom extension the workspace's discovery
            describes for this resource type (`hub.core.extensions`); asked only for a path
            into an unlisted extension outside ``urn:ietf:params:scim:schemas:extension:``.
        undefined: the type and multiValued discovery shows for an attribute (schema id,
            name, and sub-attribute or "") the hub's schema lacks, None if it shows none;
            asked only for a path the schema does not resolve.

    Returns:
        A new document with every operation applied.

    Raises:
        InvalidSyntax: ``Operations`` is not a list, or an operation is malformed.
        InvalidValue: too many operations, a missing or mistyped value.
        InvalidPath: a path does not parse or names nothing in the schema.
        NoTarget: remove without a path, or a filter that cannot create the missing element.
        Mutability: the operation would change a ``readOnly`` or set ``immutable`` attribute.
    """
    if not isinstance(operations, list):
        raise InvalidSyntax("'Operations' must be a list of operations")
    if len(operations) > max_operations:
        raise InvalidValue(f"a PATCH may carry at most {max_operations} operations")
    patcher = _Patcher(json_copy(dict(resource)), resource_type, described, undefined)
    for index, raw in enumerate(operations):
        try:
            patcher.apply(_operation(raw))
        except ScimError as error:
            raise type(error)(f"Operations[{index}]: {error.detail}") from error
    return patcher.doc


def _operation(raw: Any) -> _Operation:
    if not isinstance(raw, Mapping):
        raise InvalidSyntax("an operation must be a JSON object")
    members = {str(key).lower(): value for key, value in raw.items()}
    op = members.get("op")
    if not isinstance(op, str) or op.lower() not in _OPS:
        raise InvalidSyntax(f"op must be add, remove or replace, got {op!r}")
    path = members.get("path")
    if path is not None and not isinstance(path, str):
        raise InvalidPath(f"path must be a string, got {path!r}")
    text = path.strip() if path else ""
    return _Operation(op.lower(), text or None, members.get("value", _MISSING))


class _Patcher:
    """Applies operations, one at a time, to a document it owns."""

    def __init__(
        self,
        doc: dict[str, Any],
        resource_type: ResourceType,
        described: Callable[[str], bool] | None = None,
        undefined: Callable[[str, str, str], tuple[str, bool] | None] | None = None,
    ) -> None:
        self.doc = doc
        self.type = resource_type
        self.described = described
        self.undefined = undefined
        self.describe: Describe = describe_for(resource_type)

    def apply(self, operation: _Operation) -> None:
        if operation.path is not None:
            refused = self.misplaced(operation.path)
            if refused is not None:
                raise InvalidPath(f"path {operation.path!r}: {refused}")
        if operation.op == "remove":
            if operation.path is None:
                raise NoTarget("remove requires a path (RFC 7644 §3.5.2.2)")
            if self.custom(operation.op, operation.path, None):
                return
            target = self.resolved(operation.op, operation.path, None)
            if target is not None:
                self.remove(target, operation.value)
            return
        if operation.value is _MISSING:
            raise InvalidValue(f"{operation.op} requires a value")
        if operation.path is not None:
            if not self.custom(operation.op, operation.path, operation.value):
                target = self.resolved(operation.op, operation.path, operation.value)
                if target is not None:
                    self.write(operation.op, target, operation.value)
            return
        if not isinstance(operation.value, Mapping):
            raise InvalidValue(f"{operation.op} without a path needs an object value")
        for key, item in operation.value.items():
            self.pathless(operation.op, str(key), item)

    # -- paths ------------------------------------------------------------------------------

    def pathless(self, op: str, key: str, value: Any) -> None:
        """One member of a path-less add/replace value (RFC 7644 §3.5.2.1, §3.5.2.3)."""
        lowered = key.lower()
        if lowered == "schemas":
            return  # kept in step with the extensions present; clients cannot edit it
        head = re.split(r"[.\[]", lowered, maxsplit=1)[0]
        refused = self.misplaced(key)
        if refused is not None:
            raise InvalidValue(refused)
        if lowered.startswith("urn:") or self.type.attribute(head) is not None:
            if not self.custom(op, key, value):
                self.write(op, self.resolve(key), value)
        else:  # unknown attributes are stored as sent, like on POST/PUT
            _put_raw(self.doc, key, value)

    def misplaced(self, text: str) -> str | None:
        """Why a path (or path-less key) into one of the hub's schemas is refused, if it is.

        `attributes.misplaced_schema`: the Enterprise User extension on a Group, the core URN
        alone. Asked before `custom`, which would take such a URN on as a custom extension.
        """
        if text[:4].lower() != "urn:":
            return None
        refused = misplaced_schema(text, self.type)  # the whole text one URN
        if refused is not None:
            return refused
        try:
            attr = parse_path(text).attr
        except FilterSyntaxError:
            return None  # `resolve` says what is wrong with it
        if attr.urn is None:
            return None
        schema = f"{attr.urn}:{attr.name}"
        if attr.name and schema_owner(schema) is not None:
            # `urn:…:enterprise:2.0:User.department` reads as attribute `User` of a custom
            # extension `urn:…:2.0`: taken on as one, it was stored and shown in `/Schemas`.
            return (
                f"{schema!r} is a schema: its attributes follow its URN after a colon"
                f" ({schema}:{attr.sub or 'attributeName'}), not a dot"
            )
        return foreign_schema(attr.urn, self.type)

    def extends(self, urn: str) -> bool:
        """Whether a resource not listing `urn` may take it on: a custom extension's URN.

        One in the namespace RFC 7643 gives extensions, or one discovery describes for the type
        (another resource of the workspace holds it).
        """
        if urn.lower().startswith(_CUSTOM_NAMESPACE):
            return True
        return self.described is not None and self.described(urn)

    def custom(self, op: str, text: str, value: Any) -> bool:
        """Apply `op` if `text` is a path into a custom extension listed in ``schemas``.

        Returns False (nothing done) for any other path.
        """
        if not text.lower().startswith("urn:"):
            return False
        try:
            parsed = parse_path(text)
        except FilterSyntaxError:
            return False
        urn = parsed.attr.urn
        if urn is None or urn.lower() == self.type.schema.id.lower() or self.type.extension(urn):
            return False
        schemas = self.doc.get("schemas")
        names = [n for n in (parsed.attr.name, parsed.attr.sub or parsed.sub) if n]
        if parsed.filter is None and self._whole_urn(text, schemas):
            # `urn:…:extension:acme:User` parses as attribute `User` of `urn:…:acme`; RFC
            # 7644's grammar cannot tell, so a URN the resource or discovery knows wins.
            urn, names = text, []
        listed = (
            next((s for s in schemas if isinstance(s, str) and s.lower() == urn.lower()), None)
            if isinstance(schemas, list)
            else None
        )
        if listed is None and (not isinstance(schemas, list) or not self.extends(urn)):
            return False
        if listed is None:
            if op == "remove" or value is None:
                return True  # nothing is stored under an extension the user does not have
            # Entra ID and Okta PATCH custom attributes into users created before the attribute
            # was mapped: take the extension on, listed in `schemas` as RFC 7643 §3 requires.
            assert isinstance(schemas, list)
            schemas.append(urn)
            listed = urn
        key = _key_of(self.doc, listed)
        if parsed.filter is not None and names:
            self._custom_filtered(op, text, parsed, listed, value)
            return True
        holder = self.doc.get(key)
        if op == "remove" or value is None:
            if isinstance(holder, dict) and names:
                inner = holder if len(names) == 1 else holder.get(_key_of(holder, names[0]))
                if isinstance(inner, dict):
                    inner.pop(_key_of(inner, names[-1]), None)
            if not names or (isinstance(holder, dict) and not holder):
                # No attribute of it left: unlisted too, as a known extension is.
                self.doc.pop(key, None)
                assert isinstance(schemas, list)
                schemas.remove(listed)
            return True
        if not isinstance(holder, dict):
            holder = self.doc[key] = {}
        if not names:
            if not isinstance(value, Mapping):
                raise InvalidValue(f"{urn!r} must be a JSON object")
            for name, item in value.items():
                if not is_extension_schemas(str(name)):
                    _put_custom(op, holder, str(name), item)
        elif len(names) == 1:
            _put_custom(op, holder, names[0], value)
        else:
            inner = holder.get(_key_of(holder, names[0]))
            if not isinstance(inner, dict):
                inner = {}
                _put_raw(holder, names[0], inner)
                inner = holder[names[0]]
            _put_custom(op, inner, names[1], value)
        return True

    def _custom_filtered(
        self, op: str, text: str, parsed: PatchPath, listed: str, value: Any
    ) -> None:
        """Apply `op` to the elements a value filter selects in a custom extension's list."""
        assert parsed.filter is not None
        name = parsed.attr.name
        selects = _schemaless_selector(parsed.attr.urn or listed, name, parsed.filter, text)
        key = _key_of(self.doc, listed)
        holder = self.doc.get(key)
        if not isinstance(holder, dict):
            if op == "remove" or value is None:
                return
            holder = self.doc[key] = {}
        _write_filtered(op, text, parsed, holder, selects, value)
        if not holder:  # no attribute of the extension left: unlisted too
            self.doc.pop(key, None)
            schemas = self.doc.get("schemas")
            if isinstance(schemas, list) and listed in schemas:
                schemas.remove(listed)

    def _whole_urn(self, text: str, schemas: Any) -> bool:
        """Whether `text` is a whole custom extension URN: listed, or described by discovery."""
        lowered = text.lower()
        if isinstance(schemas, list) and any(
            isinstance(s, str) and s.lower() == lowered for s in schemas
        ):
            return True
        return self.described is not None and self.described(text)

    def resolved(self, op: str, text: str, value: Any) -> _Target | None:
        """`resolve`, or None once `op` is applied to an attribute the schema lacks.

        Such an attribute is one discovery describes (`put_undefined`).
        """
        try:
            return self.resolve(text)
        except InvalidPath:
            if self.undefined is None or not (
                self.put_undefined(op, text, value) or self.put_filtered(op, text, value)
            ):
                raise
            return None

    def put_undefined(self, op: str, text: str, value: Any) -> bool:
        """Apply `op` if `text` names an attribute the schema lacks and discovery describes.

        Or a sub-attribute of a single-valued complex one; the value is stored as sent
        (`_put_custom`).
        """
        assert self.undefined is not None
        try:
            parsed = parse_path(text)
        except FilterSyntaxError:
            return False
        urn = parsed.attr.urn
        extension = None
        if urn is not None and urn.lower() != self.type.schema.id.lower():
            extension = self.type.extension(urn)
            if extension is None:
                return False
        names = [n for n in (parsed.attr.name, parsed.attr.sub or parsed.sub) if n]
        if parsed.filter is not None or not names:
            return False
        schema = extension or self.type.schema
        name, sub = names[0], names[1] if len(names) > 1 else ""
        defined = (extension or self.type).attribute(name)
        if defined is not None:
            if not sub or defined.type != "complex" or defined.multi_valued:
                return False
            if defined.sub(sub) is not None:
                return False
            name = defined.name
        if self.undefined(schema.id, name, sub) is None:
            return False
        clear = op == "remove" or value is None
        holder = self.container(_Target(text, extension, None, None, None), create=not clear)
        if holder is None:
            return True  # nothing stored under the extension: nothing to remove
        if sub:
            key = _key_of(holder, name)
            inner = holder.get(key)
            if not isinstance(inner, dict):
                if clear:
                    return True
                inner = holder[key] = {}
            holder, name = inner, sub
        if clear:
            holder.pop(_key_of(holder, name), None)
        else:
            _put_custom(op, holder, name, value)
        return True

    def put_filtered(self, op: str, text: str, value: Any) -> bool:
        """Apply `op` through a value filter naming what the schema lacks and discovery describes.

        A list the schema lacks (``adreses[floor eq 3].streetAddress``), or a sub-attribute a
        list of the schema lacks, in the filter or after it (``emails[verified eq true].value``):
        the client was told the schema has it, and list filters take it. Selected and written as
        in a custom extension's list (`_write_filtered`); a sub-attribute the schema defines is
        compared as its type, one it lacks as the type of its filter value.
        """
        assert self.undefined is not None
        try:
            parsed = parse_path(text)
        except FilterSyntaxError:
            return False
        if parsed.filter is None or parsed.attr.sub is not None:
            return False
        urn, name = parsed.attr.urn, parsed.attr.name
        extension = None
        if urn is not None and urn.lower() != self.type.schema.id.lower():
            extension = self.type.extension(urn)
            if extension is None:
                return False
        schema = extension or self.type.schema
        defined = (extension or self.type).attribute(name)  # the common attributes too
        if defined is None:
            if self.undefined(schema.id, name, "") != ("complex", True):
                return False
            known: dict[str, str] = {}
        elif defined.type == "complex" and defined.multi_valued:
            name = defined.name
            known = {sub.name.lower(): sub.type for sub in defined.sub_attributes}
        else:
            return False
        compared: dict[str, str] = {}
        _schemaless_types(parsed.filter, compared)
        named = {*compared, *([parsed.sub.lower()] if parsed.sub else [])}
        lacking = named - set(known)
        if not lacking or any(self.undefined(schema.id, name, sub) is None for sub in lacking):
            return False  # nothing the schema lacks, or what discovery does not show either
        selects = _schemaless_selector(_PROBE_URN, name, parsed.filter, text, known)
        target = _Target(text, extension, None, None, None)
        holder = self.container(target, create=not (op == "remove" or value is None))
        if holder is not None:
            _write_filtered(op, text, parsed, holder, selects, value)
            self._drop_empty_extension(target)
        return True

    def resolve(self, text: str) -> _Target:
        try:
            parsed = parse_path(text)
        except FilterSyntaxError as error:
            raise InvalidPath(f"invalid path {text!r}: {error}") from error
        urn, name = parsed.attr.urn, parsed.attr.name
        extension = None
        if urn is not None and urn.lower() != self.type.schema.id.lower():
            extension = self.type.extension(urn)
            if extension is None:
                raise InvalidPath(f"{urn!r} is not a schema of {self.type.name}")
        if not name:
            if extension is None:
                raise InvalidPath(f"path {text!r} names no attribute")
            return _Target(text, extension, None, None, None)
        attribute = (extension or self.type.schema).attribute(name)
        if extension is None and attribute is None:
            attribute = self.type.attribute(name)
        if attribute is None:
            raise InvalidPath(f"path {text!r}: no attribute {name!r} in the schema")
        target = _Target(
            text, extension, attribute, parsed.filter, self._sub(text, attribute, parsed)
        )
        if parsed.filter is not None:
            self._check_filter(target)
        return target

    def _check_filter(self, target: _Target) -> None:
        """Refuse a value filter naming what the attribute lacks, before any element is tried.

        Tried only against stored elements, `emails[foo eq "x"]` passed on a user without emails
        (and an add built an element from it) and failed on one with emails.
        """
        assert target.attribute is not None
        assert target.filter is not None
        path = AttrPath(
            target.extension.id if target.extension else None, target.attribute.name, None
        )
        try:
            compile_predicate(ValuePath(path, target.filter), self.describe)
        except (UnknownAttribute, InvalidComparison) as error:
            raise InvalidPath(f"path {target.text!r}: {error}") from error

    def _sub(self, text: str, attribute: Attribute, parsed: Any) -> Attribute | None:
        if parsed.filter is not None and not attribute.multi_valued:
            raise InvalidPath(f"path {text!r}: {attribute.name!r} is not multi-valued")
        name = parsed.attr.sub or parsed.sub
        if name is None:
            return None
        sub = attribute.sub(name)
        if sub is None:
            raise InvalidPath(f"path {text!r}: {attribute.name!r} has no sub-attribute {name!r}")
        return sub

    def container(self, target: _Target, *, create: bool) -> dict[str, Any] | None:
        if target.extension is None:
            return self.doc
        key = _key_of(self.doc, target.extension.id)
        found = self.doc.get(key)
        if isinstance(found, dict):
            return found
        if not create:
            return None
        created: dict[str, Any] = {}
        self.doc[target.extension.id] = created
        schemas = self.doc.setdefault("schemas", [self.type.schema.id])
        if isinstance(schemas, list) and target.extension.id not in schemas:
            schemas.append(target.extension.id)  # an extension present must be listed (RFC 7643 §3)
        return created

    # -- add / replace --------------------------------------------------------------------

    def write(self, op: str, target: _Target, value: Any) -> None:
        if value is None or (_empty_reference(value) and _bare_reference(target)):
            # null means unassigned (RFC 7643 §2.5); so does an empty id, how Entra ID
            # removes a manager (Microsoft's validator: "remove (Replace with empty)").
            self.remove(target, _MISSING)
            return
        if target.attribute is None:
            self._write_extension(op, target, value)
            return
        _check_writable(target)
        holder = self.container(target, create=True)
        assert holder is not None
        if target.filter is not None:
            self._write_filtered(op, target, target.attribute, holder, value)
        elif target.sub is not None:
            self._write_sub(target, target.attribute, target.sub, holder, value)
        elif target.attribute.multi_valued:
            self._write_multi(op, target, target.attribute, holder, value)
        else:
            self._write_single(target.attribute, holder, value, target.text)

    def _write_extension(self, op: str, target: _Target, value: Any) -> None:
        assert target.extension is not None
        if not isinstance(value, Mapping):
            raise InvalidValue(f"{target.extension.id!r} must be a JSON object")
        for key, item in value.items():
            if is_extension_schemas(str(key)):
                continue
            if target.extension.attribute(str(key)) is None:
                holder = self.container(target, create=True)
                assert holder is not None
                _put_raw(holder, str(key), item)
            else:
                self.write(op, self.resolve(f"{target.extension.id}:{key}"), item)

    def _write_single(
        self, attribute: Attribute, holder: dict[str, Any], value: Any, where: str
    ) -> None:
        if attribute.type == "complex" and isinstance(value, str) and attribute.sub("value"):
            value = {"value": value}  # Entra ID's manager: a bare id for a complex attribute
        new = canonical_value(attribute, value, where)
        key = _key_of(holder, attribute.name)
        if attribute.type != "complex":
            _assign(holder, key, attribute, new)
            return
        merged = _dict_at(holder, key)
        for sub_key, sub_value in (new or {}).items():
            sub = attribute.sub(sub_key)
            if sub is None:
                merged[sub_key] = sub_value
            else:
                _assign(merged, _key_of(merged, sub.name), sub, sub_value)
        for cleared in _null_keys(value):  # {"givenName": null} unassigns it (RFC 7643 §2.5)
            sub = attribute.sub(cleared)
            _check_removable(sub, merged.get(_key_of(merged, cleared)), where)
            merged.pop(_key_of(merged, sub.name if sub else cleared), None)
        _put(holder, key, merged)

    def _write_multi(
        self, op: str, target: _Target, attribute: Attribute, holder: dict[str, Any], value: Any
    ) -> None:
        items = canonical_value(
            attribute, value if isinstance(value, list) else [value], target.text
        )
        _check_one_primary(items, target.text)
        key = _key_of(holder, attribute.name)
        # RFC 7644 §3.5.2.3: replace without a filter replaces the attribute and all its values.
        if op == "replace":
            elements, written = list(items), items
        else:
            elements, written = _append_held(attribute, _list_at(holder, key), items)
        _one_primary(elements, written)
        _put(holder, key, elements)

    def _write_sub(
        self,
        target: _Target,
        attribute: Attribute,
        sub: Attribute,
        holder: dict[str, Any],
        value: Any,
    ) -> None:
        new = canonical_value(sub, value, target.text)
        key = _key_of(holder, attribute.name)
        if not attribute.multi_valued:
            current = _dict_at(holder, key)
            _assign(current, _key_of(current, sub.name), sub, new)
            _put(holder, key, current)
            return
        # No filter on a multi-valued attribute: every element is the target.
        elements = [e for e in holder.get(key) or [] if isinstance(e, dict)] or [{}]
        for element in elements:
            _assign(element, _key_of(element, sub.name), sub, new)
        _one_primary(elements, elements[-1:])
        _put(holder, key, elements)

    def _write_filtered(
        self, op: str, target: _Target, attribute: Attribute, holder: dict[str, Any], value: Any
    ) -> None:
        key = _key_of(holder, attribute.name)
        elements = list(_list_at(holder, key))
        matches = [e for e in elements if self._matches(target, e)]
        created = not matches
        if created:
            matches = [self._new_element(target)]
            elements.append(matches[0])
        for element in matches:
            if target.sub is not None:
                new = canonical_value(target.sub, value, target.text)
                _assign(element, _key_of(element, target.sub.name), target.sub, new)
            else:
                replace = op == "replace" and not created
                _write_element(attribute, element, value, target.text, replace=replace)
        _one_primary(elements, matches)
        _put(holder, key, [e for e in elements if e != {}])

    def _new_element(self, target: _Target) -> dict[str, Any]:
        assert target.attribute is not None
        template = _eq_template(target.filter)
        if template is None:
            raise NoTarget(f"path {target.text!r} matches no value and cannot create one")
        # Named as the attribute, not the path: the path's sub-attribute is not what is wrong.
        element = canonical_value(target.attribute, [template], target.attribute.name)
        return dict(element[0]) if element else {}

    def _matches(self, target: _Target, element: Any) -> bool:
        if not isinstance(element, Mapping) or target.filter is None or target.attribute is None:
            return False
        # Evaluate `attr[filter]` against a resource holding just this element: the evaluator
        # then resolves the element-relative names through the full ("emails", "type") tuple.
        path = AttrPath(
            target.extension.id if target.extension else None, target.attribute.name, None
        )
        probe: dict[str, Any] = {target.attribute.name: [element]}
        if target.extension is not None:
            probe = {target.extension.id: probe}
        try:
            return evaluate(ValuePath(path, target.filter), probe, self.describe)
        except (UnknownAttribute, InvalidComparison) as error:
            raise InvalidPath(f"path {target.text!r}: {error}") from error

    # -- remove ---------------------------------------------------------------------------

    def remove(self, target: _Target, value: Any) -> None:
        if target.attribute is None:
            self._remove_extension(target)
            return
        _check_writable(target)
        holder = self.container(target, create=False)
        if holder is None:
            return
        key = _key_of(holder, target.attribute.name)
        if key not in holder:
            return  # removing what is absent changes nothing (see the module docstring)
        if target.filter is not None or target.sub is not None:
            self._remove_inside(target, target.attribute, holder, key)
        elif target.attribute.multi_valued and value is not _MISSING and value is not None:
            _remove_listed(target.attribute, holder, key, value)
        else:
            _check_removable(target.attribute, holder.get(key), target.text)
            del holder[key]
        self._drop_empty_extension(target)

    def _remove_inside(
        self, target: _Target, attribute: Attribute, holder: dict[str, Any], key: str
    ) -> None:
        current = holder[key]
        elements = current if isinstance(current, list) else [current]
        kept = []
        for element in elements:
            selected = target.filter is None or self._matches(target, element)
            if selected and target.sub is None:
                continue  # the whole element goes
            if selected and isinstance(element, dict):
                sub_key = _key_of(element, target.sub.name) if target.sub else ""
                _check_removable(target.sub, element.get(sub_key), target.text)
                element.pop(sub_key, None)
            kept.append(element)
        kept = [e for e in kept if e != {}]
        if not kept:
            del holder[key]  # no values left: unassigned (RFC 7644 §3.5.2.2)
        else:
            holder[key] = kept if attribute.multi_valued else kept[0]

    def _remove_extension(self, target: _Target) -> None:
        assert target.extension is not None
        self.doc.pop(_key_of(self.doc, target.extension.id), None)
        schemas = self.doc.get("schemas")
        if isinstance(schemas, list) and target.extension.id in schemas:
            schemas.remove(target.extension.id)

    def _drop_empty_extension(self, target: _Target) -> None:
        if target.extension is not None and self.container(target, create=False) == {}:
            self._remove_extension(target)


def _write_filtered(
    op: str,
    text: str,
    parsed: PatchPath,
    holder: dict[str, Any],
    selects: Callable[[Any], bool],
    value: Any,
) -> None:
    """Apply `op` to the elements of list `holder[<name>]` that `selects` (stored as sent).

    RFC 7644 §3.5.2 as for the hub's own attributes: a remove that matches nothing changes
    nothing; an add or replace that matches nothing makes the element the filter's ``eq``
    clauses describe (else ``noTarget``); replace of a whole element replaces it, add merges.
    """
    assert parsed.filter is not None
    name, sub = parsed.attr.name, parsed.sub
    list_key = _key_of(holder, name)
    stored = holder.get(list_key)
    if stored is not None and not isinstance(stored, list):
        raise InvalidPath(f"path {text!r}: {name!r} holds one value, not a list")
    elements = list(stored or [])
    chosen = [e for e in elements if isinstance(e, dict) and selects(e)]
    if op == "remove" or value is None:
        for element in chosen:
            if sub is not None:
                element.pop(_key_of(element, sub), None)
        elements = [
            e for e in elements if e != {} and (sub is not None or all(e is not c for c in chosen))
        ]
    else:
        created = not chosen
        if created:
            template = _eq_template(parsed.filter)
            if template is None:
                raise NoTarget(f"path {text!r} matches no value and cannot create one")
            chosen = [template]
            elements.append(template)
        for element in chosen:
            _write_schemaless(op, element, sub, value, text, replace=not created)
        _one_primary(elements, chosen)  # RFC 7643 §2.4 holds for any list with `primary`
    if elements:
        holder[list_key] = elements
    else:
        holder.pop(list_key, None)


def _write_schemaless(
    op: str, element: dict[str, Any], sub: str | None, value: Any, where: str, *, replace: bool
) -> None:
    """Write `value` into one element of a custom extension's list (stored as sent)."""
    if sub is not None:
        _put_raw(element, sub, value)
        return
    if not isinstance(value, Mapping):
        raise InvalidValue(f"path {where!r} selects objects; send an object as the value")
    if op == "replace" and replace:
        element.clear()
    for item_key, item in value.items():
        _put_raw(element, str(item_key), item)


@dataclass(frozen=True, slots=True)
class _SchemalessList:
    """The schema a value filter inside a custom extension is read with (see `custom`).

    The hub has no schema there, so the list is a multi-valued complex attribute and each
    sub-attribute the filter compares takes the JSON type of its value, strings compared
    case-insensitively: what list filters do with custom attributes (`hub.core.filtering`).
    Hashable, so `rules`' compile cache serves the same filter again.
    """

    urn: str
    name: str
    types: tuple[tuple[str, str], ...]

    def __call__(self, urn: str | None, names: tuple[str, ...]) -> AttrInfo | None:
        if urn is None or urn.lower() != self.urn or not names or names[0].lower() != self.name:
            return None
        if len(names) == 1:
            return AttrInfo("complex", False, True)
        if len(names) > 2:
            return None
        return AttrInfo(dict(self.types).get(names[1].lower(), "string"), False, False)


#: Where `put_filtered` has an element looked for: a URN of no schema (`rules` reads the
#: hub's core URNs at the top level of a resource).
_PROBE_URN: Final = "urn:scim-hub:patch:element"


def _schemaless_selector(
    urn: str, name: str, node: Filter, where: str, known: Mapping[str, str] | None = None
) -> Callable[[Any], bool]:
    """Whether one element of custom list `urn:name` matches value filter `node`.

    `known` gives the types of the sub-attributes a schema defines (lower-cased names); the
    others take the type of the value they are compared with.

    Raises:
        InvalidPath: the filter compares what no element can hold (a sub-attribute of a
            sub-attribute, `gt` on a boolean...).
    """
    types: dict[str, str] = {}
    _schemaless_types(node, types)
    types.update({sub: kind for sub, kind in (known or {}).items() if sub in types})
    describe = _SchemalessList(urn.lower(), name.lower(), tuple(sorted(types.items())))
    try:
        predicate = compile_predicate(ValuePath(AttrPath(urn, name, None), node), describe)
    except (UnknownAttribute, InvalidComparison) as error:
        raise InvalidPath(f"path {where!r}: {error}") from error
    return lambda element: predicate({urn: {name: [element]}})


def _schemaless_types(node: Filter, types: dict[str, str]) -> None:
    """Collect the type each compared sub-attribute takes from its filter value."""
    if isinstance(node, And | Or):
        _schemaless_types(node.left, types)
        _schemaless_types(node.right, types)
    elif isinstance(node, Not):
        _schemaless_types(node.operand, types)
    elif isinstance(node, Compare) and node.path.sub is None:
        value = node.value
        kind = "string"
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int | float):
            kind = "decimal"
        types[node.path.name.lower()] = kind
    elif isinstance(node, Present):
        types.setdefault(node.path.name.lower(), "string")


def _empty_reference(value: Any) -> bool:
    """An empty id, bare (``""``) or as an object (``{"value": ""}``, nothing else set)."""
    if value == "":
        return True
    if not isinstance(value, Mapping) or not value:
        return False
    members = {str(key).lower(): item for key, item in value.items()}
    return members.get("value") == "" and all(item in ("", None) for item in members.values())


def _bare_reference(target: _Target) -> bool:
    """Whether `target` is a whole complex attribute a bare id may stand for (``manager``)."""
    attribute = target.attribute
    return (
        attribute is not None
        and attribute.type == "complex"
        and not attribute.multi_valued
        and target.sub is None
        and target.filter is None
        and attribute.sub("value") is not None
    )


def _check_writable(target: _Target) -> None:
    """RFC 7643 §2.2: a ``readOnly`` attribute cannot be changed by a client (``mutability``)."""
    for attribute in (target.attribute, target.sub):
        if attribute is not None and attribute.mutability == "readOnly":
            raise Mutability(f"{target.text!r} is readOnly")


def _check_removable(attribute: Attribute | None, current: Any, where: str) -> None:
    if attribute is not None and attribute.mutability == "immutable" and current is not None:
        raise Mutability(f"{where!r} is immutable and already set")


def _assign(holder: dict[str, Any], key: str, attribute: Attribute, value: Any) -> None:
    """Set one value; an ``immutable`` one may be set once (RFC 7643 §2.2)."""
    current = holder.get(key)
    if attribute.mutability == "immutable" and current is not None and current != value:
        raise Mutability(f"{attribute.name!r} is immutable and already set")
    _put(holder, key, value)


def _null_keys(value: Any) -> list[str]:
    return [str(k) for k, v in value.items() if v is None] if isinstance(value, Mapping) else []


def _dict_at(holder: Mapping[str, Any], key: str) -> dict[str, Any]:
    found = holder.get(key)
    return found if isinstance(found, dict) else {}


def _list_at(holder: Mapping[str, Any], key: str) -> list[Any]:
    found = holder.get(key)
    return found if isinstance(found, list) else []


def _put(holder: dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == [] or value == {}:
        holder.pop(key, None)  # unassigned (RFC 7643 §2.5)
    else:
        holder[key] = value


def _put_custom(op: str, holder: dict[str, Any], key: str, value: Any) -> None:
    """`_put_raw`, except that `add` to a list appends what it does not hold (RFC 7644 §3.5.2.1).

    A custom attribute has no schema: a list stored is taken for a multi-valued attribute.
    """
    stored_key = _key_of(holder, key)
    existing = holder.get(stored_key)
    if op != "add" or not isinstance(existing, list) or value is None:
        _put_raw(holder, key, value)
        return
    holder[stored_key] = _append_new(
        existing, json_copy(value if isinstance(value, list) else [value])
    )


def _put_raw(holder: dict[str, Any], key: str, value: Any) -> None:
    """Store an attribute the schema does not know, as sent, replacing any spelling of it."""
    holder.pop(_key_of(holder, key), None)
    if value is not None:
        holder[key] = json_copy(value)


def _key_of(holder: Mapping[str, Any], name: str) -> str:
    """The key under which `name` is stored (names are case-insensitive, RFC 7643 §2.1)."""
    if name in holder:
        return name
    lowered = name.lower()
    return next((key for key in holder if key.lower() == lowered), name)


def _remove_listed(attribute: Attribute, holder: dict[str, Any], key: str, value: Any) -> None:
    """Remove only the elements listed in ``value`` (``members`` removal by Entra ID and Okta)."""
    listed = canonical_value(attribute, value if isinstance(value, list) else [value], key)
    kept = [e for e in holder[key] if not any(_contains(attribute, e, item) for item in listed)]
    _put(holder, key, kept)


def _contains(attribute: Attribute, element: Any, item: Any) -> bool:
    """Whether `element` carries every sub-attribute of `item`, compared per ``caseExact``."""
    if not isinstance(element, Mapping) or not isinstance(item, Mapping):
        return bool(element == item)
    for sub_key, wanted in item.items():
        have = element.get(_key_of(element, sub_key))
        sub = attribute.sub(sub_key)
        if isinstance(have, str) and isinstance(wanted, str) and not (sub and sub.case_exact):
            have, wanted = have.lower(), wanted.lower()
        if have != wanted:
            return False
    return True


def _append_new(current: list[Any], items: list[Any]) -> list[Any]:
    """Append the items not already present (RFC 7644 §3.5.2.1: an existing value is no change)."""
    seen = {json.dumps(e, sort_keys=True) for e in current}
    elements = list(current)
    for item in items:
        fingerprint = json.dumps(item, sort_keys=True)
        if fingerprint not in seen:
            seen.add(fingerprint)
            elements.append(item)
    return elements


def _append_held(
    attribute: Attribute, current: list[Any], items: list[Any]
) -> tuple[list[Any], list[Any]]:
    """Append the items no element already holds (RFC 7644 §3.5.2.1: "no changes SHOULD be made").

    An element holds an item when it carries every sub-attribute the item names, compared per
    ``caseExact`` as a value filter compares them: adding ``{"value": "A@X.ORG"}`` to a user whose
    email is ``{"value": "a@x.org", "type": "work", "primary": true}`` changes nothing, where
    comparing whole documents appended a second copy of the address. An item that differs from
    an element only by its ``primary`` mark sets the element's mark instead of copying it.

    Returns:
        The elements, and those the operation wrote (appended or made primary), which win the
        ``primary`` mark (RFC 7643 §2.4).
    """
    elements = list(current)
    written: list[Any] = []
    for item in items:
        if any(_contains(attribute, element, item) for element in elements):
            continue
        held = _held_but_primary(attribute, elements, item)
        if held is None:
            elements.append(item)
            written.append(item)
        else:
            held["primary"] = item["primary"]
            written.append(held)
    return elements, written


def _held_but_primary(attribute: Attribute, elements: list[Any], item: Any) -> Any:
    """The element holding `item` but for its ``primary`` mark, if there is one."""
    if not isinstance(item, Mapping) or not isinstance(item.get("primary"), bool):
        return None
    rest = {key: value for key, value in item.items() if key != "primary"}
    if not rest:
        return None
    return next(
        (e for e in elements if isinstance(e, dict) and _contains(attribute, e, rest)), None
    )


def _check_one_primary(items: list[Any], where: str) -> None:
    if sum(1 for i in items if isinstance(i, Mapping) and i.get("primary") is True) > 1:
        raise InvalidValue(f"{where!r}: at most one value may be primary (RFC 7643 §2.4)")


def _one_primary(elements: list[Any], written: list[Any]) -> None:
    """RFC 7643 §2.4: one ``primary`` at most; the most recently written primary element wins."""
    primaries = [e for e in elements if isinstance(e, dict) and e.get("primary") is True]
    if len(primaries) < 2:
        return
    fresh = [e for e in primaries if any(e is w for w in written)]
    winner = (fresh or primaries)[-1]
    for element in primaries:
        if element is not winner:
            element["primary"] = False


def _write_element(
    attribute: Attribute, element: dict[str, Any], value: Any, where: str, *, replace: bool
) -> None:
    """Write an object into one matched element: merged on add, replacing it on replace.

    RFC 7644 §3.5.2.3: "all matching record values SHALL be replaced". Immutable sub-attributes
    are checked before anything changes.
    """
    new = canonical_value(attribute, [value], where)
    incoming: dict[str, Any] = new[0] if new else {}
    for sub_key, sub_value in incoming.items():
        sub = attribute.sub(sub_key)
        if sub is None:
            element[sub_key] = sub_value
        else:
            _assign(element, _key_of(element, sub.name), sub, sub_value)
    if replace:
        for stale in [k for k in element if k not in incoming]:
            _check_removable(attribute.sub(stale), element[stale], where)
            del element[stale]


def _eq_template(node: Filter | None) -> dict[str, Any] | None:
    """The element a filter of ``eq`` clauses joined by ``and`` describes, else ``None``.

    ``type eq "work" and primary eq true`` gives ``{"type": "work", "primary": True}``.
    """
    if isinstance(node, Compare) and node.op == "eq" and node.path.urn is None:
        if node.path.sub is None and node.value is not None:
            return {node.path.name: node.value}
        return None
    if isinstance(node, And):
        left, right = _eq_template(node.left), _eq_template(node.right)
        if left is None or right is None:
            return None
        merged = dict(left)
        for name, value in right.items():
            # Names are case-insensitive (RFC 7643 §2.1): `type eq "a" and TYPE eq "a"` is one.
            same = _key_of(merged, name)
            if same in merged and not _same_json(merged[same], value):
                return None  # no element can hold both values
            merged[same] = value
        return merged
    return None


def _same_json(left: Any, right: Any) -> bool:
    """Equal as JSON: Python's `==` takes 1 and True for one another."""
    return type(left) is type(right) and left == right
