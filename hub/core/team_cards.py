"""The dashboard's Team Cards table: keyset pages that cost the same on page 1 and page 2,000.

`cards.list_cards` pages with OFFSET, which reads and sorts every skipped card (about 0.3 s for
the last page of 100,000 on SQLite). Here a page starts after (or ends before) a card id and
reads `limit + 1` rows in index order (`ix_cards_workspace_order` on workspace and pk, or
`ix_cards_workspace` when filtering by status): about a millisecond anywhere in the table. Filters
and rendering are `hub.core.cards`' own, so a card looks the same in the API and the dashboard.

The total is counted from the cards index (a few ms at 100,000) except for a search, whose
substring match has to read every card's fields: a search page says whether there is a next
page instead.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection, func, or_, select

from hub.core import cards
from hub.core.cards import CardQuery
from hub.core.errors import InvalidValue
from hub.core.models import cards as cards_table
from hub.core.models import users


class TeamPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of cards, with the ids to ask for the pages around it."""

    cards: list[dict[str, Any]]
    total: int | None
    next_after: str | None
    prev_before: str | None


def _pk_of(workspace_pk: int, card_id: str) -> Any:
    return (
        select(cards_table.c.pk)
        .where(cards_table.c.workspace_pk == workspace_pk, cards_table.c.id == card_id)
        .scalar_subquery()
    )


def page(
    conn: Connection,
    workspace_pk: int,
    query: CardQuery,
    *,
    after: str | None = None,
    before: str | None = None,
) -> TeamPage:
    """A page of `query.limit` cards, oldest first, after card `after` or before card `before`.

    Raises:
        InvalidValue: bad limit or status, a search over `cards.MAX_SEARCH` characters, or
            both `after` and `before`.
        NotFound: unknown template id.
    """
    if not 1 <= query.limit <= cards.MAX_PAGE:
        raise InvalidValue(f"limit must be 1 to {cards.MAX_PAGE}")
    if after and before:
        raise InvalidValue("ask for the page after a card or before one, not both")
    where = cards._filters(conn, workspace_pk, query)
    stmt = cards._CARD.where(*where)
    if before:
        stmt = stmt.where(cards_table.c.pk < _pk_of(workspace_pk, before))
        stmt = stmt.order_by(cards_table.c.pk.desc())
    else:
        if after:
            stmt = stmt.where(cards_table.c.pk > _pk_of(workspace_pk, after))
        stmt = stmt.order_by(cards_table.c.pk)
    rows = list(conn.execute(stmt.limit(query.limit + 1)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if before:
        rows.reverse()
    has_next = more if not before else True
    has_prev = bool(after) if not before else more
    by_card: dict[int, list[Any]] = {}
    for field in conn.execute(cards._fields_query([row.pk for row in rows])):
        by_card.setdefault(field.card_pk, []).append(field)
    total = None
    if not query.q:  # the filters then touch the cards table only: count from its index
        total = int(
            conn.execute(select(func.count()).select_from(cards_table).where(*where)).scalar_one()
        )
    return TeamPage(
        cards=[cards._render(row, by_card.get(row.pk, [])) for row in rows],
        total=total,
        next_after=rows[-1].id if rows and has_next else None,
        prev_before=rows[0].id if rows and has_prev else None,
    )


def seats(conn: Connection, workspace_pk: int) -> int:
    """The seat count (active users), as `cards.stats` counts it, without the other counts."""
    active = or_(users.c.active.is_(None), users.c.active.is_(True))
    return int(
        conn.execute(
            select(func.count()).where(
                users.c.workspace_pk == workspace_pk, users.c.deleted.is_(False), active
            )
        ).scalar_one()
    )
