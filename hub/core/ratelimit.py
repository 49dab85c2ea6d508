"""Per-token rate limits: a token bucket per token, refilled at the workspace's rate.

The default (`SCIM_HUB_RATE_LIMIT_PER_SECOND`, 50,000) is far above the 25 requests per second
Microsoft Entra ID needs, and above what one hub process answers (GETs by id: ~11,000 a second on
two small cores with the client beside it, so more on a faster machine): it guards a shared hub of
several workers without refusing one client that merely keeps a fast machine busy. A workspace
may set its own. A request over the limit is refused with 429 and `Retry-After` before any
database work. With several worker processes each enforces its share (limit ÷ workers), so
together they never admit more than the limit.

Buckets exist only for tokens that authenticated, so random tokens cannot grow memory; an unknown
token goes on to authentication, which refuses it.
"""

from __future__ import annotations

import math
import time

from sqlalchemy import Connection, select, update

from hub.core.errors import InvalidValue, ScimError
from hub.core.models import workspaces

#: Bursts allowed, in seconds' worth of requests.
BURST_SECONDS = 1.0


class TooManyRequests(ScimError):
    """The token sent more requests than its workspace allows (RFC 6585 §4)."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"rate limit exceeded for this token; retry after {retry_after} s "
            "(the limit is per token and set per workspace)"
        )
        self.headers = {"Retry-After": str(retry_after)}


class _Bucket:
    __slots__ = ("rate", "stamp", "tokens")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate * BURST_SECONDS
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self.rate * BURST_SECONDS, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class Limiter:
    """The buckets of one process; used from the event loop only."""

    def __init__(self, default_per_second: int, workers: int = 1) -> None:
        self.default = default_per_second
        self.workers = max(1, workers)
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> bool:
        """Refuse a request whose token has no request left, or take one for it (before any work).

        The request is counted here, not once it is answered: requests in flight together cannot
        all pass on the bucket's last request. Returns False when the token has no bucket yet
        (its first request in this process): `admit` counts it then.

        Raises:
            TooManyRequests: the bucket is empty; says when to retry.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        bucket.refill(time.monotonic())
        if bucket.tokens < 1:
            raise TooManyRequests(max(1, math.ceil((1 - bucket.tokens) / bucket.rate)))
        bucket.tokens -= 1
        return True

    def admit(self, key: str, per_second: int | None, counted: bool = False) -> None:
        """Count an authenticated request against its token at its workspace's rate.

        `counted`: `check` took the request from the token's bucket already.
        """
        limit = self.default if per_second is None else per_second
        if limit <= 0:
            return
        rate = limit / self.workers
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            # The workspace's rate is known now (or changed): a full bucket, this request in it.
            bucket = self._buckets[key] = _Bucket(rate)
        elif counted:
            return
        else:
            bucket.refill(time.monotonic())
        bucket.tokens -= 1


def workspace_limit(conn: Connection, workspace_pk: int) -> int | None:
    """The workspace's own limit (requests per second per token), or None for the default."""
    value = conn.execute(
        select(workspaces.c.rate_limit).where(workspaces.c.pk == workspace_pk)
    ).scalar()
    return None if value is None else int(value)


def set_workspace_limit(conn: Connection, workspace_pk: int, per_second: int | None) -> None:
    """Set (or with None, clear) the workspace's own limit.

    Raises:
        InvalidValue: the limit is below 1 or above one million.
    """
    if per_second is not None and not 1 <= per_second <= 1_000_000:
        raise InvalidValue("requests_per_second must be between 1 and 1000000, or null")
    conn.execute(
        update(workspaces).where(workspaces.c.pk == workspace_pk).values(rate_limit=per_second)
    )
