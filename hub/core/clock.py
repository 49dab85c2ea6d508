"""Time as integer microseconds since the Unix epoch, and its SCIM dateTime rendering."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def now_us() -> int:
    """Return the current time in microseconds since the epoch."""
    return time.time_ns() // 1000


#: "HH:MM:" of every minute of a day and "SS." of every second of a minute: a list page renders
#: two timestamps a user, and `time.strftime` for each was most of the page's rendering.
_MINUTES = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECONDS = tuple(f"{s:02d}." for s in range(60))
_DAY_US = 86_400_000_000


@functools.lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))


def to_iso(us: int) -> str:
    """Render microseconds as an RFC 3339 UTC timestamp (xsd:dateTime), e.g. for `meta`."""
    day, rest = divmod(us, _DAY_US)
    second, fraction = divmod(rest, 1_000_000)
    minute, second = divmod(second, 60)
    return f"{_day(day)}{_MINUTES[minute]}{_SECONDS[second]}{str(fraction + 1_000_000)[1:]}Z"


#: the second `iso_now` rendered last, and its text up to the fraction ("2026-12-03T11:22:25.")
_rendered_second: tuple[int, str] = (-1, "")


def iso_now() -> str:
    """`to_iso(now_us())`, for log lines: the current second's text is kept between calls.

    Every log line is stamped, the request's line on every request at the default level: a
    line then renders only its microseconds (`to_iso` took ~7,700 instructions a line, most of
    them dividing the time into days, minutes and seconds).
    """
    global _rendered_second
    second, fraction = divmod(time.time_ns() // 1000, 1_000_000)
    rendered, text = _rendered_second
    if second != rendered:
        text = to_iso(second * 1_000_000)[:-7]
        _rendered_second = (second, text)
    return f"{text}{fraction:06d}Z"


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
