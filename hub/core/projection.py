"""Response projection: the ``attributes`` and ``excludedAttributes`` parameters (RFC 7644 §3.9).

A request's lists are parsed once into a `Projection` plan, which list pages then apply to every
resource; `project` is the one-shot convenience.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.core.attributes import describe_for
from hub.core.schema import Attribute, ResourceType
from rules import (
    AttrPath,
    FilterSyntaxError,
    InvalidComparison,
    UnknownAttribute,
    ValuePath,
    compile_predicate,
    parse_path,
)

_CORE = ""  # scope key of the core schema and the common attributes

Find = Callable[[str], Attribute | None]
#: Says whether one element of a multi-valued attribute matches a value filter.
Match = Callable[[Any], bool]


def parse_attribute_list(text: str | None) -> tuple[str, ...]:
    """Split an ``attributes``/``excludedAttributes`` query value (RFC 7644 §3.4.2.5).

    Args:
        text: comma-separated attribute paths, possibly URN-qualified or with sub-attributes.

    Returns:
        The trimmed, non-empty paths in order; ``()`` for ``None`` or an empty value.
    """
    if not text:
        return ()
    return tuple(part for part in (piece.strip() for piece in text.split(",")) if part)


@dataclass(slots=True)
class _Scope:
    """Selected attributes of one schema: names map to sub-attribute names, ``None`` = whole."""

    whole: bool = False
    names: dict[str, frozenset[str] | None] = field(default_factory=dict)
    #: per name, the value filters its elements must match (any of them); absent: every element
    matches: dict[str, tuple[Match, ...]] = field(default_factory=dict)
    unfiltered: set[str] = field(default_factory=set)

    def add(self, name: str, sub: str | None, match: Match | None = None) -> None:
        if not name:
            self.whole = True
            return
        if sub is None or self.names.get(name, frozenset()) is None:
            self.names[name] = None
        else:
            self.names[name] = (self.names.get(name) or frozenset()) | {sub}
        if match is None:
            self.unfiltered.add(name)
            self.matches.pop(name, None)
        elif name not in self.unfiltered:
            self.matches[name] = (*self.matches.get(name, ()), match)


def _scopes(
    resource_type: ResourceType, paths: Iterable[str], *, filtered: bool = False
) -> dict[str, _Scope]:
    scopes: dict[str, _Scope] = {}
    for path in paths:
        if filtered and "[" in path and (picked := _value_path(resource_type, path)) is not None:
            scopes.setdefault(picked[0], _Scope()).add(*picked[1:])
            continue
        # Anything else not in attribute notation (RFC 7644 §3.10) names nothing, as an
        # unknown attribute name does.
        scope, name, sub = _split(resource_type, path)
        scopes.setdefault(scope, _Scope()).add(name, sub)
    return scopes


def _value_path(
    resource_type: ResourceType, path: str
) -> tuple[str, str, str | None, Match] | None:
    """``(scope, name, sub, match)`` of ``attributes=emails[type eq "work"]`` (and ``….value``).

    RFC 7644 §3.4.2.5 asks for attribute names, but Microsoft's SCIM test collection (the
    SCIMReferenceCode Postman tests) asks for the values a filter selects, as a PATCH path
    (§3.5.2) names them. Only the matching values of the attribute are returned. A path that
    does not parse, or whose filter names what the attribute lacks, names nothing, like an
    unknown attribute name.
    """
    try:
        parsed = parse_path(path.strip())
    except FilterSyntaxError:
        return None
    urn, name = parsed.attr.urn, parsed.attr.name
    if parsed.filter is None or not name:
        return None
    extension = None
    if urn is not None and urn.lower() != resource_type.schema.id.lower():
        extension = resource_type.extension(urn)
        if extension is None:
            return None
    attribute = (extension or resource_type).attribute(name)  # the common attributes too
    if attribute is None or not attribute.multi_valued:
        return None
    where = AttrPath(extension.id if extension else None, attribute.name, None)
    try:
        predicate = compile_predicate(ValuePath(where, parsed.filter), describe_for(resource_type))
    except (UnknownAttribute, InvalidComparison):
        return None
    key = attribute.name

    def match(element: Any) -> bool:
        # The element alone, where the evaluator looks for it: `emails[...]` on {"emails": [e]}.
        probe: dict[str, Any] = {key: [element]}
        if where.urn is not None:
            probe = {where.urn: probe}
        return isinstance(element, Mapping) and predicate(probe)

    scope = extension.id.lower() if extension else _CORE
    return scope, name.lower(), parsed.sub.lower() if parsed.sub else None, match


def _split(resource_type: ResourceType, path: str) -> tuple[str, str, str | None]:
    """Lower-cased ``(scope, name, sub)``; an empty ``name`` selects a whole schema."""
    lowered = path.strip().lower()
    scope = _CORE
    if lowered.startswith("urn:"):
        for schema_id in sorted(resource_type.schema_ids, key=len, reverse=True):
            urn = schema_id.lower()
            if lowered == urn or lowered.startswith(urn + ":"):
                scope = _CORE if urn == resource_type.schema.id.lower() else urn
                lowered = lowered[len(urn) + 1 :]
                break
        else:  # an unknown schema: it can only match an unknown key spelled exactly so
            return lowered, "", None
    name, _, sub = lowered.partition(".")
    return scope, name, sub or None


@dataclass(frozen=True, slots=True)
class Projection:
    """A parsed ``attributes``/``excludedAttributes`` pair for one resource type and request.

    RFC 7643 §7 ``returned``: ``always`` attributes (and ``schemas``) are kept whatever the lists
    say, ``never`` ones are always dropped, ``request`` ones appear only when named in
    ``attributes``. Names are case-insensitive (RFC 7643 §2.1). Build with `plan`.
    """

    resource_type: ResourceType
    include: dict[str, _Scope]
    exclude: dict[str, _Scope]
    extensions: dict[str, Find]

    def apply(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Return the projected resource (RFC 7644 §3.4.2.5).

        The result is a new top-level dict; nested values it keeps unfiltered are shared with
        ``resource``, so copy before mutating them.
        """
        if not self.include and not self.exclude:
            # Nothing asked for: the default view is the resource minus `returned: never`
            # attributes, and the only one (password) is top-level in canonical spelling.
            default_view = dict(resource)
            default_view.pop("password", None)
            return default_view
        result: dict[str, Any] = {}
        for key, value in resource.items():
            lowered = key.lower()
            if lowered == "schemas":
                result[key] = value
            elif lowered in self.extensions and isinstance(value, Mapping):
                kept = self._extension(lowered, value, self.extensions[lowered])
                if kept:
                    result[key] = kept
            elif lowered.startswith("urn:") and isinstance(value, Mapping):
                if kept := self._custom(lowered, value):
                    result[key] = kept
            else:
                self._member(result, key, value, self.resource_type.attribute, _CORE)
        return result

    def _extension(self, urn: str, value: Mapping[str, Any], find: Find) -> dict[str, Any]:
        if self.include and urn not in self.include:
            return {}
        excluded = self.exclude.get(urn)
        if excluded is not None and excluded.whole:
            return {}
        kept: dict[str, Any] = {}
        for key, item in value.items():
            self._member(kept, key, item, find, urn)
        return kept

    def _custom(self, urn: str, value: Mapping[str, Any]) -> dict[str, Any]:
        """A custom extension's object: no schema, so each attribute is ``returned: default``.

        ``attributes=<urn>`` keeps the whole object, ``<urn>:<name>`` that attribute and
        ``<urn>:<name>.<sub>`` that sub-attribute of it (in each element of a list), as the
        paths of a known extension do; likewise for ``excludedAttributes``.
        """
        kept = dict(value)
        if self.include:
            wanted = _custom_names(self.include, urn)
            if wanted is None:
                return {}
            if wanted:
                kept = {
                    k: _subs(v, wanted[k.lower()], keep=True)
                    for k, v in kept.items()
                    if k.lower() in wanted
                }
        unwanted = _custom_names(self.exclude, urn)
        if unwanted is not None:
            if not unwanted:
                return {}
            kept = {
                k: _subs(v, unwanted[k.lower()], keep=False) if k.lower() in unwanted else v
                for k, v in kept.items()
            }
        return {k: v for k, v in kept.items() if v is not None and v != [] and v != {}}

    def _member(self, out: dict[str, Any], key: str, value: Any, find: Find, scope: str) -> None:
        attribute = find(key)
        returned = attribute.returned if attribute is not None else "default"
        if returned == "never":
            return
        if returned == "always":
            out[key] = _without_never(attribute, value)
            return
        name = key.lower()
        included = self.include.get(scope)
        if included is not None and name in included.matches and not included.whole:
            value = _matching(included.matches[name], value)
        kept = _select(included, name, attribute, value, bool(self.include))
        if kept is None:
            return
        if returned == "request" and not _named(self.include.get(scope), name):
            return
        kept = _unselect(self.exclude.get(scope), name, attribute, kept)
        if kept is not None and kept != [] and kept != {}:
            out[key] = kept


def _custom_names(scopes: Mapping[str, _Scope], urn: str) -> dict[str, frozenset[str]] | None:
    """What `scopes` names of custom extension `urn`: None nothing, empty the whole object.

    Otherwise each attribute named, with the sub-attributes named of it (none: the whole
    attribute). `_split` leaves a path into a schema the hub does not know whole and lower-cased:
    the extension's own URN, or the URN followed by ``:name`` and maybe ``.sub``.
    """
    if urn in scopes:
        return {}
    prefix = urn + ":"
    names: dict[str, set[str]] = {}
    whole: set[str] = set()
    for path in scopes:
        if path.startswith(prefix):
            name, _, sub = path[len(prefix) :].partition(".")
            if sub:
                names.setdefault(name, set()).add(sub)
            else:
                whole.add(name)
    for name in whole:
        names[name] = set()
    return {name: frozenset(subs) for name, subs in names.items()} or None


def _subs(value: Any, subs: frozenset[str], *, keep: bool) -> Any:
    """`value` with only (`keep`) or without the sub-attributes `subs`; all of it if none."""
    if not subs:
        return value if keep else None
    if isinstance(value, list):
        picked = (_subs(item, subs, keep=keep) for item in value)
        return [item for item in picked if item is not None and item != {}]
    if not isinstance(value, Mapping):
        return value  # a simple value has no sub-attributes to pick
    return {k: v for k, v in value.items() if (k.lower() in subs) is keep}


def _named(scope: _Scope | None, name: str) -> bool:
    return scope is not None and (scope.whole or name in scope.names)


def _select(
    scope: _Scope | None, name: str, attribute: Attribute | None, value: Any, restricted: bool
) -> Any:
    """Apply ``attributes``: the value, its listed sub-attributes, or ``None`` when not listed."""
    if not restricted:
        return _without_never(attribute, value)
    if scope is None or not (scope.whole or name in scope.names):
        return None
    subs = None if scope.whole else scope.names[name]
    if subs is None:
        return _without_never(attribute, value)
    return _filter_subs(attribute, value, lambda sub, returned: sub in subs or returned == "always")


def _matching(matches: tuple[Match, ...], value: Any) -> Any:
    """The elements of `value` that one of the value filters of ``attributes`` selects."""
    if not isinstance(value, list):
        return value
    return [element for element in value if any(match(element) for match in matches)]


def _unselect(scope: _Scope | None, name: str, attribute: Attribute | None, value: Any) -> Any:
    """Apply ``excludedAttributes`` to a kept value; ``always`` sub-attributes survive."""
    if scope is None:
        return value
    if scope.whole:
        return None
    subs = scope.names.get(name)
    if name in scope.matches and isinstance(value, list):
        return _unselect_matching(scope.matches[name], subs, attribute, value)
    if name in scope.names and subs is None:
        return None
    if not subs:
        return value
    return _filter_subs(
        attribute, value, lambda sub, returned: sub not in subs or returned == "always"
    )


def _unselect_matching(
    matches: tuple[Match, ...],
    subs: frozenset[str] | None,
    attribute: Attribute | None,
    value: list[Any],
) -> list[Any]:
    """`value` less the elements a value filter of ``excludedAttributes`` selects.

    With a sub-attribute (``emails[type eq "work"].display``) only that sub-attribute of the
    selected elements goes, as ``attributes`` of that form returns only it.
    """
    kept = []
    for element in value:
        if not any(match(element) for match in matches):
            kept.append(element)
        elif subs is not None:
            trimmed = _filter_subs(
                attribute, element, lambda sub, returned: sub not in subs or returned == "always"
            )
            if trimmed is not None:
                kept.append(trimmed)
    return kept


def _filter_subs(attribute: Attribute | None, value: Any, keep: Callable[[str, str], bool]) -> Any:
    """Keep the sub-attributes of a complex value (or of each element) that `keep` accepts."""

    def one(item: Any) -> Any:
        if not isinstance(item, Mapping):
            return None
        kept = {}
        for key, sub_value in item.items():
            sub = attribute.sub(key) if attribute is not None else None
            returned = sub.returned if sub is not None else "default"
            if returned != "never" and keep(key.lower(), returned):
                kept[key] = sub_value
        return kept or None

    if isinstance(value, list):
        return [kept for kept in map(one, value) if kept is not None]
    return one(value)


def _without_never(attribute: Attribute | None, value: Any) -> Any:
    if attribute is None or not any(s.returned == "never" for s in attribute.sub_attributes):
        return value
    return _filter_subs(attribute, value, lambda _sub, _returned: True)


def plan(
    resource_type: ResourceType, attributes: tuple[str, ...] = (), excluded: tuple[str, ...] = ()
) -> Projection:
    """Parse the ``attributes``/``excludedAttributes`` lists once per request (RFC 7644 §3.9).

    Args:
        resource_type: the type of the resources to be projected.
        attributes: paths to return (plus every ``returned: always`` one); empty means all
            ``default`` ones.
        excluded: paths to leave out (``always`` ones are never left out); a value filter
            (``emails[type eq "work"]``) leaves out the elements it selects. Ignored when
            `attributes` is given: RFC 7644 §3.4.2.5 removes them from the *default* set, which
            `attributes` replaces (as the members a group read loads, `hub.scim.wire.wants`).

    Returns:
        A plan whose `Projection.apply` projects one resource.
    """
    return Projection(
        resource_type,
        _scopes(resource_type, attributes, filtered=True),
        {} if attributes else _scopes(resource_type, excluded, filtered=True),
        {e.id.lower(): e.attribute for e in resource_type.extensions},
    )


def project(
    resource: Mapping[str, Any],
    resource_type: ResourceType,
    attributes: tuple[str, ...] = (),
    excluded: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Project one rendered resource; see `plan` (RFC 7644 §3.4.2.5, §3.9).

    Args:
        resource: the fully rendered resource (with ``id``, ``meta``, ``schemas``...).
        resource_type: its resource type.
        attributes: paths to return.
        excluded: paths to leave out.

    Returns:
        The projected resource.
    """
    return plan(resource_type, attributes, excluded).apply(resource)
