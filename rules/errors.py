"""Errors raised by the rule language.

`FilterSyntaxError` carries the 0-based character offset where parsing failed so a client (or an
admin editing a template rule) can see exactly what to fix; the hub turns it into an RFC 7644
§3.12 `invalidFilter` error. `InvalidComparison` and `UnknownAttribute` are raised when a
well-formed filter cannot be applied to the schema (also `invalidFilter` on the wire).
"""

from __future__ import annotations

_EXCERPT = 24


class FilterSyntaxError(ValueError):
    """A filter or PATCH path that does not follow the RFC 7644 §3.4.2.2 grammar.

    Attributes:
        message: what is wrong, phrased so a person can fix it.
        position: 0-based character offset in `text` where the problem was found.
        text: the whole text that was being parsed.
    """

    def __init__(self, message: str, position: int, text: str) -> None:
        self.message = message
        self.position = position
        self.text = text
        super().__init__(f"{message} at position {position}: {_excerpt(text, position)}")


def _excerpt(text: str, position: int) -> str:
    """Show the text around `position` on one line, with `^` marking the spot."""
    start = max(0, position - _EXCERPT)
    end = min(len(text), position + _EXCERPT)
    before = ("…" if start > 0 else "") + text[start:position]
    after = text[position:end] + ("…" if end < len(text) else "")
    return f"{before}^{after}"


class InvalidComparison(ValueError):
    """A comparison the schema does not allow, e.g. `gt` on a boolean (RFC 7644 §3.4.2.2)."""


class UnknownAttribute(ValueError):
    """The filter names an attribute the schema does not define.

    Attributes:
        path: the attribute as written, in dotted form (e.g. `emails.type`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"unknown attribute {path!r}")
