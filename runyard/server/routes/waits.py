"""`/v1/waits`: what needs a human, across runs."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from ...domain import Wait
from ...store import waits
from ...store.errors import NotFound
from ...store.schema import waits as waits_table
from ..auth import org_id
from ..errors import ERRORS
from ..schemas import Limits, WaitList

router = APIRouter(prefix="/v1/waits", tags=["waits"], responses=ERRORS)


@router.get("", response_model=WaitList)
async def list_waits(
    request: Request,
    org: str = Depends(org_id),
    status: Literal["open", "resolved", "expired", "cancelled"] | None = None,
    user_id: str | None = Query(None, max_length=200),
    run_id: str | None = Query(None, max_length=40),
    limit: int = Query(20, ge=1, le=Limits.PAGE_MAX),
    before: str | None = Query(None, max_length=200),
    after: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    """Waits of the org, newest first: `?status=open&user_id=…` is what needs a human now."""
    async with request.app.state.store.read() as conn:
        data, has_more, cursor = await waits.list_(
            conn, org, limit=limit, before=before, after=after, status=status, user_id=user_id, run_id=run_id
        )
    return {"data": data, "has_more": has_more, "next_cursor": cursor}


@router.get("/{wait_id}", response_model=Wait)
async def get_wait(wait_id: str, request: Request, org: str = Depends(org_id)) -> dict[str, Any]:
    async with request.app.state.store.read() as conn:
        row = (await conn.execute(
            select(waits_table).where(waits_table.c.id == wait_id, waits_table.c.org_id == org)
        )).one_or_none()
    if row is None:
        raise NotFound.of("wait", wait_id)
    return waits.to_dict(row)
