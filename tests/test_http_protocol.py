"""Each response in one write (hub/http_protocol.py), and nothing lost or reordered for it.

Raw sockets against a real `scim-hub serve`: HTTP/1.1 keep-alive, pipelining, HEAD,
`Expect: 100-continue` and `Connection: close` are the cases where a held write could be sent
late, out of order or never. Then the transport itself over a recording socket: how many writes
reach it, and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from uvicorn.server import ServerState

from hub.http_protocol import CoalescingHttpToolsProtocol, _CoalescingTransport
from tests.server import LiveServer

SCIM = "application/scim+json"


class Response:
    """One parsed HTTP/1.1 response."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """A blocking HTTP/1.1 client on one socket, reading exactly what each response declares."""

    def __init__(self, server: LiveServer) -> None:
        url = urlsplit(server.tenant_url)
        self.host = url.netloc
        self.prefix = url.path
        self.token = server.token
        self.sock = socket.create_connection((url.hostname, url.port), timeout=10)
        self.buffer = b""

    def request_bytes(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host}"]
        fields = {"Authorization": f"Bearer {self.token}", "Accept": SCIM}
        if body:
            fields |= {"Content-Type": SCIM, "Content-Length": str(len(body))}
        fields |= headers or {}
        lines += [f"{name}: {value}" for name, value in fields.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection before the response was complete"
        self.buffer += chunk

    def read(self, *, head_only: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split()[1]), headers, body)

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Response:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send(self.request_bytes(method, path, payload, headers))
        return self.read(head_only=method == "HEAD")

    def close(self) -> None:
        self.sock.close()


def _user(name: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Raw", "familyName": name.split("@")[0]},
        "title": "x" * 300,  # a page of them passes the 16 KiB a response may be held below
    }


def test_responses_arrive_whole_and_in_order_on_one_keep_alive_connection(
    live_server: LiveServer,
) -> None:
    client = RawClient(live_server)
    try:
        created = [client.call("POST", "/Users", _user(f"raw-{i}@example.com")) for i in range(60)]
        assert [r.status for r in created] == [201] * 60
        ids = [r.json()["id"] for r in created]
        got = client.call("GET", f"/Users/{ids[0]}")
        assert got.status == 200
        assert got.json()["userName"] == "raw-0@example.com"
        found = client.call("GET", '/Users?filter=userName%20eq%20"raw-1@example.com"')
        assert found.json()["Resources"][0]["id"] == ids[1]
        page = client.call("GET", "/Users?filter=userName%20sw%20%22raw-%22&count=60")
        assert len(page.body) > 16 * 1024
        assert {u["id"] for u in page.json()["Resources"]} == set(ids)
        patched = client.call(
            "PATCH",
            f"/Users/{ids[2]}",
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
        )
        assert patched.status == 200
        assert patched.json()["active"] is False
        assert client.call("DELETE", f"/Users/{ids[3]}").status == 204
        assert client.call("GET", f"/Users/{ids[3]}").status == 404
        # A conditional GET: a 304 has a head and no body.
        etag = got.headers["etag"]
        assert client.call("GET", f"/Users/{ids[0]}", **{"If-None-Match": etag}).status == 304
        assert client.call("GET", f"/Users/{ids[0]}").status == 200, "the connection goes on"
    finally:
        client.close()


def test_responses_carry_a_date_and_no_server_banner(live_server: LiveServer) -> None:
    client = RawClient(live_server)
    try:
        for answer in (
            client.call("POST", "/Users", _user("banner@example.com")),
            client.call("GET", "/Users?count=1"),
            client.call("GET", "/Users/nobody"),
        ):
            assert "server" not in answer.headers, answer.headers
            assert answer.headers["date"].endswith(" GMT"), answer.headers  # RFC 9110 §6.6.1
    finally:
        client.close()


def test_pipelined_requests_are_answered_in_order(live_server: LiveServer) -> None:
    client = RawClient(live_server)
    try:
        ids = [
            client.call("POST", "/Users", _user(f"pipe-{i}@example.com")).json()["id"]
            for i in range(3)
        ]
        client.send(b"".join(client.request_bytes("GET", f"/Users/{i}") for i in ids))
        answers = [client.read() for _ in ids]
        assert [a.json()["id"] for a in answers] == ids
    finally:
        client.close()


def test_a_head_response_a_100_continue_and_a_closing_response_are_all_sent(
    live_server: LiveServer,
) -> None:
    client = RawClient(live_server)
    try:
        user_id = client.call("POST", "/Users", _user("head@example.com")).json()["id"]
        # HEAD: the GET's head alone (its Content-Length, no body), then the connection goes on.
        head = client.call("HEAD", f"/Users/{user_id}")
        assert head.status == 200
        assert int(head.headers["content-length"]) > 0
        assert head.headers["etag"] == 'W/"1"'
        # Expect: 100-continue: the interim answer comes before the body is sent.
        body = json.dumps(_user("continue@example.com")).encode()
        client.send(
            client.request_bytes("POST", "/Users", body, {"Expect": "100-continue"})[: -len(body)]
        )
        interim = client.read(head_only=True)
        assert interim.status == 100
        client.send(body)
        assert client.read().status == 201
        # Connection: close: the whole response, then the end of the stream.
        last = client.call("GET", f"/Users/{user_id}", Connection="close")
        assert last.status == 200
        assert last.json()["id"] == user_id
        assert client.buffer == b""
        assert client.sock.recv(1) == b""
    finally:
        client.close()
    # The server goes on serving other connections.
    assert httpx.get(f"{live_server.base_url}/healthz").status_code == 200


def test_an_answer_before_100_continue_closes_the_connection(live_server: LiveServer) -> None:
    """RFC 9110 §10.1.1: a client answered (here 405, 404 and 413) before it sent the body it
    announced with `Expect: 100-continue` may never send it, so the connection closes; kept
    open, the next request's bytes were read as that body and it got a 400."""
    body = json.dumps(_user("never-sent@example.com")).encode()
    expect = {"Expect": "100-continue"}
    for path, headers, status in (
        ("/ServiceProviderConfig", expect, 405),
        ("/NoSuchResource", expect, 404),
        ("/Users", {**expect, "Content-Length": str(64 * 1024 * 1024)}, 413),
    ):
        client = RawClient(live_server)
        try:
            client.send(client.request_bytes("POST", path, body, headers)[: -len(body)])
            answer = client.read()
            assert answer.status == status
            assert answer.headers["connection"] == "close"
            assert client.sock.recv(1) == b""
        finally:
            client.close()


class _Socket:
    """What the transport writes to: the outside world, recorded."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_the_transport_joins_a_head_to_its_body_and_holds_a_read_to_the_end_of_the_turn() -> (
    None
):
    loop = asyncio.get_running_loop()
    sock = _Socket()
    transport = _CoalescingTransport(sock, loop)  # type: ignore[arg-type]

    # A write's response: head held, then head + body in one write, at once.
    transport.write(b"HTTP/1.1 201 Created\r\n\r\n")
    assert sock.writes == []
    transport.write(b"{}")
    assert sock.writes == [b"HTTP/1.1 201 Created\r\n\r\n{}"]

    # A read's response: out in one write when the turn ends.
    transport.to_end_of_turn = True
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"[1]")
    assert len(sock.writes) == 1
    await asyncio.sleep(0)
    assert sock.writes[1] == b"HTTP/1.1 200 OK\r\n\r\n[1]"

    # A large read goes out at once; a lone head (HEAD) at the end of the turn.
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"x" * 20_000)
    assert len(sock.writes) == 3
    assert len(sock.writes[2]) > 20_000
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
    await asyncio.sleep(0)
    assert sock.writes[3].endswith(b"\r\n\r\n")

    # Close writes what is held first; nothing is written to a closing socket.
    transport.write(b"bye")
    transport.close()
    assert sock.writes[-1] == b"bye"
    assert sock.closed
    transport.write(b"late")
    transport.write(b"later")
    await asyncio.sleep(0)
    assert sock.writes[-1] == b"bye"
    assert transport.get_extra_info("peername") == "info:peername"


def test_a_client_that_half_closes_after_its_request_gets_the_answer(
    live_server: LiveServer,
) -> None:
    """A client may shut down its sending side once its request is written (RFC 9112 §9.6).
    The transport closed at once: the POST's user was created and its 201 never sent."""
    client = RawClient(live_server)
    try:
        client.send(
            client.request_bytes("POST", "/Users", json.dumps(_user("fin@example.com")).encode())
        )
        client.sock.shutdown(socket.SHUT_WR)
        created = client.read()
        assert created.status == 201
        assert created.json()["userName"] == "fin@example.com"
        assert client.sock.recv(1) == b""
    finally:
        client.close()
    # Pipelined reads then the FIN: every one answered, in order, then the end of the stream.
    client = RawClient(live_server)
    try:
        user_id = created.json()["id"]
        client.send(
            client.request_bytes("GET", f"/Users/{user_id}")
            + client.request_bytes("HEAD", f"/Users/{user_id}")
            + client.request_bytes("GET", "/ServiceProviderConfig")
        )
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read().json()["id"] == user_id
        assert client.read(head_only=True).status == 200
        assert client.read().status == 200
        assert client.sock.recv(1) == b""
    finally:
        client.close()
    # A body cut short by the FIN cannot be answered: the connection closes, nothing is created.
    client = RawClient(live_server)
    try:
        body = json.dumps(_user("cut@example.com")).encode()
        client.send(client.request_bytes("POST", "/Users", body)[:-5])
        client.sock.shutdown(socket.SHUT_WR)
        assert client.sock.recv(1) == b""
    finally:
        client.close()
    found = httpx.get(
        f"{live_server.tenant_url}/Users",
        params={"filter": 'userName eq "cut@example.com"'},
        headers={"Authorization": f"Bearer {live_server.token}"},
    )
    assert found.json()["totalResults"] == 0


def test_a_client_that_stops_sending_is_closed_and_a_slow_one_is_not(
    live_server: LiveServer,
) -> None:
    """uvicorn timed a connection only between requests: one that never sent a byte, or stopped
    inside a head or a body, held its socket for ever. Silence of 5 s (`_SILENCE_S`)
    while a request is owed now closes it; bytes arriving slowly keep it open."""
    descriptors = Path(f"/proc/{live_server.process.pid}/fd")
    before = len(list(descriptors.iterdir()))
    crowd = [RawClient(live_server) for _ in range(200)]  # connected, never a byte
    silent = RawClient(live_server)
    in_head = RawClient(live_server)
    in_head.send(in_head.request_bytes("GET", "/Users")[:30])
    in_body = RawClient(live_server)
    body = json.dumps(_user("stalled@example.com")).encode()
    in_body.send(in_body.request_bytes("POST", "/Users", body)[:-10])
    slow = RawClient(live_server)
    idle = RawClient(live_server)  # between requests: the keep-alive timeout, 75 s by default
    try:
        assert idle.call("GET", "/Users?count=0").status == 200
        request = slow.request_bytes(
            "POST", "/Users", json.dumps(_user("slow@example.com")).encode()
        )
        pieces = [
            request[i : i + len(request) // 4 + 1]
            for i in range(0, len(request), len(request) // 4 + 1)
        ]
        slow.send(pieces[0])
        for piece in pieces[1:]:  # 5.7 s in all, longer than the timeout; never silent as long
            time.sleep(1.9)
            slow.send(piece)
        assert slow.read().status == 201
        for stalled in (silent, in_head, in_body, *crowd):
            stalled.sock.settimeout(3)
            assert stalled.sock.recv(1) == b"", "the server closed the stalled connection"
        # Their 200 descriptors are freed: what is left is the slow client's and the database's.
        assert len(list(descriptors.iterdir())) <= before + 10
        # Idle as long, after a whole exchange, a connection is kept (uvicorn's default closed
        # it after 5 s, racing a client about to reuse it).
        assert idle.call("GET", "/Users?count=0").status == 200
    finally:
        for client in (silent, in_head, in_body, slow, idle, *crowd):
            client.close()


def test_the_keep_alive_timeout_between_requests_is_a_setting(tmp_path: Path) -> None:
    """`SCIM_HUB_KEEP_ALIVE_SECONDS` closes a connection idle that long after its last answer."""
    from tests.server import running_server

    with running_server(tmp_path / "hub", keep_alive_seconds="1") as server:
        client = RawClient(server)
        try:
            assert client.call("GET", "/Users?count=0").status == 200
            started = time.monotonic()
            client.sock.settimeout(5)
            assert client.sock.recv(1) == b"", "the server closed the idle connection"
            assert 0.5 < time.monotonic() - started < 3
        finally:
            client.close()


def _refused(client: RawClient, request: bytes) -> Response:
    """Send `request` in 64 KiB writes (stopping if the server ends the stream), read the answer."""
    try:
        for start in range(0, len(request), 65536):
            client.send(request[start : start + 65536])
    except OSError:
        pass  # refused mid-request: the answer is already on its way
    return client.read()


def test_a_head_past_64_kib_is_refused_with_431_or_414(live_server: LiveServer) -> None:
    """httptools sets no limit on a request's head: a 10 MB header was read and answered 200.
    Past 64 KiB the hub now answers a SCIM Error (431, or 414 for the URL) and closes."""
    client = RawClient(live_server)
    try:
        # A head under the limit, sent in pieces, is served; the connection goes on.
        request = client.request_bytes(
            "GET", "/ServiceProviderConfig", headers={"X-Pad": "p" * 60_000}
        )
        for start in range(0, len(request), 4096):
            client.send(request[start : start + 4096])
        assert client.read().status == 200
        # One header of 1 MB, on the same connection, after a request still being answered.
        client.send(client.request_bytes("GET", "/ServiceProviderConfig"))
        before = _refused(
            client, client.request_bytes("GET", "/Users", headers={"X-Big": "b" * 1_000_000})
        )
        assert before.status == 200, "the request before it is answered whole"
        refused = client.read()
        assert refused.status == 431
        assert refused.headers["content-type"] == SCIM
        assert refused.headers["connection"] == "close"
        assert refused.json()["status"] == "431"
        assert client.sock.recv(1) == b""
    finally:
        client.close()
    for path, headers, status in (
        ("/Users?filter=" + "u" * 300_000, {}, 414),
        # many headers, not one long one
        ("/Users", {f"X-{i}": "many" for i in range(40_000)}, 431),
    ):
        client = RawClient(live_server)
        try:
            answer = _refused(client, client.request_bytes("GET", path, headers=headers))
            assert answer.status == status
            assert answer.json()["detail"]
            assert client.sock.recv(1) == b""
        finally:
            client.close()


def test_a_request_httptools_cannot_parse_is_a_scim_400(live_server: LiveServer) -> None:
    """uvicorn answered malformed HTTP in text/plain; every error is a SCIM Error document."""
    malformed = (
        b"GARBAGE\r\n\r\n",
        b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"GET /scim/v2/Users\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
        b"\r\nabcdef",
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    )
    for request in malformed:
        client = RawClient(live_server)
        try:
            client.send(request)
            answer = client.read()
            assert answer.status == 400, request
            assert answer.headers["content-type"] == SCIM
            assert answer.json()["status"] == "400"
            assert client.sock.recv(1) == b""
        finally:
            client.close()


def test_connect_is_a_scim_501_naming_the_method(live_server: LiveServer) -> None:
    """CONNECT asks for a tunnel (RFC 9110 §9.3.6): valid HTTP the hub does not implement, so
    501 (§15.6.2), not the 400 of a malformed request it was."""
    client = RawClient(live_server)
    try:
        client.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        answer = client.read()
        assert answer.status == 501, answer.body
        assert answer.headers["content-type"] == SCIM
        assert answer.json()["status"] == "501"
        assert "CONNECT is not served" in answer.json()["detail"]
        assert client.sock.recv(1) == b""
        assert _logged(live_server, answer.headers["x-request-id"])["method"] == "CONNECT"
    finally:
        client.close()


def test_requests_received_whole_before_a_refused_one_are_answered_first(
    live_server: LiveServer,
) -> None:
    """uvicorn wrote its 400 and closed at once: a POST pipelined before malformed bytes (or a
    head past 64 KiB) created its user, and its 201 was never sent."""
    for index, tail in enumerate(
        (
            b"GARBAGE\r\n\r\n",
            b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 400_000 + b"\r\n\r\n",
        )
    ):
        client = RawClient(live_server)
        try:
            first = json.dumps(_user(f"before-refusal-{index}@example.com")).encode()
            answers = [client.call("GET", "/ServiceProviderConfig")]  # the connection is warm
            request = client.request_bytes("POST", "/Users", first) + client.request_bytes(
                "GET", "/ServiceProviderConfig"
            )
            answers.append(_refused(client, request + tail))
            answers += [client.read(), client.read()]
            assert [a.status for a in answers] == [200, 201, 200, 400 if index == 0 else 431]
            assert answers[1].json()["userName"] == f"before-refusal-{index}@example.com"
            assert client.sock.recv(1) == b""
        finally:
            client.close()


def test_expect_100_continue_without_a_body_to_wait_for_keeps_the_connection(
    live_server: LiveServer,
) -> None:
    """A GET carrying `Expect: 100-continue`, or a POST whose body came without waiting for the
    100, leaves nothing unread: the connection was closed after each, now it goes on."""
    client = RawClient(live_server)
    try:
        got = client.call("GET", "/ServiceProviderConfig", Expect="100-continue")
        assert got.status == 200
        assert "connection" not in got.headers
        body = json.dumps(_user("eager@example.com")).encode()
        client.send(
            client.request_bytes("POST", "/ServiceProviderConfig", body, {"Expect": "100-continue"})
        )
        refused = client.read()
        assert refused.status == 405
        assert "connection" not in refused.headers
        assert client.call("GET", "/ServiceProviderConfig").status == 200
    finally:
        client.close()


def test_a_compressed_body_is_a_415_naming_its_content_coding(live_server: LiveServer) -> None:
    """The hub decodes no content coding: a gzip body was a 400 "not valid JSON: invalid
    character (byte 0)"; RFC 9110 §15.5.16 answers it 415 with `Accept-Encoding`."""
    body = gzip.compress(json.dumps(_user("gzipped@example.com")).encode())
    client = RawClient(live_server)
    try:
        client.send(client.request_bytes("POST", "/Users", body, {"Content-Encoding": "gzip"}))
        refused = client.read()
        assert refused.status == 415
        assert refused.headers["accept-encoding"] == "identity"
        assert "Content-Encoding 'gzip'" in refused.json()["detail"]
        found = client.call("GET", '/Users?filter=userName%20eq%20"gzipped@example.com"')
        assert found.json()["totalResults"] == 0, "nothing was created"
    finally:
        client.close()


_H2C = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAEAAEAA"}


def test_a_request_offering_h2c_is_served_as_http_1_1_body_and_all(
    live_server: LiveServer,
) -> None:
    """JDK's HttpClient offers `Upgrade: h2c` on its first request over http://, a POST
    included. httptools stopped at the head: the POST reached the app with an empty body (400)
    and a request pipelined after it was never answered (uvicorn#2722)."""
    client = RawClient(live_server)
    try:
        body = json.dumps(_user("java@example.com")).encode()
        client.send(
            client.request_bytes("POST", "/Users", body, _H2C)
            + client.request_bytes("GET", "/ServiceProviderConfig")
        )
        created = client.read()
        assert created.status == 201, created.body
        assert created.json()["userName"] == "java@example.com"
        assert client.read().status == 200
        # Chunked, with the upgrade offered again, then a read on the same connection.
        body = json.dumps(_user("java-chunked@example.com")).encode()
        chunked = {**_H2C, "Transfer-Encoding": "chunked", "Content-Type": SCIM}
        client.send(
            client.request_bytes("POST", "/Users", headers=chunked)
            + f"{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\n\r\n"
        )
        assert client.read().json()["userName"] == "java-chunked@example.com"
        found = client.call("GET", '/Users?filter=userName%20sw%20"java"', **_H2C)
        assert found.json()["totalResults"] == 2
    finally:
        client.close()


class _Peer(_Socket):
    """The socket as uvicorn's protocol sees it: no address, reading never paused."""

    def get_extra_info(self, name: str) -> None:  # type: ignore[override]
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_a_response_held_when_the_client_half_closes_goes_out_before_the_close() -> None:
    """A read's response is held to the end of the loop's turn. A FIN read in between closed
    the socket itself (eof_received answered None), and the held answer was dropped: the
    half-close test lost its last pipelined response once in some forty runs."""
    loop = asyncio.get_running_loop()
    peer = _Peer()
    protocols: list[CoalescingHttpToolsProtocol] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        # The response is complete and held; now the client's FIN is read. asyncio's
        # transport closes itself when eof_received answers None: so does this one.
        if not protocols[0].eof_received():
            peer.close()

    config = uvicorn.Config(app=app, lifespan="off", log_level="warning")
    config.load()
    protocol = CoalescingHttpToolsProtocol(config, ServerState(), {}, _loop=loop)
    protocols.append(protocol)
    protocol.connection_made(peer)  # type: ignore[arg-type]
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(10):
        await asyncio.sleep(0)
    assert peer.closed
    assert b"".join(peer.writes).endswith(b"\r\n\r\nok")


def _raw_head(client: RawClient, request_line: str, *lines: str) -> bytes:
    """A head of `request_line` and `lines`, with the client's token, ending the head."""
    fields = [request_line, f"Authorization: Bearer {client.token}", *lines]
    return ("\r\n".join(fields) + "\r\n\r\n").encode()


def _assert_refused(client: RawClient, status: int) -> Response:
    """Read a SCIM Error `status` sent by the server before it ends the connection."""
    answer = client.read()
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == SCIM
    assert answer.headers["connection"] == "close"
    assert answer.json()["status"] == str(status)
    assert client.sock.recv(1) == b""
    return answer


def test_an_http_1_1_request_without_one_host_header_is_a_scim_400(
    live_server: LiveServer,
) -> None:
    """RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request lacking `Host`, or with
    more than one; one without was served as any other. HTTP/1.0 may omit it."""
    config = f"{urlsplit(live_server.tenant_url).path}/ServiceProviderConfig"
    for lines in ((), ("Host: a", "Host: b")):
        client = RawClient(live_server)
        try:
            # A request received whole before it is answered first.
            client.send(
                client.request_bytes("GET", "/ServiceProviderConfig")
                + _raw_head(client, f"GET {config} HTTP/1.1", *lines)
            )
            assert client.read().status == 200
            answer = _assert_refused(client, 400)
            assert "Host" in answer.json()["detail"]
        finally:
            client.close()
    # Absolute-form names the host in its target, but the Host header is still required.
    client = RawClient(live_server)
    try:
        client.send(
            _raw_head(client, f"GET {live_server.tenant_url}/ServiceProviderConfig HTTP/1.1")
        )
        _assert_refused(client, 400)
    finally:
        client.close()
    # HTTP/1.0 without a Host is served; with two it is refused.
    client = RawClient(live_server)
    try:
        client.send(_raw_head(client, f"GET {config} HTTP/1.0"))
        answer = client.read()
        assert answer.status == 200
        assert answer.json()["patch"]["supported"] is True
        assert client.sock.recv(1) == b""
    finally:
        client.close()
    client = RawClient(live_server)
    try:
        client.send(_raw_head(client, f"GET {config} HTTP/1.0", "Host: a", "Host: a"))
        _assert_refused(client, 400)
    finally:
        client.close()


def _chunked(body: bytes) -> bytes:
    """`body` as one chunk and the last chunk."""
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def _created(server: LiveServer, user_name: str) -> int:
    found = httpx.get(
        f"{server.tenant_url}/Users",
        params={"filter": f'userName eq "{user_name}"'},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    return int(found.json()["totalResults"])


def test_a_transfer_coding_other_than_chunked_is_refused_and_nothing_is_served(
    live_server: LiveServer,
) -> None:
    """httptools read `Transfer-Encoding: gzip, chunked` as chunked: the app got the body still
    gzip-coded. RFC 9112 §6.1: a coding the server does not know is a 501, then the connection
    closes; a request whose last coding is not `chunked` has no knowable length, a 400 (§6.3)."""
    body = json.dumps(_user("coded@example.com")).encode()
    for codings, status, framed in (
        (("gzip, chunked",), 501, _chunked(gzip.compress(body))),
        (("gzip", "chunked"), 501, _chunked(gzip.compress(body))),  # the same, in two lines
        (("foo",), 400, _chunked(body)),
        (("chunked, gzip",), 400, _chunked(body)),
        (("chunked, chunked",), 400, _chunked(_chunked(body))),
    ):
        client = RawClient(live_server)
        try:
            lines = [f"Transfer-Encoding: {coding}" for coding in codings]
            head = _raw_head(client, "POST /scim/v2/Users HTTP/1.1", "Host: x", *lines)
            client.send(head.replace(b"\r\n\r\n", f"\r\nContent-Type: {SCIM}\r\n\r\n".encode()))
            client.send(framed)
            answer = _assert_refused(client, status)
            assert "Transfer-Encoding" in answer.json()["detail"]
        finally:
            client.close()
    assert _created(live_server, "coded@example.com") == 0
    # `chunked` alone, in any case, is served, and the connection goes on.
    client = RawClient(live_server)
    try:
        for index, coding in enumerate(("chunked", "CHUNKED", " Chunked ")):
            body = json.dumps(_user(f"chunked-{index}@example.com")).encode()
            chunked = {"Transfer-Encoding": coding, "Content-Type": SCIM}
            client.send(client.request_bytes("POST", "/Users", headers=chunked) + _chunked(body))
            assert client.read().status == 201
    finally:
        client.close()


def test_transfer_encoding_with_content_length_or_in_http_1_0_cannot_smuggle_a_request(
    live_server: LiveServer,
) -> None:
    """RFC 9112 §6.3: a request with both Transfer-Encoding and Content-Length, or (§6.1) an
    HTTP/1.0 request with a Transfer-Encoding, has a faulty framing: an intermediary may frame it
    by the other header, so the bytes after it could be a request it never saw. It is a 400,
    and the connection closes before anything after it is read as a request. (httptools refused
    both headers together already; an HTTP/1.0 request was served as chunked, then closed.)"""
    smuggled = json.dumps(_user("smuggled@example.com")).encode()
    client = RawClient(live_server)
    hidden = client.request_bytes("POST", "/Users", smuggled)
    client.close()
    for version, lines in (
        ("1.1", ("Transfer-Encoding: chunked", "Content-Length: 5")),
        ("1.1", ("Content-Length: 5", "Transfer-Encoding: chunked")),
        ("1.1", ("Content-Length: 5", "Transfer-Encoding: gzip, chunked")),
        ("1.0", ("Transfer-Encoding: chunked", "Connection: keep-alive")),
        ("1.0", ("Transfer-Encoding: chunked", "Content-Length: 5")),
    ):
        client = RawClient(live_server)
        try:
            head = _raw_head(client, f"POST /scim/v2/Users HTTP/{version}", "Host: x", *lines)
            client.send(head + b"0\r\n\r\n" + hidden)
            assert "Transfer-Encoding" in _assert_refused(client, 400).json()["detail"]
        finally:
            client.close()
    assert _created(live_server, "smuggled@example.com") == 0


def test_a_head_past_64_kib_sent_in_one_write_is_refused(live_server: LiveServer) -> None:
    """A head was counted only from the read after the one it began in, and not in the read
    that ended it: one of 100 KB sent in one write was served (200), one of 480 KB in two."""
    for sizes in ((100_000,), (240_000, 240_000)):
        client = RawClient(live_server)
        try:
            pads = {f"X-Pad-{i}": "p" * size for i, size in enumerate(sizes)}
            request = client.request_bytes("GET", "/ServiceProviderConfig", headers=pads)
            middle = request.index(b"X-Pad-1") if len(sizes) > 1 else len(request)
            client.send(request[:middle])
            with contextlib.suppress(OSError):  # refused already: the answer is on its way
                client.send(request[middle:])
            _assert_refused(client, 431)
        finally:
            client.close()
    # Just under the limit in one write, and pipelined after a request, a head is served.
    client = RawClient(live_server)
    try:
        padded = client.request_bytes(
            "GET", "/ServiceProviderConfig", headers={"X-Pad": "p" * 63_000}
        )
        client.send(client.request_bytes("GET", "/ServiceProviderConfig") + padded)
        assert [client.read().status, client.read().status] == [200, 200]
    finally:
        client.close()


def _logged(server: LiveServer, request_id: str) -> dict[str, Any]:
    """The server's log line (JSON) naming `request_id`, waiting up to 5 s for it."""
    database = server.env["SCIM_HUB_DATABASE_URL"].split("///", 1)[1]
    stderr = Path(database).parent / "server.stderr"
    deadline = time.monotonic() + 5
    while True:
        for line in stderr.read_text(errors="replace").splitlines():
            if request_id in line:
                return dict(json.loads(line))
        assert time.monotonic() < deadline, f"no log line names {request_id}"
        time.sleep(0.05)


def test_every_error_answer_carries_a_request_id_that_its_log_line_names(
    live_server: LiveServer,
) -> None:
    """A 404 for no route, a 405 and a 400 for a bad Host are the router's own answers, given
    before the middleware that sets `x-request-id` runs; the protocol's refusals (431, 400, 501)
    never reach the app. Neither kind had an id, nor left a log line."""
    big = json.dumps(_user("big@example.com")).encode()
    with_body = {"Content-Type": SCIM, "Content-Length": str(2 * 1024 * 1024)}
    kept = (
        ("GET", "/NoSuchResource", b"", {}, 404),
        ("DELETE", "/ServiceProviderConfig", b"", {}, 405),
        ("PUT", "/Users", big, {}, 405),
        ("HEAD", "/Users/x/y", b"", {}, 404),
        ("GET", "/Users", b"", {}, 400),
        ("POST", "/Users", big, {"Content-Type": "text/plain"}, 415),
        ("POST", "/Users", b"", with_body, 413),
    )
    client = RawClient(live_server)
    try:
        for method, path, body, headers, status in kept:
            request = client.request_bytes(method, path, body, headers)
            if status == 400:  # the router's own check of the Host's value
                request = request.replace(f"Host: {client.host}".encode(), b"Host: bad host")
            client.send(request)
            answer = client.read(head_only=method == "HEAD")
            assert answer.status == status, (method, path)
            line = _logged(live_server, answer.headers["x-request-id"])
            assert line["status"] == status
            assert line["method"] == method
            if status == 413:
                break  # its body is never read: the connection cannot go on
    finally:
        client.close()
    for request, status in (
        (f"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 100_000}\r\n\r\n", 431),
        ("GET /scim/v2/Users HTTP/1.1\r\n\r\n", 400),
        (
            "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        ("GARBAGE\r\n\r\n", 400),
    ):
        client = RawClient(live_server)
        try:
            client.send(request.encode())
            answer = _assert_refused(client, status)
            line = _logged(live_server, answer.headers["x-request-id"])
            assert line["status"] == status
            assert line["detail"] == answer.json()["detail"]
        finally:
            client.close()


def test_options_asterisk_names_the_servers_methods(live_server: LiveServer) -> None:
    """`OPTIONS *` asks about the server, not a resource (RFC 9110 §9.3.7); it was a 404."""
    client = RawClient(live_server)
    try:
        client.send(_raw_head(client, "OPTIONS * HTTP/1.1", f"Host: {client.host}"))
        answer = client.read()
        assert answer.status == 204, answer.body
        assert answer.headers["allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
        assert answer.headers["x-request-id"]
        # The asterisk form is for OPTIONS only (RFC 9112 §3.2.4); the connection goes on.
        client.send(_raw_head(client, "GET * HTTP/1.1", f"Host: {client.host}"))
        refused = client.read()
        assert refused.status == 400
        assert refused.json()["scimType"] == "invalidSyntax"
        assert "OPTIONS only" in refused.json()["detail"]
        assert client.call("GET", "/Users?count=1").status == 200
    finally:
        client.close()
