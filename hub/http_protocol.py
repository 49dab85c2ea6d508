"""uvicorn's httptools protocol, sending each response in one write instead of two.

uvicorn writes a response's status line and headers when the app sends `http.response.start`,
and its body when the app sends `http.response.body`: two `send` system calls and two TCP
segments for every SCIM response. Here the head is held and goes out joined to the body.

A read's response is held a little longer, to the end of the event loop's turn: the turn's
answers then go out together after its work instead of one by one in the middle of it (measured
on 2 cores at concurrency 16: GET +20-45%, `userName eq` +30% requests/s). A write's response, or
a large one (a page of users), goes out as soon as its body is written: holding those cost
group-committed creates ~4% and pages of 100 users ~20%.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.core.schema import ERROR_SCHEMA
from hub.logging import log_request

_READS = frozenset({"GET", "HEAD"})
#: a response this big goes out at once: its reader has work to do with it (a page of 100 users)
_LARGE = 16 * 1024
#: The most a request line and headers may take (nginx allows 32 KiB; an IdP sends under 2 KiB)
_MAX_HEAD = 64 * 1024
#: A read longer than this is parsed in pieces this long, so that a head is counted (`_count_head`)
_PIECE = 8 * 1024
#: How long a refused client may go on sending (dropped) before its socket is closed
_LINGER_S = 2.0
#: Seconds a client may stay silent while it owes a request (its head or body unfinished, or
#: nothing sent yet on a new connection); the keep-alive timeout between requests is a setting
_SILENCE_S = 5.0
#: header names, and `Connection` tokens, that offer an upgrade
_UPGRADING = frozenset({b"upgrade", b"http2-settings"})


class _Refused(Exception):
    """Raised in a parser callback once the request is refused, to stop httptools parsing."""


class _CoalescingTransport:
    """A transport that writes a response's head together with its body.

    The first write is held; the next one goes out joined to it in one call, at once
    (`to_end_of_turn` False, or 16 KiB and more) or when the loop's turn ends. A write that no
    other follows (a HEAD response, a 100 Continue) goes out when the turn ends.
    """

    __slots__ = ("_held", "_loop", "_transport", "lingering", "to_end_of_turn")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        #: hold every write to the end of the turn (set per request by the protocol)
        self.to_end_of_turn = False
        #: the last answer is written: what the client still sends is dropped (see `linger`)
        self.lingering = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold `data`, or write it joined to what is held (see the class)."""
        if not data:
            return
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        elif self.to_end_of_turn and len(held) + len(data) < _LARGE:
            self._held = held + data
        else:
            self._held = None
            self._send(held + data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._send(held)

    def _send(self, data: bytes) -> None:
        # After `linger` the stream is ended: an answer still running is dropped.
        if not self._transport.is_closing() and not self.lingering:
            self._transport.write(data)

    def linger(self, last: bytes) -> None:
        """Write what is held and `last`, then a FIN; close after `_LINGER_S` at most.

        Until then `data_received` drops what arrives (see `CoalescingHttpToolsProtocol`).
        """
        self._flush()
        self.lingering = True
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(last)
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(_LINGER_S, transport.close)

    def close(self) -> None:
        """Write what is held, then close (uvicorn closes right after a `Connection: close`)."""
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, pause_reading, get_extra_info, abort…) is the socket's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` over a transport that writes each response in one call."""

    #: bytes of the head being read, in the reads that began inside it (see `_count_head`)
    _head_bytes = 0
    #: the SCIM Error refusing what the client sent last, once given (see `_refuse`)
    _refusal: bytes | None = None
    #: the request being parsed again without its `Upgrade` (see `_parse_without_upgrade`)
    _replaying: Any = None
    # Slots, not keys of the instance's dict: uvicorn's protocol has ~30 attributes, and a dict
    # grown past what CPython shares among instances made every `self.x` slower (+3-5k
    # instructions per request, counted under callgrind).
    __slots__ = ("_codings", "_hosts")
    #: `Host` lines of the head being read (see `on_header`)
    _hosts: int
    #: its `Transfer-Encoding` values, joined by commas (None: it has none)
    _codings: bytes | None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the connection's transport, then set up as uvicorn does."""
        self._hosts, self._codings = 0, None
        self._coalescing = _CoalescingTransport(transport, self.loop)
        wrapped: Any = self._coalescing
        super().connection_made(wrapped)
        self._time_the_client()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does; while the client still owes bytes of a request, time it.

        uvicorn times a connection only between a response and the next request, so one that
        never sent a byte, or stopped in the middle of a head or a body (a client that died, a
        dropped NAT entry, a slowloris), held its socket and file descriptor for ever. Silence
        of `_SILENCE_S` seconds (5) while a request is owed now closes it too; bytes that keep
        coming, however slowly, reset the clock. Between requests uvicorn's keep-alive timeout
        (`SCIM_HUB_KEEP_ALIVE_SECONDS`) applies.
        """
        if self._refusal is not None:
            return  # refused: what follows is dropped
        if len(data) > _PIECE:
            self._receive_in_pieces(data)
            return
        scope = self.scope
        in_head = self._reading_head()
        self._unset_keepalive_if_required()
        self._feed(data)
        if self._refusal is None and self._reading_head():
            self._count_head(len(data) if in_head and self.scope is scope else 0)
        if self._refusal is not None:
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or cycle.more_body:
            self._time_the_client()

    def _receive_in_pieces(self, data: bytes) -> None:
        """Receive a long read piece by piece, so that a head beginning in it is counted.

        Only a piece that begins inside a head is counted: a head that began and ended in one
        read of up to 256 KiB was never counted at all. A long read is a large body or a
        pipelined batch, not a provisioning cycle's request, and its pieces cost nothing
        measurable (a 1 MiB body in 256 KiB reads: 0.72-0.78 ms in process, 0.78 whole).
        """
        for start in range(0, len(data), _PIECE):
            if self.transport.get_protocol() is not self:
                return  # upgraded (WebSocket): uvicorn drops the rest of the read
            self.data_received(data[start : start + _PIECE])

    def _reading_head(self) -> bool:
        """Is a request's head being read (its scope begun by httptools, no cycle made for it)?"""
        scope = self.scope
        return scope is not None and (self.cycle is None or self.cycle.scope is not scope)

    def _feed(self, data: bytes) -> None:
        """Parse `data` as uvicorn's `data_received` does, but go on past an unused Upgrade."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:  # a callback refused the request (`_Refused`)
                return
            if self._connecting():
                # Its authority-form target (`host:port`) is no URL uvicorn can split.
                self._refuse_connect()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            elif self._connecting():
                # httptools stops at every CONNECT head: parsed again, it would stop again.
                self._refuse_connect()
            else:
                self._parse_without_upgrade(data[upgrade.args[0] :])

    def _connecting(self) -> bool:
        """Is the request being read a CONNECT (its method read, whatever followed)?"""
        try:
            return bool(self.parser.get_method() == b"CONNECT")
        except httptools.HttpParserError:
            return False

    def _refuse_connect(self) -> None:
        """CONNECT asks for a tunnel: valid HTTP the hub does not implement (RFC 9110 §9.3.6)."""
        self._refuse(
            501,
            "Not Implemented",
            "CONNECT is not served: the hub is an origin server, not a proxy",
        )

    def _parse_without_upgrade(self, rest: bytes) -> None:
        """Serve a request offering an Upgrade the hub does not take (h2c) as plain HTTP/1.1.

        JDK's HttpClient offers `Upgrade: h2c` on its first request over http://, a POST
        included; curl --http2 does too. httptools stops parsing at the end of such a head and
        hands over the bytes after it, so uvicorn gave the app an empty body (POST /Users
        answered 400 "the request body is empty") and dropped them with any pipelined request
        (uvicorn#2722). A server may ignore an Upgrade (RFC 9110 §7.8): the request's cycle is
        taken back (its task has not run yet), and its head, without the upgrade, goes to a
        new parser followed by `rest`, so the body reaches the cycle and what follows is parsed.
        """
        cycle = self.cycle
        cycle.more_body = True
        cycle.message_event.clear()
        head = [f"{self.scope['method']} ".encode() + self.url + b" HTTP/1.1"]
        for name, value in self.headers:
            if name == b"connection":
                tokens = [t for t in value.split(b",") if t.strip().lower() not in _UPGRADING]
                value = b",".join(tokens)
            if value and name not in _UPGRADING:
                head.append(name + b": " + value)
        self._replaying = cycle
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._feed(b"\r\n".join(head) + b"\r\n\r\n" + rest)

    def _count_head(self, size: int) -> None:
        """Refuse a request whose head has grown past `_MAX_HEAD` (414 for its URL, else 431).

        httptools sets no limit: a client could send headers until the process ran out of
        memory (a 10 MB header was read and answered 200). Counted are the reads, or pieces of
        a long read (`_PIECE`, 8 KiB), that begin and end inside one head, so no byte of another
        request is ever counted, and a head is refused before it passes the limit by more than
        the piece that began it and the one that would end it (16 KiB in all).
        """
        self._head_bytes = self._head_bytes + size if size else 0
        if self._head_bytes > _MAX_HEAD:
            if len(self.url) > _MAX_HEAD // 2:
                self._refuse(414, "URI Too Long", "the URL is longer than the server accepts")
            else:
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    f"the request line and headers are longer than the {_MAX_HEAD} bytes the "
                    "server accepts",
                )

    def send_400_response(self, msg: str) -> None:
        """Answer a request httptools cannot parse with a SCIM Error instead of uvicorn's text.

        A malformed request line, header or body framing (chunk sizes, two Content-Lengths,
        Content-Length with Transfer-Encoding) never reaches the app; uvicorn answered it in
        `text/plain` and closed at once. A URL past what httptools can split (64 KiB) is a 414.
        """
        if len(getattr(self, "url", b"")) > 0xFFFF:
            self._refuse(414, "URI Too Long", "the URL is longer than the server accepts")
            return
        self._refuse(
            400,
            "Bad Request",
            "the request is not valid HTTP/1.1 (RFC 9112): its request line, a header, or the "
            "framing of its body (Content-Length, Transfer-Encoding, chunk sizes) is malformed",
        )

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        """Answer a request the app never sees with a SCIM Error, then end the connection.

        Requests received whole before it are answered first: uvicorn wrote the refusal and
        closed at once, so a POST pipelined before malformed bytes created its user unanswered.
        The client is likely still sending: closing a socket with unread bytes resets it, and
        the reset can reach the client before it reads the answer. So the answer goes out with a
        FIN, what the client still sends is read and dropped, and the socket closes when the
        client closes its side or after `_LINGER_S` seconds.

        It carries an `x-request-id`, as every answer of the app does, and leaves the request's
        log line with that id, its method and the detail (not its path: an activation link's
        holds a secret, which the app logs as its route template).
        """
        request_id = os.urandom(8).hex()
        body = msgspec.json.encode(
            {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
        )
        head = [f"HTTP/1.1 {status} {reason}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/scim+json",
            f"content-length: {len(body)}".encode(),
            b"x-request-id: " + request_id.encode(),
            b"connection: close",
        ]
        log_request(method=self._method(), status=status, detail=detail, request_id=request_id)
        self._refusal = b"\r\n".join(head) + b"\r\n\r\n" + body
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        cycle = self.cycle
        # A request whose body is unfinished cannot be answered; one received whole can.
        if cycle is None or cycle.response_complete or cycle.more_body:
            self._coalescing.linger(self._refusal)

    def _method(self) -> str:
        """The method of the request being read, once httptools has read its URL ("?" before)."""
        if self.scope is None or not getattr(self, "url", b""):
            return "?"
        return str(self.parser.get_method().decode("ascii", "replace"))

    def on_response_complete(self) -> None:
        """Go on as uvicorn does; after the last answer owed before a refusal, send the refusal."""
        super().on_response_complete()
        if self._refusal is not None and not self.pipeline and self.cycle.response_complete:
            self._unset_keepalive_if_required()
            self._coalescing.linger(self._refusal)

    def _time_the_client(self) -> None:
        """Close the connection unless the client sends something within `_SILENCE_S` seconds."""
        if self.timeout_keep_alive_task is None and not self.transport.is_closing():
            self.timeout_keep_alive_task = self.loop.call_later(
                _SILENCE_S, self.timeout_keep_alive_handler
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect a header as uvicorn does, noting `Host` and `Transfer-Encoding` on the way.

        uvicorn's own callback, with two comparisons more: the head's framing is checked in
        `on_headers_complete` without another pass over its headers.
        """
        name = name.lower()
        if name == b"host":
            self._hosts += 1
        elif name == b"transfer-encoding":
            codings = self._codings
            self._codings = value if codings is None else codings + b"," + value
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """Start the request as uvicorn does; a read's response is held to the end of the turn."""
        replaying = self._replaying
        if replaying is not None:  # the head of a request already started, parsed again
            self._replaying = None
            self._hosts = 0
            self._codings = None
            self.scope = replaying.scope
            return
        if self._hosts != 1 or self._codings is not None:
            self._check_framing()
        self._hosts = 0
        super().on_headers_complete()
        self._coalescing.to_end_of_turn = self.scope["method"] in _READS
        cycle = self.cycle
        if cycle.waiting_for_100_continue:
            cycle.send = _closing_unless_continued(cycle)  # type: ignore[method-assign]

    def _check_framing(self) -> None:
        """Refuse a head whose `Host` or `Transfer-Encoding` the hub cannot serve.

        What is refused, and why, is `_framing_fault`'s. The app never sees such a request, and
        the connection ends after the answer. Raises `_Refused` to stop the parser.
        """
        hosts, codings = self._hosts, self._codings
        self._hosts, self._codings = 0, None
        fault = _framing_fault(self.parser.get_http_version(), hosts, codings)
        if fault is not None:
            self._refuse(*fault)
            raise _Refused

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client half-closed: answer the request it sent whole, then close.

        uvicorn returns None, so the transport closed at once and the request already read went
        on without anyone to answer: a POST created its user and the 201 was never sent. A client
        may shut down its sending side after its request and still read the answer (RFC 9112
        §9.6); only a request cut short (a head or body never finished) cannot be answered.
        """
        cycle = self.cycle
        if (
            cycle is None
            or cycle.response_complete
            or cycle.more_body
            or self._coalescing.lingering
        ):
            # Closed through the wrapper: a response that ended in this turn of the loop is
            # still held, and the socket closing by itself would drop it.
            self.transport.close()
            return None
        cycle.keep_alive = False
        return True


def _framing_fault(version: str, hosts: int, codings: bytes | None) -> tuple[int, str, str] | None:
    """What is wrong with a head's `Host` lines and `Transfer-Encoding`: (status, reason, detail).

    An HTTP/1.1 head without `Host`, or any head with two, is a 400 (RFC 9112 §3.2); an
    HTTP/1.0 request may omit it. httptools reads any `Transfer-Encoding` ending in `chunked`
    (`gzip, chunked`) as chunked, and the app got a body still gzip-coded. `chunked` alone is
    served; another coding before it is a 501 (RFC 9112 §6.1); one after it (`foo`,
    `chunked, gzip`) leaves the body's length unknown, a 400 (§6.3), as does `chunked` twice, or
    any coding in an HTTP/1.0 request, whose framing it makes faulty (§6.1). A Content-Length
    beside a Transfer-Encoding never gets here: httptools refuses it (400).
    """
    if hosts > 1 or (hosts == 0 and version != "1.0"):
        return (
            400,
            "Bad Request",
            "an HTTP/1.1 request must carry exactly one Host header (RFC 9112 §3.2); "
            f"this one has {hosts}",
        )
    if codings is None:
        return None
    if version == "1.0":
        return 400, "Bad Request", "an HTTP/1.0 request cannot carry Transfer-Encoding"
    named = [coding.strip().lower() for coding in codings.split(b",")]
    if named == [b"chunked"]:
        return None
    sent = codings.decode("latin-1")[:100]
    if named[-1] != b"chunked" or b"chunked" in named[:-1]:
        return (
            400,
            "Bad Request",
            f"the Transfer-Encoding {sent!r} does not end with one chunked coding, so the "
            "body's length is unknown (RFC 9112 §6.3)",
        )
    return (
        501,
        "Not Implemented",
        f"the Transfer-Encoding {sent!r} is not supported: send the body with Content-Length, "
        "or with Transfer-Encoding: chunked alone (RFC 9112 §6.1)",
    )


def _closing_unless_continued(cycle: Any) -> Any:
    """The cycle's `send`, closing the connection if the answer comes before 100 Continue.

    A client that sent `Expect: 100-continue` and got a final answer (401, 404, 413…) instead
    may never send its body (RFC 9110 §10.1.1), so the connection cannot go on: uvicorn would
    read the next request's bytes as that body. `Connection: close` says so. A request whose
    body has begun to arrive, or that has none (a GET with the header), leaves the connection
    in step: it stays open (it was closed after every such GET).
    """
    send = cycle.send

    async def closing_send(message: Any) -> None:
        if (
            message["type"] == "http.response.start"
            and cycle.waiting_for_100_continue
            and cycle.more_body
            and not cycle.body
        ):
            cycle.keep_alive = False
        await send(message)

    return closing_send
