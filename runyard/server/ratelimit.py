"""Per-key rate limits: a token bucket of `rate_limit` requests per second, `rate_limit_burst`
deep. In process on SQLite (one node); on PostgreSQL the bucket is a row every API node updates
under its lock, on the database's clock, so the nodes share one limit per key."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..config import Settings
from ..store.db import Store
from ..store.schema import rate_limits

__all__ = ["Decision", "RateLimiter", "refill"]


def refill(tokens: float, elapsed: float, rate: float, burst: int) -> tuple[bool, float]:
    """The bucket after `elapsed` seconds and one request: (allowed, tokens left)."""
    tokens = min(float(burst), tokens + max(elapsed, 0.0) * rate)
    return (True, tokens - 1) if tokens >= 1 else (False, tokens)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: float
    retry_after: float
    """Seconds until the next request would be allowed (0 when this one was)."""

    def headers(self, rate: float, burst: int) -> dict[str, str]:
        """`Retry-After` and the IETF draft's `RateLimit-*` fields."""
        full_in = (burst - self.remaining) / rate
        return {
            "Retry-After": str(max(1, math.ceil(self.retry_after))),
            "RateLimit-Limit": str(burst),
            "RateLimit-Remaining": str(max(0, math.floor(self.remaining))),
            "RateLimit-Reset": str(math.ceil(full_in)),
            "RateLimit-Policy": f"{burst};w={math.ceil(burst / rate)}",
        }


class RateLimiter:
    def __init__(self, settings: Settings, store: Store) -> None:
        assert settings.rate_limit is not None
        self.rate = settings.rate_limit
        self.burst = settings.rate_limit_burst or max(1, math.ceil(2 * self.rate))
        self.store = store
        self._local: dict[str, tuple[float, float]] = {}

    async def take(self, key_id: str) -> Decision:
        """Spend one token of the key's bucket, or say how long until there is one."""
        if self.store.is_sqlite:
            tokens, at = self._local.get(key_id, (float(self.burst), time.monotonic()))
            now = time.monotonic()
            allowed, left = refill(tokens, now - at, self.rate, self.burst)
            if len(self._local) >= 100_000:
                self._local.clear()  # bounded: forgotten buckets start full
            self._local[key_id] = (left, now)
        else:
            allowed, left = await self._take_shared(key_id)
        return Decision(allowed, left, 0.0 if allowed else (1 - left) / self.rate)

    async def _take_shared(self, key_id: str) -> tuple[bool, float]:
        clock = self.store.db_now()
        async with self.store.tx() as tx:
            await tx.conn.execute(
                pg_insert(rate_limits)
                .values(key_id=key_id, tokens=float(self.burst), refilled_at=select(clock).scalar_subquery())
                .on_conflict_do_nothing()
            )
            row = (
                await tx.conn.execute(
                    select(rate_limits.c.tokens, rate_limits.c.refilled_at, clock.label("now"))
                    .where(rate_limits.c.key_id == key_id)
                    .with_for_update()
                )
            ).one()
            allowed, left = refill(row.tokens, float(row.now) - row.refilled_at, self.rate, self.burst)
            await tx.conn.execute(
                update(rate_limits).where(rate_limits.c.key_id == key_id).values(tokens=left, refilled_at=row.now)
            )
        return allowed, left
