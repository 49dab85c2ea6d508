"""Time as integer microseconds since the Unix epoch, and its SCIM dateTime rendering."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_us() -> int:
    """Return the current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_iso(us: int) -> str:
    """Render microseconds as an RFC 3339 UTC timestamp (xsd:dateTime), e.g. for `meta`."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> int:
    """Parse an xsd:dateTime into microseconds; naive times are taken as UTC.

    Raises:
        ValueError: `text` is not a dateTime.
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)
