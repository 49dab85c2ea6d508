"""The rule language: SCIM filters (RFC 7644 §3.4.2.2) parsed once into an AST.

The AST is evaluated in memory (`evaluate`, template rules) and compiled to SQL by the hub
(`hub.core.filtering`, SCIM list filters). This package imports only the standard library.
"""

from __future__ import annotations

from rules.ast import And, AttrPath, Compare, Filter, Not, Or, PatchPath, Present, Value, ValuePath
from rules.errors import FilterSyntaxError, InvalidComparison, UnknownAttribute
from rules.evaluate import AttrInfo, Describe, compile_predicate, evaluate, parse_datetime
from rules.parser import parse_filter, parse_path

__all__ = [
    "And",
    "AttrInfo",
    "AttrPath",
    "Compare",
    "Describe",
    "Filter",
    "FilterSyntaxError",
    "InvalidComparison",
    "Not",
    "Or",
    "PatchPath",
    "Present",
    "UnknownAttribute",
    "Value",
    "ValuePath",
    "compile_predicate",
    "evaluate",
    "parse_datetime",
    "parse_filter",
    "parse_path",
]
