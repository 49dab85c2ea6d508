"""Time as integer microseconds since the Unix epoch, and its SCIM dateTime rendering."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def now_us() -> int:
    """Return the current time in microseconds since the epoch."""
    return time.time_ns() // 1000


#: The last second rendered and its text: a request renders many timestamps of one second.
_last_second: tuple[int, str] = (-1, "")


def to_iso(us: int) -> str:
    """Render microseconds as an RFC 3339 UTC timestamp (xsd:dateTime), e.g. for `meta`."""
    global _last_second
    second, fraction = divmod(us, 1_000_000)
    known, text = _last_second
    if second != known:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, text)
    return f"{text}.{fraction:06d}Z"


def parse_iso(text: str) -> int:
    """Parse an xsd:dateTime into microseconds; naive times are taken as UTC.

    Raises:
        ValueError: `text` is not a dateTime.
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Integer arithmetic: a float timestamp loses the last microsecond of many values.
    return (value - _EPOCH) // _MICROSECOND
