"""`/v1/usage`: what the org's runs used over a time range, in total and by day, agent, user,
model or route."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from ..._usage import UsageGroupBy, UsageReport
from ...store import usage
from ...store.db import utcnow
from ...store.errors import InvalidInput
from ..auth import org_id
from ..errors import ERRORS

router = APIRouter(tags=["usage"], responses=ERRORS)

DEFAULT_RANGE = timedelta(days=30)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/v1/usage", response_model=UsageReport)
async def usage_report(
    request: Request,
    org: str = Depends(org_id),
    start: datetime | None = Query(None, alias="from", description="Runs created at or after (default: 30 days ago)."),
    end: datetime | None = Query(None, alias="to", description="Runs created before (default: now)."),
    group_by: UsageGroupBy | None = Query(None, description="Also report per day (UTC), agent, user, model or route."),
    agent_id: str | None = Query(None, max_length=40),
    user_id: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000, description="Groups at most (the rest count in totals only)."),
) -> dict[str, Any]:
    """Tokens, cost, credits, runs by status and p50/p95 duration of the runs created in the range."""
    end = _utc(end) if end is not None else utcnow()
    start = _utc(start) if start is not None else end - DEFAULT_RANGE
    if start >= end:
        raise InvalidInput("from must be before to", field="from")
    async with request.app.state.store.read() as conn:
        return await usage.report(
            conn,
            org,
            start=start,
            end=end,
            group_by=group_by,
            agent_id=agent_id,
            user_id=user_id,
            limit=limit,
            credits_per_usd=request.app.state.settings.credits_per_usd,
        )
