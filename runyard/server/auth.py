"""Bearer-key auth: every /v1 call resolves its key to an org, and every query is scoped by it."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..store import keys
from ..store.db import utcnow
from .errors import ApiError

__all__ = ["KEY_CACHE_SECONDS", "org_id"]

KEY_CACHE_SECONDS = 1.0
"""How long a node trusts a key it looked up: a revoked or expired key is refused within this."""

# Declares bearer auth in the OpenAPI schema; the check itself is below (our error body).
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")


async def org_id(request: Request, _declared: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", field="Authorization"
        )
    key = key.strip()
    state = request.app.state
    now = time.monotonic()
    cached = state.key_cache.get(key)
    if cached is not None and now - cached[2] < KEY_CACHE_SECONDS:
        await _limit(state, cached[1])
        return cached[0]
    async with state.store.read() as conn:
        info = await keys.lookup(conn, key)
    if info is None:
        state.key_cache.pop(key, None)
        raise ApiError(401, "unauthorized", "invalid API key (unknown, revoked or expired)", field="Authorization")
    if info.last_used_at is None or utcnow() - info.last_used_at >= keys.LAST_USED_RESOLUTION:
        async with state.store.tx() as tx:
            await keys.mark_used(tx.conn, info.id)
    if len(state.key_cache) >= 10_000:
        state.key_cache.clear()  # bounded: the next requests look their keys up again
    state.key_cache[key] = (info.org_id, info.id, now)
    await _limit(state, info.id)
    return info.org_id


async def _limit(state: Any, key_id: str) -> None:
    """429 once the key spent its rate limit (when one is set)."""
    limiter = state.rate_limiter
    if limiter is None:
        return
    decision = await limiter.take(key_id)
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for this API key: at most {limiter.rate:g} per second "
            f"(bursts of {limiter.burst}); retry after {decision.retry_after:.2f} s",
            field="Authorization",
            headers=decision.headers(limiter.rate, limiter.burst),
        )
