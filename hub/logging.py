"""structlog set-up: JSON lines in production, a readable console on a terminal."""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, BinaryIO, TextIO, cast

import msgspec
import structlog
from structlog.contextvars import STRUCTLOG_KEY_PREFIX
from structlog.typing import EventDict

from hub.core.clock import iso_now
from hub.settings import Settings

# One JSON line per request is on every request's path: msgspec encodes it in ~1 µs where the
# standard library's `json.dumps` takes ~5 (a line cost 15 µs, then 10; 7 with one write and
# `_timestamp`).
_encode = msgspec.json.Encoder(enc_hook=repr).encode
_PREFIX_LENGTH = len(STRUCTLOG_KEY_PREFIX)


def _json_line(event: Any, **_: Any) -> bytes:
    """`JSONRenderer`'s serializer: the event as JSON; what JSON cannot hold, as its repr."""
    try:
        return _encode(event)
    except UnicodeEncodeError:  # a lone surrogate, which UTF-8 cannot hold (JSON's escape can)
        return json.dumps(event, default=repr).encode()


def _json_text(event: Any, **_: Any) -> str:
    """`_json_line` as text, for a stream that takes no bytes."""
    return _json_line(event).decode()


def _timestamp(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """Add `timestamp`, UTC ISO 8601 to the microsecond, as `meta` renders times.

    `TimeStamper` builds a `datetime` and formats all of it for every line (~2 µs of a request's
    log line); `iso_now` formats only what changed.
    """
    event["timestamp"] = iso_now()
    return event


class LineBatch:
    """Log lines written on an event loop's thread, written together when the loop's turn ends.

    Under load one turn of the loop serves a dozen requests, each logging a line: one write for
    all of them spares a system call a line and, when stderr is a pipe (a container's log
    collector, a supervisor), waking its reader for every line. GETs at `info` with stderr piped
    took 14 to 17% less CPU (in process); written to a file, no change. Lines written where no
    loop runs (the CLI, the database threads) go out at once, after any waiting ones, so the
    order holds. One turn's lines wait at most: a SIGKILL loses them; `drain` writes them (at
    exit too).
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._waiting: list[bytes] = []
        self._lock = threading.Lock()
        #: the loop a `drain` is queued on (a loop closed before running it is replaced)
        self._queued_on: asyncio.AbstractEventLoop | None = None

    def write(self, data: bytes) -> int:
        """Take one line; write it now, or at the end of the running loop's turn."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._waiting.append(data)
            if loop is None:
                self._write_waiting()
            elif self._queued_on is not loop:
                self._queued_on = loop
                loop.call_soon(self.drain)
        return len(data)

    def flush(self) -> None:
        """Nothing: structlog flushes after every line, and lines wait for the turn's end."""

    def drain(self) -> None:
        """Write every waiting line now, in one write."""
        with self._lock:
            self._queued_on = None
            self._write_waiting()

    def _write_waiting(self) -> None:
        if not self._waiting:
            return
        data = b"".join(self._waiting)
        self._waiting.clear()
        try:
            self._out.write(data)
            self._out.flush()
        except (OSError, ValueError):  # stderr closed or gone: there is nowhere to say so
            pass


#: every batch `configure_logging` set up, drained at exit: a logger structlog cached before a
#: later `configure_logging` still writes to the batch of its time.
_batches: weakref.WeakSet[LineBatch] = weakref.WeakSet()


@atexit.register
def drain_logs() -> None:
    """Write every log line still waiting for its loop's turn to end (at shutdown, at exit).

    A served process can end without `atexit`: uvicorn, stopped by SIGTERM, raises the signal
    again once it has shut down. The app's shutdown calls this as its last step.
    """
    for batch in list(_batches):
        batch.drain()


class _DirectLines:
    """Writes the hot `info` lines straight to the batch, as structlog's chain would.

    The chain `configure_logging` sets up spends ~5 µs on a JSON line, much of it in structlog's
    plumbing (the bound logger, six processors, `BytesLogger`), and ~30 µs on a console line
    (`ConsoleRenderer`); at the default level, `info`, every request pays it for its line, and
    every create for its activation email's two. The same steps in one function take ~2.7 µs,
    and the line is byte for byte the same. Used only while structlog's configuration is still
    the one it was made for: `capture_logs` (tests) or a later `structlog.configure` sends the
    line back through structlog.
    """

    def __init__(self, batch: LineBatch, render: Callable[[dict[str, Any]], bytes]) -> None:
        self._batch = batch
        self._render = render
        config = structlog.get_config()
        self._processors = list(config["processors"])
        self._wrapper = config["wrapper_class"]

    def live(self) -> bool:
        """Is structlog still configured as it was when this was made?"""
        config = structlog.get_config()
        return config["processors"] == self._processors and config["wrapper_class"] is self._wrapper

    def write(self, event: str, fields: dict[str, Any]) -> None:
        """Write `fields` as `event` at `info`."""
        fields["event"] = event
        # `merge_contextvars` (the call's own values win), reading each variable once where
        # `get_contextvars` looks each up again by its key.
        for var, value in contextvars.copy_context().items():
            name = var.name
            if name.startswith(STRUCTLOG_KEY_PREFIX) and value is not Ellipsis:
                fields.setdefault(name[_PREFIX_LENGTH:], value)
        fields["level"] = "info"
        fields["timestamp"] = iso_now()
        self._batch.write(self._render(fields))


def _json_info_line(fields: dict[str, Any]) -> bytes:
    """An `info` line as `configure_logging`'s JSON chain renders it, with its newline."""
    return _json_line(fields) + b"\n"


class _ConsoleInfoLine:
    """An `info` line as `ConsoleRenderer` (structlog's defaults) renders it, with its newline.

    Built from the renderer's own public styles, so the line is the same text, colours
    included (`tests/test_logging.py` compares them): the timestamp, the padded level and
    event, then every other key sorted, as `key=value`, a string bare unless it holds a space,
    a quote, `=` or a line break.
    """

    _QUOTED = frozenset(" \t=\r\n\"'")

    def __init__(self, colors: bool, encoding: str) -> None:
        styles = structlog.dev.ConsoleRenderer.get_default_column_styles(colors)
        levels = structlog.dev.ConsoleRenderer.get_default_level_styles(colors)
        reset = styles.reset
        level = f"[{levels['info']}{styles.bright}{'info'.ljust(len(max(levels, key=len)))}{reset}]"
        self._timestamp, self._reset = styles.timestamp, reset
        self._level_event = f"{reset} {level} {styles.bright}"
        self._key, self._value = styles.kv_key, f"{reset}={styles.kv_value}"
        self._encoding = encoding

    def __call__(self, fields: dict[str, Any]) -> bytes:
        """The line of `fields`, which hold `timestamp`, `level` ("info") and `event`."""
        reset, key_style, value_style = self._reset, self._key, self._value
        parts = [
            f"{self._timestamp}{fields.pop('timestamp')}{self._level_event}"
            f"{_padded(fields.pop('event'))}{reset}"
        ]
        del fields["level"]
        quoted = self._QUOTED
        for key in sorted(fields):
            value = fields[key]
            text = value if isinstance(value, str) and quoted.isdisjoint(value) else repr(value)
            parts.append(f"{key_style}{key}{value_style}{text}{reset}")
        line = " ".join(parts).rstrip(" ") + "\n"
        return line.encode(self._encoding, "backslashreplace")


def _padded(event: str) -> str:
    """`event` padded to `ConsoleRenderer`'s event column (30 characters)."""
    return event.ljust(30)


class _TextBatch:
    """A text stream over a `LineBatch` for `WriteLogger`: console lines, in order with the rest."""

    def __init__(self, batch: LineBatch, encoding: str) -> None:
        self._batch = batch
        self._encoding = encoding

    def write(self, text: str) -> int:
        """Take a line's text (`WriteLogger` writes it with its newline)."""
        self._batch.write(text.encode(self._encoding, "backslashreplace"))
        return len(text)

    def flush(self) -> None:
        """Nothing: the batch writes at the end of the loop's turn."""


#: set by `configure_logging` when hot lines can skip structlog's chain (JSON at `info`)
_direct_lines: _DirectLines | None = None
#: the bound-logger class `configure_logging` set up when its level drops `info` lines
_dropping_info: type | None = None
_http_log = structlog.get_logger("hub.http")
#: structlog's processors and wrapper class when `_http_log` was made
_http_log_config: tuple[list[Any], Any] | None = None


def _http_log_live() -> bool:
    """Is structlog still configured as it was when `_http_log` was made?"""
    config = structlog.get_config()
    return _http_log_config == (config["processors"], config["wrapper_class"])


#: the context variable structlog keeps `request_id` in, known once one was bound
_request_id_var: contextvars.ContextVar[Any] | None = None


def bind_request_id(request_id: str) -> None:
    """Start a request's log context: nothing bound before it, then `request_id`.

    `clear_contextvars` and `bind_contextvars` as the middleware called them took ~9,700
    instructions a request: the clear sets every structlog variable, bound or not, and the bind
    finds the variable by its name again.
    """
    global _request_id_var
    var = _request_id_var
    for bound, value in contextvars.copy_context().items():
        if (
            value is not Ellipsis
            and bound is not var
            and bound.name.startswith(STRUCTLOG_KEY_PREFIX)
        ):
            bound.set(Ellipsis)  # what `clear_contextvars` leaves in a structlog variable
    if var is None:
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        _request_id_var = tokens["request_id"].var
    else:
        var.set(request_id)


def current_request_id() -> str:
    """The id the request-log middleware gave the request being served ("" outside one).

    Read from its one variable: `get_contextvars` copies every structlog variable (~4,900
    instructions), and every SCIM request asks for its id.
    """
    var = _request_id_var
    found = var.get(...) if var is not None else ...
    return found if isinstance(found, str) else ""


def _logged_directly(event: str, fields: dict[str, Any]) -> bool:
    """Drop or write an `info` line without structlog's chain; False: structlog must log it."""
    dropping = _dropping_info
    if dropping is not None and structlog.get_config()["wrapper_class"] is dropping:
        # Above `info` the line is dropped anyway: structlog's lazy logger took ~2 µs to do so.
        return True
    lines = _direct_lines
    if lines is not None and lines.live():
        lines.write(event, fields)
        return True
    return False


def log_info(logger: Any, event: str, **fields: Any) -> None:
    """Log `event` at `info` as `logger.info(event, **fields)` does, for a line on a hot path."""
    if not _logged_directly(event, fields):
        logger.info(event, **fields)


def log_request(**fields: Any) -> None:
    """Log the line that ends every HTTP request: the `request` event, at `info`."""
    if _logged_directly("request", fields):
        return
    if _http_log_live():
        _http_log.info("request", **fields)
    else:
        # structlog was configured again since (`capture_logs`): the logger cached on first use
        # still holds the old chain, a new one follows the new configuration.
        structlog.get_logger("hub.http").info("request", **fields)


def configure_logging(settings: Settings) -> None:
    """Configure structlog and the standard library once, from the settings."""
    global _direct_lines, _dropping_info, _http_log, _http_log_config
    level = getattr(logging, settings.log_level.upper())
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto"
        and (settings.environment == "production" or not sys.stderr.isatty())
    )
    binary = getattr(sys.stderr, "buffer", None)
    renderer: structlog.typing.Processor
    factory: Any
    batch: LineBatch | None = None
    direct: Callable[[dict[str, Any]], bytes] = _json_info_line
    if use_json and binary is not None:
        # Bytes, a turn's lines in one write: `print` made two system calls of every line.
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
        batch = LineBatch(binary)
        _batches.add(batch)
        # `BytesLogger` only calls write and flush.
        factory = structlog.BytesLoggerFactory(file=cast(BinaryIO, batch))
    elif use_json:  # a text-only stream in place of stderr
        renderer = structlog.processors.JSONRenderer(serializer=_json_text)
        factory = structlog.WriteLoggerFactory(file=sys.stderr)
    else:
        colors = sys.stderr.isatty()
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
        factory = structlog.WriteLoggerFactory(file=sys.stderr)
        if binary is not None:
            # A terminal's lines batched too, and the request line rendered directly:
            # `ConsoleRenderer` took ~221,000 instructions a line, half again a GET's cost.
            encoding = sys.stderr.encoding or "utf-8"
            batch = LineBatch(binary)
            _batches.add(batch)
            factory = structlog.WriteLoggerFactory(file=cast(TextIO, _TextBatch(batch, encoding)))
            direct = _ConsoleInfoLine(colors, encoding)
    wrapper_class = structlog.make_filtering_bound_logger(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=wrapper_class,
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _direct_lines = (
        _DirectLines(batch, direct) if batch is not None and level <= logging.INFO else None
    )
    _dropping_info = wrapper_class if level > logging.INFO else None
    _http_log = structlog.get_logger("hub.http")
    _http_log_config = (list(structlog.get_config()["processors"]), wrapper_class)
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, force=True)
