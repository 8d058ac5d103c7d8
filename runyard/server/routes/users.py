"""`/v1/users/{user_id}/memories`: what the org keeps about one of its end users."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from ...domain import Memory
from ...store import memories
from ..auth import org_id
from ..errors import ERRORS
from ..queries import After, Before, Limit
from ..schemas import Deleted, MemoryCreate, MemoryList

router = APIRouter(prefix="/v1/users/{user_id}/memories", tags=["memories"], responses=ERRORS)

UserId = Path(min_length=1, max_length=200)


@router.get("", response_model=MemoryList)
async def list_memories(
    request: Request,
    user_id: str = UserId,
    org: str = Depends(org_id),
    limit: Limit = 20,
    before: Before = None,
    after: After = None,
) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await memories.list_(conn, org, user_id, limit=limit, before=before, after=after)
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.post("", response_model=Memory, status_code=201)
async def create_memory(
    body: MemoryCreate, request: Request, user_id: str = UserId, org: str = Depends(org_id)
) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        return await memories.create(tx.conn, org, user_id, body.text, metadata=body.metadata)


@router.delete("", response_model=dict[str, Any])
async def delete_memories(request: Request, user_id: str = UserId, org: str = Depends(org_id)) -> dict[str, Any]:
    """Forget everything about the user."""
    async with request.app.state.store.tx() as tx:
        count = await memories.delete_all(tx.conn, org, user_id)
    return {"user_id": user_id, "deleted": count}


@router.delete("/{memory_id}", response_model=Deleted)
async def delete_memory(
    memory_id: str, request: Request, user_id: str = UserId, org: str = Depends(org_id)
) -> dict[str, Any]:
    async with request.app.state.store.tx() as tx:
        await memories.delete_(tx.conn, org, user_id, memory_id)
    return {"id": memory_id, "object": "memory", "deleted": True}
