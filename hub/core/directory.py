"""Searching Users and Groups at once: POST /.search at the service root (RFC 7644 §3.4.3)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection

from hub.core import groups, users
from hub.core.errors import InvalidFilter
from hub.core.filtering import sort_key
from hub.core.resources import JSON, ListQuery, Page
from hub.core.schema import GROUP_TYPE, USER_TYPE, ResourceType
from hub.core.tokens import Caller


def search_all(conn: Connection, caller: Caller, query: ListQuery, base: str) -> Page:
    """Users then Groups matching `query`, paged as one list.

    A filter naming an attribute only one of the types has simply matches nothing of the other
    type; a filter that neither type can evaluate is an error. A `sortBy` only one type has
    leaves the other's resources without a value for it: they come after the sorted ones in
    ascending order and before them in descending order (RFC 7644 §3.4.2.3), in their own order.
    Each type is sorted on its own: Users and Groups that both hold the attribute are not
    interleaved.

    Raises:
        InvalidFilter: the filter or `sortBy` is invalid for both Users and Groups.
    """
    services: list[tuple[Any, ResourceType]] = [(users, USER_TYPE), (groups, GROUP_TYPE)]
    counted: list[tuple[Any, int, ListQuery]] = []
    errors: list[InvalidFilter] = []
    for service, resource_type in services:
        own = query
        if query.sort_by is not None and not _sorts_by(query.sort_by, resource_type, conn):
            own = _with(query, sort_by=None, descending=False)
        try:
            total = service.search(conn, caller, _with(own, count=0), base).total
        except InvalidFilter as exc:
            errors.append(exc)
            continue
        counted.append((service, total, own))
    if len(errors) == len(services):
        raise errors[0]
    if query.sort_by is not None:
        if all(own.sort_by is None for _, _, own in counted):
            sort_key(query.sort_by, USER_TYPE, conn.dialect.name)  # raises, saying why
        unsorted_first = query.descending
        counted.sort(key=lambda item: (item[2].sort_by is None) != unsorted_first)
    resources: list[JSON] = []
    skip, room = query.start_index - 1, query.count
    for service, total, own in counted:
        if room <= 0:
            break
        if skip >= total:
            skip -= total
            continue
        page = service.search(conn, caller, _with(own, start_index=skip + 1, count=room), base)
        resources.extend(page.resources)
        room -= len(page.resources)
        skip = 0
    return Page(sum(total for _, total, _ in counted), query.start_index, resources)


def _sorts_by(path: str, resource_type: ResourceType, conn: Connection) -> bool:
    try:
        sort_key(path, resource_type, conn.dialect.name)
    except InvalidFilter:
        return False
    return True


def _with(query: ListQuery, **changes: Any) -> ListQuery:
    return msgspec.structs.replace(query, **changes)
