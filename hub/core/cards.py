"""Cards: every provisioned user's business card (filled in by the cards issue, #3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from hub.core.events import Event
from hub.core.tokens import Caller


def sync_user(
    conn: Connection,
    caller: Caller,
    user_pk: int,
    resource: dict[str, Any],
    event: str,
    mapping: Mapping[str, str],
) -> list[Event]:
    """Create or update the user's card from their SCIM resource; return events to broadcast."""
    return []
