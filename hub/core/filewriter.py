"""A child process that writes files for the event loop: `python -m hub.core.filewriter`.

The `FileMailer` writes one `.eml` file per message. Done on a thread of the serving process, each
system call of each file gave up the GIL and took it back from the event loop — ~95 µs of the
process's CPU per message, more than the file system's own work (~17 µs). A child process has a
GIL of its own: the loop hands it a batch in one pipe write and reads the outcomes back.

The protocol on stdin/stdout, one request at a time: a frame is a 4-byte big-endian length and a
msgpack body. A request is a list of ``[path, data]``; its answer is a list with, per file, nil
when it was written or the error's text. Each file is written to ``path + ".partial"`` and renamed
into place, so a reader never sees half a file and a rewrite replaces it whole. The child exits at
the end of its input (the parent closed the pipe or is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO

import msgspec

_LENGTH = struct.Struct(">I")
_encode_files = msgspec.msgpack.Encoder().encode
_decode_outcomes = msgspec.msgpack.Decoder(list[str | None]).decode
#: How long a closing writer may take to finish its batch and exit before it is killed.
_EXIT_WAIT_S = 5.0


def frame(body: bytes) -> bytes:
    """`body` with its length in front."""
    return _LENGTH.pack(len(body)) + body


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) < size:
        return None  # the end of the input
    return data


def write_file(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically: into a partial file, then renamed into place."""
    partial = path + ".partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(partial, path)


def _write_all(files: list[tuple[str, bytes]]) -> list[str | None]:
    outcomes: list[str | None] = []
    for path, data in files:
        try:
            try:
                write_file(path, data)
            except FileNotFoundError:  # the directory went away: make it again
                os.makedirs(os.path.dirname(path), exist_ok=True)
                write_file(path, data)
        except OSError as exc:
            outcomes.append(str(exc))
        else:
            outcomes.append(None)
    return outcomes


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """Answer requests from `source` on `sink` until `source` ends."""
    decode = msgspec.msgpack.Decoder(list[tuple[str, bytes]]).decode
    encode = msgspec.msgpack.Encoder().encode
    while True:
        header = _read_exactly(source, _LENGTH.size)
        if header is None:
            return
        (size,) = _LENGTH.unpack(header)
        body = _read_exactly(source, size)
        if body is None:
            return
        try:
            sink.write(frame(encode(_write_all(decode(body)))))
            sink.flush()
        except BrokenPipeError:
            return  # the parent is gone: nobody to answer


class FileWriter:
    """The parent's side: a child process running `serve`, started when first needed.

    One batch at a time. When the child cannot be started, dies or is interrupted mid-batch, the
    batch fails with `OSError` (what it wrote is unknown: a retry rewrites the same paths) and the
    next batch starts a new child.
    """

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._turn = asyncio.Lock()

    async def write(self, files: Sequence[tuple[str, bytes]]) -> list[str | None]:
        """Write each ``(path, data)``; per file, None when written or the error's text.

        Raises:
            OSError: the child could not be started or did not answer.
        """
        async with self._turn:
            process = self._process
            if process is None or process.returncode is not None:  # never started, or it died
                process = await self._start()
            stdin, stdout = process.stdin, process.stdout
            assert stdin is not None
            assert stdout is not None
            try:
                stdin.write(frame(_encode_files(files)))
                await stdin.drain()
                (size,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
                outcomes = _decode_outcomes(await stdout.readexactly(size))
            except BaseException as exc:
                self._discard()  # half a conversation: the next batch gets a new child
                if isinstance(exc, OSError | asyncio.IncompleteReadError | msgspec.DecodeError):
                    raise OSError(f"the file writer process stopped: {exc}") from exc
                raise
            if len(outcomes) != len(files):
                self._discard()
                raise OSError("the file writer process answered for another batch")
            return outcomes

    async def _start(self) -> asyncio.subprocess.Process:
        # The child finds its modules where this process found them, however it was started.
        path = os.pathsep.join(entry for entry in sys.path if entry)
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.core.filewriter",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        return self._process

    def _discard(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it has just ended on its own
                process.kill()

    async def close(self) -> None:
        """End the child: it finishes the batch in hand, then exits at the end of its input."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), _EXIT_WAIT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
