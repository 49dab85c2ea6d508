"""Pieces shared by the scale, many-tenants, initial-cycle and soak benchmarks.

These drivers are the load generator themselves: each is its own process (``python -m
bench.scale`` …) and drives a hub started as another process (``bench.servers``), so the server's
CPU and RSS are read from /proc apart from the client's. Every request loop is bounded in count
and in time; only http://127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from bench import report
from bench.load import REQUEST_TIMEOUT_S, SCIM_JSON, CollectorPaused, percentile

RESULTS = Path(__file__).resolve().parent / "results"
_decode = msgspec.json.decode


def check_local(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.hostname != "127.0.0.1" or parts.scheme != "http":
        raise SystemExit(f"refusing to load anything but http://127.0.0.1: {base_url}")


@dataclass
class Recorder:
    """Latencies and outcomes of one series of requests."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0

    def record(self, ms: float, status: int | str, problem: str | None) -> None:
        self.latencies_ms.append(ms)
        key = str(status)
        self.status_counts[key] = self.status_counts.get(key, 0) + 1
        if problem is not None:
            self.errors += 1
            if len(self.error_samples) < 3:
                self.error_samples.append(f"{status}: {problem[:300]}")

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self.started

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        n = len(lat)
        return {
            "requests": n,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 3),
            "rps": round(n / self.wall_s, 1) if self.wall_s > 0 else 0.0,
            "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "status_counts": self.status_counts,
            "error_samples": self.error_samples,
        }


class Client:
    """A keep-alive aiohttp session speaking SCIM to one tenant."""

    def __init__(self, base_url: str, token: str | None, connections: int) -> None:
        check_local(base_url)
        self.base = base_url.rstrip("/")
        headers = {"Content-Type": SCIM_JSON, "Accept": SCIM_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=None),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            skip_auto_headers=("User-Agent",),
        )

    def url(self, path_and_query: str) -> URL:
        return URL(self.base + path_and_query, encoded=True)

    async def call(
        self,
        rec: Recorder,
        method: str,
        path: str,
        body: bytes | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> Any:
        """Send one request, record it; return the decoded body (None on error / no body)."""
        t0 = time.perf_counter()
        try:
            async with self.session.request(method, self.url(path), data=body) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            rec.record((time.perf_counter() - t0) * 1000, type(exc).__name__, repr(exc))
            return None
        ms = (time.perf_counter() - t0) * 1000
        if status not in expect:
            rec.record(ms, status, raw[:300].decode(errors="replace"))
            return None
        rec.record(ms, status, None)
        if not raw:
            return None
        try:
            return _decode(raw)
        except msgspec.DecodeError:
            return None

    async def close(self) -> None:
        await self.session.close()


# --- /metrics cross-check ----------------------------------------------------------------------


def scrape(origin: str, timeout_s: float = 10.0) -> str:
    import urllib.request

    check_local(origin)
    with urllib.request.urlopen(origin.rstrip("/") + "/metrics", timeout=timeout_s) as resp:
        text: str = resp.read().decode()
        return text


def counted_requests(text: str, prefix: str = "/scim/v2") -> int:
    """Sum of `scim_hub_http_requests_total` over routes under `prefix`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "scim_hub_http_requests_total" and sample.labels.get(
                "route", ""
            ).startswith(prefix):
                total += sample.value
    return int(total)


def gauge(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def metrics_check(origin: str, sent: int, before: int = 0, workers: int = 1) -> dict[str, Any]:
    """Requests counted by the server's /metrics vs requests the client sent."""
    if workers != 1:
        return {"sent": sent, "counted": None, "match": None, "note": "per-process metrics"}
    try:
        counted = counted_requests(scrape(origin)) - before
    except OSError as exc:
        return {"sent": sent, "counted": None, "match": False, "note": repr(exc)}
    return {"sent": sent, "counted": counted, "match": counted == sent}


def origin_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


# --- process figures ---------------------------------------------------------------------------


class PySpy:
    """`py-spy record` of a server process for the length of a `with` block (optional)."""

    def __init__(self, pid: int, out: Path | None, rate: int = 200) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        exe = Path(sys.executable).parent / "py-spy"
        if self.out is None or not exe.exists():
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(exe),
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(self.out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


#: Frames worth reporting: the project's own code and where SQL / JSON / rendering time goes.
_INTERESTING = ("hub/", "rules/", "plugins/", "do_execute", "sqlite", "msgspec", "litestar/")


def top_frames(raw_path: Path, limit: int = 25) -> list[tuple[str, float]]:
    """Inclusive share of samples per interesting function of a py-spy raw (collapsed) file."""
    if not raw_path.exists():
        return []
    totals: dict[str, int] = {}
    samples = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        for frame in set(stack.split(";")):
            if any(mark in frame for mark in _INTERESTING):
                totals[frame] = totals.get(frame, 0) + count
    if not samples:
        return []
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:limit]
    return [(frame, round(100 * n / samples, 1)) for frame, n in ranked]


# --- results and lifecycle ---------------------------------------------------------------------


def worker_counts(parser: argparse.ArgumentParser, text: str) -> list[int]:
    """The worker counts of `--workers` ("1" or a comma list "1,2"); a parser error if invalid."""
    try:
        counts = [int(w) for w in str(text).split(",") if w.strip()]
    except ValueError:
        parser.error("--workers takes a number or a comma list of numbers")
    if not counts or min(counts) < 1:
        parser.error("--workers must be at least 1")
    return counts


#: Hub settings the harness sets itself (`servers.hub_env`): not for `--hub-setting`.
HARNESS_SETTINGS = frozenset({"database_url", "base_url", "log_level", "log_format", "outbox_dir"})


def hub_settings(parser: argparse.ArgumentParser, pairs: list[str] | None) -> dict[str, str]:
    """`--hub-setting NAME=VALUE` pairs as {name: value}; a parser error names a bad one.

    The harness drops its caller's `SCIM_HUB_*` variables (a developer's own settings must not
    leak into a benchmark), so this is how a run sets one; the hub checks the value at start-up.
    """
    from hub.settings import Settings

    known = set(Settings.__struct_fields__)
    chosen: dict[str, str] = {}
    for pair in pairs or ():
        name, equals, value = pair.partition("=")
        name = name.strip().lower().removeprefix("scim_hub_")
        if not equals or not name:
            parser.error(f"--hub-setting takes NAME=VALUE, not {pair!r}")
        if name not in known:
            parser.error(f"--hub-setting: the hub has no setting {name!r}")
        if name in HARNESS_SETTINGS:
            parser.error(f"--hub-setting: the harness sets {name!r} itself")
        chosen[name] = value
    return chosen


def base_result(kind: str, argv: list[str] | None, args: dict[str, Any]) -> dict[str, Any]:
    import shlex
    from datetime import UTC, datetime

    return {
        "kind": kind,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "command": " ".join(
            [f"python -m bench.{kind}", shlex.join(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "args": args,
    }


def save(result: dict[str, Any], name: str, json_path: Path | None, smoke: bool) -> None:
    line = json.dumps(result, separators=(",", ":"))
    print(line, flush=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with json_path.open("a") as f:
            f.write(line + "\n")
    if not smoke:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(line + "\n")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def workdir(tmpdir: Path | None, keep: bool) -> Iterator[Path]:
    """A temporary directory (removed unless `keep`), with SIGTERM/SIGINT turned into Ctrl-C."""
    import tempfile

    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    path = Path(tempfile.mkdtemp(prefix="scim-bench-", dir=tmpdir))
    try:
        yield path
    finally:
        if keep:
            print(f"work directory kept: {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


async def bounded(coros: list[Any], timeout_s: float) -> bool:
    """Run coroutines concurrently for at most `timeout_s`; False if the deadline cut them off.

    The client's garbage collector is paused meanwhile (`CollectorPaused`): its passes would
    count as the server's latency.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    with CollectorPaused():
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # re-raise a crash in a worker
    return not pending


def fmt_row(cells: list[Any], widths: list[int]) -> str:
    return " ".join(
        f"{c:>{w}}" if i else f"{c:<{w}}"
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def mark(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


Progress = Callable[[str], None]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
