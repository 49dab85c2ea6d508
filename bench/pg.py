"""A throwaway PostgreSQL cluster for the benchmark, with durable commits.

It reuses the test suite's helper (`tests/pg.py`: initdb into a temporary directory, a free
127.0.0.1 port, trust authentication, `runuser postgres` when run as root, everything removed on
`stop()`), but starts the server with PostgreSQL's default durability — `fsync=on`,
`synchronous_commit=on`, `full_page_writes=on` — where the tests turn all three off: every 2xx the
hub answers on PostgreSQL is on disk, as on SQLite (WAL, synchronous=NORMAL: survives a crash of
the process; PostgreSQL here also survives power loss).
"""

from __future__ import annotations

from tests.pg import PostgresCluster, PostgresUnavailable, create_database, free_port

__all__ = ["BenchCluster", "PostgresUnavailable", "create_database"]


class BenchCluster(PostgresCluster):
    """`tests.pg.PostgresCluster` with durable settings and room for several hub workers."""

    def start(self, attempts: int = 3) -> str:
        """initdb, then start on a free port (retrying if the port was taken); return `.url`."""
        self._run(
            self._command(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--locale=C.UTF-8",
                "--encoding=UTF8",
            )
        )
        for attempt in range(attempts):
            self.port = free_port()
            options = " ".join(
                (
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={self.root}",
                    "-c max_connections=200",
                    "-c shared_buffers=256MB",
                )
            )
            try:
                self._run(
                    self._command(
                        "pg_ctl",
                        "start",
                        "-w",
                        "-t",
                        "30",
                        "-D",
                        str(self.datadir),
                        "-l",
                        str(self.logfile),
                        "-o",
                        options,
                    )
                )
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                continue
            self.started = True
            return self.url
        raise AssertionError("unreachable")


def duplicate_users(database_url: str) -> dict[str, int]:
    """Users sharing a (workspace, userName key), and how many users the database holds."""
    import asyncio

    import asyncpg

    from tests.pg import asyncpg_dsn

    async def go() -> dict[str, int]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
        try:
            dupes = await conn.fetchval(
                "SELECT count(*) FROM (SELECT workspace_pk, user_name_key FROM users"
                " GROUP BY workspace_pk, user_name_key HAVING count(*) > 1) AS d"
            )
            total = await conn.fetchval("SELECT count(*) FROM users")
            dup_rows = await conn.fetchval(
                "SELECT count(*) FROM users WHERE user_name_key LIKE 'dup-%'"
            )
        finally:
            await conn.close()
        return {"duplicate_keys": int(dupes), "users": int(total), "dupes_phase_users": dup_rows}

    return asyncio.run(go())
