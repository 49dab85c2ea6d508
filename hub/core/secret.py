"""The server secret: where it comes from, and the keys derived from it.

The secret signs what must stay unforgeable even to someone holding a copy of the database
(activation links, `hub.core.links`), so it is never stored there. It is `SCIM_HUB_SECRET` when
set, else the contents of `SCIM_HUB_SECRET_FILE` (default `var/secret.key`), which the first
process to start creates: 256 random bits, mode 0600, created exclusively (`O_EXCL`) so worker
processes starting together agree on one secret. It is never logged; only the file's path is.

Every process of one hub (the workers of a `scim-hub serve`, and every host behind a load
balancer) must hold the same secret: a link signed by one process is checked by another. Each
use gets its own key, `HMAC-SHA256(secret, purpose)`, so one purpose's key reveals nothing about
another's.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Final

import structlog

from hub.settings import ENV_PREFIX, MIN_SECRET_LENGTH, Settings

log = structlog.get_logger("hub.secret")

#: Purpose of the key that signs activation links.
ACTIVATION_LINKS: Final = "activation-links"

_GENERATED_BYTES: Final = 32
#: How long a process waits for another one to finish writing a file it just created.
_WRITE_WAIT_S: Final = 2.0


class SecretError(RuntimeError):
    """The server secret cannot be read or created; the message names the setting."""


def derive_key(settings: Settings, purpose: str) -> bytes:
    """The key for one purpose: `HMAC-SHA256(server secret, purpose)`.

    Raises:
        SecretError: the secret file cannot be read or created.
    """
    return _derive(settings.secret, settings.secret_file, purpose)


@functools.cache
def _derive(secret: str, secret_file: str, purpose: str) -> bytes:
    material = secret.strip().encode() if secret else _from_file(Path(secret_file))
    return hmac.new(material, f"scim-hub key: {purpose}".encode(), hashlib.sha256).digest()


def _from_file(path: Path) -> bytes:
    """Read the key file, creating it first if it does not exist."""
    setting = f"{ENV_PREFIX}SECRET_FILE"
    try:
        if not path.exists():
            _create(path)
        text = _read(path)
        mode = path.stat().st_mode
    except OSError as exc:
        raise SecretError(
            f"{setting}: cannot read or create the server secret {path}: {exc.strerror or exc}; "
            f"set {ENV_PREFIX}SECRET or make the directory writable"
        ) from exc
    if len(text) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"{setting}: {path} holds fewer than {MIN_SECRET_LENGTH} characters; "
            "delete it to have a new secret generated (every activation link sent so far "
            "stops working)"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the server secret file is readable by other users", file=str(path))
    return text.encode()


def _create(path: Path) -> None:
    """Create the key file exclusively; another process may win the race, which is fine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(_GENERATED_BYTES) + "\n")
        file.flush()
        os.fsync(file.fileno())
    log.info("generated the server secret", file=str(path))


def _read(path: Path) -> str:
    """The file's secret; waits briefly while a concurrent creator is still writing it."""
    deadline = time.monotonic() + _WRITE_WAIT_S
    while True:
        text = path.read_text().strip()
        if len(text) >= MIN_SECRET_LENGTH or time.monotonic() > deadline:
            return text
        time.sleep(0.01)
