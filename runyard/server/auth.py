"""Bearer-key auth: every /v1 call resolves its key to an org, and every query is scoped by it."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..store import keys
from .errors import ApiError

__all__ = ["org_id"]

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
    cached = state.key_cache.get(key)
    if cached is not None:
        return cached
    async with state.store.read() as conn:
        org = await keys.org_for_key(conn, key)
    if org is None:
        raise ApiError(401, "unauthorized", "invalid API key", field="Authorization")
    # Keys cannot be revoked yet, so a positive lookup may be cached for the process's life.
    if len(state.key_cache) < 10_000:
        state.key_cache[key] = org
    return org
