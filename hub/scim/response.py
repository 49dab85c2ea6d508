"""SCIM responses: an encoded JSON body and a few headers, sent as they are.

Litestar's `Response` renders its content, merges its headers into a header container and
encodes them again on the way out (`to_asgi_response`, then `ASGIResponse`): 5.5 µs a response
against 1 here, a few per cent of a SCIM GET. A SCIM response's body is encoded already and its
headers are known, so `ScimResponse` builds the ASGI header list once and sends two messages. A
route, router or app that adds its own headers, cookies or a background task gets Litestar's
path unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from litestar import Response
from litestar.response.base import ASGIResponse

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.datastructures import Cookie
    from litestar.types import Receive, Scope, Send, TypeEncodersMap

SCIM_JSON = "application/scim+json"
_CONTENT_TYPE = (b"content-type", SCIM_JSON.encode())


class _Encoded(ASGIResponse):
    """An ASGI response whose status, header list and body are final."""

    __slots__ = ("head",)

    def __init__(self, status: int, head: list[tuple[bytes, bytes]], body: bytes) -> None:
        # Not ASGIResponse's __init__: it would build a header container to encode again.
        self.status_code = status
        self.head = head
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.head}
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class ScimResponse(Response[bytes]):
    """A response carrying an encoded SCIM JSON document (a resource, a list, an Error)."""

    def __init__(
        self, body: bytes, status_code: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        """Hold `body` (application/scim+json) with `headers` (ETag, Location, WWW-Authenticate…).

        `status_code` must allow a body (not 1xx, 204 or 304).
        """
        # Response's own __init__, minus its two isinstance checks against `typing.Mapping`
        # (~1.2 µs a response): there are no cookies, and the headers are a plain dict.
        self.content = body
        self.background = None
        self.cookies = []
        self.encoding = "utf-8"
        self.headers = dict(headers or {})
        self.media_type = SCIM_JSON
        self.status_code = status_code
        self.response_type_encoders = {}

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        """The ASGI response: straight from the encoded body unless a layer adds something."""
        if (
            app is not None
            or background
            or cookies
            or encoded_headers
            or headers
            or is_head_response
        ):
            return super().to_asgi_response(
                app,
                request,
                background=background,
                cookies=cookies,
                encoded_headers=encoded_headers,
                headers=headers,
                is_head_response=is_head_response,
                media_type=media_type,
                status_code=status_code,
                type_encoders=type_encoders,
            )
        body = self.content
        head = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
        head.extend(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers.items()
        )
        return _Encoded(self.status_code or 200, head, body)


class _Streamed(ASGIResponse):
    """An ASGI response whose body is sent chunk by chunk (chunked transfer coding).

    `headers` are read once the first chunk is made: its maker may still set some (an ETag).
    """

    __slots__ = ("chunks", "head", "late_headers", "stall_s")

    def __init__(
        self,
        status: int,
        head: list[tuple[bytes, bytes]],
        headers: Mapping[str, str],
        chunks: AsyncGenerator[bytes, None],
        stall_s: float,
    ) -> None:
        self.status_code = status
        self.head = head
        self.late_headers = headers
        self.chunks = chunks
        self.stall_s = stall_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with contextlib.aclosing(self.chunks) as chunks:
            # Taken before the head goes out: a failure this early is still a SCIM Error.
            first = await anext(chunks, b"")
            head = self.head + [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in self.late_headers.items()
            ]
            await send({"type": "http.response.start", "status": self.status_code, "headers": head})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            # A failure from here on raises past the started response: the server closes the
            # connection without the last chunk, so the client sees the body cut short.
            async for chunk in chunks:
                # A client that stops reading would hold the chunks' snapshot and database
                # connection for as long as it likes: after `stall_s` the answer is ended.
                await asyncio.wait_for(
                    send({"type": "http.response.body", "body": chunk, "more_body": True}),
                    self.stall_s,
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class ScimStream(ScimResponse):
    """A SCIM JSON document sent as its chunks are made: an answer too large to hold at once.

    No Content-Length (the size is known only at the end): HTTP/1.1 chunked transfer coding.
    """

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        stall_s: float,
        headers: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> None:
        """Send the concatenation of `chunks` (application/scim+json) as the body.

        `stall_s`: how long sending one chunk may wait for the client to read before the
        connection is dropped. `headers` may still be filled in until the first chunk is made
        (an ETag the chunks' maker learns as it reads).
        """
        super().__init__(b"", status_code)
        self.chunks = chunks
        self.stall_s = stall_s
        # The caller's dict itself, not a copy: it is read when the first chunk is made.
        self.headers = headers if headers is not None else {}

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        """The streaming ASGI response, with the headers a route or app layer adds."""
        head = [_CONTENT_TYPE, *(encoded_headers or ())]
        head.extend(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or {}).items()
        )
        head.extend(cookie.to_encoded_header() for cookie in cookies or ())
        status = status_code or self.status_code or 200
        return _Streamed(status, head, self.headers, self.chunks, self.stall_s)
