"""The log lines `configure_logging` sets up: one JSON object a line, whatever is logged."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
import structlog
from litestar.testing import AsyncTestClient

from hub.app import create_app
from hub.core.tenants import InitResult
from hub.logging import (
    bind_request_id,
    configure_logging,
    current_request_id,
    log_info,
    log_request,
)
from hub.settings import Settings, load_settings
from tests.conftest import TEST_BASE_URL, ScimClient, user_body
from tests.hubprocess import HubProcess

# configure_logging binds the test's stderr, which closes after it.
pytestmark = pytest.mark.usefixtures("restored_logging")


def _configure(tmp_path: Path, log_format: str, level: str = "info") -> None:
    settings = load_settings(
        environ={"SCIM_HUB_LOG_LEVEL": level, "SCIM_HUB_LOG_FORMAT": log_format},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
        base_url="http://127.0.0.1:8000",
    )
    configure_logging(settings)


def test_json_lines_hold_any_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _configure(tmp_path, "json")
    structlog.contextvars.bind_contextvars(request_id="r1")
    log = structlog.get_logger("test")
    try:
        log.info("plain", path="/scim/v2/Users/é", status=200, ms=0.5)
        log.info("odd", thing=object(), newline="a\nb", nul="x\x00y")
        log.info("surrogate", value="a\ud800b")  # UTF-8 cannot encode it; JSON's \\u escape can
        log.debug("hidden")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = capsys.readouterr().err.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["plain", "odd", "surrogate"]
    plain, odd, surrogate = events
    assert plain["path"] == "/scim/v2/Users/é"
    assert plain["request_id"] == "r1"
    assert plain["level"] == "info"
    assert plain["timestamp"].endswith("Z")
    assert odd["thing"].startswith("<object object at")
    assert (odd["newline"], odd["nul"]) == ("a\nb", "x\x00y")
    assert surrogate["value"] == "a\ud800b"


def test_console_format_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _configure(tmp_path, "console")
    structlog.get_logger("test").info("shown", key="value")
    err = capsys.readouterr().err
    for word in ("shown", "key", "value"):
        assert word in err
    assert not err.lstrip().startswith("{")


class _Writes(io.RawIOBase):
    """A binary stream that keeps each write it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self.writes.append(chunk)
        return len(chunk)


def test_each_json_line_is_one_write_with_a_utc_microsecond_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's line reaches stderr in one write (no torn lines between processes sharing
    it, one system call), stamped like ISO 8601 UTC to the microsecond."""
    raw = _Writes()
    # stderr as `python -u` / PYTHONUNBUFFERED (common in containers) makes it: text written
    # straight through to the file, with no buffer to join a line's pieces.
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, write_through=True))
    _configure(tmp_path, "json")
    log = structlog.get_logger("test")
    before = datetime.now(UTC)
    log.info("one", n=1)
    log.info("two", n=2)
    after = datetime.now(UTC)
    assert all(w.endswith(b"\n") and w.count(b"\n") == 1 for w in raw.writes), raw.writes
    events = [json.loads(w) for w in raw.writes]
    assert [e["event"] for e in events] == ["one", "two"]
    for event in events:
        stamp = event["timestamp"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before - timedelta(milliseconds=1) <= when <= after + timedelta(milliseconds=1)


def test_a_request_line_is_what_structlog_would_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`log_request` skips structlog's chain for speed but writes the very line the chain writes,
    and leaves the line to structlog while a test captures structlog's events."""
    raw = _Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, write_through=True))
    _configure(tmp_path, "json")
    fields = {"method": "GET", "path": "/scim/v2/Users/é", "status": 200, "ms": 0.5, "nul": "\x00"}
    structlog.contextvars.bind_contextvars(request_id="r1", method="bound, not the call's")
    try:
        log_request(**fields)
        structlog.get_logger("hub.http").info("request", **fields)
        with structlog.testing.capture_logs() as captured:
            log_request(**fields, status_again=201)
        log_request(**fields, after_capture=True)
    finally:
        structlog.contextvars.clear_contextvars()
    fast, chain, after = (json.loads(w) for w in raw.writes)
    assert raw.writes[0].count(b"\n") == 1
    assert raw.writes[0].endswith(b"\n")
    stamps = [
        datetime.fromisoformat(e.pop("timestamp").replace("Z", "+00:00")) for e in (fast, chain)
    ]
    assert timedelta(0) <= stamps[1] - stamps[0] < timedelta(seconds=1)
    assert list(fast.items()) == list(chain.items())  # the same keys, values and order
    assert (fast["method"], fast["request_id"]) == ("GET", "r1")
    assert [(e["event"], e["status_again"]) for e in captured] == [("request", 201)]
    assert after["after_capture"] is True


def test_a_hot_info_line_is_what_its_logger_would_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`log_info` (an activation email's lines) writes the line `logger.info` writes, and leaves
    it to structlog while a test captures structlog's events."""
    raw = _Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, write_through=True))
    _configure(tmp_path, "json")
    log = structlog.get_logger("hub.mail")
    fields = {"message_id": "<m@localhost>", "recipient": "ada@example.com", "attempt": 1}
    structlog.contextvars.bind_contextvars(request_id="r1")
    try:
        log_info(log, "email sent", **fields)
        log.info("email sent", **fields)
        with structlog.testing.capture_logs() as captured:
            log_info(log, "email sent", attempt=2)
    finally:
        structlog.contextvars.clear_contextvars()
    direct, chain = (json.loads(w) for w in raw.writes)
    for line in (direct, chain):
        assert _STAMP.fullmatch(line.pop("timestamp"))
    assert list(direct.items()) == list(chain.items())  # the same keys, values and order
    assert direct["request_id"] == "r1"
    assert captured == [{"attempt": 2, "event": "email sent", "log_level": "info"}]


def test_a_request_starts_with_only_its_own_id_bound() -> None:
    """`bind_request_id` clears what an earlier request (or anything) bound, as
    `clear_contextvars` did, then binds the id `current_request_id` reads."""
    try:
        structlog.contextvars.bind_contextvars(request_id="old", workspace="w1")
        bind_request_id("first")
        assert structlog.contextvars.get_contextvars() == {"request_id": "first"}
        assert current_request_id() == "first"
        structlog.contextvars.bind_contextvars(plugin_value=1)
        bind_request_id("second")
        assert structlog.contextvars.get_contextvars() == {"request_id": "second"}
        assert current_request_id() == "second"
        structlog.contextvars.clear_contextvars()
        assert current_request_id() == ""
    finally:
        structlog.contextvars.clear_contextvars()


def test_captured_request_lines_after_one_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request line written before `capture_logs` (structlog caches its logger on first use)
    does not keep the next ones from the capture, in either format."""
    for log_format in ("console", "json", "console"):
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(_Writes(), write_through=True))
        _configure(tmp_path, log_format)
        log_request(method="GET", status=200, first=True)
        with structlog.testing.capture_logs() as captured:
            log_request(method="GET", status=201)
        assert [(e["event"], e["status"]) for e in captured] == [("request", 201)], log_format


def test_request_lines_follow_the_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above `info` no request line is written (while warnings are); back at `info`, it is."""
    raw = _Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, write_through=True))
    for log_format in ("json", "console"):
        _configure(tmp_path, log_format, level="warning")
        log_request(method="GET", path="/dropped", status=200, ms=0.1)
        structlog.get_logger("test").warning("kept", format=log_format)
    _configure(tmp_path, "json", level="info")
    log_request(method="GET", path="/written", status=200, ms=0.1)
    text = b"".join(raw.writes).decode()
    assert "/dropped" not in text
    assert text.count("kept") == 2
    assert json.loads(text.splitlines()[-1])["path"] == "/written"


def _events(writes: list[bytes]) -> list[str]:
    return [json.loads(line)["event"] for chunk in writes for line in chunk.splitlines()]


async def test_a_turn_of_the_loop_writes_its_lines_in_one_write_and_threads_write_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines logged on the loop wait for the end of its turn and go out together, in order;
    a line logged where no loop runs goes out at once, after those waiting."""
    raw = _Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, write_through=True))
    _configure(tmp_path, "json")
    log = structlog.get_logger("test")
    for n in range(3):
        log.info(f"turn {n}")
    assert raw.writes == [], "written before the turn ended"
    await asyncio.sleep(0)
    assert len(raw.writes) == 1
    assert _events(raw.writes) == ["turn 0", "turn 1", "turn 2"]

    log.info("waiting")
    await asyncio.to_thread(log.info, "from a thread")
    assert _events(raw.writes[1:]) == ["waiting", "from a thread"]


def test_lines_left_waiting_by_a_stopped_loop_go_out_with_the_next_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop that stops before its turn's write (a server shutting down) strands nothing: the
    next loop's turn writes those lines first."""
    raw = _Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, write_through=True))
    _configure(tmp_path, "json")
    log = structlog.get_logger("test")

    async def log_and_stop() -> None:
        log.info("stopped loop")
        asyncio.get_running_loop().stop()

    loop = asyncio.new_event_loop()
    task = loop.create_task(log_and_stop())
    loop.run_forever()
    loop.close()
    assert task.done()
    assert raw.writes == [], "the stopped loop never ended the turn that would write it"

    async def log_and_turn() -> list[str]:
        log.info("next loop")
        await asyncio.sleep(0)
        return _events(raw.writes)

    assert asyncio.run(log_and_turn()) == ["stopped loop", "next loop"]
    log.info("no loop")
    assert _events(raw.writes)[-1] == "no loop"


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_served_hub_stopped_gracefully_has_logged_every_request(
    tmp_path: Path, workers: int
) -> None:
    """Every request's line is in the log once the server has stopped (SIGTERM): none is left
    waiting for a turn of the loop that never came, with one process or several."""
    hub = HubProcess(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", tmp_path, workers=workers)
    hub.env["SCIM_HUB_LOG_LEVEL"] = "info"
    hub.prepare()
    hub.start()
    try:
        headers = {"Authorization": f"Bearer {hub.token}"}
        async with httpx.AsyncClient(base_url=hub.tenant_url, headers=headers) as client:
            answers = await asyncio.gather(*(client.get(f"/Users/absent-{n}") for n in range(120)))
        assert [a.status_code for a in answers] == [404] * 120
    finally:
        hub.stop()
    lines = hub.stderr_path.read_bytes().splitlines()
    logged = sorted(
        int(event["path"].rsplit("-", 1)[1])
        for event in map(json.loads, lines)
        if event.get("event") == "request" and "/Users/absent-" in event.get("path", "")
    )
    assert logged == list(range(120))


#: a request's line: the middleware's fields, then structlog's event, bound request id, level, time
_REQUEST_KEYS = [
    "method",
    "path",
    "status",
    "ms",
    "workspace",
    "connector",
    "event",
    "request_id",
    "level",
    "timestamp",
]
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _lines(raw: _Writes) -> list[dict[str, object]]:
    """The JSON lines written (httpx's own log, through the standard library, is not JSON)."""
    lines = [line for chunk in raw.writes for line in chunk.splitlines()]
    return [json.loads(line) for line in lines if line.startswith(b"{")]


async def test_served_requests_log_complete_lines_at_the_default_level(
    settings: Settings, tenant: InitResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served at `info` (the default), every request writes its line with every field, in
    order, its id the one the answer carries, stamped now; the activation email a create
    queued adds its two lines, written after a later `configure_logging` too (structlog's
    module-level loggers keep the destination of their first line)."""
    raw = _Writes()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, write_through=True))
    configure_logging(msgspec.structs.replace(settings, log_format="json"))
    before = datetime.now(UTC)
    async with AsyncTestClient(app=create_app(settings), base_url=TEST_BASE_URL) as http:
        scim = ScimClient(http, tenant.token)
        created = await scim.post("/Users", user_body("ada@example.com"))
        user_id = created.json()["id"]
        answers = [
            created,
            await scim.get(f"/Users/{user_id}"),
            await scim.get("/Users", params={"filter": 'userName eq "ada@example.com"'}),
            await scim.get("/Users/absent"),
        ]
        for _ in range(200):  # the sender delivers the activation email in the background
            if any(line["event"] == "email sent" for line in _lines(raw)):
                break
            await asyncio.sleep(0.05)
    after = datetime.now(UTC)
    lines = _lines(raw)
    requests = [line for line in lines if line["event"] == "request"]
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [
        ("POST", "/scim/v2/Users", 201),
        ("GET", f"/scim/v2/Users/{user_id}", 200),
        ("GET", "/scim/v2/Users", 200),
        ("GET", "/scim/v2/Users/absent", 404),
    ]
    for line, answer in zip(requests, answers, strict=True):
        assert list(line) == _REQUEST_KEYS
        assert line["request_id"] == answer.headers["x-request-id"]
        assert (line["workspace"], line["connector"]) == (tenant.workspace_id, tenant.connector_id)
        assert line["level"] == "info"
        assert isinstance(line["ms"], float)
        assert line["ms"] >= 0
        stamp = str(line["timestamp"])
        assert _STAMP.fullmatch(stamp), stamp
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before - timedelta(milliseconds=1) <= when <= after + timedelta(milliseconds=1)
    written = [line for line in lines if line["event"] == "email written"]
    sent = [line for line in lines if line["event"] == "email sent"]
    assert [list(line) for line in written] == [
        ["file", "message_id", "event", "level", "timestamp"]
    ]
    assert [list(line) for line in sent] == [
        ["message_id", "recipient", "attempt", "event", "level", "timestamp"]
    ]
    assert written[0]["message_id"] == sent[0]["message_id"]
    assert str(written[0]["file"]).endswith(".eml")
    assert (sent[0]["recipient"], sent[0]["attempt"], sent[0]["level"]) == (
        "ada@example.com",
        1,
        "info",
    )


class _Terminal(io.TextIOWrapper):
    """A stderr that says it is a terminal (colours on, as on a developer's screen)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False], ids=["colours", "plain"])
def test_console_request_lines_are_the_console_renderers_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    """On a console the request line skips structlog's chain (~221,000 instructions a line in
    `ConsoleRenderer`); it is still, byte for byte, what `ConsoleRenderer` renders, colours
    included, whatever its values hold, and in order with lines logged through structlog."""
    raw = _Writes()
    wrapper = _Terminal if terminal else io.TextIOWrapper
    monkeypatch.setattr(sys, "stderr", wrapper(raw, write_through=True, encoding="utf-8"))
    rendered: list[str] = []
    render = structlog.dev.ConsoleRenderer.__call__

    def counted(self: structlog.dev.ConsoleRenderer, logger: object, name: str, event: dict) -> str:
        rendered.append(event["event"])
        return render(self, logger, name, event)

    monkeypatch.setattr(structlog.dev.ConsoleRenderer, "__call__", counted)
    _configure(tmp_path, "console")
    bind_request_id("r1")
    fields: dict[str, object] = {
        "method": "GET",
        "path": "/scim/v2/Users/é",
        "status": 200,
        "ms": 0.41,
        "detail": "two words = 'quoted'",
        "empty": "",
        "none": None,
        "flag": True,
    }
    try:
        structlog.get_logger("test").info("before", n=1)
        log_request(**fields)
        log_info(structlog.get_logger("test"), "a much longer event name than thirty chars", a=1)
        structlog.get_logger("test").info("after", n=2)
    finally:
        structlog.contextvars.clear_contextvars()
    assert rendered == ["before", "after"]  # the hot lines took the direct path
    lines = b"".join(raw.writes).decode().splitlines()
    assert len(lines) == 4
    assert ["before" in lines[0], "after" in lines[3]] == [True, True]
    renderer = structlog.dev.ConsoleRenderer(colors=terminal)
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
    expected_fields = [
        ("request", fields),
        ("a much longer event name than thirty chars", {"a": 1}),
    ]
    for line, (event, values) in zip(lines[1:3], expected_fields, strict=True):
        found = stamp.search(line)
        assert found is not None, line
        expected = renderer(
            None,
            "info",
            {
                **values,
                "event": event,
                "request_id": "r1",
                "level": "info",
                "timestamp": found.group(),
            },
        )
        assert line == expected
    assert ("\x1b[" in lines[1]) is terminal
