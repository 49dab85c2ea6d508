"""SCIM endpoints under /scim/v2 (RFC 7644 §3): a thin layer over `hub.core`.

Each request is one unit of work: authentication (the bearer token names workspace and
connector), the connector's dialect normalising the body, and the core operation all run in a
single database call, so a request costs one hand-off to the database. An answer too large to
hold (a group, or a page of groups, past `groups.STREAM_MEMBERS` members) makes a second call,
which reads it again in one snapshot and sends it in pieces as it reads (`Database.stream`).
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, delete, get, patch, post, put, route
from litestar.handlers import HTTPRouteHandler
from sqlalchemy import Connection

from hub.core import activity, directory, extensions, groups, users
from hub.core.clock import now_us
from hub.core.connectors import effective_mapping, ignored_paths, overrides_of, strip_ignored
from hub.core.database import Database, Emit
from hub.core.dialects import Dialect, renders_as_stored, rewrites_queries
from hub.core.errors import (
    Forbidden,
    InvalidSyntax,
    InvalidToken,
    InvalidValue,
    NotFound,
    PluginFailure,
    ScimError,
    Unauthorized,
)
from hub.core.profile import attribute_value
from hub.core.projection import plan
from hub.core.provisioning import Provisioning
from hub.core.ratelimit import Limiter
from hub.core.resources import (
    JSON,
    Outcome,
    Page,
    Precondition,
    check_if_match,
    etag,
    matches_if_none_match,
    write_preconditions,
)
from hub.core.schema import (
    GROUP_TYPE,
    LIST_RESPONSE,
    PATCH_OP,
    SEARCH_REQUEST,
    USER_TYPE,
    ResourceType,
)
from hub.core.tokens import (
    Caller,
    authenticate_cached,
    digest,
    needs_touch,
    touch,
)
from hub.logging import current_request_id
from hub.plugins import Registry
from hub.scim import discovery
from hub.scim.response import SCIM_JSON, ScimResponse, ScimStream
from hub.scim.wire import (
    ListParams,
    check_accept,
    encode_cursor,
    header,
    list_params,
    projection_params,
    query_values,
    read_json,
    wants,
)
from hub.settings import Settings

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
_EVENTS = {
    "provisioned": "user_provisioned",
    "updated": "user_updated",
    "deprovisioned": "user_deprovisioned",
    "deleted": "user_deprovisioned",
    "reactivated": "user_reactivated",
}


class NotImplementedFeature(ScimError):
    """An optional SCIM feature the hub does not offer (RFC 7644 §3.7 Bulk, §3.11 /Me)."""

    status = 501


@dataclass
class Hub:
    """What every SCIM request needs: settings, database, plugins; built once at start-up."""

    settings: Settings
    db: Database
    registry: Registry
    base: str
    #: SCIM requests waiting to be written to the provisioning log.
    activity: activity.Buffer = field(default_factory=activity.Buffer)
    #: per-token rate limits of this process.
    limiter: Limiter = field(init=False)
    _touching: set[asyncio.Task[None]] = field(default_factory=set)
    #: `provisioning()` per (IdP, saved overrides): the same handful of connectors ask each time.
    _provisioning: dict[tuple[str | None, bytes], Provisioning] = field(default_factory=dict)
    #: when this process last asked for each token's `last_used` to be refreshed (`remember_use`)
    _touch_asked: dict[int, int] = field(default_factory=dict)
    #: the discovery documents, encoded, by lower-cased path (`schemas/<urn>`): they depend only
    #: on the settings and the base URL, so they are built here, once.
    documents: dict[str, bytes] = field(init=False)
    #: the same for connectors that do not manage some attributes (by those attributes' paths)
    #: or whose workspace holds custom extensions or attributes the hub's schemas lack (by
    #: their description)
    _documents_for: dict[
        tuple[tuple[str, ...], tuple[extensions.Described, ...]], dict[str, bytes]
    ] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.limiter = Limiter(self.settings.rate_limit_per_second, self.settings.workers)
        self.documents = self._documents((), ())

    def _documents(
        self, ignored: tuple[str, ...], custom: tuple[extensions.Described, ...]
    ) -> dict[str, bytes]:
        made = discovery.documents(
            self.settings,
            self.base,
            ignored,
            extensions.schemas(custom),
            extensions.additions(custom),
        )
        return {path.lower(): _encode_json(doc) for path, doc in made.items()}

    def discovery(
        self, caller: Caller, custom: tuple[extensions.Described, ...] = ()
    ) -> dict[str, bytes]:
        """The discovery documents as the caller's connector sees them (`discovery.schemas`).

        `custom`: the custom extensions of its workspace (`extensions.described`).
        """
        ignored = self.provisioning(caller).unmanaged
        if not ignored and not custom:
            return self.documents
        key = (ignored, custom)
        known = self._documents_for.get(key)
        if known is None:
            if len(self._documents_for) >= _PROVISIONING_CACHE:
                self._documents_for.clear()
            known = self._documents_for[key] = self._documents(ignored, custom)
        return known

    def dialect(self, caller: Caller) -> Dialect | None:
        """The dialect of the caller's connector (None: its plugin is not installed)."""
        return self.registry.dialect(caller.idp)

    def provisioning(self, caller: Caller) -> Provisioning:
        """What the caller's dialect says about user writes: its mapping and unmanaged paths."""
        key = (caller.idp, _encode_json(caller.overrides) if caller.overrides else b"")
        known = self._provisioning.get(key)
        if known is not None:
            return known
        dialect = self.dialect(caller)
        overrides = overrides_of(caller.overrides)
        made = Provisioning(
            mapping=effective_mapping(dialect, overrides),
            unmanaged=ignored_paths(dialect, overrides),
        )
        if len(self._provisioning) >= _PROVISIONING_CACHE:
            self._provisioning.clear()  # many distinct overrides: start over rather than grow
        self._provisioning[key] = made
        return made

    def remember_use(self, caller: Caller) -> None:
        """Refresh the token's last-used time in the background, at most once a minute.

        Once per token and minute in this process: until the refresh commits, every read
        authenticated by the token still sees the old time, and under load (thousands of
        requests a second) each of them would otherwise queue a write of its own.
        """
        when = now_us()
        if not needs_touch(caller, when):
            return
        # As the database will see it once this process's own refresh commits:
        asked = msgspec.structs.replace(caller, last_used=self._touch_asked.get(caller.token_pk))
        if asked.last_used is not None and not needs_touch(asked, when):
            return
        if len(self._touch_asked) >= _TOUCH_CACHE:
            self._touch_asked.clear()  # many tokens: forget rather than grow
        self._touch_asked[caller.token_pk] = when
        # Two indexed updates: committed with the loop's other short writes, no thread hand-off.
        write = self.db.write_now(touch, caller, when)
        task = asyncio.get_running_loop().create_task(write)
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)


_encode_json = msgspec.json.Encoder().encode
_PROVISIONING_CACHE = 512
_TOUCH_CACHE = 10_000


def _hub(request: Request[Any, Any, Any]) -> Hub:
    # By key: `state.hub` finds no attribute first, and Python makes and formats an
    # AttributeError before Litestar's `__getattr__` looks the key up (~2,000 instructions).
    hub: Hub = request.app.state["hub"]
    return hub


def _bearer_digest(request: Request[Any, Any, Any]) -> str:
    value = header(request, "authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>' with a connector token")
    return digest(token.strip())


def _authenticated(
    conn: Connection,
    token_digest: str,
    work: Callable[[Connection, Caller], T],
    writes: bool,
    problem: ScimError | None,
    request_id: str,
    seen: list[Caller],
) -> tuple[Caller, T]:
    found = authenticate_cached(conn, token_digest)
    if found is None:
        raise InvalidToken("the token is unknown, revoked, or its connector or admin is disabled")
    caller = msgspec.structs.replace(found, request_id=request_id)
    seen.append(caller)
    if problem is not None:
        # Only now: a client without valid credentials learns nothing about its request.
        raise problem
    if writes and needs_touch(caller, now := now_us()):
        touch(conn, caller, now)
        caller = msgspec.structs.replace(caller, last_used=now)
    return caller, work(conn, caller)


async def _run(
    request: Request[Any, Any, Any],
    work: Callable[[Connection, Caller], T],
    *,
    writes: bool,
    problem: ScimError | None = None,
    quick: bool = False,
) -> tuple[Caller, T]:
    """Authenticate and run `work` in one unit of work; `problem` is raised once authenticated.

    `quick` says the unit is a few indexed statements (one user), so the database may run it
    without a thread hand-off (`Database.read_now` / `write_now`).
    """
    hub = _hub(request)
    token_digest = _bearer_digest(request)
    counted = hub.limiter.check(token_digest)
    db = hub.db
    if writes and problem is None:
        run = db.write_now if quick else db.write
    else:
        run = db.read_now if quick else db.read
    request_id = current_request_id()
    seen: list[Caller] = []
    try:
        caller, result = await run(
            _authenticated, token_digest, work, writes, problem, request_id, seen
        )
    finally:
        # Known even when the work failed, so the provisioning log can show the failure.
        if seen:
            _state(request)["caller"] = seen[0]
            hub.limiter.admit(token_digest, seen[0].rate_limit, counted)
    if not writes:
        hub.remember_use(caller)
    return caller, result


async def _parse(parse: Callable[[], Awaitable[T]]) -> tuple[T | None, ScimError | None]:
    """Run a request parser, keeping its error for after authentication."""
    try:
        return await parse(), None
    except ScimError as exc:
        return None, exc


def _accepting(request: Request[Any, Any, Any]) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        check_accept(request)

    return check


def _normalise(
    hub: Hub, caller: Caller, body: JSON | None, request: Request[Any, Any, Any], rt: ResourceType
) -> JSON:
    if body is None:  # unreachable: a parse problem is raised before the work runs
        raise InvalidSyntax("the request body could not be read")
    dialect = hub.dialect(caller)
    result = body
    if dialect is not None:
        context = hub.registry.context(
            dialect,
            method=request.method,
            resource_type=rt.name,
            operation="request",
            query=query_values(request),
        )
        try:
            result = dialect.normalise(body, context)
        except Exception as exc:
            raise PluginFailure(dialect.plugin, exc) from exc
        if not isinstance(result, dict):
            raise PluginFailure(dialect.plugin, TypeError("normalise must return a JSON object"))
    if rt is not USER_TYPE:
        return result
    # What the connector does not manage (its dialect's `unmanaged`, its admin's `drop`) is
    # ignored here, so neither a PUT nor any PATCH form can change or clear it.
    kind = "patch" if request.method == "PATCH" else "resource"
    return strip_ignored(result, kind, hub.provisioning(caller).unmanaged)


def _normalise_query(
    hub: Hub,
    caller: Caller,
    values: dict[str, str],
    request: Request[Any, Any, Any],
    rt: ResourceType,
) -> dict[str, str]:
    dialect = hub.dialect(caller)
    if dialect is None or not rewrites_queries(dialect):
        return values
    context = hub.registry.context(
        dialect, method=request.method, resource_type=rt.name, operation="query", query=values
    )
    try:
        result = dialect.normalise_query(dict(values), context)
    except Exception as exc:
        raise PluginFailure(dialect.plugin, exc) from exc
    if not isinstance(result, dict):
        raise PluginFailure(dialect.plugin, TypeError("normalise_query must return a dict"))
    return result


def _render_for(hub: Hub, caller: Caller, resource: JSON, method: str, rt: ResourceType) -> JSON:
    dialect = hub.dialect(caller)
    if dialect is None:
        return resource
    context = hub.registry.context(
        dialect, method=method, resource_type=rt.name, operation="response"
    )
    try:
        return dialect.render(resource, context)
    except Exception as exc:
        raise PluginFailure(dialect.plugin, exc) from exc


def _response(
    body: JSON | msgspec.Raw,
    status: int = 200,
    version: int | None = None,
    location: str | None = None,
) -> Response[bytes]:
    headers = {}
    if version is not None:
        headers["ETag"] = etag(version)
    if location is not None:
        headers["Location"] = location
    return ScimResponse(_encode(body), status, headers)


def _state(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request's state dict itself: `request.state` wraps it in a new `State` every time."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    return state


def _note(
    request: Request[Any, Any, Any], rt: ResourceType, resource_id: Any, doc: JSON | None
) -> None:
    """Tell the provisioning log which resource a request is about."""
    name = None
    if doc is not None:
        name = attribute_value(doc, "userName" if rt is USER_TYPE else "displayName")
    _state(request)["activity"] = (
        rt.name,
        resource_id if isinstance(resource_id, str) else None,
        name if isinstance(name, str) else None,
    )


def _resource_response(
    request: Request[Any, Any, Any],
    caller: Caller,
    outcome: Outcome,
    rt: ResourceType,
    status: int = 200,
) -> Response[bytes]:
    hub = _hub(request)
    attributes, excluded = projection_params(request)
    resource = plan(rt, attributes, excluded).apply(outcome.resource)
    resource = _render_for(hub, caller, resource, request.method, rt)
    location = outcome.resource["meta"]["location"] if status == 201 else None
    return _response(resource, status, outcome.version, location)


def _announce(hub: Hub, caller: Caller, outcome: Outcome, rt: ResourceType) -> None:
    """Broadcast the event hooks of a committed write."""
    for event in outcome.events:
        hub.registry.broadcast(event.hook, **event.kwargs)
    hook = _EVENTS.get(outcome.event)
    if rt is not USER_TYPE or hook is None:
        return
    kwargs: dict[str, Any] = {
        "workspace": caller.workspace_id,
        "connector": caller.connector_id,
        "user": outcome.resource,
    }
    if hook == "user_deprovisioned":
        kwargs["deleted"] = outcome.event == "deleted"
    hub.registry.broadcast(hook, **kwargs)


def _service(rt: ResourceType) -> Any:
    return users if rt is USER_TYPE else groups


def _members_attr(rt: ResourceType) -> str:
    return "groups" if rt is USER_TYPE else "members"


# --- handlers shared by Users and Groups -------------------------------------------------------


async def _create(request: Request[Any, Any, Any], rt: ResourceType) -> Response[bytes]:
    hub = _hub(request)

    async def parse() -> JSON:
        check_accept(request)
        return await read_json(request)

    body, problem = await _parse(parse)
    _note(request, rt, None, body)

    def work(conn: Connection, caller: Caller) -> Outcome:
        doc = _normalise(hub, caller, body, request, rt)
        if rt is USER_TYPE:
            return users.create(conn, caller, doc, hub.base, hub.provisioning(caller))
        return groups.create(conn, caller, doc, hub.base)

    quick = rt is USER_TYPE or groups.small_create(body)
    caller, outcome = await _run(request, work, writes=True, problem=problem, quick=quick)
    _note(request, rt, outcome.resource.get("id"), outcome.resource)
    _announce(hub, caller, outcome, rt)
    return _resource_response(request, caller, outcome, rt, 201)


async def _get(request: Request[Any, Any, Any], rt: ResourceType, rid: str) -> Response[bytes]:
    hub = _hub(request)
    attributes, excluded = projection_params(request)
    with_members = wants(_members_attr(rt), attributes, excluded)
    service = _service(rt)
    plain = rt is USER_TYPE and not (attributes or excluded)

    def work(conn: Connection, caller: Caller) -> Outcome | users.StoredUser:
        if plain and renders_as_stored(hub.dialect(caller)):
            return users.get_as_stored(conn, caller, rid, hub.base)
        if rt is GROUP_TYPE and with_members and _as_stored(hub, caller, attributes, excluded):
            # A group too large to hold comes back without members, to be sent in pieces.
            return groups.get(conn, caller, rid, hub.base, True, groups.STREAM_MEMBERS)
        result: Outcome = service.get(conn, caller, rid, hub.base, with_members)
        return result

    _, problem = await _parse(_accepting(request))
    _note(request, rt, rid, None)
    # A group without its members is one indexed read; with them, as long as the group.
    quick = rt is USER_TYPE or not with_members
    caller, outcome = await _run(request, work, writes=False, problem=problem, quick=quick)
    if isinstance(outcome, users.StoredUser):
        _note(request, rt, rid, {"userName": outcome.user_name})
    else:
        _note(request, rt, rid, outcome.resource)
    # RFC 9110 §13.2.2: If-Match first (412 on a GET too), then If-None-Match.
    check_if_match(outcome.version, header(request, "if-match"))
    if matches_if_none_match(outcome.version, header(request, "if-none-match")):
        return Response(b"", status_code=304, headers={"ETag": etag(outcome.version)})
    if isinstance(outcome, users.StoredUser):
        return _response(outcome.body, version=outcome.version)
    if not outcome.held:
        return _streamed_group(request, caller, rid)
    return _resource_response(request, caller, outcome, rt)


def _as_stored(hub: Hub, caller: Caller, attributes: Any, excluded: Any) -> bool:
    """Whether the caller sees resources as rendered, with no projection and no dialect rewrite."""
    return not (attributes or excluded) and renders_as_stored(hub.dialect(caller))


def _streamed_group(request: Request[Any, Any, Any], caller: Caller, rid: str) -> Response[bytes]:
    """A group too large to hold at once, read again and sent a batch of members at a time.

    The same bytes `_get` would send, and the ETag of the version sent: the group is read again
    in the stream's snapshot, so `If-Match` is checked again there (412 before any byte).
    """
    hub = _hub(request)
    if_match = header(request, "if-match")
    headers: dict[str, str] = {}

    def work(conn: Connection, emit: Emit) -> None:
        row = groups.load(conn, caller, rid)
        check_if_match(row.version, if_match)
        headers["ETag"] = etag(row.version)  # sent with the first piece
        for piece in _group_in_pieces(conn, row, hub.base):
            emit(piece)

    return ScimStream(hub.db.stream(work), hub.settings.stream_stall_seconds, headers)


def _group_in_pieces(conn: Connection, row: Any, base: str) -> Iterator[bytes]:
    """A group's encoded resource as `render` gives it, its members a batch at a time.

    The group is encoded around a marker where its member list goes, and the list is written
    there as msgspec writes one: "[", the members joined by ",", "]".
    """
    batches = groups.member_batches(conn, row.pk, base)
    first = next(batches, None)
    if first is None:  # every member left meanwhile: a group without members
        yield _encode(groups.render(row, base, None))
        return
    # A fresh random token: no value of the group can hold it by chance.
    token = uuid.uuid4().hex
    around = _encode(groups.render_around_members(row, base, token))
    before, after = around.split(f'"{token}"'.encode())
    yield before + b"[" + _encode(first)[1:-1]
    del first
    for batch in batches:
        yield b"," + _encode(batch)[1:-1]
    yield b"]" + after


async def _search(
    request: Request[Any, Any, Any],
    rt: ResourceType,
    values: JSON,
    problem: ScimError | None,
) -> Response[bytes]:
    hub = _hub(request)
    service = _service(rt)

    def work(conn: Connection, caller: Caller) -> tuple[Page, ListParams]:
        # Parsed once the caller is known: its dialect may rewrite the query (normalise_query).
        params = list_params(
            _normalise_query(hub, caller, values, request, rt),
            hub.settings,
            _members_attr(rt),
            cursor_kind=_cursor_kind(rt),
        )
        if rt is USER_TYPE and not (params.attributes or params.excluded):
            # Shown as stored: the page comes back pre-encoded unless the dialect rewrites it.
            as_stored = renders_as_stored(hub.dialect(caller))
            params = msgspec.structs.replace(
                params, query=msgspec.structs.replace(params.query, as_stored=as_stored)
            )
        result: Page = (
            groups.search(conn, caller, params.query, hub.base, groups.STREAM_MEMBERS)
            if rt is GROUP_TYPE
            else service.search(conn, caller, params.query, hub.base)
        )
        return result, params

    if rt is USER_TYPE:
        lookup = _is_user_lookup(values)
        quick = lookup or _is_near_page(values, hub.settings.default_count)
    else:
        lookup = quick = _is_group_lookup(values)
    if quick and not lookup:
        await _let_arrivals_in()
    caller, (page, params) = await _run(request, work, writes=False, problem=problem, quick=quick)
    if not page.held:
        return _streamed_groups(request, caller, params)
    if params.query.as_stored:
        return _response(_list_body(page, page.resources, params.start_index, _cursor_kind(rt)))
    projection = plan(rt, params.attributes, params.excluded)
    resources: list[JSON | msgspec.Raw] = [
        _render_for(hub, caller, projection.apply(_decoded(r)), request.method, rt)
        for r in page.resources
    ]
    return _response(_list_body(page, resources, params.start_index, _cursor_kind(rt)))


def _streamed_groups(
    request: Request[Any, Any, Any], caller: Caller, params: ListParams
) -> Response[bytes]:
    """A page of groups too large to hold at once, read again and sent in pieces.

    The same bytes as `_search` would send: the list's head (Resources is its last member, so
    its items go between the head's "[" and the closing "]}"), then each group encoded alone.
    Read in one snapshot (`Database.stream`), the process holds a batch of members at a time
    (`_group_in_pieces`), or one group when a projection or the dialect reshapes the groups.
    """
    hub = _hub(request)
    projection = plan(GROUP_TYPE, params.attributes, params.excluded)
    method = request.method
    as_stored = params.query.with_members and _as_stored(
        hub, caller, params.attributes, params.excluded
    )

    def finish(resource: JSON | msgspec.Raw) -> bytes:
        return _encode(
            _render_for(hub, caller, projection.apply(_decoded(resource)), method, GROUP_TYPE)
        )

    def work(conn: Connection, emit: Emit) -> None:
        page = groups.search_lazily(conn, caller, params.query, hub.base)
        body = _list_body(page, page.resources, params.start_index, _cursor_kind(GROUP_TYPE))
        body["Resources"] = []
        head = _encode(body)[:-2]  # without "]}"
        lazy = page.resources
        assert isinstance(lazy, groups.LazyGroups)
        # The head goes only with the first group's first piece: a failure before it is
        # still answered as a SCIM Error.
        if as_stored:
            pieces = _stored_pieces(conn, lazy.rows, hub.base, head)
        else:
            pieces = _rendered_pieces(lazy, finish, head)
        for piece in pieces:
            emit(piece)
        emit(b"]}" if lazy else head + b"]}")

    return ScimStream(hub.db.stream(work), hub.settings.stream_stall_seconds)


def _stored_pieces(
    conn: Connection, rows: Sequence[Any], base: str, head: bytes
) -> Iterator[bytes]:
    """The page's groups as rendered, each a batch of members at a time, after `head`."""
    for index, row in enumerate(rows):
        pieces = _group_in_pieces(conn, row, base)
        yield (b"," if index else head) + next(pieces)
        yield from pieces


#: The most of a projected or rewritten group sent as one chunk: its encoded bytes go out in
#: pieces, so only the group itself is held in full, not copies queued and in the transport.
_STREAM_PIECE = 256 * 1024


def _rendered_pieces(
    resources: Sequence[JSON], finish: Callable[[JSON], bytes], head: bytes
) -> Iterator[bytes]:
    """The page's groups, each rendered whole by `finish` and sent in pieces, after `head`."""
    for index, resource in enumerate(resources):
        encoded = finish(resource)
        # Dropped before the pieces wait to be taken: the loop's name would keep the group's
        # objects alive while its bytes are sent and the next group is built.
        del resource
        prefix = b"," if index else head
        yield prefix + encoded[:_STREAM_PIECE]
        for start in range(_STREAM_PIECE, len(encoded), _STREAM_PIECE):
            yield encoded[start : start + _STREAM_PIECE]


async def _let_arrivals_in() -> None:
    """Give the event loop one turn before a unit that holds it for long: a page of users.

    A page runs on the loop's thread (~1 ms for 100 users). The loop runs back to back what it
    took up in one look at its sockets, so a request arriving meanwhile waited for the next look
    and then, often, for the whole round that look took up: with 16 connections in a closed loop,
    two of them fell a round behind the others and stayed there (the list phase's p95 and p99 at
    twice its p50). A page that yields once first runs one turn later, after the loop has looked
    at its sockets again, so requests run in about the order they arrived (BENCHMARKS.md, "What
    makes the list phase's p99"). A look-up takes ~50 µs and does not yield.
    """
    await asyncio.sleep(0)


def _decoded(resource: JSON | msgspec.Raw) -> JSON:
    assert not isinstance(resource, msgspec.Raw), "pre-encoded resources only when as_stored"
    return resource


#: A JSON string in a filter: its characters but `"` and `\`, and escapes, as runs of the
#: former between escapes (`"(?:[^"\\]|\\.)*"` tried two branches at every character: ~13,000
#: instructions more a `userName eq` look-up).
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
#: `userName eq "…"`, the query every IdP sends before a create (or `externalId eq "…"` or
#: `emails[type eq "work"].value eq "…"`, where the IdP matches users on those): an indexed
#: look-up. The email's value is bounded: one too long to be a `user_emails` key (lowercasing
#: can double a length) would be answered by reading every user, which is not for the loop.
_USER_KEY_EQ = re.compile(
    rf"\s*(?:(?:userName|externalId)\s+eq\s+{_QUOTED}"
    rf'|emails\[\s*type\s+eq\s+{_QUOTED}\s*\]\.value\s+eq\s+"(?:[^"\\]|\\.){{0,160}}")\s*',
    re.IGNORECASE,
)
#: What Entra ID and Okta look groups up by (with `excludedAttributes=members`): an index each.
_GROUP_KEY_EQ = re.compile(rf"\s*(?:displayName|externalId)\s+eq\s+{_QUOTED}\s*", re.IGNORECASE)


def _is_user_lookup(values: JSON) -> bool:
    return _is_lookup(values, _USER_KEY_EQ)


def _is_group_lookup(values: JSON) -> bool:
    """A group looked up by name or externalId without its members: a few indexed reads."""
    excluded = next((v for k, v in values.items() if str(k).lower() == "excludedattributes"), "")
    hides_members = isinstance(excluded, str) and "members" in excluded.lower().split(",")
    return hides_members and _is_lookup(values, _GROUP_KEY_EQ)


def _is_lookup(values: JSON, pattern: re.Pattern[str]) -> bool:
    text = values.get("filter")
    return (
        isinstance(text, str)
        and len(text) < 1024
        and pattern.fullmatch(text) is not None
        and not values.get("sortBy")
        and values.get("startIndex") in (None, "1", 1)
        and "cursor" not in values
    )


#: An unfiltered page starting this near the front (or any cursor page) of at most this many
#: users is a few short indexed reads, cheaper than a hand-off to a database thread.
_NEAR_START_INDEX = 10_000
_NEAR_COUNT = 200


def _is_near_page(values: JSON, default_count: int) -> bool:
    lowered = {str(k).lower(): v for k, v in values.items()}
    if lowered.get("filter") or lowered.get("sortby"):
        return False
    try:
        count = int(lowered.get("count", default_count))
        start = int(lowered.get("startindex", 1))
    except (TypeError, ValueError):
        return False  # the general path says what is wrong
    near = "cursor" in lowered or start <= _NEAR_START_INDEX
    return near and count <= _NEAR_COUNT


def _cursor_kind(rt: ResourceType) -> str:
    return "U" if rt is USER_TYPE else "G"


def _list_body(
    page: Page,
    resources: Sequence[JSON | msgspec.Raw],
    start_index: int,
    cursor_kind: str | None = None,
) -> JSON:
    """A ListResponse; cursor pages (RFC 9865) carry `nextCursor` unless last, no startIndex.

    `start_index` is the one asked (RFC 7644 §3.4.2.4: the index of the page's first result),
    also past the end and past what the database binds, up to `wire.MAX_JSON_INT`.
    """
    if page.cursor:
        body: JSON = {
            "schemas": [LIST_RESPONSE],
            "totalResults": page.total,
            "itemsPerPage": len(resources),
        }
        if page.next_after is not None and cursor_kind is not None:
            body["nextCursor"] = encode_cursor(cursor_kind, page.next_after)
        body["Resources"] = resources
        return body
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": page.total,
        "itemsPerPage": len(resources),
        "startIndex": start_index,
        "Resources": resources,
    }


def _check_search_schemas(body: JSON) -> None:
    schemas = body.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or SEARCH_REQUEST not in schemas):
        raise InvalidValue(f"a SearchRequest lists {SEARCH_REQUEST} in 'schemas'")


async def _search_request(request: Request[Any, Any, Any]) -> JSON:
    check_accept(request)
    body = await read_json(request)
    _check_search_schemas(body)
    return {k: v for k, v in body.items() if k != "schemas"}


async def _list(request: Request[Any, Any, Any], rt: ResourceType) -> Response[bytes]:
    _, problem = await _parse(_accepting(request))
    return await _search(request, rt, query_values(request), problem)


async def _post_search(request: Request[Any, Any, Any], rt: ResourceType) -> Response[bytes]:
    values, problem = await _parse(lambda: _search_request(request))
    return await _search(request, rt, values or {}, problem)


async def _put(request: Request[Any, Any, Any], rt: ResourceType, rid: str) -> Response[bytes]:
    hub = _hub(request)
    _note(request, rt, rid, None)
    if_match = _write_preconditions(request)

    async def parse() -> JSON:
        check_accept(request)
        return await read_json(request)

    body, problem = await _parse(parse)

    def work(conn: Connection, caller: Caller) -> Outcome:
        doc = _normalise(hub, caller, body, request, rt)
        if rt is USER_TYPE:
            return users.replace(
                conn, caller, rid, doc, hub.base, if_match, hub.provisioning(caller)
            )
        return groups.replace(conn, caller, rid, doc, hub.base, if_match)

    caller, outcome = await _run(request, work, writes=True, problem=problem, quick=rt is USER_TYPE)
    _note(request, rt, rid, outcome.resource)
    _announce(hub, caller, outcome, rt)
    return _resource_response(request, caller, outcome, rt)


def _write_preconditions(request: Request[Any, Any, Any]) -> Precondition:
    return write_preconditions(header(request, "if-match"), header(request, "if-none-match"))


#: Microsoft's tutorial: "Don't require a case-sensitive match on structural elements in SCIM".
_PATCH_OP_LOWER = PATCH_OP.lower()


def _operations(body: JSON) -> list[Any]:
    schemas = body.get("schemas")
    if schemas is None:  # attribute names are case-insensitive (RFC 7643 §2.1): "Schemas"
        schemas = next((v for k, v in body.items() if k.lower() == "schemas"), None)
    if not isinstance(schemas, list) or (
        PATCH_OP not in schemas
        and _PATCH_OP_LOWER not in (s.lower() for s in schemas if isinstance(s, str))
    ):
        raise InvalidValue(f"a PATCH body must list {PATCH_OP} in 'schemas'")
    operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
    # An empty list is a no-op, not an error (see `hub.core.patch`: Microsoft's SCIM Validator).
    if not isinstance(operations, list):
        raise InvalidSyntax("a PATCH body needs an 'Operations' list")
    return operations


async def _patch(request: Request[Any, Any, Any], rt: ResourceType, rid: str) -> Response[bytes]:
    hub = _hub(request)
    _note(request, rt, rid, None)
    if_match = _write_preconditions(request)
    settings = hub.settings
    attributes, excluded = projection_params(request)
    with_members = wants(_members_attr(rt), attributes, excluded)
    # A group PATCH changing only members, with no projection asked for, answers 204.
    quiet = rt is GROUP_TYPE and not attributes and not excluded

    async def parse() -> JSON:
        check_accept(request)
        return await read_json(request)

    body, problem = await _parse(parse)

    def work(conn: Connection, caller: Caller) -> Outcome:
        doc = _normalise(hub, caller, body, request, rt)
        operations = _operations(doc)
        if rt is USER_TYPE:
            return users.patch(
                conn,
                caller,
                rid,
                operations,
                hub.base,
                if_match,
                settings.max_patch_operations,
                hub.provisioning(caller),
            )
        return groups.patch(
            conn,
            caller,
            rid,
            operations,
            hub.base,
            if_match,
            settings.max_patch_operations,
            settings.max_group_members_per_patch,
            with_members,
            quiet,
        )

    quick = rt is USER_TYPE or (quiet and groups.small_member_patch(body))
    caller, outcome = await _run(request, work, writes=True, problem=problem, quick=quick)
    _note(request, rt, rid, outcome.resource)
    _announce(hub, caller, outcome, rt)
    if not outcome.content:
        return Response(b"", status_code=204, headers={"ETag": etag(outcome.version)})
    return _resource_response(request, caller, outcome, rt)


async def _delete(request: Request[Any, Any, Any], rt: ResourceType, rid: str) -> Response[bytes]:
    hub = _hub(request)
    _note(request, rt, rid, None)
    if_match = _write_preconditions(request)

    def work(conn: Connection, caller: Caller) -> Outcome:
        if rt is USER_TYPE:
            return users.remove(conn, caller, rid, if_match, hub.provisioning(caller), hub.base)
        return groups.remove(conn, caller, rid, if_match)

    caller, outcome = await _run(request, work, writes=True, quick=rt is USER_TYPE)
    _note(request, rt, rid, outcome.resource)
    _announce(hub, caller, outcome, rt)
    return Response(b"", status_code=204)


# --- routes ------------------------------------------------------------------------------------

_OPTS: dict[str, Any] = {"media_type": SCIM_JSON}


def _options(path: str, allow: str, name: str) -> HTTPRouteHandler:
    """OPTIONS for `path`, answering `allow` (RFC 9110 §9.3.7).

    Litestar 2's own OPTIONS handler lists the methods of the first handler registered for a
    path only (litestar-org/litestar#4169): `OPTIONS /scim/v2/Users` answered "OPTIONS, POST"
    and `/scim/v2/Users/{id}` "GET, OPTIONS".
    """
    headers = {"Allow": allow}

    async def options() -> Response[None]:
        return Response(content=None, status_code=204, headers=headers)

    return route(path, http_method=["OPTIONS"], name=name, include_in_schema=False)(options)


def _resource_routes(rt: ResourceType) -> list[HTTPRouteHandler]:
    path = f"/scim/v2{rt.endpoint}"
    item = f"{path}/{{rid:str}}"
    name = rt.name.lower()

    async def create(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await _create(request, rt)

    async def read_list(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await _list(request, rt)

    async def search(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await _post_search(request, rt)

    async def read(request: Request[Any, Any, Any]) -> Response[bytes]:
        rid = request.path_params["rid"]
        return await _get(request, rt, rid)

    async def replace(request: Request[Any, Any, Any]) -> Response[bytes]:
        rid = request.path_params["rid"]
        return await _put(request, rt, rid)

    async def modify(request: Request[Any, Any, Any]) -> Response[bytes]:
        rid = request.path_params["rid"]
        return await _patch(request, rt, rid)

    async def remove(request: Request[Any, Any, Any]) -> Response[bytes]:
        rid = request.path_params["rid"]
        return await _delete(request, rt, rid)

    return [
        post(path, name=f"{name}-create", status_code=201, **_OPTS)(create),
        get(path, name=f"{name}-list", **_OPTS)(read_list),
        post(f"{path}/.search", name=f"{name}-search", status_code=200, **_OPTS)(search),
        get(item, name=f"{name}-get", **_OPTS)(read),
        put(item, name=f"{name}-replace", **_OPTS)(replace),
        patch(item, name=f"{name}-patch", **_OPTS)(modify),
        delete(item, name=f"{name}-delete", status_code=200, **_OPTS)(remove),
    ]


def _nothing(conn: Connection, caller: Caller) -> None:
    """The unit of work of a request that only needs its caller authenticated."""


def _custom_extensions(conn: Connection, caller: Caller) -> tuple[extensions.Described, ...]:
    """The unit of work of a discovery request: what its workspace's custom extensions hold."""
    return extensions.described(conn, caller.workspace_pk)


async def _discovery(request: Request[Any, Any, Any], path: str, missing: str) -> Response[bytes]:
    """Answer with the discovery document at `path` (any case) once the caller is known.

    A path naming no document is 404 with `missing` as its detail, after authentication (401 first).
    """
    hub = _hub(request)

    async def check() -> None:
        check_accept(request)
        if any(key.lower() == "filter" for key in request.query_params):
            # RFC 7644 §4: so a client cannot take the documents for ones matching its filter.
            raise Forbidden("the discovery endpoints do not filter; ask without 'filter'")

    _, problem = await _parse(check)
    # Authentication and a workspace's few described attributes: no thread hand-off.
    caller, custom = await _run(
        request, _custom_extensions, writes=False, problem=problem, quick=True
    )
    body = hub.discovery(caller, custom).get(path.lower())
    if body is None:
        raise NotFound(missing)
    return ScimResponse(body, 200, {})


@get("/scim/v2/ServiceProviderConfig", name="service-provider-config", **_OPTS)
async def service_provider_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    """RFC 7644 §4: what the hub supports."""
    return await _discovery(request, "ServiceProviderConfig", "")


@get("/scim/v2/ResourceTypes", name="resource-types", **_OPTS)
async def resource_types(request: Request[Any, Any, Any]) -> Response[bytes]:
    """RFC 7644 §4: the resource types served."""
    return await _discovery(request, "ResourceTypes", "")


@get("/scim/v2/ResourceTypes/{name:str}", name="resource-type", **_OPTS)
async def resource_type(request: Request[Any, Any, Any]) -> Response[bytes]:
    """One resource type by name."""
    name: str = request.path_params["name"]
    missing = f"no ResourceType {name!r}; there are User and Group"
    return await _discovery(request, f"ResourceTypes/{name}", missing)


@get("/scim/v2/Schemas", name="schemas", **_OPTS)
async def schemas(request: Request[Any, Any, Any]) -> Response[bytes]:
    """RFC 7644 §4: the schemas supported."""
    return await _discovery(request, "Schemas", "")


@get("/scim/v2/Schemas/{urn:str}", name="schema", **_OPTS)
async def schema(request: Request[Any, Any, Any]) -> Response[bytes]:
    """One schema by URN."""
    urn: str = request.path_params["urn"]
    return await _discovery(request, f"Schemas/{urn}", f"no Schema {urn!r}")


@post("/scim/v2/.search", name="root-search", status_code=200, **_OPTS)
async def root_search(request: Request[Any, Any, Any]) -> Response[bytes]:
    """RFC 7644 §3.4.3: search Users and Groups at once."""
    return await _search_all(request, lambda: _search_request(request))


@get("/scim/v2", name="root-query", **_OPTS)
async def root_query(request: Request[Any, Any, Any]) -> Response[bytes]:
    """RFC 7644 §3.4.2: query Users and Groups at once, at the base URI, from the query string.

    The GET form of the root `/.search` (scim2-client's `query()` without a resource type).
    """

    async def values() -> JSON:
        check_accept(request)
        return dict(query_values(request))

    return await _search_all(request, values)


async def _search_all(
    request: Request[Any, Any, Any], values: Callable[[], Awaitable[JSON]]
) -> Response[bytes]:
    """A list of Users then Groups matching the parameters `values` reads."""
    hub = _hub(request)

    async def parse() -> ListParams:
        return list_params(await values(), hub.settings, "members")

    parsed, problem = await _parse(parse)

    def work(conn: Connection, caller: Caller) -> Page:
        assert parsed is not None
        return directory.search_all(conn, caller, parsed.query, hub.base)

    caller, page = await _run(request, work, writes=False, problem=problem)
    assert parsed is not None
    params = parsed
    plans = {
        rt.name: plan(rt, params.attributes, params.excluded) for rt in (USER_TYPE, GROUP_TYPE)
    }
    resources: list[JSON | msgspec.Raw] = []
    for stored in page.resources:
        resource = _decoded(stored)
        rt = USER_TYPE if resource["meta"]["resourceType"] == "User" else GROUP_TYPE
        projected = plans[rt.name].apply(resource)
        resources.append(_render_for(hub, caller, projected, request.method, rt))
    return _response(_list_body(page, resources, params.start_index))


async def _not_offered(request: Request[Any, Any, Any], detail: str) -> Response[bytes]:
    """Answer 501 with `detail`, once the caller is authenticated (a stranger gets 401)."""
    _, problem = await _parse(_accepting(request))
    await _run(request, _nothing, writes=False, problem=problem, quick=True)
    raise NotImplementedFeature(detail)


@post("/scim/v2/Bulk", name="bulk", status_code=501, **_OPTS)
async def bulk(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Bulk is not supported (ServiceProviderConfig says so); RFC 7644 §3.7 asks for 501."""
    return await _not_offered(
        request, "Bulk operations are not supported; send one request per change"
    )


@route(
    "/scim/v2/Me",
    http_method=["GET", "POST", "PUT", "PATCH", "DELETE"],
    name="me",
    status_code=501,
    **_OPTS,
)
async def me(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The /Me alias is not offered; RFC 7644 §3.11 asks for 501.

    /Me stands for the resource the caller authenticated as, and a hub token is a connector's
    (an IdP's), never a user's.
    """
    return await _not_offered(
        request,
        "/Me is not supported: tokens here belong to connectors, not users; "
        "address a user as /Users/{id}",
    )


def _options_naming_every_method(handlers: Sequence[HTTPRouteHandler]) -> list[HTTPRouteHandler]:
    """An OPTIONS handler per path of `handlers`, naming every method the path answers.

    HEAD is named wherever GET is, as it answers there (`hub.head`); Litestar's own OPTIONS
    would name neither HEAD nor, where several handlers share a path, their other methods.
    """
    methods: dict[str, set[str]] = {}
    for handler in handlers:
        for path in handler.paths:
            methods.setdefault(path, set()).update(handler.http_methods)
    answers = []
    for number, (path, found) in enumerate(methods.items()):
        if "OPTIONS" in found:
            continue
        allowed = found | {"OPTIONS"} | ({"HEAD"} if "GET" in found else set())
        answers.append(_options(path, ", ".join(sorted(allowed)), f"scim-options-{number}"))
    return answers


def scim_routes() -> list[HTTPRouteHandler]:
    """Every SCIM route handler.

    Built once per process, like a module's handlers: Litestar copies a handler it registers,
    so every app gets its own, and a signature parsed on these is parsed once (`OwnRouter`).
    """
    return list(_scim_routes())


@functools.cache
def _scim_routes() -> tuple[HTTPRouteHandler, ...]:
    handlers = [
        *_resource_routes(USER_TYPE),
        *_resource_routes(GROUP_TYPE),
        service_provider_config,
        resource_types,
        resource_type,
        schemas,
        schema,
        root_search,
        root_query,
        bulk,
        me,
    ]
    # First, so that Litestar adds no OPTIONS handler of its own to these paths.
    return (*_options_naming_every_method(handlers), *handlers)
