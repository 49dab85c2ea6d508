"""Plugin events produced inside a unit of work and broadcast after it commits."""

from __future__ import annotations

from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True):
    """One event hook call: the hook's name and its keyword arguments."""

    hook: str
    kwargs: dict[str, Any]
