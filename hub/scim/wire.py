"""Reading SCIM requests off the wire: content types, bodies, list parameters.

RFC 7644 §3.1 (media types) and §3.4 (query parameters).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final
from urllib.parse import unquote

import msgspec
from litestar import Request
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from hub.core.errors import (
    InvalidCount,
    InvalidCursor,
    InvalidFilter,
    InvalidSyntax,
    InvalidValue,
    PayloadTooLarge,
    ScimError,
)
from hub.core.resources import ListQuery
from hub.settings import Settings

JSON = dict[str, Any]
_decode = msgspec.json.Decoder().decode
#: What decoding a request body raises when it is not JSON: msgspec reports bytes that are not
#: UTF-8 inside a string (RFC 8259 §8.1) as Python's `UnicodeDecodeError`, not as a DecodeError.
#: A body nested deeper than msgspec's decoder recurses raises `RecursionError` (~1,000 levels).
NOT_JSON: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
#: The deepest a SCIM request body may nest: a resource, an extension, a complex attribute, a
#: list and its elements are five levels; deeper values made the hub's own walks overflow.
MAX_DEPTH: Final = 64
_ACCEPTED_BODY_TYPES = ("application/scim+json", "application/json")
_MAX_INT = 2**63 - 1
_MAX_PAGE_INT = 2**31 - 1
#: The largest integer every JSON parser reads exactly: RFC 8259 §6 makes [-(2**53)+1, 2**53-1]
#: the interoperable range (JavaScript's numbers are doubles; Go and Java read into 64 bits).
MAX_JSON_INT: Final = 2**53 - 1
_ACCEPTABLE = ("application/scim+json", "application/json", "application/*", "*/*")


def header(request: Request[Any, Any, Any], name: str) -> str | None:
    """The first value of a request header, by lower-case name, straight off the ASGI scope.

    `request.headers` builds a case-insensitive multidict of every header on first use, which
    costs more than the few look-ups a SCIM request makes (ASGI servers lower-case the names).
    """
    key = name.encode("latin-1")
    for raw, value in request.scope["headers"]:
        if raw == key:
            return bytes(value).decode("latin-1")
    return None


def query_values(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The request's query-string parameters, the last value of a repeated one winning.

    What ``dict(request.query_params.items())`` gives (the same decoding: Latin-1 bytes, ``+``
    as a space, percent-escapes as UTF-8), without the multidict around it or Litestar's parse
    cache, which IdP look-ups (each a different userName) only ever miss.
    """
    raw: bytes = request.scope.get("query_string", b"")
    values: dict[str, str] = {}
    if not raw:
        return values
    for part in raw.decode("latin-1").split("&"):
        if part:
            name, _, value = part.partition("=")
            values[_unquote_plus(name)] = _unquote_plus(value)
    return values


def _unquote_plus(text: str) -> str:
    text = text.replace("+", " ")
    return unquote(text) if "%" in text else text


class UnsupportedMediaType(ScimError):
    """The request body is not JSON (RFC 7644 §3.1 uses application/scim+json)."""

    status = 415
    #: response headers (`Accept-Encoding` for a content coding the hub does not decode)
    headers: dict[str, str] | None = None


class NotAcceptable(ScimError):
    """The client accepts no media type the hub can produce."""

    status = 406


def check_accept(request: Request[Any, Any, Any]) -> None:
    """Refuse a request whose Accept header rules out JSON.

    Raises:
        NotAcceptable: no acceptable media type.
    """
    accept = header(request, "accept")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _ACCEPTABLE:
            return
    raise NotAcceptable(f"cannot produce {accept!r}; accept application/scim+json")


async def read_json(request: Request[Any, Any, Any]) -> JSON:
    """Read and decode a JSON object body.

    Raises:
        UnsupportedMediaType: the Content-Type is not (SCIM) JSON.
        InvalidSyntax: the body is not a JSON object.
    """
    content_type = header(request, "content-type") or ""
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in _ACCEPTED_BODY_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; send application/scim+json"
        )
    raw = await _body(request)
    if not raw.strip():
        raise InvalidSyntax("the request body is empty; send a JSON object")
    try:
        body = _decode(raw)
    except NOT_JSON as exc:
        body = _decoded_after_bom(request, raw, exc)
    if not isinstance(body, dict):
        raise InvalidSyntax("the request body must be a JSON object")
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and too_deep(body, MAX_DEPTH):
        raise InvalidSyntax(f"the request body nests values more than {MAX_DEPTH} levels deep")
    refuse_nul(raw, body)
    return body


#: The UTF-8 encoding of U+FEFF, the byte-order mark.
_BOM: Final = b"\xef\xbb\xbf"


def _decoded_after_bom(request: Request[Any, Any, Any], raw: bytes, failure: Exception) -> Any:
    """`raw` decoded past a leading UTF-8 byte-order mark, which `failure` stopped at.

    RFC 8259 §8.1: a sender MUST NOT add a BOM, but a parser MAY ignore one. Windows PowerShell
    5.1 writes UTF-8 files with one (`Out-File`, `Set-Content -Encoding UTF8`), and a script
    sending such a file as the body (`Invoke-RestMethod -InFile`) got a 400 for its first byte.
    Tried only once the body has failed to decode, so a body without one costs nothing more.

    Raises:
        UnsupportedMediaType: the body is in a content coding (`_refuse_content_coding`).
        InvalidSyntax: the body is empty after the BOM, or not JSON, BOM or not.
    """
    if raw.startswith(_BOM):
        rest = raw[len(_BOM) :]
        if not rest.strip():
            raise InvalidSyntax("the request body is empty; send a JSON object")
        try:
            return _decode(rest)
        except NOT_JSON as exc:
            failure = exc
    _refuse_content_coding(request)
    raise InvalidSyntax(f"the request body is not valid JSON: {failure}") from failure


def _refuse_content_coding(request: Request[Any, Any, Any]) -> None:
    """Name a compressed body for what it is, rather than as JSON with a bad first byte.

    The hub decodes no content coding; RFC 9110 §15.5.16 answers one with 415 and
    `Accept-Encoding`. Asked only once the body has failed to decode, so a plain body
    costs nothing more.

    Raises:
        UnsupportedMediaType: the request has a Content-Encoding other than identity.
    """
    coding = header(request, "content-encoding")
    if coding and coding.strip().lower() != "identity":
        error = UnsupportedMediaType(
            f"Content-Encoding {coding!r} is not supported; send the body uncompressed"
        )
        error.headers = {"Accept-Encoding": "identity"}
        raise error


def too_deep(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests objects and lists more than `limit` levels deep.

    Walked with a stack, not by recursion: the point is to refuse what would overflow Python's.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        pending.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


async def _body(request: Request[Any, Any, Any]) -> bytes:
    """The request body, read straight off the ASGI channel, within the app's size limit.

    What `Request.body()` does, less its cost (~4 µs a write: a multidict of every header for
    the Content-Length, an async generator): a declared length over the limit is refused before
    anything is read, a streamed body as soon as it passes the limit. A body already read (by
    `Request.body()`) is not read again: the channel would wait for a message that never comes.
    """
    state = ScopeState.from_scope(request.scope)
    if state.body is not Empty:  # read already (the admin API's authentication reads it first)
        return state.body
    limit = request.route_handler.resolve_request_max_body_size()
    declared = header(request, "content-length")
    if limit is not None and declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect
            raise InvalidSyntax("the client went away before its request body was complete")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if limit is not None and size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            # Kept where `Request.body()` looks, for whatever reads the body after this.
            state.body = b"".join(chunks)
            return state.body


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {limit} bytes")


_NUL_ESCAPE = b"\\u0000"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def refuse_nul(raw: bytes, body: Any = None) -> None:
    r"""Refuse a decoded JSON body holding U+0000 in a string or a key.

    PostgreSQL stores NUL in neither text nor jsonb, so such a value would fail there (and only
    there); it is refused the same way on every database. JSON can carry NUL only as the
    `\u0000` escape, so bodies without one are not walked. `body` is `raw` decoded (decoded
    here when not given).

    Raises:
        InvalidValue: a string or a key holds U+0000.
    """
    if _NUL_ESCAPE not in raw:
        return
    if _has_nul(_decode(raw) if body is None else body):
        raise InvalidValue("strings must not contain U+0000 (NUL); remove it or encode it")


_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


def _int_param(name: str, raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise InvalidValue(f"{name} must be an integer")
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip()
        # int() also reads "1_0" and other scripts' digits; past 4,300 digits it refuses.
        if _INTEGER.fullmatch(text) is None or len(text) > 4000:
            raise InvalidValue(f"{name} must be an integer, got {str(raw)[:50]!r}")
        value = int(text)
    return value


def _bound(value: int) -> int:
    """`value` as an offset or limit the database binds (PostgreSQL's int4).

    A larger number is still a valid one (RFC 7644 §3.4.2.4), and no workspace holds 2**31
    resources: past every result it gives an empty page; a count is capped anyway.
    """
    return max(-_MAX_PAGE_INT, min(_MAX_PAGE_INT, value))


def _attribute_list(raw: Any, name: str) -> tuple[str, ...]:
    """The paths of `attributes` or `excludedAttributes` (named `name`).

    A comma-separated string, or a list of strings (a SearchRequest's, RFC 7644 §3.4.3; a
    repeated query key).

    Raises:
        InvalidValue: a SearchRequest sent something else (a number, an object, a list holding
            a non-string), which named nothing before and was ignored.
    """
    if raw is None:
        return ()
    if isinstance(raw, str):
        parts = _split_attributes(raw)
    elif isinstance(raw, list) and all(isinstance(part, str) for part in raw):
        parts = raw
    else:
        raise InvalidValue(
            f"{name} must be a list of attribute names (strings) or one comma-separated string"
        )
    return tuple(part.strip() for part in parts if part.strip())


def _split_attributes(text: str) -> list[str]:
    """Split an attribute list at commas, but not inside a value filter's brackets.

    `emails[type eq "work"]` (see `hub.core.projection`) may hold a comma in a string.
    """
    if "[" not in text:
        return text.split(",")
    return _LIST_ITEM.findall(text)


#: One item of an attribute list: brackets (with quoted strings inside) are kept whole.
_LIST_ITEM = re.compile(r'(?:\[(?:"(?:[^"\\]|\\.)*"|[^\]"])*\]?|[^,\[])+')


class ListParams(msgspec.Struct, frozen=True):
    """A parsed list request: the query for core plus the projection for the response."""

    query: ListQuery
    attributes: tuple[str, ...]
    excluded: tuple[str, ...]
    #: The response's startIndex (RFC 7644 §3.4.2.4): as asked, at least 1, also past what
    #: `query.start_index` binds; at most `MAX_JSON_INT`, which every client reads as sent.
    start_index: int = 1


def _wants(name: str, attributes: tuple[str, ...], excluded: tuple[str, ...]) -> bool:
    """Say whether the response shows the multi-valued attribute `name` (groups, members).

    `attributes` wants it when it names the attribute, one of its sub-attributes or the whole
    core schema (RFC 7644 §3.10); `excluded` drops it only when it names the whole attribute:
    `groups.display` leaves `groups` without `display`, which the projection does.
    """
    lowered = name.lower()

    def named(path: str, *, whole: bool) -> bool:
        if not whole and _is_core_schema(path):
            return True  # the core schema itself: every attribute of it
        # `attributes=members[value eq "…"]` asks for some members (`hub.core.projection`);
        # in `excludedAttributes` a value filter drops only some, so the attribute stays.
        attribute = (path if whole else _BRACKETS.sub("", path)).lower().rsplit(":", 1)[-1]
        return attribute == lowered if whole else attribute.split(".", 1)[0] == lowered

    if attributes:
        return any(named(p, whole=False) for p in attributes)
    return not any(named(p, whole=True) for p in excluded)


#: A value filter in an attribute path, with the strings in it.
_BRACKETS = re.compile(r'\[(?:"(?:[^"\\]|\\.)*"|[^\]"])*\]?')


def _is_core_schema(path: str) -> bool:
    """`urn:ietf:params:scim:schemas:core:2.0:User` (a whole core schema, no attribute)."""
    rest = path.lower().removeprefix(_CORE_PREFIX)
    return len(rest) < len(path) and rest.count(":") == 1


_CORE_PREFIX = "urn:ietf:params:scim:schemas:core:"


_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURSOR_BODY = re.compile(r"scim-hub\.([UG])\.([1-9][0-9]{0,18})")


def encode_cursor(kind: str, pk: int) -> str:
    """An opaque RFC 9865 cursor: the last row's `pk` of one resource type, base64url.

    Only RFC 3986 unreserved characters (RFC 9865 §2). It carries no workspace and grants
    nothing: every page query is still scoped to the caller's workspace.
    """
    raw = f"scim-hub.{kind}.{pk}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(kind: str, value: str) -> int:
    """The `pk` a cursor from `encode_cursor(kind, …)` carries.

    Raises:
        InvalidCursor: not a cursor this hub issued for this resource type.
    """
    problem = InvalidCursor(
        "cursor is not valid here: send an empty cursor for the first page, then the "
        "nextCursor of the previous page of the same list (RFC 9865)"
    )
    if not _CURSOR_CHARS.fullmatch(value):
        raise problem
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise problem from None
    match = _CURSOR_BODY.fullmatch(raw)
    if match is None or match.group(1) != kind or int(match.group(2)) > _MAX_INT:
        raise problem
    if encode_cursor(kind, int(match.group(2))) != value:
        raise problem  # non-canonical spelling of a valid cursor
    return int(match.group(2))


def _cursor_after(raw: Any, kind: str | None) -> int | None:
    """Decode the `cursor` parameter: None when absent, 0 for the first page (empty value)."""
    if raw is None:
        return None
    if kind is None:
        raise InvalidCursor(
            "cursor pagination is not available on /.search at the service root; page "
            "/Users or /Groups with a cursor, or use startIndex here"
        )
    if not isinstance(raw, str):
        raise InvalidCursor("cursor must be a string (empty for the first page)")
    return 0 if raw == "" else decode_cursor(kind, raw)


def list_params(
    values: dict[str, Any], settings: Settings, members_attr: str, cursor_kind: str | None = None
) -> ListParams:
    """Build list parameters from query-string or SearchRequest values (RFC 7644 §3.4.2-§3.4.3).

    `startIndex` below 1 counts as 1 and `count` below 0 as 0 (RFC 7644 §3.4.2.4); `count` is
    capped at `maxResults`, which ServiceProviderConfig advertises. A `startIndex` past
    `MAX_JSON_INT` (up to `_int_param`'s 4,000 digits) is answered as `MAX_JSON_INT`: both
    ask for a page far past the end, empty, and echoed as sent such a number was one clients
    outside Python cannot read (rounded in JavaScript; past 2**63 a parse error in Go, Java
    or .NET). A huge `count` is `maxResults`, as any count above it.

    With `cursor` (RFC 9865; `cursor_kind` names the resource type, None where cursors are not
    offered): `startIndex` and `sortBy` are refused, `count` must be at least 1 and is capped
    at `maxResults`; pages follow creation order (or its reverse with sortOrder=descending).

    Raises:
        InvalidValue: a parameter has the wrong type, or cursor is combined with startIndex
            or sortBy.
        InvalidCursor: the cursor was not issued by this hub for this resource type.
        InvalidCount: count below 1 on a cursor-paged query.
    """
    lowered = {k.lower(): v for k, v in values.items()}
    start = _int_param("startIndex", lowered.get("startindex"))
    count = _int_param("count", lowered.get("count"))
    after = _cursor_after(lowered.get("cursor"), cursor_kind)
    if after is not None:
        if lowered.get("startindex") is not None:
            raise InvalidValue(
                "send either cursor or startIndex, not both: cursor selects cursor pagination "
                "(RFC 9865), startIndex index pagination (RFC 7644 §3.4.2.4)"
            )
        if lowered.get("sortby"):
            raise InvalidValue(
                "sortBy cannot be combined with cursor: cursor pages follow creation order "
                "(sortOrder=descending reverses it); use startIndex to page a sorted list"
            )
        if count is not None and count < 1:
            raise InvalidCount(
                f"count must be between 1 and {settings.max_results} with a cursor (RFC 9865)"
            )
    sort_order = str(lowered.get("sortorder") or "ascending").lower()
    if sort_order not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be 'ascending' or 'descending'")
    raw_filter = lowered.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, str):
        raise InvalidValue("filter must be a string")
    if raw_filter and "\x00" in raw_filter:
        # No stored value holds NUL (bodies refuse it) and PostgreSQL cannot compare with one.
        raise InvalidFilter("filter must not contain U+0000 (NUL)")
    sort_by = lowered.get("sortby")
    if sort_by is not None and not isinstance(sort_by, str):
        raise InvalidValue("sortBy must be a string")
    attributes = _attribute_list(lowered.get("attributes"), "attributes")
    excluded = _attribute_list(lowered.get("excludedattributes"), "excludedAttributes")
    query = ListQuery(
        filter=raw_filter if raw_filter else None,
        start_index=max(1, _bound(start or 1)),
        count=min(settings.max_results, max(0, settings.default_count if count is None else count)),
        sort_by=sort_by or None,
        descending=sort_order == "descending",
        with_members=_wants(members_attr, attributes, excluded),
        max_filter_length=settings.max_filter_length,
        max_filter_depth=settings.max_filter_depth,
        after=after,
    )
    return ListParams(query, attributes, excluded, min(MAX_JSON_INT, max(1, start or 1)))


def projection_params(request: Request[Any, Any, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`attributes` and `excludedAttributes` of a single-resource request (RFC 7644 §3.9)."""
    if not request.scope.get("query_string"):
        return (), ()  # the usual case: no query string to parse
    params = {k.lower(): v for k, v in query_values(request).items()}
    return _attribute_list(params.get("attributes"), "attributes"), _attribute_list(
        params.get("excludedattributes"), "excludedAttributes"
    )


def wants(name: str, attributes: tuple[str, ...], excluded: tuple[str, ...]) -> bool:
    """Public form of `_wants`: does the response show attribute `name`?"""
    return _wants(name, attributes, excluded)
