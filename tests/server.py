"""A real `scim-hub serve` process on a free 127.0.0.1 port, for tests that need real sockets.

`running_server(workdir)` migrates a fresh SQLite file with `scim-hub db upgrade`, creates a
workspace with `scim-hub init --json` (both in one process: `migrate_and_init`), starts
`scim-hub serve`, waits for `/healthz`, yields a
`LiveServer` and stops the process (SIGTERM, then SIGKILL after 5 s) however the body ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from tests.pg import free_port

# A start takes 1-3 s here; the wait ends as soon as the hub answers, so the margin is for a
# CI host loaded by both xdist workers, and costs nothing when the hub starts.
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0

# Every outbox and secret directory a test process makes lives under this one, removed when the
# process exits, so a test run leaves nothing behind in the system's temporary directory.
_SCRATCH = tempfile.TemporaryDirectory(prefix="scim-hub-tests-")


def cli_command() -> list[str]:
    """The `scim-hub` console script next to this interpreter, else `python -m hub.cli`."""
    script = Path(sys.executable).parent / "scim-hub"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "hub.cli"]


def hub_environ(database_url: str, base_url: str, **settings: str) -> dict[str, str]:
    """The process environment with every `SCIM_HUB_*` variable replaced by the ones given here.

    Inherited settings are dropped so a developer's own configuration cannot leak into a test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIM_HUB_")}
    env["SCIM_HUB_DATABASE_URL"] = database_url
    env["SCIM_HUB_BASE_URL"] = base_url
    env["SCIM_HUB_LOG_FORMAT"] = "json"
    # Emails without SMTP become files, and the server secret is generated on first start:
    # keep both out of the checkout's var/.
    env["SCIM_HUB_OUTBOX_DIR"] = tempfile.mkdtemp(prefix="outbox-", dir=_SCRATCH.name)
    secret_dir = tempfile.mkdtemp(prefix="secret-", dir=_SCRATCH.name)
    env["SCIM_HUB_SECRET_FILE"] = str(Path(secret_dir) / "secret.key")
    for name, value in settings.items():
        env[f"SCIM_HUB_{name.upper()}"] = value
    return env


def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `scim-hub ARGS`; with `check`, fail with both output streams if it exits non-zero."""
    result = subprocess.run(
        [*cli_command(), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"scim-hub {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


# Several `scim-hub` commands, through the CLI's own `main`, in one process, stopping at the first
# that fails: each `scim-hub` run spends about a second of CPU importing the hub before it starts.
_RUN_IN_TURN = """
import json
import sys

from hub.cli import main

for args in json.loads(sys.argv[1]):
    status = main(args)
    if status:
        sys.exit(status)
"""


def run_cli_in_turn(commands: Sequence[Sequence[str]], env: Mapping[str, str]) -> str:
    """Run `scim-hub ARGS` for each of `commands` in one process; their stdout, one after another.

    Fails with both output streams as soon as one exits non-zero.
    """
    result = subprocess.run(
        [sys.executable, "-c", _RUN_IN_TURN, json.dumps([list(args) for args in commands])],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        ran = "; ".join(" ".join(args) for args in commands)
        raise AssertionError(
            f"scim-hub {ran} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result.stdout


def migrate_and_init(
    env: Mapping[str, str], workspace: str, then: Sequence[Sequence[str]] = ()
) -> dict[str, Any]:
    """`scim-hub db upgrade`, `scim-hub init --workspace WORKSPACE --json`, then the commands in
    `then` (a seed, say), in one process; init's answer."""
    printed = run_cli_in_turn(
        [["db", "upgrade"], ["init", "--workspace", workspace, "--json"], *then], env
    )
    answer: dict[str, Any] = json.loads(
        next(line for line in printed.splitlines() if line.startswith("{"))
    )
    return answer


class LiveServer(NamedTuple):
    """What `running_server` yields; unpacks as `(base_url, tenant_url, token, process)`."""

    base_url: str
    tenant_url: str
    token: str
    process: subprocess.Popen[bytes]
    init: dict[str, Any]
    env: dict[str, str]


def _stderr_of(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-20_000:]
    except OSError:
        return "(no stderr captured)"


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], stderr: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no answer yet"
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(
                    f"scim-hub serve exited {process.returncode} before answering /healthz\n"
                    f"stderr:\n{_stderr_of(stderr)}"
                )
            try:
                response = client.get(f"{base_url}/healthz")
            except httpx.TransportError as exc:
                last_error = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last_error = f"/healthz answered {response.status_code}: {response.text[:500]}"
            time.sleep(0.1)
    raise AssertionError(
        f"scim-hub serve did not answer /healthz within {STARTUP_TIMEOUT:.0f} s ({last_error})\n"
        f"stderr:\n{_stderr_of(stderr)}"
    )


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL; return the exit status."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout)
    return process.returncode


@contextlib.contextmanager
def running_server(
    workdir: Path,
    *,
    workspace: str = "live",
    extra_args: Sequence[str] = (),
    then: Sequence[Sequence[str]] = (),
    **settings: str,
) -> Iterator[LiveServer]:
    """Migrate, init and serve a hub on a fresh SQLite file in `workdir`; stop it afterwards.

    `then`: `scim-hub` commands to run after init, before serving, in the same process.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = hub_environ(f"sqlite+aiosqlite:///{workdir / 'hub.db'}", base_url, **settings)
    init = migrate_and_init(env, workspace, then)
    stderr_path = workdir / "server.stderr"
    stdout_path = workdir / "server.stdout"
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        process = subprocess.Popen(
            [*cli_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args],
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_until_healthy(base_url, process, stderr_path)
        yield LiveServer(base_url, init["tenant_url"], init["token"], process, init, env)
    finally:
        stop_process(process)
