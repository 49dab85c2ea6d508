"""Plugin events produced inside a unit of work and broadcast after it commits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True):
    """One event hook call: the hook's name and its keyword arguments."""

    hook: str
    kwargs: dict[str, Any]


class Lazy:
    """A hook argument built only when some plugin implements the hook, and then once.

    Rendering a new card for `card_created` is a few percent of a create; with no plugin
    listening (none of the shipped IdP plugins does) it is never needed.
    """

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make: Callable[[], Any] | None = make
        self._value: Any = None

    def value(self) -> Any:
        """The argument, built on first use."""
        if self._make is not None:
            self._value, self._make = self._make(), None
        return self._value
