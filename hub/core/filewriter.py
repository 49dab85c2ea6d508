"""Files written by a child process, for the event loop (the `FileMailer`'s `.eml` files).

Done on a thread of the serving process, each system call of each file gave up the GIL and took it
back from the event loop — ~95 µs of the process's CPU per message, more than the file system's own
work (~17 µs). A child process (`hub.core.writer_child`, which imports only msgspec and the
standard library) has a GIL of its own: the loop hands it a batch in one pipe write and reads the
outcomes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

import msgspec

from hub.core.writer_child import LENGTH, frame

_encode_files = msgspec.msgpack.Encoder().encode
_decode_outcomes = msgspec.msgpack.Decoder(list[str | None]).decode
#: How long a closing writer may take to finish its batch and exit before it is killed.
_EXIT_WAIT_S = 5.0


class FileWriter:
    """A child process running `hub.core.writer_child.serve`, started when first needed.

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
                (size,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
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
            "hub.core.writer_child",
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
