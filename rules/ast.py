"""The abstract syntax of SCIM filters and PATCH paths (RFC 7644 §3.4.2.2, §3.5.2).

Nodes are immutable and hashable so parsed filters can be cached and shared between threads.
Attribute names are kept as the client wrote them; resolving their case is the schema's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

Value: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class AttrPath:
    """An attribute reference: optional schema URN, attribute name, optional sub-attribute.

    A bare extension URN used as a PATCH path has `name == ""`.
    """

    urn: str | None
    name: str
    sub: str | None

    def dotted(self) -> str:
        """Return the path as text, e.g. `name.givenName` or `urn:…:User:manager.value`."""
        text = self.name if self.sub is None else f"{self.name}.{self.sub}"
        return text if self.urn is None else f"{self.urn}:{text}" if text else self.urn


@dataclass(frozen=True, slots=True, eq=False)
class Compare:
    """`path op value`, with `op` lowercase: eq ne co sw ew gt ge lt le."""

    path: AttrPath
    op: str
    value: Value

    # Equality includes the value's type: in Python `True == 1 == 1.0`, but `active eq true`
    # and `active eq 1` are different filters (and evaluate differently).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Compare):
            return NotImplemented
        return (
            self.path == other.path
            and self.op == other.op
            and type(self.value) is type(other.value)
            and self.value == other.value
        )

    def __hash__(self) -> int:
        return hash((self.path, self.op, type(self.value), self.value))


@dataclass(frozen=True, slots=True)
class Present:
    """`path pr`: the attribute has a non-empty value."""

    path: AttrPath


@dataclass(frozen=True, slots=True)
class And:
    """Both operands match."""

    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Or:
    """Either operand matches."""

    left: Filter
    right: Filter


@dataclass(frozen=True, slots=True)
class Not:
    """The operand does not match."""

    operand: Filter


@dataclass(frozen=True, slots=True)
class ValuePath:
    """`attr[filter]`: some value of a complex attribute matches `filter`.

    Paths inside `filter` are relative to one element, e.g. `AttrPath(None, "type", None)`.
    """

    path: AttrPath
    filter: Filter


Filter: TypeAlias = Compare | Present | And | Or | Not | ValuePath


@dataclass(frozen=True, slots=True)
class PatchPath:
    """A PATCH operation's `path` (RFC 7644 §3.5.2): `attrPath / valuePath [subAttr]`.

    `filter` is set for value paths (`emails[type eq "work"]`), and `sub` is the sub-attribute
    after the closing bracket (`emails[type eq "work"].value`).
    """

    attr: AttrPath
    filter: Filter | None
    sub: str | None
