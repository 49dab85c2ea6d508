"""Identifiers: unguessable (74 random bits), in the order they were made.

An id's first 48 bits say when it was made, to the millisecond — what the resource's
`meta.created` says anyway; the rest is random, so no id can be guessed from another.
"""

from __future__ import annotations

import os
import time

_HEX = "0123456789abcdef"
# The RFC 9562 variant bits (10xx) for each value of the random nibble they replace.
_VARIANT = "89ab89ab89ab89ab"


def new_id() -> str:
    """Return a new resource id: UUID version 7 text (RFC 9562 §5.7).

    The first 48 bits are the Unix time in milliseconds, the other 74 come from `os.urandom`:
    still unguessable, and ids made together sort together, so each index over them takes new
    ids at its end instead of on a random page (fewer pages written per commit, fewer read).
    """
    t = f"{time.time_ns() // 1_000_000:012x}"
    r = os.urandom(10).hex()
    return f"{t[:8]}-{t[8:]}-7{r[:3]}-{_VARIANT[_HEX.index(r[3])]}{r[4:7]}-{r[7:19]}"
