"""Recursive-descent parser for SCIM filters and PATCH paths (RFC 7644 §3.4.2.2 Figure 1, §3.5.2).

Grammar, with keywords and operators case-insensitive and precedence `not` > `and` > `or`::

    filter    = orExp
    orExp     = andExp *("or" andExp)
    andExp    = unary *("and" unary)
    unary     = "not" "(" filter ")" / "(" filter ")" / attrExp / valuePath
    attrExp   = attrPath "pr" / attrPath compareOp compValue
              / valuePath "." ATTRNAME ("pr" / compareOp compValue)   ; beyond RFC 7644, see below
    valuePath = attrPath "[" valFilter "]"      ; valFilter: a filter without value paths
    compValue = false / null / true / number / string
    attrPath  = [URN ":"] ATTRNAME ["." ATTRNAME]
    PATH      = attrPath / valuePath ["." ATTRNAME] / URN      ; PATCH paths

`and`/`or` chains are parsed with loops, so only parentheses, `not` and brackets nest; the
`max_depth` limit bounds them so a hostile filter cannot exhaust the stack.

RFC 7644's filter grammar has no `valuePath "." subAttr` comparison, but Microsoft Entra ID
sends one when it matches users on their work email: `emails[type eq "work"].value eq "…"`. It
reads as "some element matching the bracket has that sub-attribute value", the same element: it
is parsed as `emails[type eq "work" and value eq "…"]`, so the evaluator and the SQL compiler see
only RFC forms.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from rules.ast import And, AttrPath, Compare, Filter, Not, Or, PatchPath, Present, Value, ValuePath
from rules.errors import FilterSyntaxError
from rules.lexer import END, LBRACKET, LPAREN, RBRACKET, RPAREN, STRING, WORD, Token, tokenize

COMPARE_OPS: Final = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]*|\$ref")
_VERSION: Final = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_KEYWORDS: Final = {"true": True, "false": False, "null": None}


class _Parser:
    __slots__ = ("depth", "i", "max_depth", "text", "tokens")

    def __init__(self, text: str, max_depth: int) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.max_depth = max_depth

    def error(self, message: str, position: int) -> FilterSyntaxError:
        return FilterSyntaxError(message, position, self.text)

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        """Consume the next token if it is the (case-insensitive) keyword `word`."""
        token = self.tokens[self.i]
        if token.kind == WORD and token.text.lower() == word:
            self.i += 1
            return True
        return False

    def enter(self, position: int) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.error(f"filter nests deeper than {self.max_depth} levels", position)

    def filter(self, inside: AttrPath | None) -> Filter:
        node = self.and_exp(inside)
        while self.keyword("or"):
            node = Or(node, self.and_exp(inside))
        return node

    def and_exp(self, inside: AttrPath | None) -> Filter:
        node = self.unary(inside)
        while self.keyword("and"):
            node = And(node, self.unary(inside))
        return node

    def unary(self, inside: AttrPath | None) -> Filter:
        token = self.peek()
        if token.kind == LPAREN:
            self.i += 1
            return self.group(token, inside)
        if token.kind == WORD:
            after = self.tokens[self.i + 1]
            if token.text.lower() == "not" and after.kind == LPAREN:
                self.i += 2
                return Not(self.group(after, inside))
            return self.attr_exp(inside)
        raise self.error(
            f"expected an attribute name, 'not' or '(', found {_show(token)}", token.position
        )

    def group(self, opening: Token, inside: AttrPath | None) -> Filter:
        self.enter(opening.position)
        node = self.filter(inside)
        closing = self.next()
        if closing.kind != RPAREN:
            raise self.error(
                f"expected ')' to close the '(' at position {opening.position}, "
                f"found {_show(closing)}",
                closing.position,
            )
        self.depth -= 1
        return node

    def attr_exp(self, inside: AttrPath | None) -> Filter:
        token = self.next()
        path = self.attr_path(token)
        if inside is not None and path.urn is not None:
            raise self.error(
                f"attributes inside '{inside.dotted()}[…]' are relative to it; drop the schema URN",
                token.position,
            )
        op_token = self.next()
        if op_token.kind == LBRACKET:
            if inside is not None:
                raise self.error(
                    "value filters cannot be nested inside another value filter",
                    op_token.position,
                )
            element = self.value_filter(path, token, op_token)
            tail = self.peek()
            if tail.kind == WORD and tail.text.startswith("."):
                self.i += 1
                return ValuePath(path, And(element, self.element_exp(tail)))
            return ValuePath(path, element)
        if op_token.kind != WORD:
            raise self.error(
                f"expected a comparison operator or 'pr' after '{token.text}', "
                f"found {_show(op_token)}",
                op_token.position,
            )
        op = op_token.text.lower()
        if token.text.lower() == "not" and op not in COMPARE_OPS and op != "pr":
            raise self.error(
                "'not' must be followed by a parenthesised filter: not (…)", op_token.position
            )
        return self.test(path, op_token, token.text)

    def test(self, path: AttrPath, op_token: Token, after: str) -> Filter:
        """`pr` or `op value` on `path`; `op_token` is a word, `after` what it follows."""
        op = op_token.text.lower()
        if op == "pr":
            return Present(path)
        if op not in COMPARE_OPS:
            raise self.error(
                f"expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le) or 'pr' "
                f"after '{after}', found '{op_token.text}'",
                op_token.position,
            )
        return Compare(path, op, self.comp_value(op_token))

    def element_exp(self, tail: Token) -> Filter:
        """`.sub pr` or `.sub op value` after `attr[…]`: the test on the element's sub-attribute."""
        sub = tail.text[1:]
        if not _NAME.fullmatch(sub):
            raise self.error(f"invalid sub-attribute name '{sub}'", tail.position + 1)
        op_token = self.next()
        if op_token.kind != WORD:
            raise self.error(
                f"expected a comparison operator or 'pr' after '{tail.text}', "
                f"found {_show(op_token)}",
                op_token.position,
            )
        return self.test(AttrPath(None, sub, None), op_token, tail.text)

    def value_filter(self, path: AttrPath, token: Token, bracket: Token) -> Filter:
        if path.sub is not None or not path.name:
            raise self.error(
                "a value filter '[…]' must follow an attribute name without a sub-attribute",
                bracket.position,
            )
        self.enter(bracket.position)
        node = self.filter(path)
        closing = self.next()
        if closing.kind != RBRACKET:
            raise self.error(
                f"expected ']' to close the '[' at position {bracket.position}, "
                f"found {_show(closing)}",
                closing.position,
            )
        self.depth -= 1
        return node

    def comp_value(self, op_token: Token) -> Value:
        token = self.next()
        if token.kind == STRING:
            return token.text
        if token.kind == WORD:
            lowered = token.text.lower()
            if lowered in _KEYWORDS:
                return _KEYWORDS[lowered]
            number = _NUMBER.fullmatch(token.text)
            if number is not None:
                if number.group(1) is None and number.group(2) is None:
                    return int(token.text)
                return float(token.text)
        hint = " (strings take double quotes)" if token.kind == WORD else ""
        raise self.error(
            f'expected a value (a "string", a number, true, false or null) after '
            f"'{op_token.text}', found {_show(token)}{hint}",
            token.position,
        )

    def attr_path(self, token: Token, *, bare_urn: bool = False) -> AttrPath:
        """Split a word into URN, attribute and sub-attribute and check each name."""
        if token.kind != WORD:
            raise self.error(f"expected an attribute name, found {_show(token)}", token.position)
        word = token.text
        urn: str | None = None
        rest = word
        offset = 0
        if word[:4].lower() == "urn:":
            colon = word.rfind(":")
            urn, rest = word[:colon], word[colon + 1 :]
            offset = colon + 1
            # RFC 7644 §3.5.2 lets a PATCH path be a bare extension URN. Schema URNs end with
            # "<version>:<Name>" (…:enterprise:2.0:User), attribute paths with "<Name>:<attr>".
            if bare_urn and "." not in rest and _VERSION.fullmatch(urn[urn.rfind(":") + 1 :]):
                return AttrPath(word, "", None)
            if len(urn) <= 4:
                raise self.error("expected an attribute name after the schema URN", token.position)
        name, dot, sub = rest.partition(".")
        if not _NAME.fullmatch(name):
            raise self.error(f"invalid attribute name '{name}'", token.position + offset)
        if not dot:
            return AttrPath(urn, name, None)
        if not _NAME.fullmatch(sub):
            raise self.error(
                f"invalid sub-attribute name '{sub}'", token.position + offset + len(name) + 1
            )
        return AttrPath(urn, name, sub)

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind == END:
            return
        if token.kind in (RPAREN, RBRACKET):
            opening = "(" if token.kind == RPAREN else "["
            message = f"found '{token.text}' without a matching '{opening}'"
        else:
            message = f"expected 'and', 'or' or the end of the filter, found {_show(token)}"
        raise self.error(message, token.position)


def _show(token: Token) -> str:
    if token.kind == END:
        return "the end of the text"
    if token.kind == STRING:
        return "a string"
    return f"'{token.text}'"


def parse_filter(text: str, *, max_length: int = 4096, max_depth: int = 32) -> Filter:
    """Parse a SCIM filter (RFC 7644 §3.4.2.2) into its AST.

    Remembers the last 64 filters parsed: one request asks for its filter's tree more than once
    (the look-ups that skip the SQL compiler, then the compiler); the AST is immutable, so
    sharing it is safe.

    Args:
        text: the filter as the client sent it.
        max_length: longest accepted filter, in characters.
        max_depth: deepest accepted nesting of parentheses, `not` and value filters.

    Returns:
        The root node of the filter.

    Raises:
        FilterSyntaxError: the text is not a filter; `position` points at the problem.
    """
    return _parse_filter(text, max_length, max_depth)


@lru_cache(maxsize=64)
def _parse_filter(text: str, max_length: int, max_depth: int) -> Filter:
    if len(text) > max_length:
        raise FilterSyntaxError(
            f"filter is longer than the {max_length}-character limit", max_length, text
        )
    parser = _Parser(text, max_depth)
    if parser.peek().kind == END:
        raise FilterSyntaxError("the filter is empty", 0, text)
    node = parser.filter(None)
    parser.expect_end()
    return node


@lru_cache(maxsize=1024)
def parse_path(text: str) -> PatchPath:
    """Parse a PATCH operation's `path` (RFC 7644 §3.5.2) into its AST.

    Remembers the last 1,024 paths parsed (an IdP sends the same few again and again); the AST
    is immutable, so sharing it is safe.

    Accepts `attr`, `attr.sub`, `urn:…:attr.sub`, `attr[filter]`, `attr[filter].sub` and a bare
    extension URN such as `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User` (returned
    with an empty attribute name).

    Raises:
        FilterSyntaxError: the text is not a path; `position` points at the problem.
    """
    if len(text) > 4096:
        raise FilterSyntaxError("path is longer than the 4096-character limit", 4096, text)
    parser = _Parser(text, 32)
    token = parser.next()
    if token.kind == END:
        raise FilterSyntaxError("the path is empty", 0, text)
    attr = parser.attr_path(token, bare_urn=True)
    after = parser.next()
    if after.kind == END:
        return PatchPath(attr, None, None)
    if after.kind != LBRACKET:
        raise parser.error(
            f"expected '[' or the end of the path, found {_show(after)}", after.position
        )
    flt = parser.value_filter(attr, token, after)
    tail = parser.next()
    if tail.kind == END:
        return PatchPath(attr, flt, None)
    if tail.kind == WORD and tail.text.startswith("."):
        sub = tail.text[1:]
        if not _NAME.fullmatch(sub):
            raise parser.error(f"invalid sub-attribute name '{sub}'", tail.position + 1)
        parser.expect_end()
        return PatchPath(attr, flt, sub)
    raise parser.error(
        f"expected '.subAttribute' or the end of the path, found {_show(tail)}", tail.position
    )
