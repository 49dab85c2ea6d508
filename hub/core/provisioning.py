"""What a user write does in the product beyond SCIM: cards, templates, activation emails.

`users` calls `user_written` inside the same transaction as the write, so the user, their card
and any queued email commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec
from sqlalchemy import Connection

from hub.core import activation, cards
from hub.core.events import Event
from hub.core.resources import JSON
from hub.core.tokens import Caller

UserEvent = Literal["provisioned", "reactivated", "updated", "deprovisioned", "deleted", "none"]


class Provisioning(msgspec.Struct, frozen=True, kw_only=True):
    """What the calling connector's dialect says about user writes."""

    #: card profile field -> SCIM attribute path it is read from (after connector overrides).
    mapping: Mapping[str, str] = msgspec.field(default_factory=dict)
    #: SCIM attribute paths the IdP never sends (a PUT leaves them alone).
    unmanaged: tuple[str, ...] = ()


def user_written(
    conn: Connection,
    caller: Caller,
    user_pk: int,
    resource: JSON,
    event: UserEvent,
    provisioning: Provisioning,
    *,
    readdressed: bool = False,
) -> list[Event]:
    """Bring the user's card and activation email in line with a committed-to-be user write.

    `readdressed`: an update changed the user's emails or userName, where their invitation's
    address comes from. Returns the plugin events (card created, template applied…) to
    broadcast after commit.
    """
    events = cards.sync_user(conn, caller, user_pk, resource, event, provisioning.mapping)
    events += activation.user_changed(
        conn, caller, user_pk, event, resource, readdressed=readdressed
    )
    return events
