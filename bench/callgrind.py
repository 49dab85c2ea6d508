"""Counting the instructions a server runs per phase, under Valgrind's callgrind.

On a shared 2-core host a timing moves with the neighbours: the same phase has taken 0.45 and
1.0 CPU ms a create an hour apart. An instruction count does not: the same in-process run of
300 creates counts the same instructions to within 0.3%. So `python -m bench --instructions`
starts each server under callgrind with instrumentation off (start-up runs ~5x slower, not
~50x), and `Counter` switches it on for a phase and reads the phase's count from a dump.

What is counted: the user-space instructions of every thread of the server's process. Not
counted: the kernel's work for its system calls (the WAL's writes, the sockets), nor a child it
execs (the hub's `.eml` writer). Instrumented, a server runs ~50x slower, so more requests wait
each turn of its loop than in a timed run (the hub commits larger batches): the count is a
steady proxy of CPU per request, not a replacement for the timed phases.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

#: How long a dump may take to appear (a server in the middle of a system call answers late).
DUMP_TIMEOUT_S = 60.0


def available() -> bool:
    """Is Valgrind installed, with the `callgrind_control` it drives a running server with?"""
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def command(workdir: Path, name: str) -> list[str]:
    """The prefix that starts server `name` under callgrind, instrumentation off."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={workdir / name}.%p.callgrind",
    ]


class Counter:
    """Counts a running server's instructions over a stretch of time (one phase)."""

    def __init__(self, pid: int, workdir: Path, name: str) -> None:
        self.pid = pid
        self.prefix = f"{name}.{pid}.callgrind."
        self.workdir = workdir

    def start(self) -> None:
        """Zero the counters and switch instrumentation on."""
        self._control("--zero")
        self._control("--instr=on")

    def stop(self, label: str) -> int:
        """Dump what was counted since `start`, switch instrumentation off; return the count."""
        before = set(self._dumps())
        self._control(f"--dump={label}")
        self._control("--instr=off")
        deadline = time.monotonic() + DUMP_TIMEOUT_S
        while time.monotonic() < deadline:
            new = [p for p in self._dumps() if p not in before]
            if new:
                return _totals(new[0], deadline)
            time.sleep(0.1)
        raise TimeoutError(f"callgrind wrote no dump for {label!r} within {DUMP_TIMEOUT_S:.0f}s")

    def _dumps(self) -> list[Path]:
        return sorted(self.workdir.glob(self.prefix + "*"))

    def _control(self, option: str) -> None:
        done = subprocess.run(
            ["callgrind_control", option, str(self.pid)],
            capture_output=True,
            text=True,
            timeout=DUMP_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0 or "OK" not in done.stdout:
            raise RuntimeError(f"callgrind_control {option} {self.pid}: {done.stdout}{done.stderr}")


def _totals(path: Path, deadline: float) -> int:
    """The `totals:` line of a dump (written last: wait for it while the file is being written)."""
    while True:
        for line in reversed(path.read_text(errors="replace").splitlines()):
            if line.startswith("totals:"):
                return int(line.split()[1])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no totals line")
        time.sleep(0.1)
