"""`scim-hub db backup PATH`: an online, consistent backup while the hub serves; restore works.

SQLite: a real server takes concurrent creates (each a user, its card and its activation email in
one transaction) while `scim-hub db backup` runs. The backup must hold every user acknowledged
before the backup started, only users the load created, and nothing torn: every user in it has
its card and its email. Restored into a fresh path (README, "Backup and restore"), it opens,
is migrated as current, and a server over it answers with the same token and the same users.

PostgreSQL: `db backup --print` names the pg_dump command; with pg_dump installed the backup runs
and `pg_restore` brings it back into a fresh database.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from hub.migrate import is_current
from tests.conftest import SCIM_JSON, USER_URN
from tests.hubprocess import HubProcess
from tests.pg import create_database, drop_database
from tests.server import run_cli


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def users_in(path: Path) -> dict[str, int]:
    """id -> pk of the users stored in a SQLite file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT id, pk FROM users").fetchall())
    finally:
        conn.close()


class Load:
    """Concurrent creates against a server, remembering when each was acknowledged."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.acknowledged: list[tuple[float, str]] = []  # (monotonic time, user id)
        self.sent = 0
        self.stop = asyncio.Event()

    async def worker(self, http: httpx.AsyncClient) -> None:
        headers = {
            "Authorization": f"Bearer {self.hub.token}",
            "Content-Type": SCIM_JSON,
            "Accept": SCIM_JSON,
        }
        while not self.stop.is_set():
            user_name = f"backup-{uuid.uuid4().hex[:12]}@example.com"
            body = {
                "schemas": [USER_URN],
                "userName": user_name,
                "emails": [{"value": user_name, "primary": True}],
            }
            self.sent += 1
            response = await http.post(f"{self.hub.tenant_url}/Users", json=body, headers=headers)
            assert response.status_code == 201, response.text
            self.acknowledged.append((time.monotonic(), response.json()["id"]))


@pytest.fixture
def hub(tmp_path: Path) -> HubProcess:
    """A prepared (migrated, initialised) server on a SQLite file; not started."""
    process = HubProcess(sqlite_url(tmp_path / "live" / "hub.db"), tmp_path / "live")
    process.prepare("backup")
    return process


@pytest.mark.server
async def test_backup_during_writes_holds_every_acknowledged_user_and_restores(
    hub: HubProcess, tmp_path: Path
) -> None:
    backup_path = tmp_path / "backups" / "hub-backup.db"
    hub.start()
    try:
        load = Load(hub)
        async with httpx.AsyncClient(timeout=30) as http:
            workers = [asyncio.create_task(load.worker(http)) for _ in range(6)]
            await asyncio.sleep(0.7)
            assert load.acknowledged, "the load made no user"
            started = time.monotonic()
            result = await asyncio.to_thread(run_cli, ["db", "backup", str(backup_path)], hub.env)
            finished = time.monotonic()
            await asyncio.sleep(0.3)  # writes keep going after the backup
            load.stop.set()
            await asyncio.gather(*workers)
        assert "backed up" in result.stdout
        before = {uid for when, uid in load.acknowledged if when < started}
        by_end = {uid for when, uid in load.acknowledged if when <= finished}
        after = {uid for when, uid in load.acknowledged if when > finished}
        assert before
        assert after, "no write happened after the backup: the test proves nothing"

        # The copy is a whole database, taken online, holding a snapshot.
        assert not backup_path.with_name(backup_path.name + "-wal").exists()
        conn = sqlite3.connect(f"file:{backup_path}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        finally:
            conn.close()
        backed_up = users_in(backup_path)
        assert before <= set(backed_up), f"lost: {len(before - set(backed_up))} users"
        # Only what the load created: what was acknowledged by the end of the backup, plus at
        # most one request in flight per worker (committed before the snapshot, answered later).
        load_ids = {uid for _, uid in load.acknowledged}
        assert set(backed_up) <= load_ids
        assert len(set(backed_up) - by_end) <= 6
        _assert_not_torn(backup_path)

        # The live database went on: it has the later users, the backup does not.
        live = users_in(Path(hub.database_url.split("///", 1)[1]))
        assert load_ids <= set(live)
        assert len(live) > len(backed_up)

        # A second backup to the same path is refused: backups never overwrite.
        again = run_cli(["db", "backup", str(backup_path)], hub.env, check=False)
        assert again.returncode == 2
        assert "exists" in again.stderr
    finally:
        hub.stop()

    # Restore (README "Backup and restore"): copy the file to the database path, upgrade, serve.
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    shutil.copyfile(backup_path, restored_dir / "hub.db")
    restored_url = sqlite_url(restored_dir / "hub.db")
    assert is_current(restored_url), "a backup of a current hub is migrated as current"
    restored = HubProcess(restored_url, restored_dir)
    restored.init = hub.init  # same workspace, same token: it was in the backup
    restored.cli("db", "upgrade")
    restored.start()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            headers = {"Authorization": f"Bearer {hub.token}", "Accept": SCIM_JSON}
            listed = await http.get(
                f"{restored.base_url}/scim/v2/Users", params={"count": "0"}, headers=headers
            )
            assert listed.status_code == 200, listed.text
            assert listed.json()["totalResults"] == len(backed_up)
            some = next(iter(before))
            one = await http.get(f"{restored.base_url}/scim/v2/Users/{some}", headers=headers)
            assert one.status_code == 200, one.text
    finally:
        restored.stop()


def _assert_not_torn(path: Path) -> None:
    """Every user has its card and its activation email (written in the same transaction)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "cards" in tables:
            missing = conn.execute(
                "SELECT count(*) FROM users u LEFT JOIN cards c ON c.user_pk = u.pk "
                "WHERE c.pk IS NULL"
            ).fetchone()
            assert missing == (0,), "a user without its card"
        if "outbox_messages" in tables:
            missing = conn.execute(
                "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM outbox_messages o "
                "WHERE o.user_pk = u.pk AND o.purpose = 'activation')"
            ).fetchone()
            assert missing == (0,), "a user without its activation email"
    finally:
        conn.close()


def test_backup_refuses_a_missing_database_and_the_database_itself(tmp_path: Path) -> None:
    hub = HubProcess(sqlite_url(tmp_path / "nothing.db"), tmp_path)
    missing = run_cli(["db", "backup", str(tmp_path / "b.db")], hub.env, check=False)
    assert missing.returncode == 2
    assert "no database file" in missing.stderr
    hub.prepare()
    itself = run_cli(["db", "backup", str(tmp_path / "nothing.db")], hub.env, check=False)
    assert itself.returncode == 2
    assert not list(tmp_path.glob(".*partial*"))
    # `--print` is PostgreSQL's dry run; on SQLite it wrote a backup and said so.
    printed = run_cli(["db", "backup", str(tmp_path / "b.db"), "--print"], hub.env, check=False)
    assert printed.returncode == 2
    assert "--print" in printed.stderr, printed.stderr
    assert not (tmp_path / "b.db").exists()


def test_backup_to_a_path_it_cannot_write_names_the_problem(tmp_path: Path) -> None:
    """A file where the backup's directory should be ended in mkdir's traceback ("File exists"),
    an empty PATH in "'.' exists", a target it could not create in "unable to open database
    file" without naming it."""
    hub = HubProcess(sqlite_url(tmp_path / "hub.db"), tmp_path)
    run_cli(["db", "upgrade"], hub.env)
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    cases = [
        (str(in_the_way / "b.db"), f"{in_the_way} is not a directory"),
        (str(in_the_way / "deeper" / "b.db"), f"{in_the_way} is not a directory"),
        ("", "db backup: PATH is empty; name the file to write"),
        # Its own name fits, the copy's (".NAME.partial-PID") is too long: a traceback.
        (str(long := tmp_path / ("b" * 250)), f" to {long} failed: File name too long"),
    ]
    for path, named in cases:
        refused = run_cli(["db", "backup", path], hub.env, check=False)
        assert refused.returncode == 2, refused.stderr
        [line] = refused.stderr.splitlines()
        assert line.startswith("scim-hub: "), refused.stderr
        assert named in line, refused.stderr
    assert in_the_way.read_text() == "not a directory"
    assert not list(tmp_path.glob("**/.*partial*"))


def test_backup_of_a_file_that_is_no_database_names_it(tmp_path: Path) -> None:
    """It said "the backup to B failed: file is not a database", blaming the backup."""
    source = tmp_path / "hub.db"
    source.write_text("no database " * 20)
    hub = HubProcess(sqlite_url(source), tmp_path)
    target = tmp_path / "b.db"
    refused = run_cli(["db", "backup", str(target)], hub.env, check=False)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == (
        f"scim-hub: the backup of {source} to {target} failed: file is not a database\n"
    )
    assert not target.exists()
    assert not list(tmp_path.glob(".*partial*"))


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_postgres_backup_never_overwrites_and_makes_missing_directories(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    """pg_dump overwrote an existing PATH (last night's backup gone) and failed on a missing
    directory, where a SQLite backup refuses the one and makes the other."""
    hub = HubProcess(fresh_postgres_url, tmp_path)
    earlier = tmp_path / "earlier.dump"
    earlier.write_text("last night's backup")
    refused = run_cli(["db", "backup", str(earlier)], hub.env, check=False)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == (
        f"scim-hub: {earlier} exists; choose a new file name (a backup never overwrites)\n"
    )
    assert earlier.read_text() == "last night's backup"
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump not installed: the refusal is all we can check")
    nested = tmp_path / "new" / "dir" / "hub.dump"
    done = run_cli(["db", "backup", str(nested)], hub.env)
    assert "backed up" in done.stdout
    assert nested.stat().st_size > 0


@pytest.mark.postgres
def test_postgres_backup_prints_or_runs_pg_dump_and_restores(
    postgres_server_url: str, tmp_path: Path
) -> None:
    url = create_database(postgres_server_url)
    restored_url = create_database(postgres_server_url)
    try:
        hub = HubProcess(url, tmp_path)
        hub.prepare("pgbackup")
        database = url.rsplit("/", 1)[1]
        target = tmp_path / "hub.dump"
        printed = hub.cli("db", "backup", str(target), "--print").stdout.strip()
        assert printed.startswith("pg_dump --format=custom"), printed
        assert f"--dbname={database}" in printed
        assert f"--file={target}" in printed
        assert not target.exists()
        if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
            pytest.skip("pg_dump/pg_restore not installed: the printed command is all we can check")
        done = hub.cli("db", "backup", str(target))
        assert "backed up" in done.stdout
        assert target.stat().st_size > 0
        restored = restored_url.rsplit("/", 1)[1]
        port = restored_url.rsplit(":", 1)[1].split("/", 1)[0]
        subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--host=127.0.0.1",
                f"--port={port}",
                "--username=postgres",
                f"--dbname={restored}",
                str(target),
            ],
            check=True,
            capture_output=True,
        )
        assert is_current(restored_url)
        check = HubProcess(restored_url, tmp_path / "restored")
        check.init = hub.init
        check.start()
        try:
            response = httpx.get(
                f"{check.base_url}/scim/v2/ServiceProviderConfig",
                headers={"Authorization": f"Bearer {hub.token}"},
            )
            assert response.status_code == 200, response.text  # the token came back too
        finally:
            check.stop()
    finally:
        for name in (url, restored_url):
            drop_database(postgres_server_url, name.rsplit("/", 1)[1])
