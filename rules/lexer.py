"""Hand-written tokenizer for SCIM filters and PATCH paths.

Filters are parsed on every list request, so the scanner works in slices (`str.find`, one pass
over each word) instead of a regular expression tried at every character.

A *word* is a run of characters up to whitespace, a bracket, a parenthesis or a quote. Attribute
paths (`urn:…:2.0:User:name.givenName`), operators, keywords and numbers are all words; the
parser decides what each one is from where it stands, because the grammar allows an attribute to
be called e.g. `not` and URNs contain dots and colons.
"""

from __future__ import annotations

import json
from typing import Final, NamedTuple

from rules.errors import FilterSyntaxError

WORD: Final = "word"
STRING: Final = "string"
LPAREN: Final = "("
RPAREN: Final = ")"
LBRACKET: Final = "["
RBRACKET: Final = "]"
END: Final = "end"

_PUNCT: Final = {"(": LPAREN, ")": RPAREN, "[": LBRACKET, "]": RBRACKET}
_STOP: Final = frozenset(' \t\r\n()[]"')
_SPACE: Final = frozenset(" \t\r\n")
# Lenient about raw control characters inside strings (some clients do not escape tabs).
_json_string = json.JSONDecoder(strict=False).decode


class Token(NamedTuple):
    """One token: its kind, its text (decoded for strings) and its 0-based offset."""

    kind: str
    text: str
    position: int


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens, ending with an `END` token.

    Raises:
        FilterSyntaxError: an unterminated string or a bad escape sequence.
    """
    tokens: list[Token] = []
    append = tokens.append
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
        elif ch in _PUNCT:
            append(Token(_PUNCT[ch], ch, i))
            i += 1
        elif ch == '"':
            end = _string_end(text, i)
            raw = text[i : end + 1]
            if "\\" in raw:
                try:
                    value = _json_string(raw)
                except json.JSONDecodeError as exc:
                    raise FilterSyntaxError(
                        f"invalid string: {exc.msg.lower()}", i + exc.pos, text
                    ) from None
                _check_escaped(value, i, text)
            else:
                value = raw[1:-1]
            append(Token(STRING, value, i))
            i = end + 1
        else:
            start = i
            i += 1
            while i < n and text[i] not in _STOP:
                i += 1
            append(Token(WORD, text[start:i], start))
    append(Token(END, "", n))
    return tokens


def _check_escaped(value: str, position: int, text: str) -> None:
    r"""Refuse what only an escape can put in a string: U+0000 and a lone UTF-16 surrogate.

    No stored value holds either (a JSON body with one is refused), and neither can be bound
    to a database: PostgreSQL text holds no NUL, and a lone surrogate (``\ud800``) is no
    character UTF-8 can encode. Comparing with one answered 500, or stored it through a PATCH
    path's value filter.
    """
    if "\x00" in value:
        raise FilterSyntaxError("invalid string: U+0000 (NUL) is not allowed", position, text)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise FilterSyntaxError(
                "invalid string: a lone UTF-16 surrogate escape is not a character",
                position,
                text,
            ) from None


def _string_end(text: str, start: int) -> int:
    """Return the index of the quote closing the string that opens at `start`."""
    i = start + 1
    while True:
        end = text.find('"', i)
        if end < 0:
            raise FilterSyntaxError("unterminated string", start, text)
        # A quote preceded by an odd number of backslashes is escaped.
        backslashes = 0
        j = end - 1
        while j > start and text[j] == "\\":
            backslashes += 1
            j -= 1
        if backslashes % 2 == 0:
            return end
        i = end + 1
