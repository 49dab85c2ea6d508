"""Activation emails (filled in by the cards issue, #3)."""

from __future__ import annotations

from sqlalchemy import Connection

from hub.core.events import Event
from hub.core.tokens import Caller


def user_changed(conn: Connection, caller: Caller, user_pk: int, event: str) -> list[Event]:
    """Queue or cancel activation emails after a user write; return events to broadcast."""
    return []
