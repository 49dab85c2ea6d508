"""Searching Users and Groups at once: POST /.search at the service root (RFC 7644 §3.4.3)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection

from hub.core import groups, users
from hub.core.errors import InvalidFilter
from hub.core.resources import JSON, ListQuery, Page
from hub.core.tokens import Caller


def search_all(conn: Connection, caller: Caller, query: ListQuery, base: str) -> Page:
    """Users then Groups matching `query`, paged as one list.

    A filter naming an attribute only one of the types has simply matches nothing of the other
    type; a filter that neither type can evaluate is an error.

    Raises:
        InvalidFilter: the filter is invalid for both Users and Groups.
    """
    services: list[Any] = [users, groups]
    counted: list[tuple[Any, int]] = []
    errors: list[InvalidFilter] = []
    for service in services:
        try:
            total = service.search(conn, caller, _with(query, count=0), base).total
        except InvalidFilter as exc:
            errors.append(exc)
            continue
        counted.append((service, total))
    if len(errors) == len(services):
        raise errors[0]
    resources: list[JSON] = []
    skip, room = query.start_index - 1, query.count
    for service, total in counted:
        if room <= 0:
            break
        if skip >= total:
            skip -= total
            continue
        page = service.search(conn, caller, _with(query, start_index=skip + 1, count=room), base)
        resources.extend(page.resources)
        room -= len(page.resources)
        skip = 0
    return Page(sum(total for _, total in counted), query.start_index, resources)


def _with(query: ListQuery, **changes: int) -> ListQuery:
    return msgspec.structs.replace(query, **changes)
