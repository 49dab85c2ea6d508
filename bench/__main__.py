"""``python -m bench``: hub vs peer vs floor, side by side in one run.

For each server in turn: start it as a real process on 127.0.0.1, start the load generator
(``python -m bench.load``) as another process, and run the phases in order, reading the server's CPU
counters right before and after each one. Servers and the load generator are always stopped, Ctrl-C
included. Prints a text table, the hub/peer and hub/floor ratios and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import callgrind, common, report, servers
from bench.load import ALL_PHASES, PHASES, REQUEST_TIMEOUT_S

RESULTS = Path(__file__).resolve().parent / "results"
#: Seconds between two probes of file creation while `--fs-wait` waits for it to be quick.
FS_PROBE_PAUSE_S = 20.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--users", type=int, default=None, help="users created (default 2000)")
    parser.add_argument("--concurrency", type=int, default=None, help="requests in flight (16)")
    parser.add_argument(
        "--servers", default=",".join(servers.SERVER_NAMES), help="comma list of hub,peer,floor"
    )
    parser.add_argument(
        "--phases",
        default=None,
        help=f"comma list, in order: {','.join(ALL_PHASES)} (default: all but dupes; with"
        " --postgres all)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run: 100 users, concurrency 4, no targets"
    )
    parser.add_argument("--json", type=Path, default=None, help="append the JSON line to PATH")
    parser.add_argument(
        "--database-url", default=None, help="bench the hub on this database (e.g. PostgreSQL)"
    )
    parser.add_argument(
        "--workers", default="1", help="hub worker processes; a comma list benches each (1,2)"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="bench the hub on a throwaway PostgreSQL cluster (a fresh database per hub run)",
    )
    parser.add_argument(
        "--phase-timeout", type=float, default=300.0, help="seconds a phase may take at most"
    )
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the database files go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--fs-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before the hub starts, wait up to SECONDS for file creation to leave its slow"
        " state (default 0: only warn; ext4 without a journal stays slow for up to ~6 minutes"
        " after many files were deleted)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="run each server under Valgrind's callgrind and count its instructions per request"
        " (steady where timings are not; servers run ~50x slower: default 300 users, no list"
        " phase)",
    )
    parser.add_argument(
        "--hub-log-level",
        choices=("warning", "info"),
        default="warning",
        help="the hub's log level (info: its default, a JSON line per request, to a file)",
    )
    parser.add_argument(
        "--hub-setting",
        action="append",
        metavar="NAME=VALUE",
        help="a hub setting for this run (repeatable; e.g. mail_batch_size=50): the harness"
        " drops its caller's SCIM_HUB_* variables",
    )
    args = parser.parse_args(argv)
    args.hub_settings = common.hub_settings(parser, args.hub_setting)
    default_users = 100 if args.smoke else (300 if args.instructions else 2000)
    args.users = args.users if args.users is not None else default_users
    args.concurrency = (
        args.concurrency if args.concurrency is not None else (4 if args.smoke else 16)
    )
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    if args.phases is None:
        defaults = ALL_PHASES if args.postgres else PHASES
        if args.instructions:
            # Under callgrind the peer takes ~2.5 s a page of 100 users: 200 pages overrun the
            # load generator's request timeout. Named with --phases, the list phase still runs.
            defaults = tuple(p for p in defaults if p != "list")
        args.phases = ",".join(defaults)
    args.phase_list = [p.strip() for p in args.phases.split(",") if p.strip()]
    args.worker_list = common.worker_counts(parser, args.workers)
    if args.postgres and args.database_url:
        parser.error("--postgres starts its own cluster: leave out --database-url")
    for name in args.server_list:
        if name not in servers.SERVER_NAMES:
            parser.error(f"unknown server {name!r}")
    for phase in args.phase_list:
        if phase not in ALL_PHASES:
            parser.error(f"unknown phase {phase!r}")
    if args.phase_list != [p for p in ALL_PHASES if p in args.phase_list]:
        parser.error(f"phases run in this order: {','.join(ALL_PHASES)}")
    if args.phase_list and args.phase_list[0] != "create":
        parser.error("the other phases need the ids of the create phase: include create")
    if args.users < 1 or args.concurrency < 1:
        parser.error("--users and --concurrency must be at least 1")
    if args.instructions and not callgrind.available():
        parser.error("--instructions needs Valgrind (valgrind and callgrind_control on PATH)")
    if args.instructions and args.worker_list != [1]:
        parser.error("--instructions counts one server process: leave --workers at 1")
    return args


class LoadProcess:
    """The load generator process and its line protocol (one phase in, one JSON line out)."""

    def __init__(self, server: servers.Server, args: argparse.Namespace, tag: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "bench.load",
            "--base-url",
            server.base_url,
            "--users",
            str(args.users),
            "--concurrency",
            str(args.concurrency),
            "--tag",
            tag,
            "--phase-timeout",
            str(args.phase_timeout),
        ]
        env = dict(os.environ)
        if server.token:
            env["BENCH_TOKEN"] = server.token  # not on the command line, where ps shows it
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(servers.REPO), env.get("PYTHONPATH")])
        )
        self.reply_timeout_s = args.phase_timeout + REQUEST_TIMEOUT_S + 30
        self.process = subprocess.Popen(
            cmd,
            cwd=servers.REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self.busy = False
        self.selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self._read_line(60.0)  # {"ready": true}

    def _read_line(self, timeout_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        if not self.selector.select(timeout_s):
            raise TimeoutError(f"the load generator did not answer within {timeout_s:.0f}s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator exited ({self.process.wait()})")
        value: dict[str, Any] = json.loads(line)
        return value

    def run(self, phase: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(phase.encode() + b"\n")
        self.process.stdin.flush()
        self.busy = True
        reply = self._read_line(self.reply_timeout_s)
        self.busy = False
        return reply

    def stop(self) -> None:
        """Quit between phases; terminate at once if interrupted in the middle of one."""
        self.selector.close()
        if self.busy and self.process.poll() is None:
            self.process.terminate()
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(b"quit\n")
                self.process.stdin.close()
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def bench_server(
    label: str,
    args: argparse.Namespace,
    workdir: Path,
    tag: str,
    database_url: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    name = label.split("-", 1)[0]
    file_us = None
    if name == "hub":
        file_us = quiet_file_creation(workdir / "outbox", args.fs_wait, label)
    started = time.perf_counter()
    wrapper = callgrind.command(workdir, name) if args.instructions else []
    server = servers.start(
        name, workdir, database_url, workers, args.hub_log_level, wrapper, args.hub_settings
    )
    print(f"[{label}] up in {time.perf_counter() - started:.1f}s at {server.base_url}", flush=True)
    out: dict[str, Any] = {"base_url": server.base_url, "notes": server.notes, "phases": {}}
    counter = callgrind.Counter(server.pid, workdir, name) if args.instructions else None
    if counter is not None:
        server.notes.append("under callgrind: its timings are ~50x slow, count its instructions")
    if name == "hub":
        out["workers"] = workers
        out["file_create_us"] = file_us
        if file_us is not None and file_us > servers.FS_SLOW_US:
            _warn(label, out, slow_files_note(f"creating a file took {file_us:,.0f} us"))
    with server:
        origin = common.origin_of(server.base_url)
        counted_before = common.counted_requests(common.scrape(origin)) if name == "hub" else 0
        load = LoadProcess(server, args, tag)
        try:
            for phase in args.phase_list:
                if counter is not None:
                    counter.start()
                cpu_before = server.cpu_seconds()
                mail_before = server.mail_writer_cpu_seconds() if name == "hub" else 0.0
                summary = load.run(phase)
                if name == "hub":
                    # The activation emails a phase queued are its work too: wait for the
                    # outbox to drain (read from /metrics) before reading the CPU counters.
                    summary["outbox_drain_s"] = drain_outbox(origin, args.phase_timeout)
                cpu = server.cpu_seconds() - cpu_before
                if counter is not None:
                    counted = counter.stop(phase)
                    sent = summary.get("requests", 0)
                    summary["instructions_per_req"] = round(counted / sent) if sent else 0
                summary["cpu_s"] = round(cpu, 3)
                if name == "hub":
                    # Of which the `.eml` file writer (see `servers.file_create_us`).
                    mail = server.mail_writer_cpu_seconds() - mail_before
                    summary["mail_writer_cpu_s"] = round(mail, 3)
                    emails = summary.get("requests", 0) if phase == "create" else 0
                    per_email = mail * 1e6 / emails if emails else 0.0
                    if per_email > servers.FS_SLOW_US:
                        # The probe can miss it: the files may land in another block group.
                        what = f"the .eml writer took {per_email:,.0f} us of CPU an email"
                        _warn(label, out, slow_files_note(what))
                requests = summary.get("requests", 0)
                summary["cpu_ms_per_req"] = round(cpu * 1000 / requests, 4) if requests else 0.0
                out["phases"][phase] = summary
                print(
                    f"[{label}] {phase:<10} {summary['rps']:>9,.1f} req/s"
                    f"  p99 {summary['p99_ms']:.1f} ms  errors {summary['errors']}"
                    f"  cpu {cpu:.2f}s"
                    + (
                        f" (.eml writer {summary['mail_writer_cpu_s']:.2f}s)"
                        if name == "hub"
                        else ""
                    )
                    + (
                        f"  {summary['instructions_per_req']:,} instructions/req"
                        if counter is not None
                        else ""
                    ),
                    flush=True,
                )
                for sample in summary.get("error_samples", []):
                    print(f"[{label}]   error: {sample}", file=sys.stderr, flush=True)
                if server.process.poll() is not None:
                    raise servers.ServerError(f"{name} died during {phase}:\n{server.log_tail()}")
            out["rss_mb"] = round(server.rss_bytes() / 2**20, 1)
            if name == "hub":
                sent = sum(p.get("requests", 0) for p in out["phases"].values())
                out["metrics_check"] = common.metrics_check(origin, sent, counted_before, workers)
                print(f"[{label}] /metrics cross-check: {out['metrics_check']}", flush=True)
        finally:
            load.stop()
    return out


def slow_files_note(what: str) -> str:
    """What slow file creation means for the figures of this run."""
    return (
        f"{what} (ext4 without a journal creates files 10-20x slower for minutes after many"
        " files were deleted): the hub's .eml writer pays it per activation email, so its"
        " create CPU is inflated (see mail_writer_cpu_s); rerun after a few quiet minutes"
    )


def quiet_file_creation(
    directory: Path,
    wait_s: float,
    label: str,
    slow_us: float = servers.FS_SLOW_US,
    pause_s: float = FS_PROBE_PAUSE_S,
) -> float:
    """Microseconds a file creation takes in `directory`, once under `slow_us` or after `wait_s`.

    A run whose hub meets the file system in its slow state measures that state, not the hub:
    its `.eml` writer paid 0.25-0.94 ms an email in it against ~0.05 (the fortieth and
    forty-first sessions). Each probe writes into a directory of its own (a rewrite of a probe's
    file takes another path) and leaves its files in place: deleting them would slow the run.
    """
    deadline = time.monotonic() + wait_s
    round_ = 0
    while True:
        file_us = servers.file_create_us(directory / f"probe-{round_}")
        left = deadline - time.monotonic()
        if file_us <= slow_us or left <= 0:
            return file_us
        print(
            f"[{label}] creating a file took {file_us:,.0f} us: waiting for the file system"
            f" ({left:.0f} s left of --fs-wait)",
            flush=True,
        )
        time.sleep(min(pause_s, left))
        round_ += 1


def _warn(label: str, out: dict[str, Any], note: str) -> None:
    out["notes"].append(note)
    print(f"[{label}] warning: {note}", file=sys.stderr, flush=True)


def drain_outbox(origin: str, timeout_s: float) -> float | None:
    """Seconds until /metrics shows an empty outbox (None if it has no outbox gauge)."""
    started = time.perf_counter()
    deadline = started + timeout_s
    while True:
        depth = common.gauge(common.scrape(origin), "scim_hub_outbox_depth")
        if not depth:
            return None if depth is None else round(time.perf_counter() - started, 2)
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the outbox still holds {depth:.0f} emails after {timeout_s}s")
        time.sleep(0.1)


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    tag = f"r{int(time.time())}"
    result: dict[str, Any] = {
        "kind": "scim-hub-bench",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "command": " ".join(
            ["python -m bench", shlex.join(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "args": {
            "users": args.users,
            "concurrency": args.concurrency,
            "servers": args.server_list,
            "phases": args.phase_list,
            "smoke": args.smoke,
            "workers": args.worker_list,
            "hub_log_level": args.hub_log_level,
            "hub_settings": args.hub_settings,
            "instructions": args.instructions,
            "database": "postgresql"
            if args.postgres or (args.database_url or "").startswith("postgres")
            else "sqlite",
        },
        "servers": {},
    }
    tmp = tempfile.mkdtemp(prefix="scim-bench-", dir=args.tmpdir)
    cluster = None
    try:
        if args.postgres:
            from bench import pg

            cluster = pg.BenchCluster()
            cluster.start()
            print(f"[postgres] throwaway cluster at {cluster.url}", flush=True)
        for name in args.server_list:
            runs = [(name, 1)]
            if name == "hub":
                runs = [(name if w == 1 else f"hub-{w}w", w) for w in args.worker_list]
            for label, workers in runs:
                workdir = Path(tmp) / label
                workdir.mkdir()
                database_url = args.database_url
                if cluster is not None and name == "hub":
                    database_url = pg.create_database(cluster.url)
                try:
                    result["servers"][label] = bench_server(
                        label, args, workdir, tag, database_url, workers
                    )
                    if cluster is not None and database_url is not None:
                        check = pg.duplicate_users(database_url)
                        result["servers"][label]["duplicates"] = check
                        print(f"[{label}] duplicates: {check}", flush=True)
                except (servers.ServerError, TimeoutError, RuntimeError) as exc:
                    print(f"[{label}] FAILED: {exc}", file=sys.stderr, flush=True)
                    result["servers"][label] = {"error": str(exc)}
    except KeyboardInterrupt:
        print("interrupted: servers stopped", file=sys.stderr)
        return 130
    finally:
        if cluster is not None:
            cluster.stop()
        if args.keep:
            print(f"work directory kept: {tmp}", file=sys.stderr)
        else:
            _rmtree(Path(tmp))
    result["ratios"] = report.ratios(result["servers"])
    if args.instructions:
        result["instruction_ratios"] = report.ratios(result["servers"], "instructions")
    result["scaling"] = report.scaling(result["servers"])
    errors = sum(
        phase["errors"]
        for s in result["servers"].values()
        for phase in s.get("phases", {}).values()
    )
    failed = [name for name, s in result["servers"].items() if "error" in s]
    dupes = sum(
        s.get("duplicates", {}).get("duplicate_keys", 0) for s in result["servers"].values()
    )
    mismatched = [
        n for n, s in result["servers"].items() if s.get("metrics_check", {}).get("match") is False
    ]
    result["errors_total"] = errors
    result["failed_servers"] = failed
    result["duplicate_keys"] = dupes
    result["metrics_mismatch"] = mismatched
    print()
    print(report.text_table(result))
    print()
    print(report.json_line(result), flush=True)
    if args.json is not None:
        report.write_json(result, args.json, append=True)
    if not args.smoke:
        latest = "latest-postgres.json" if args.postgres else "latest.json"
        if args.instructions:
            latest = "latest-instructions.json"
        report.write_json(result, RESULTS / latest, append=False)
    return 1 if failed or errors or dupes or mismatched else 0


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
