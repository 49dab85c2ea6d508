"""Reading SCIM requests off the wire: content types, bodies, list parameters.

RFC 7644 §3.1 (media types) and §3.4 (query parameters).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import HTTPException

from hub.core.errors import InvalidSyntax, InvalidValue, PayloadTooLarge, ScimError
from hub.core.resources import ListQuery
from hub.settings import Settings

JSON = dict[str, Any]
_decode = msgspec.json.Decoder().decode
_ACCEPTED_BODY_TYPES = ("application/scim+json", "application/json")
_MAX_INT = 2**63 - 1
_ACCEPTABLE = ("application/scim+json", "application/json", "application/*", "*/*")


class UnsupportedMediaType(ScimError):
    """The request body is not JSON (RFC 7644 §3.1 uses application/scim+json)."""

    status = 415


class NotAcceptable(ScimError):
    """The client accepts no media type the hub can produce."""

    status = 406


def check_accept(request: Request[Any, Any, Any]) -> None:
    """Refuse a request whose Accept header rules out JSON.

    Raises:
        NotAcceptable: no acceptable media type.
    """
    accept = request.headers.get("accept")
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
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in _ACCEPTED_BODY_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; send application/scim+json"
        )
    try:
        raw = await request.body()
    except HTTPException as exc:
        if exc.status_code == 413:
            limit = request.route_handler.resolve_request_max_body_size()
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes") from exc
        raise
    if not raw.strip():
        raise InvalidSyntax("the request body is empty; send a JSON object")
    try:
        body = _decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidSyntax(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidSyntax("the request body must be a JSON object")
    return body


def _int_param(name: str, raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise InvalidValue(f"{name} must be an integer")
    if isinstance(raw, int):
        value = raw
    else:
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise InvalidValue(f"{name} must be an integer, got {str(raw)[:50]!r}") from None
    if abs(value) > _MAX_INT:
        # Databases page with 64-bit offsets; a larger number is a client error, not a crash.
        raise InvalidValue(f"{name} must be between -{_MAX_INT} and {_MAX_INT}")
    return value


def _attribute_list(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    parts = raw if isinstance(raw, list) else str(raw).split(",")
    return tuple(str(p).strip() for p in parts if str(p).strip())


class ListParams(msgspec.Struct, frozen=True):
    """A parsed list request: the query for core plus the projection for the response."""

    query: ListQuery
    attributes: tuple[str, ...]
    excluded: tuple[str, ...]


def _wants(name: str, attributes: tuple[str, ...], excluded: tuple[str, ...]) -> bool:
    """Say whether the response shows the multi-valued attribute `name` (groups, members)."""
    lowered = name.lower()

    def names(paths: tuple[str, ...]) -> set[str]:
        return {p.rsplit(":", 1)[-1].split(".", 1)[0].lower() for p in paths}

    if attributes:
        return lowered in names(attributes)
    return lowered not in names(excluded)


def list_params(values: dict[str, Any], settings: Settings, members_attr: str) -> ListParams:
    """Build list parameters from query-string or SearchRequest values (RFC 7644 §3.4.2-§3.4.3).

    `startIndex` below 1 counts as 1 and `count` below 0 as 0 (RFC 7644 §3.4.2.4); `count` is
    capped at `maxResults`, which ServiceProviderConfig advertises.

    Raises:
        InvalidValue: a parameter has the wrong type.
    """
    lowered = {k.lower(): v for k, v in values.items()}
    start = _int_param("startIndex", lowered.get("startindex"))
    count = _int_param("count", lowered.get("count"))
    sort_order = str(lowered.get("sortorder") or "ascending").lower()
    if sort_order not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be 'ascending' or 'descending'")
    raw_filter = lowered.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, str):
        raise InvalidValue("filter must be a string")
    sort_by = lowered.get("sortby")
    if sort_by is not None and not isinstance(sort_by, str):
        raise InvalidValue("sortBy must be a string")
    attributes = _attribute_list(lowered.get("attributes"))
    excluded = _attribute_list(lowered.get("excludedattributes"))
    query = ListQuery(
        filter=raw_filter if raw_filter else None,
        start_index=max(1, start or 1),
        count=min(settings.max_results, max(0, settings.default_count if count is None else count)),
        sort_by=sort_by or None,
        descending=sort_order == "descending",
        with_members=_wants(members_attr, attributes, excluded),
        max_filter_length=settings.max_filter_length,
        max_filter_depth=settings.max_filter_depth,
    )
    return ListParams(query, attributes, excluded)


def projection_params(request: Request[Any, Any, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`attributes` and `excludedAttributes` of a single-resource request (RFC 7644 §3.9)."""
    params = {k.lower(): v for k, v in request.query_params.items()}
    return _attribute_list(params.get("attributes")), _attribute_list(
        params.get("excludedattributes")
    )


def wants(name: str, attributes: tuple[str, ...], excluded: tuple[str, ...]) -> bool:
    """Public form of `_wants`: does the response show attribute `name`?"""
    return _wants(name, attributes, excluded)
