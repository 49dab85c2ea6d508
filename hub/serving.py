"""Serving on several worker processes, each listening on a socket of its own.

uvicorn's `--workers` shares one listening socket among its workers, and whichever worker the
kernel wakes first accepts every connection waiting. An IdP, a load balancer or a benchmark opens
its keep-alive connections together and keeps them, so they all landed on one worker while the
others idled (measured: 16 connections of 16 on one process; two workers served 0.93 to 1.07
times what one did). Here each worker binds a socket of its own with `SO_REUSEPORT`, and the
kernel spreads new connections over the workers' sockets.

The supervisor starts the workers (spawned, as uvicorn does), starts again one that dies, stops
them all on SIGINT or SIGTERM (each finishes its requests: uvicorn's graceful shutdown), and stops
everything when a worker cannot start at all (the port taken, the app failing to load).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

#: A worker's exit code when it could not start serving: starting it again would fail the same way.
STARTUP_FAILURE = 3
#: How long stopping workers may take to finish their requests before they are killed.
_STOP_WAIT_S = 30.0
_spawn = multiprocessing.get_context("spawn")
#: prctl(2) option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


class PortTaken(Exception):
    """The address cannot be listened on (another server holds it, or it is not this host's)."""


def listening_socket(host: str, port: int, *, share: bool) -> socket.socket:
    """A TCP socket bound to `host:port`; with `share`, `SO_REUSEPORT` (one per worker).

    Raises:
        PortTaken: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortTaken(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _end_with_parent(supervisor: int) -> None:
    """Linux: have the kernel SIGTERM this worker when its supervisor dies, however it dies.

    A supervisor killed outright (SIGKILL, the OOM killer) would otherwise leave its workers
    serving on the port with nobody to stop them, and a new `scim-hub serve` refused the port.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before prctl: nobody would signal us
        sys.exit(0)


def _work(options: dict[str, Any], supervisor: int) -> None:
    """A worker process: serve the app on a socket of its own until told to stop."""
    _end_with_parent(supervisor)
    config = uvicorn.Config(**options)
    try:
        sock = listening_socket(config.host, config.port, share=True)
    except PortTaken as exc:
        print(f"scim-hub worker {os.getpid()}: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        if not server.started:  # the app could not be loaded or its start-up failed
            sys.exit(STARTUP_FAILURE)
        raise
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve_workers(options: dict[str, Any], workers: int) -> int:
    """Serve `uvicorn.Config(**options)` on `workers` processes; return the exit status.

    Raises:
        PortTaken: the address is already in use (checked before any worker starts).
    """
    # Bound without SO_REUSEPORT, a probe fails if anything holds the port, another hub's shared
    # sockets included: two servers must not silently split one port's connections.
    listening_socket(options["host"], options["port"], share=False).close()
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    processes = [_start(options) for _ in range(workers)]
    failed = False
    try:
        while not stop.wait(0.5):
            failed = _tend(processes, options)
            if failed:
                break
    finally:
        _stop_all(processes)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 1 if failed else 0


def _start(options: dict[str, Any]) -> BaseProcess:
    process = _spawn.Process(target=_work, args=(options, os.getpid()), name="scim-hub-worker")
    process.start()
    return process


def _tend(processes: list[BaseProcess], options: dict[str, Any]) -> bool:
    """Start again each worker that died; return True when one could not start at all."""
    for index, process in enumerate(processes):
        if process.is_alive():
            continue
        if process.exitcode == STARTUP_FAILURE:
            print(f"scim-hub: worker {process.pid} could not start; stopping", file=sys.stderr)
            return True
        print(
            f"scim-hub: worker {process.pid} exited ({process.exitcode}); starting another",
            file=sys.stderr,
        )
        processes[index] = _start(options)
    return False


def _stop_all(processes: list[BaseProcess]) -> None:
    """SIGTERM every worker (a graceful stop), then SIGKILL what is still running."""
    for process in processes:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_WAIT_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
