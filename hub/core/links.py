"""Activation link tokens: a random nonce signed with a key derived from the server secret.

A token is `shact_{nonce}.{mac}`: `nonce` is 128 random bits, `mac` is
`HMAC-SHA256(activation link key, nonce)`, both base64url. What the database holds:

* `outbox_messages.link_nonce` — the nonce, only while the email is queued (the sender needs it to
  render the email, again after a crash); cleared once the message is sent, failed or cancelled.
* `activation_links.digest` — SHA-256 of the token's public part `shact_{nonce}.`, to find the link.

Neither is the MAC, and the MAC cannot be computed without the server secret (`hub.core.secret`),
which is never stored in the database: a copy of the database opens no account. Someone holding
the secret as well still cannot rebuild a link that was sent, because its nonce is gone by then.

Changing the server secret invalidates every link already sent (the MAC no longer matches:
"no longer valid", 410); queued emails are rendered with the new secret and work.

Tokens without a `.` are links issued before migration 0012 (a random secret stored as the
SHA-256 of the whole token): they are still found by that digest until they expire. The two
digests never collide: one hashes a string ending in `.`, the other a string without one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from hub.core.tokens import digest

PREFIX: Final = "shact_"
_NONCE_BYTES: Final = 16
#: Longer input is not a link (the real ones are 72 characters, the old ones 49).
_MAX_LENGTH: Final = 200


def new_nonce() -> str:
    """A fresh link nonce (base64url, 22 characters)."""
    return secrets.token_urlsafe(_NONCE_BYTES)


def token_for(key: bytes, nonce: str) -> str:
    """The link token of `nonce` under `key`: `shact_{nonce}.{mac}`."""
    mac = hmac.new(key, nonce.encode(), hashlib.sha256).digest()
    return f"{PREFIX}{nonce}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def stored_digest(nonce: str) -> str:
    """What `activation_links.digest` holds for the link with this nonce."""
    return digest(f"{PREFIX}{nonce}.")


def lookup_digest(token: str) -> str | None:
    """The `activation_links.digest` to look `token` up by, or None if it is not a link token."""
    if not token.startswith(PREFIX) or len(token) > _MAX_LENGTH:
        return None
    public, dot, mac = token.partition(".")
    if not dot:
        return digest(token)  # a link issued before migration 0012
    if not mac or len(public) == len(PREFIX):
        return None
    return digest(public + ".")


def is_signed(key: bytes, token: str) -> bool:
    """Whether `token`'s MAC is right under `key` (constant time); pre-0012 links carry none."""
    public, dot, _ = token.partition(".")
    if not dot:
        return True
    expected = token_for(key, public[len(PREFIX) :])
    return hmac.compare_digest(expected.encode(), token.encode())
