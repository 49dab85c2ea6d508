"""The process that writes `.eml` files for the FileMailer: outcomes, deaths, and its end.

Everything is real: the child is `python -m hub.core.writer_child`, files land on disk, and the
deaths are SIGKILLs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from hub.core import writer_child
from hub.core.filewriter import FileWriter
from hub.core.writer_child import NICENESS
from tests.hubprocess import HubProcess, child_processes, process_alive


def _writer_pids(parent: int) -> list[int]:
    """The live file-writer processes whose parent is `parent`."""
    return child_processes(parent, b"hub.core.writer_child")


async def _wait_gone(pid: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while process_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        await asyncio.sleep(0.02)


async def test_each_file_gets_its_own_outcome(tmp_path: Path) -> None:
    writer = FileWriter()
    (tmp_path / "a-file").write_text("not a directory")
    files = [
        (str(tmp_path / "one.eml"), b"first"),
        (str(tmp_path / "a-file" / "two.eml"), b"second"),
        (str(tmp_path / "deep" / "three.eml"), b"third"),  # a missing directory is made
    ]
    try:
        outcomes = await writer.write(files)
    finally:
        await writer.close()
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert "Not a directory" in str(outcomes[1])
    assert _contents(tmp_path) == {"one.eml": b"first", "deep/three.eml": b"third"}
    assert _writer_pids(os.getpid()) == []  # closed: the child exited


async def test_files_appear_whole_and_a_rewrite_replaces_one(tmp_path: Path) -> None:
    writer = FileWriter()
    try:
        assert await writer.write([(str(tmp_path / "a.eml"), b"one" * 1000)]) == [None]
        first = (tmp_path / "a.eml").stat()
        assert await writer.write([(str(tmp_path / "a.eml"), b"two")]) == [None]
    finally:
        await writer.close()
    assert _contents(tmp_path) == {"a.eml": b"two"}  # no partial file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert first.st_mode & 0o777 == 0o644 & ~umask
    assert first.st_size == 3000


def test_a_file_system_refusing_unnamed_files_gets_named_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where linking a file by its descriptor is refused, files are written under a name."""
    monkeypatch.setattr(writer_child, "_unnamed_files", None)

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", refused)  # the kernel's answer under some security modules
    writer_child.write_file(str(tmp_path / "a.eml"), b"first")
    writer_child.write_file(str(tmp_path / "b.eml"), b"second")
    assert _contents(tmp_path) == {"a.eml": b"first", "b.eml": b"second"}
    assert writer_child._unnamed_files is False


def _contents(directory: Path) -> dict[str, bytes]:
    """Every `.eml` or `.partial` file under `directory`, by relative path."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in directory.rglob("*")
        if path.suffix in (".eml", ".partial") and path.is_file()
    }


async def test_the_writer_yields_the_cpu_to_the_server(tmp_path: Path) -> None:
    writer = FileWriter()
    try:
        assert await writer.write([(str(tmp_path / "a.eml"), b"a")]) == [None]
        [child] = _writer_pids(os.getpid())
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, child) == min(19, ours + NICENESS)
    finally:
        await writer.close()


async def test_a_writer_killed_between_batches_is_replaced(tmp_path: Path) -> None:
    writer = FileWriter()
    try:
        assert await writer.write([(str(tmp_path / "a.eml"), b"a")]) == [None]
        [first] = _writer_pids(os.getpid())
        os.kill(first, signal.SIGKILL)
        await _wait_gone(first)
        for _ in range(50):  # the loop hears of the death from its child watcher
            await asyncio.sleep(0.01)
        assert await writer.write([(str(tmp_path / "b.eml"), b"b")]) == [None]
        [second] = _writer_pids(os.getpid())
        assert second != first
    finally:
        await writer.close()
    assert _contents(tmp_path) == {"a.eml": b"a", "b.eml": b"b"}


async def test_a_writer_killed_mid_batch_fails_that_batch_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    writer = FileWriter()
    stuck = tmp_path / "stuck.eml"
    stuck.write_bytes(b"old")  # a rewrite: it goes through the partial file, replaced into place
    os.mkfifo(f"{stuck}.partial")  # opening it for writing blocks until a reader comes: forever
    try:
        assert await writer.write([(str(tmp_path / "warm.eml"), b"w")]) == [None]
        [child] = _writer_pids(os.getpid())
        batch = asyncio.create_task(writer.write([(str(stuck), b"never")]))
        await asyncio.sleep(0.2)
        assert not batch.done()
        os.kill(child, signal.SIGKILL)
        with pytest.raises(OSError, match="file writer process stopped"):
            await asyncio.wait_for(batch, 10)
        assert await writer.write([(str(tmp_path / "after.eml"), b"after")]) == [None]
    finally:
        await writer.close()
    assert _contents(tmp_path)["after.eml"] == b"after"


async def test_a_served_hubs_writer_ends_with_the_hub(tmp_path: Path) -> None:
    """Stopped (SIGTERM or Ctrl-C to the group), the hub ends its writer, which prints nothing;
    the hub killed alone, the writer sees its input end."""
    # One database, prepared once, served again after each ending: a fresh hub and writer each
    # time, without migrating and initialising a database per ending.
    hub = HubProcess(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", tmp_path)
    hub.prepare()
    outbox = tmp_path / "outbox"
    for n, ending in enumerate(("stop", "ctrl-c", "sigkill-hub-only"), start=1):
        hub.start()
        assert hub.process is not None
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                await _create_user(http, hub, f"writer-{ending}@example.com")
            deadline = time.monotonic() + 10
            while len(list(outbox.glob("*.eml"))) < n:
                assert time.monotonic() < deadline, "no activation email was written"
                await asyncio.sleep(0.05)
            [writer] = _writer_pids(hub.process.pid)
            if ending == "stop":
                hub.stop()
            elif ending == "ctrl-c":
                os.killpg(hub.process.pid, signal.SIGINT)
                hub.process.wait(30)
            else:
                os.kill(hub.process.pid, signal.SIGKILL)
                hub.process.wait(10)
            await _wait_gone(writer)
            assert "Traceback" not in hub.stderr_tail(), hub.stderr_tail()
        finally:
            hub.kill()


async def _create_user(http: httpx.AsyncClient, hub: HubProcess, email: str) -> None:
    created = await http.post(
        f"{hub.tenant_url}/Users",
        headers={"Authorization": f"Bearer {hub.token}"},
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": email,
            "emails": [{"value": email, "primary": True}],
        },
    )
    assert created.status_code == 201, created.text


def _emails(outbox: Path) -> tuple[set[str], list[str]]:
    """The recipients of the `.eml` files in `outbox`, and the names of any partial files."""
    recipients = set()
    for path in outbox.glob("*.eml"):
        for line in path.read_text().splitlines():
            if line.startswith("To: "):
                recipients.add(line[4:].strip())
    return recipients, [p.name for p in outbox.glob("*.partial")]


async def test_writers_killed_during_a_burst_lose_no_email(tmp_path: Path) -> None:
    """Every 201 gets its email even when the writer process is killed again and again."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    hub = HubProcess(url, tmp_path, mail_retry_base_ms="50", mail_poll_ms="50")
    hub.prepare()
    hub.start()
    assert hub.process is not None
    supervisor = hub.process.pid
    outbox = tmp_path / "outbox"
    killed: set[int] = set()

    async def kill_writers() -> None:
        while len(killed) < 5:
            for pid in _writer_pids(supervisor):
                if pid not in killed:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
            await asyncio.sleep(0.01)

    expected = {f"burst{i}@example.com" for i in range(150)}
    try:
        killer = asyncio.create_task(kill_writers())
        async with httpx.AsyncClient(timeout=30) as http:
            for start in range(0, 150, 10):
                await asyncio.gather(
                    *(
                        _create_user(http, hub, f"burst{i}@example.com")
                        for i in range(start, start + 10)
                    )
                )
        await asyncio.wait_for(killer, 60)
        deadline = time.monotonic() + 60
        while (found := await asyncio.to_thread(_emails, outbox))[0] != expected or found[1]:
            assert time.monotonic() < deadline, f"missing {sorted(expected - found[0])[:5]}…"
            await asyncio.sleep(0.1)
    finally:
        hub.stop()
    assert len(killed) == 5
