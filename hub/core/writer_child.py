"""The file writer's child process: `python -m hub.core.writer_child`.

`hub.core.filewriter.FileWriter` starts it and talks to it; it imports only msgspec and the
standard library (asyncio alone would add ~8 MB to its memory).

The protocol on stdin/stdout, one request at a time: a frame is a 4-byte big-endian length and a
msgpack body. A request is a list of ``[path, data]``; its answer is a list with, per file, nil
when it was written or the error's text. Each file appears whole (an unnamed file linked into
place, or a partial file renamed into place: `write_file`), so a reader never sees half a file and
a rewrite replaces it whole. The child exits at the end of its input (the parent closed the pipe or
is gone).
"""

from __future__ import annotations

import errno
import os
import signal
import struct
import sys
from typing import BinaryIO

import msgspec

#: How much lower than the server's the writer's CPU priority is (see `__main__`).
NICENESS = 10
#: A frame's length prefix (4 bytes, big-endian).
LENGTH = struct.Struct(">I")


def frame(body: bytes) -> bytes:
    """`body` with its length in front."""
    return LENGTH.pack(len(body)) + body


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) < size:
        return None  # the end of the input
    return data


def write_file(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically: no reader ever sees part of it, a rewrite replaces it.

    Where the file system can, the data goes into an unnamed file (``O_TMPFILE``) that is then
    linked into place: one directory entry made, where a partial file renamed into place makes,
    removes and replaces one (on ext4 ~30 µs a file against ~45-90). Elsewhere, and to replace
    a file already there, into ``path + ".partial"``, renamed into place.
    """
    global _unnamed_files, _proc_fds
    if _unnamed_files is None:  # the first file: can this system make unnamed ones?
        _proc_fds = _proc_fd_directory() if _O_TMPFILE else None
        _unnamed_files = _proc_fds is not None
    if _unnamed_files:
        try:
            fd = os.open(os.path.dirname(path) or ".", _O_TMPFILE | os.O_WRONLY, 0o644)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise  # the directory is missing or not one: the caller says so
            _unnamed_files = False  # this file system has none: partial files from now on
        else:
            try:
                _write_out(fd, data)
                try:
                    os.link(str(fd), path, src_dir_fd=_proc_fds, follow_symlinks=True)
                    return
                except FileExistsError:
                    pass  # a rewrite: replaced below, whole
                except FileNotFoundError:
                    raise  # the directory went away: the caller makes it again
                except OSError:
                    _unnamed_files = False  # linking by descriptor refused here: named files
            finally:
                os.close(fd)
    partial = path + ".partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_out(fd, data)
    finally:
        os.close(fd)
    os.replace(partial, path)


def _write_out(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _proc_fd_directory() -> int | None:
    """`/proc/self/fd`, open, to link an unnamed file by its descriptor; None without one."""
    try:
        return os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    except (OSError, AttributeError):
        return None


#: Linux's flag for an unnamed file in a directory (0 where there is none)
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
#: what `open` says where the file system or the kernel has no unnamed files
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
#: `/proc/self/fd` (opened with the first file, in the writer process alone)
_proc_fds: int | None = None
#: unnamed files are tried until the file system refuses one (None: not known yet)
_unnamed_files: bool | None = None


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
        header = _read_exactly(source, LENGTH.size)
        if header is None:
            return
        (size,) = LENGTH.unpack(header)
        body = _read_exactly(source, size)
        if body is None:
            return
        try:
            sink.write(frame(encode(_write_all(decode(body)))))
            sink.flush()
        except BrokenPipeError:
            return  # the parent is gone: nobody to answer


if __name__ == "__main__":
    # The parent decides when this ends (the end of its input): a Ctrl-C or a SIGTERM sent to the
    # whole process group must not cut a batch short or print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Writing email files is background work: it yields the CPU to the requests being served
    # (a file costs ~35 µs of kernel time, and up to ~1 ms on ext4 without a journal shortly
    # after many files were deleted). At nice 10 it still gets about a tenth of a busy core.
    os.nice(NICENESS)
    serve(sys.stdin.buffer, sys.stdout.buffer)
